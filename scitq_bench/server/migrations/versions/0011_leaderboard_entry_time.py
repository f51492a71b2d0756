"""leaderboard entries indexed in submission order, for the charts' paged reads

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


def downgrade() -> None:
    op.drop_index('ix_leaderboard_entry_time', table_name='leaderboard_entry')
