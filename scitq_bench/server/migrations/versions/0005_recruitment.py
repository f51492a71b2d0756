"""recruitment: flavors and their regional metrics, quotas, recruiters, jobs; recruited workers' instance, price and idleness; batch budgets

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-21 08:34:06.961194
"""
import sqlalchemy as sa
from alembic import op

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('flavor',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('provider', sa.String(length=50), nullable=False),
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('cpu', sa.Integer(), nullable=False),
    sa.Column('ram_gb', sa.Float(), nullable=False),
    sa.Column('disk_gb', sa.Float(), nullable=False),
    sa.Column('gpu_model', sa.String(length=100), nullable=True),
    sa.Column('gpu_count', sa.Integer(), nullable=False),
    sa.Column('gpu_mem_gb', sa.Float(), nullable=False),
    sa.Column('tags', sa.String(length=20), nullable=False),
    sa.Column('updated_at', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('provider', 'name')
    )
    with op.batch_alter_table('flavor', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_flavor_provider'), ['provider'], unique=False)

    op.create_table('quota',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('provider', sa.String(length=50), nullable=False),
    sa.Column('region', sa.String(length=100), nullable=False),
    sa.Column('max_cpus', sa.Integer(), nullable=True),
    sa.Column('max_instances', sa.Integer(), nullable=True),
    sa.Column('preferred', sa.Boolean(), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('provider', 'region')
    )
    op.create_table('flavor_metric',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('flavor_id', sa.Integer(), nullable=False),
    sa.Column('region', sa.String(length=100), nullable=False),
    sa.Column('spot', sa.Boolean(), nullable=False),
    sa.Column('cost', sa.Float(), nullable=True),
    sa.Column('eviction', sa.Float(), nullable=True),
    sa.Column('available', sa.Boolean(), nullable=False),
    sa.Column('excluded_until', sa.DateTime(), nullable=True),
    sa.Column('updated_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['flavor_id'], ['flavor.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('flavor_id', 'region', 'spot')
    )
    with op.batch_alter_table('flavor_metric', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_flavor_metric_flavor_id'), ['flavor_id'], unique=False)

    op.create_table('recruiter',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('batch_id', sa.Integer(), nullable=False),
    sa.Column('rank', sa.Integer(), nullable=False),
    sa.Column('flavor', sa.String(length=500), nullable=False),
    sa.Column('provider', sa.String(length=50), nullable=False),
    sa.Column('region', sa.String(length=100), nullable=False),
    sa.Column('concurrency', sa.Integer(), nullable=True),
    sa.Column('prefetch', sa.Integer(), nullable=False),
    sa.Column('tasks_per_worker', sa.Integer(), nullable=True),
    sa.Column('minimum_tasks', sa.Integer(), nullable=False),
    sa.Column('maximum_workers', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['batch_id'], ['batch.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('batch_id', 'rank')
    )
    with op.batch_alter_table('recruiter', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_recruiter_batch_id'), ['batch_id'], unique=False)

    op.create_table('job',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('worker_id', sa.Integer(), nullable=True),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('progress', sa.Integer(), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('arguments', sa.JSON(), nullable=False),
    sa.Column('log', sa.Text(), nullable=False),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('modified_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['worker_id'], ['worker.id'], ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('job', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_job_status'), ['status'], unique=False)
        batch_op.create_index(batch_op.f('ix_job_worker_id'), ['worker_id'], unique=False)

    with op.batch_alter_table('batch', schema=None) as batch_op:
        batch_op.add_column(sa.Column('budget', sa.Float(), nullable=True))

    with op.batch_alter_table('worker', schema=None) as batch_op:
        batch_op.add_column(sa.Column('instance_id', sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column('cost_per_hour', sa.Float(), nullable=True))
        batch_op.add_column(sa.Column('recruiter_id', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('idle_since', sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column('released_at', sa.DateTime(), nullable=True))
        batch_op.create_index(batch_op.f('ix_worker_instance_id'), ['instance_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_worker_recruiter_id'), ['recruiter_id'], unique=False)
        batch_op.create_foreign_key('fk_worker_recruiter_id', 'recruiter', ['recruiter_id'], ['id'],
                                    ondelete='SET NULL')



def downgrade() -> None:
    with op.batch_alter_table('worker', schema=None) as batch_op:
        batch_op.drop_constraint('fk_worker_recruiter_id', type_='foreignkey')
        batch_op.drop_index(batch_op.f('ix_worker_recruiter_id'))
        batch_op.drop_index(batch_op.f('ix_worker_instance_id'))
        batch_op.drop_column('released_at')
        batch_op.drop_column('idle_since')
        batch_op.drop_column('recruiter_id')
        batch_op.drop_column('cost_per_hour')
        batch_op.drop_column('instance_id')

    with op.batch_alter_table('batch', schema=None) as batch_op:
        batch_op.drop_column('budget')

    with op.batch_alter_table('job', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_job_worker_id'))
        batch_op.drop_index(batch_op.f('ix_job_status'))

    op.drop_table('job')
    with op.batch_alter_table('recruiter', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_recruiter_batch_id'))

    op.drop_table('recruiter')
    with op.batch_alter_table('flavor_metric', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_flavor_metric_flavor_id'))

    op.drop_table('flavor_metric')
    op.drop_table('quota')
    with op.batch_alter_table('flavor', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_flavor_provider'))

    op.drop_table('flavor')
