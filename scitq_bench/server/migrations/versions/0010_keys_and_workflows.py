"""caller-chosen keys for tasks (per batch) and submissions (per phase and owner);
recruiters grouped by workflow under a shared worker cap

Revision ID: 0010
Revises: 0009
Create Date: 2027-02-10 10:00:00
"""
import sqlalchemy as sa
from alembic import op

revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('task') as batch:
        batch.add_column(sa.Column('key', sa.String(length=255), nullable=True))
        batch.create_index('ux_task_batch_key', ['batch_id', 'key'], unique=True)
    with op.batch_alter_table('submission') as batch:
        batch.add_column(sa.Column('key', sa.String(length=255), nullable=True))
        batch.create_index('ux_submission_phase_owner_key', ['phase_id', 'owner_id', 'key'],
                           unique=True)
    with op.batch_alter_table('recruiter') as batch:
        batch.add_column(sa.Column('workflow', sa.String(length=200), nullable=True))
        batch.add_column(sa.Column('workflow_maximum_workers', sa.Integer(), nullable=True))
        batch.create_index('ix_recruiter_workflow', ['workflow'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('recruiter') as batch:
        batch.drop_index('ix_recruiter_workflow')
        batch.drop_column('workflow_maximum_workers')
        batch.drop_column('workflow')
    with op.batch_alter_table('submission') as batch:
        batch.drop_index('ux_submission_phase_owner_key')
        batch.drop_column('key')
    with op.batch_alter_table('task') as batch:
        batch.drop_index('ux_task_batch_key')
        batch.drop_column('key')
