"""the leader of the background loops, and its heartbeat

Revision ID: 0008
Revises: 0007
Create Date: 2027-01-12 10:00:00
"""
import sqlalchemy as sa
from alembic import op

revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('leader',
    sa.Column('name', sa.String(length=50), nullable=False),
    sa.Column('holder', sa.String(length=255), nullable=False),
    sa.Column('backend_pid', sa.Integer(), nullable=True),
    sa.Column('elected_at', sa.DateTime(), nullable=False),
    sa.Column('beat_at', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('name')
    )


def downgrade() -> None:
    op.drop_table('leader')
