"""run layout and scores: tasks may see the Codabench /app layout and have scores read

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-21 08:20:00.000000
"""
import sqlalchemy as sa
from alembic import op

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('task', schema=None) as batch_op:
        batch_op.add_column(sa.Column('layout', sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column('score_keys', sa.JSON(), nullable=True))
    with op.batch_alter_table('execution', schema=None) as batch_op:
        batch_op.add_column(sa.Column('scores', sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('execution', schema=None) as batch_op:
        batch_op.drop_column('scores')
    with op.batch_alter_table('task', schema=None) as batch_op:
        batch_op.drop_column('score_keys')
        batch_op.drop_column('layout')
