"""benchmarks: accounts, imported bundles, submissions, attempts, runs, leaderboards

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-21 08:13:38.584012
"""
import sqlalchemy as sa
from alembic import op

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('account',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('role', sa.String(length=16), nullable=False),
    sa.Column('email', sa.String(length=300), nullable=True),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('name')
    )
    op.create_table('benchmark',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('key', sa.String(length=100), nullable=False),
    sa.Column('title', sa.String(length=300), nullable=False),
    sa.Column('description', sa.Text(), nullable=True),
    sa.Column('owner_id', sa.Integer(), nullable=True),
    sa.Column('visibility', sa.String(length=16), nullable=False),
    sa.Column('docker_image', sa.String(length=500), nullable=True),
    sa.Column('run_on_host', sa.Boolean(), nullable=False),
    sa.Column('enable_detailed_results', sa.Boolean(), nullable=False),
    sa.Column('make_programs_available', sa.Boolean(), nullable=False),
    sa.Column('make_input_data_available', sa.Boolean(), nullable=False),
    sa.Column('pages', sa.JSON(), nullable=False),
    sa.Column('terms', sa.Text(), nullable=True),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['owner_id'], ['account.id'], ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('key')
    )
    with op.batch_alter_table('benchmark', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_benchmark_owner_id'), ['owner_id'], unique=False)

    op.create_table('bench_task',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('benchmark_id', sa.Integer(), nullable=False),
    sa.Column('index', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=300), nullable=False),
    sa.Column('description', sa.Text(), nullable=True),
    sa.Column('scoring_program', sa.String(length=500), nullable=False),
    sa.Column('scoring_command', sa.Text(), nullable=False),
    sa.Column('ingestion_program', sa.String(length=500), nullable=True),
    sa.Column('ingestion_command', sa.Text(), nullable=True),
    sa.Column('input_data', sa.String(length=500), nullable=True),
    sa.Column('reference_data', sa.String(length=500), nullable=True),
    sa.Column('ingestion_only_during_scoring', sa.Boolean(), nullable=False),
    sa.Column('gpu', sa.Integer(), nullable=False),
    sa.Column('image', sa.String(length=500), nullable=True),
    sa.ForeignKeyConstraint(['benchmark_id'], ['benchmark.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('benchmark_id', 'index')
    )
    with op.batch_alter_table('bench_task', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_bench_task_benchmark_id'), ['benchmark_id'], unique=False)

    op.create_table('leaderboard',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('benchmark_id', sa.Integer(), nullable=False),
    sa.Column('key', sa.String(length=100), nullable=False),
    sa.Column('title', sa.String(length=300), nullable=False),
    sa.Column('index', sa.Integer(), nullable=False),
    sa.Column('hidden', sa.Boolean(), nullable=False),
    sa.Column('submission_rule', sa.String(length=32), nullable=False),
    sa.Column('primary_index', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['benchmark_id'], ['benchmark.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('benchmark_id', 'key')
    )
    with op.batch_alter_table('leaderboard', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_leaderboard_benchmark_id'), ['benchmark_id'], unique=False)

    op.create_table('phase',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('benchmark_id', sa.Integer(), nullable=False),
    sa.Column('index', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=300), nullable=False),
    sa.Column('description', sa.Text(), nullable=True),
    sa.Column('start', sa.DateTime(), nullable=False),
    sa.Column('end', sa.DateTime(), nullable=True),
    sa.Column('max_submissions', sa.Integer(), nullable=True),
    sa.Column('max_submissions_per_day', sa.Integer(), nullable=True),
    sa.Column('max_submission_mb', sa.Float(), nullable=True),
    sa.Column('execution_time_limit', sa.Integer(), nullable=False),
    sa.Column('hide_output', sa.Boolean(), nullable=False),
    sa.Column('hide_prediction_output', sa.Boolean(), nullable=False),
    sa.Column('hide_score_output', sa.Boolean(), nullable=False),
    sa.Column('accepts_only_result_submissions', sa.Boolean(), nullable=False),
    sa.Column('starting_kit', sa.String(length=500), nullable=True),
    sa.Column('public_data', sa.String(length=500), nullable=True),
    sa.Column('batch', sa.String(length=200), nullable=False),
    sa.ForeignKeyConstraint(['benchmark_id'], ['benchmark.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('benchmark_id', 'index')
    )
    with op.batch_alter_table('phase', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_phase_benchmark_id'), ['benchmark_id'], unique=False)

    op.create_table('leaderboard_column',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('leaderboard_id', sa.Integer(), nullable=False),
    sa.Column('key', sa.String(length=100), nullable=False),
    sa.Column('title', sa.String(length=300), nullable=False),
    sa.Column('index', sa.Integer(), nullable=False),
    sa.Column('sorting', sa.String(length=4), nullable=False),
    sa.Column('computation', sa.String(length=8), nullable=True),
    sa.Column('computation_indexes', sa.JSON(), nullable=False),
    sa.Column('precision', sa.Integer(), nullable=False),
    sa.Column('hidden', sa.Boolean(), nullable=False),
    sa.ForeignKeyConstraint(['leaderboard_id'], ['leaderboard.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('leaderboard_id', 'key')
    )
    with op.batch_alter_table('leaderboard_column', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_leaderboard_column_leaderboard_id'), ['leaderboard_id'], unique=False)

    op.create_table('phase_task',
    sa.Column('phase_id', sa.Integer(), nullable=False),
    sa.Column('bench_task_id', sa.Integer(), nullable=False),
    sa.Column('position', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['bench_task_id'], ['bench_task.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['phase_id'], ['phase.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('phase_id', 'bench_task_id')
    )
    op.create_table('submission',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('benchmark_id', sa.Integer(), nullable=False),
    sa.Column('phase_id', sa.Integer(), nullable=False),
    sa.Column('owner_id', sa.Integer(), nullable=True),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('name', sa.String(length=300), nullable=True),
    sa.Column('file', sa.String(length=500), nullable=True),
    sa.Column('size_bytes', sa.Integer(), nullable=True),
    sa.Column('image', sa.String(length=500), nullable=True),
    sa.Column('command', sa.Text(), nullable=True),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('on_leaderboard', sa.Boolean(), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('scores', sa.JSON(), nullable=True),
    sa.Column('scored_attempt', sa.Integer(), nullable=True),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['benchmark_id'], ['benchmark.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['owner_id'], ['account.id'], ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['phase_id'], ['phase.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('submission', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_submission_benchmark_id'), ['benchmark_id'], unique=False)
        batch_op.create_index('ix_submission_phase_owner', ['phase_id', 'owner_id', 'created_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_submission_status'), ['status'], unique=False)

    op.create_table('submission_attempt',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('submission_id', sa.Integer(), nullable=False),
    sa.Column('number', sa.Integer(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('scores', sa.JSON(), nullable=True),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('finished_at', sa.DateTime(), nullable=True),
    sa.ForeignKeyConstraint(['submission_id'], ['submission.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('submission_id', 'number')
    )
    with op.batch_alter_table('submission_attempt', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_submission_attempt_submission_id'), ['submission_id'], unique=False)

    op.create_table('submission_run',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('attempt_id', sa.Integer(), nullable=False),
    sa.Column('bench_task_id', sa.Integer(), nullable=False),
    sa.Column('position', sa.Integer(), nullable=False),
    sa.Column('prediction_task_id', sa.Integer(), nullable=True),
    sa.Column('scoring_task_id', sa.Integer(), nullable=True),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('scores', sa.JSON(), nullable=True),
    sa.Column('detailed_results', sa.String(length=500), nullable=True),
    sa.ForeignKeyConstraint(['attempt_id'], ['submission_attempt.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['bench_task_id'], ['bench_task.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['prediction_task_id'], ['task.id'], ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['scoring_task_id'], ['task.id'], ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('submission_run', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_submission_run_attempt_id'), ['attempt_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_submission_run_prediction_task_id'), ['prediction_task_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_submission_run_scoring_task_id'), ['scoring_task_id'], unique=False)

    op.create_table('leaderboard_entry',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('leaderboard_id', sa.Integer(), nullable=False),
    sa.Column('phase_id', sa.Integer(), nullable=False),
    sa.Column('submission_id', sa.Integer(), nullable=False),
    sa.Column('owner_id', sa.Integer(), nullable=True),
    sa.Column('submitted_at', sa.DateTime(), nullable=False),
    sa.Column('selected', sa.Boolean(), nullable=False),
    sa.Column('chosen', sa.Boolean(), nullable=False),
    sa.Column('sort_key', sa.LargeBinary(), nullable=False),
    sa.Column('line', sa.Text(), nullable=False),
    sa.Column('public_line', sa.Text(), nullable=False),
    sa.ForeignKeyConstraint(['leaderboard_id'], ['leaderboard.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['phase_id'], ['phase.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['submission_id'], ['submission.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('leaderboard_id', 'submission_id')
    )
    op.create_index('ix_leaderboard_entry_rank', 'leaderboard_entry',
                    ['leaderboard_id', 'phase_id', 'chosen', 'sort_key'], unique=False)
    op.create_index(op.f('ix_leaderboard_entry_submission_id'), 'leaderboard_entry',
                    ['submission_id'], unique=False)

    with op.batch_alter_table('api_token', schema=None) as batch_op:
        batch_op.add_column(sa.Column('account_id', sa.Integer(), nullable=True))
        batch_op.create_index(batch_op.f('ix_api_token_account_id'), ['account_id'], unique=False)
        batch_op.create_foreign_key('fk_api_token_account_id', 'account', ['account_id'], ['id'],
                                    ondelete='CASCADE')



def downgrade() -> None:
    op.drop_index(op.f('ix_leaderboard_entry_submission_id'), table_name='leaderboard_entry')
    op.drop_index('ix_leaderboard_entry_rank', table_name='leaderboard_entry')
    op.drop_table('leaderboard_entry')
    with op.batch_alter_table('api_token', schema=None) as batch_op:
        batch_op.drop_constraint('fk_api_token_account_id', type_='foreignkey')
        batch_op.drop_index(batch_op.f('ix_api_token_account_id'))
        batch_op.drop_column('account_id')

    with op.batch_alter_table('submission_run', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_submission_run_scoring_task_id'))
        batch_op.drop_index(batch_op.f('ix_submission_run_prediction_task_id'))
        batch_op.drop_index(batch_op.f('ix_submission_run_attempt_id'))

    op.drop_table('submission_run')
    with op.batch_alter_table('submission_attempt', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_submission_attempt_submission_id'))

    op.drop_table('submission_attempt')
    with op.batch_alter_table('submission', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_submission_status'))
        batch_op.drop_index('ix_submission_phase_owner')
        batch_op.drop_index(batch_op.f('ix_submission_benchmark_id'))

    op.drop_table('submission')
    op.drop_table('phase_task')
    with op.batch_alter_table('leaderboard_column', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_leaderboard_column_leaderboard_id'))

    op.drop_table('leaderboard_column')
    with op.batch_alter_table('phase', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_phase_benchmark_id'))

    op.drop_table('phase')
    with op.batch_alter_table('leaderboard', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_leaderboard_benchmark_id'))

    op.drop_table('leaderboard')
    with op.batch_alter_table('bench_task', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_bench_task_benchmark_id'))

    op.drop_table('bench_task')
    with op.batch_alter_table('benchmark', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_benchmark_owner_id'))

    op.drop_table('benchmark')
    op.drop_table('account')
