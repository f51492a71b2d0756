"""claim index in claim order: priority descending, then id

SQLite lost the DESC of ix_task_claim when earlier migrations rebuilt the task table,
so every claim sorted the whole pending part of a batch. Plain DDL keeps it on both
databases.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-21 10:40:00
"""
from alembic import op

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None

CLAIM_INDEX = "CREATE INDEX ix_task_claim ON task (status, batch_id, priority DESC, id)"


def upgrade() -> None:
    op.drop_index('ix_task_claim', table_name='task')
    op.execute(CLAIM_INDEX)


def downgrade() -> None:
    op.drop_index('ix_task_claim', table_name='task')
    op.execute(CLAIM_INDEX)
