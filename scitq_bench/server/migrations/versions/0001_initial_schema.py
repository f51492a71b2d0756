"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-21 05:44:24.313358
"""
import sqlalchemy as sa
from alembic import op

LIVE = "status IN ('pending', 'accepted', 'running')"

revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('batch',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('priority', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('name')
    )
    op.create_table('task',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('batch_id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=255), nullable=True),
    sa.Column('command', sa.Text(), nullable=False),
    sa.Column('shell', sa.Boolean(), nullable=False),
    sa.Column('container', sa.String(length=500), nullable=True),
    sa.Column('container_options', sa.Text(), nullable=True),
    sa.Column('inputs', sa.JSON(), nullable=False),
    sa.Column('resources', sa.JSON(), nullable=False),
    sa.Column('output', sa.String(length=1000), nullable=True),
    sa.Column('retries_allowed', sa.Integer(), nullable=False),
    sa.Column('retries_used', sa.Integer(), nullable=False),
    sa.Column('losses', sa.Integer(), nullable=False),
    sa.Column('download_timeout', sa.Float(), nullable=True),
    sa.Column('run_timeout', sa.Float(), nullable=True),
    sa.Column('cpu', sa.Integer(), nullable=True),
    sa.Column('mem', sa.Float(), nullable=True),
    sa.Column('gpu', sa.Integer(), nullable=False),
    sa.Column('priority', sa.Integer(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('status_reason', sa.Text(), nullable=True),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('modified_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['batch_id'], ['batch.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('task', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_task_batch_id'), ['batch_id'], unique=False)
        batch_op.create_index(
            'ix_task_claim', ['status', 'batch_id', sa.text('priority DESC'), 'id'], unique=False
        )
        batch_op.create_index(batch_op.f('ix_task_name'), ['name'], unique=False)
        batch_op.create_index(batch_op.f('ix_task_status'), ['status'], unique=False)

    op.create_table('worker',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('hostname', sa.String(length=255), nullable=True),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('concurrency', sa.Integer(), nullable=False),
    sa.Column('prefetch', sa.Integer(), nullable=False),
    sa.Column('batch_id', sa.Integer(), nullable=True),
    sa.Column('cpus', sa.Integer(), nullable=True),
    sa.Column('mem_gb', sa.Float(), nullable=True),
    sa.Column('gpus', sa.Integer(), nullable=False),
    sa.Column('stats', sa.JSON(), nullable=False),
    sa.Column('last_contact_at', sa.DateTime(), nullable=True),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('flavor', sa.String(length=100), nullable=True),
    sa.Column('provider', sa.String(length=50), nullable=True),
    sa.Column('region', sa.String(length=100), nullable=True),
    sa.Column('permanent', sa.Boolean(), nullable=False),
    sa.Column('version', sa.String(length=40), nullable=True),
    sa.ForeignKeyConstraint(['batch_id'], ['batch.id'], ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('name')
    )
    with op.batch_alter_table('worker', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_worker_batch_id'), ['batch_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_worker_last_contact_at'), ['last_contact_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_worker_status'), ['status'], unique=False)

    op.create_table('api_token',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('token_hash', sa.String(length=64), nullable=False),
    sa.Column('role', sa.String(length=16), nullable=False),
    sa.Column('worker_id', sa.Integer(), nullable=True),
    sa.Column('name', sa.String(length=200), nullable=True),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['worker_id'], ['worker.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('token_hash')
    )
    with op.batch_alter_table('api_token', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_api_token_worker_id'), ['worker_id'], unique=False)

    op.create_table('execution',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('task_id', sa.Integer(), nullable=False),
    sa.Column('worker_id', sa.Integer(), nullable=True),
    sa.Column('attempt', sa.Integer(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('lease_deadline', sa.DateTime(), nullable=True),
    sa.Column('return_code', sa.Integer(), nullable=True),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('started_at', sa.DateTime(), nullable=True),
    sa.Column('finished_at', sa.DateTime(), nullable=True),
    sa.Column('duration', sa.Float(), nullable=True),
    sa.Column('output_files', sa.JSON(), nullable=False),
    sa.Column('snapshot', sa.JSON(), nullable=False),
    sa.ForeignKeyConstraint(['task_id'], ['task.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['worker_id'], ['worker.id'], ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('execution', schema=None) as batch_op:
        batch_op.create_index('ix_execution_status_lease', ['status', 'lease_deadline'], unique=False)
        batch_op.create_index('ix_execution_task_status', ['task_id', 'status'], unique=False)
        batch_op.create_index('ix_execution_worker_status', ['worker_id', 'status'], unique=False)
        batch_op.create_index(
            'uq_execution_one_live_per_task', ['task_id'], unique=True,
            sqlite_where=sa.text(LIVE), postgresql_where=sa.text(LIVE),
        )

    op.create_table('requirement',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('task_id', sa.Integer(), nullable=False),
    sa.Column('prerequisite_id', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['prerequisite_id'], ['task.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['task_id'], ['task.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('task_id', 'prerequisite_id')
    )
    with op.batch_alter_table('requirement', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_requirement_prerequisite_id'), ['prerequisite_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_requirement_task_id'), ['task_id'], unique=False)

    op.create_table('signal',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('execution_id', sa.Integer(), nullable=False),
    sa.Column('worker_id', sa.Integer(), nullable=False),
    sa.Column('signal', sa.String(length=16), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('acknowledged_at', sa.DateTime(), nullable=True),
    sa.ForeignKeyConstraint(['execution_id'], ['execution.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['worker_id'], ['worker.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('signal', schema=None) as batch_op:
        batch_op.create_index('ix_signal_worker_ack', ['worker_id', 'acknowledged_at'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('signal', schema=None) as batch_op:
        batch_op.drop_index('ix_signal_worker_ack')

    op.drop_table('signal')
    with op.batch_alter_table('requirement', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_requirement_task_id'))
        batch_op.drop_index(batch_op.f('ix_requirement_prerequisite_id'))

    op.drop_table('requirement')
    with op.batch_alter_table('execution', schema=None) as batch_op:
        batch_op.drop_index('uq_execution_one_live_per_task')
        batch_op.drop_index('ix_execution_worker_status')
        batch_op.drop_index('ix_execution_task_status')
        batch_op.drop_index('ix_execution_status_lease')

    op.drop_table('execution')
    with op.batch_alter_table('api_token', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_api_token_worker_id'))

    op.drop_table('api_token')
    with op.batch_alter_table('worker', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_worker_status'))
        batch_op.drop_index(batch_op.f('ix_worker_last_contact_at'))
        batch_op.drop_index(batch_op.f('ix_worker_batch_id'))

    op.drop_table('worker')
    with op.batch_alter_table('task', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_task_status'))
        batch_op.drop_index(batch_op.f('ix_task_name'))
        batch_op.drop_index('ix_task_claim')
        batch_op.drop_index(batch_op.f('ix_task_batch_id'))

    op.drop_table('task')
    op.drop_table('batch')
