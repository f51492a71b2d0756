"""leaderboard entries indexed in submission order, for the charts' paged reads; the
task table loses its indexes on status alone and on batch alone, which the claim index
(status, batch, priority, id) and the batch's key index (batch, key) already serve

Revision ID: 0011
Revises: 0010
Create Date: 2027-03-01 10:00:00
"""
from alembic import op

revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index('ix_leaderboard_entry_time', 'leaderboard_entry',
                    ['leaderboard_id', 'phase_id', 'submitted_at', 'submission_id'])
    with op.batch_alter_table('task') as batch:
        batch.drop_index('ix_task_status')
        batch.drop_index('ix_task_batch_id')


def downgrade() -> None:
    with op.batch_alter_table('task') as batch:
        batch.create_index('ix_task_batch_id', ['batch_id'], unique=False)
        batch.create_index('ix_task_status', ['status'], unique=False)
    op.drop_index('ix_leaderboard_entry_time', table_name='leaderboard_entry')
