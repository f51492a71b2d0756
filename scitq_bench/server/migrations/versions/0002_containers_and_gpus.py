"""containers and GPUs: network permission, workers' GPUs and engine, failure reasons

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28 09:00:00.000000
"""
import sqlalchemy as sa
from alembic import op

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('batch', schema=None) as batch_op:
        batch_op.add_column(
            sa.Column('network', sa.Boolean(), server_default=sa.false(), nullable=False)
        )
    with op.batch_alter_table('task', schema=None) as batch_op:
        batch_op.add_column(
            sa.Column('network', sa.Boolean(), server_default=sa.false(), nullable=False)
        )
    with op.batch_alter_table('worker', schema=None) as batch_op:
        batch_op.add_column(sa.Column('gpu_model', sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column('gpu_mem_gb', sa.Float(), nullable=True))
        batch_op.add_column(
            sa.Column('containers', sa.Boolean(), server_default=sa.false(), nullable=False)
        )
    with op.batch_alter_table('execution', schema=None) as batch_op:
        batch_op.add_column(sa.Column('reason', sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('execution', schema=None) as batch_op:
        batch_op.drop_column('reason')
    with op.batch_alter_table('worker', schema=None) as batch_op:
        batch_op.drop_column('containers')
        batch_op.drop_column('gpu_mem_gb')
        batch_op.drop_column('gpu_model')
    with op.batch_alter_table('task', schema=None) as batch_op:
        batch_op.drop_column('network')
    with op.batch_alter_table('batch', schema=None) as batch_op:
        batch_op.drop_column('network')
