"""benchmark-wide host environment and priority, its logo; how a submission's kind was
detected

Revision ID: 0009
Revises: 0008
Create Date: 2027-01-20 10:00:00
"""
import sqlalchemy as sa
from alembic import op

revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('benchmark') as batch:
        batch.add_column(sa.Column('host_environment', sa.String(length=500), nullable=True))
        batch.add_column(sa.Column('priority', sa.Integer(), nullable=True))
        batch.add_column(sa.Column('logo', sa.String(length=1024), nullable=True))
    with op.batch_alter_table('task') as batch:
        batch.add_column(sa.Column('host_environment', sa.String(length=500), nullable=True))
    with op.batch_alter_table('submission') as batch:
        batch.add_column(sa.Column('kind_note', sa.String(length=200), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('submission') as batch:
        batch.drop_column('kind_note')
    with op.batch_alter_table('task') as batch:
        batch.drop_column('host_environment')
    with op.batch_alter_table('benchmark') as batch:
        batch.drop_column('logo')
        batch.drop_column('priority')
        batch.drop_column('host_environment')
