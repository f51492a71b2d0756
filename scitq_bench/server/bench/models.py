"""Tables of the benchmark platform. They share the queue's declarative base, so one
metadata (and one migration history) covers both.

A submission to a phase becomes attempts (the first at submission, one more per
re-run); an attempt has one run per task of the phase, and a run is one or two queue
tasks (prediction, then scoring, with a dependency). Scores land on the run, then on
the attempt, then on the submission, which is what leaderboards rank.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from scitq_bench.server.queue.models import Base, utcnow
from scitq_bench.states import AttemptStatus, RunStatus, SubmissionStatus


class Account(Base):
    """A person using benchmarks: a participant submits; an organizer also imports and
    manages the benchmarks it owns. Their tokens are ``api_token`` rows."""

    __tablename__ = "account"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    role: Mapped[str] = mapped_column(String(16))  # participant | organizer
    email: Mapped[str | None] = mapped_column(String(300))
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class Benchmark(Base):
    __tablename__ = "benchmark"

    id: Mapped[int] = mapped_column(primary_key=True)
    key: Mapped[str] = mapped_column(String(100), unique=True)
    title: Mapped[str] = mapped_column(String(300))
    description: Mapped[str | None] = mapped_column(Text)
    owner_id: Mapped[int | None] = mapped_column(
        ForeignKey("account.id", ondelete="SET NULL"), index=True)
    visibility: Mapped[str] = mapped_column(String(16), default="public")  # public | private
    docker_image: Mapped[str | None] = mapped_column(String(500))
    run_on_host: Mapped[bool] = mapped_column(Boolean, default=False)  # trusted, sandboxed
    # run on host: a virtualenv or conda prefix on the workers, its bin/ first on PATH
    host_environment: Mapped[str | None] = mapped_column(String(500))
    # the bundle's logo in the file store (a raster image; SVG is never kept)
    logo: Mapped[str | None] = mapped_column(String(1024))
    priority: Mapped[int | None] = mapped_column(Integer)  # its batches' priority
    enable_detailed_results: Mapped[bool] = mapped_column(Boolean, default=False)
    make_programs_available: Mapped[bool] = mapped_column(Boolean, default=False)
    make_input_data_available: Mapped[bool] = mapped_column(Boolean, default=False)
    pages: Mapped[list[Any]] = mapped_column(JSON, default=list)  # [{title, content}]
    terms: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class Phase(Base):
    __tablename__ = "phase"
    __table_args__ = (UniqueConstraint("benchmark_id", "index"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    benchmark_id: Mapped[int] = mapped_column(
        ForeignKey("benchmark.id", ondelete="CASCADE"), index=True)
    index: Mapped[int] = mapped_column(Integer)
    name: Mapped[str] = mapped_column(String(300))
    description: Mapped[str | None] = mapped_column(Text)
    start: Mapped[datetime] = mapped_column(DateTime)
    end: Mapped[datetime | None] = mapped_column(DateTime)
    max_submissions: Mapped[int | None] = mapped_column(Integer)
    max_submissions_per_day: Mapped[int | None] = mapped_column(Integer)
    max_submission_mb: Mapped[float | None] = mapped_column(Float)
    execution_time_limit: Mapped[int] = mapped_column(Integer, default=600)
    hide_output: Mapped[bool] = mapped_column(Boolean, default=False)
    hide_prediction_output: Mapped[bool] = mapped_column(Boolean, default=False)
    hide_score_output: Mapped[bool] = mapped_column(Boolean, default=False)
    accepts_only_result_submissions: Mapped[bool] = mapped_column(Boolean, default=False)
    starting_kit: Mapped[str | None] = mapped_column(String(500))  # file store path
    public_data: Mapped[str | None] = mapped_column(String(500))
    batch: Mapped[str] = mapped_column(String(200))  # the queue batch its runs go to


class BenchTask(Base):
    """A problem to solve: programs and data are zips in the server's file store."""

    __tablename__ = "bench_task"
    __table_args__ = (UniqueConstraint("benchmark_id", "index"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    benchmark_id: Mapped[int] = mapped_column(
        ForeignKey("benchmark.id", ondelete="CASCADE"), index=True)
    index: Mapped[int] = mapped_column(Integer)
    name: Mapped[str] = mapped_column(String(300))
    description: Mapped[str | None] = mapped_column(Text)
    scoring_program: Mapped[str] = mapped_column(String(500))
    scoring_command: Mapped[str] = mapped_column(Text)
    ingestion_program: Mapped[str | None] = mapped_column(String(500))
    ingestion_command: Mapped[str | None] = mapped_column(Text)
    input_data: Mapped[str | None] = mapped_column(String(500))
    reference_data: Mapped[str | None] = mapped_column(String(500))
    ingestion_only_during_scoring: Mapped[bool] = mapped_column(Boolean, default=False)
    gpu: Mapped[int] = mapped_column(Integer, default=0)  # GPUs each step needs (-1: all)
    image: Mapped[str | None] = mapped_column(String(500))  # else the benchmark's


class PhaseTask(Base):
    __tablename__ = "phase_task"

    phase_id: Mapped[int] = mapped_column(
        ForeignKey("phase.id", ondelete="CASCADE"), primary_key=True)
    bench_task_id: Mapped[int] = mapped_column(
        ForeignKey("bench_task.id", ondelete="CASCADE"), primary_key=True)
    position: Mapped[int] = mapped_column(Integer)


class Leaderboard(Base):
    __tablename__ = "leaderboard"
    __table_args__ = (UniqueConstraint("benchmark_id", "key"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    benchmark_id: Mapped[int] = mapped_column(
        ForeignKey("benchmark.id", ondelete="CASCADE"), index=True)
    key: Mapped[str] = mapped_column(String(100))
    title: Mapped[str] = mapped_column(String(300))
    index: Mapped[int] = mapped_column(Integer, default=0)
    hidden: Mapped[bool] = mapped_column(Boolean, default=False)
    submission_rule: Mapped[str] = mapped_column(String(32), default="Force_Last")
    primary_index: Mapped[int] = mapped_column(Integer, default=0)


class LeaderboardColumn(Base):
    __tablename__ = "leaderboard_column"
    __table_args__ = (UniqueConstraint("leaderboard_id", "key"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    leaderboard_id: Mapped[int] = mapped_column(
        ForeignKey("leaderboard.id", ondelete="CASCADE"), index=True)
    key: Mapped[str] = mapped_column(String(100))
    title: Mapped[str] = mapped_column(String(300))
    index: Mapped[int] = mapped_column(Integer)
    sorting: Mapped[str] = mapped_column(String(4), default="desc")
    computation: Mapped[str | None] = mapped_column(String(8))
    computation_indexes: Mapped[list[Any]] = mapped_column(JSON, default=list)
    precision: Mapped[int] = mapped_column(Integer, default=2)
    hidden: Mapped[bool] = mapped_column(Boolean, default=False)


class Submission(Base):
    """``scores`` is what leaderboards rank: the newest finished attempt's scores,
    {leaderboard key: {task index: {column key: value}}}, computed columns included."""

    __tablename__ = "submission"
    __table_args__ = (Index("ix_submission_phase_owner", "phase_id", "owner_id", "created_at"),
                      Index("ux_submission_phase_owner_key", "phase_id", "owner_id", "key",
                            unique=True))

    id: Mapped[int] = mapped_column(primary_key=True)
    benchmark_id: Mapped[int] = mapped_column(
        ForeignKey("benchmark.id", ondelete="CASCADE"), index=True)
    phase_id: Mapped[int] = mapped_column(ForeignKey("phase.id", ondelete="CASCADE"))
    owner_id: Mapped[int | None] = mapped_column(ForeignKey("account.id", ondelete="SET NULL"))
    kind: Mapped[str] = mapped_column(String(16))  # result | code | image
    kind_note: Mapped[str | None] = mapped_column(String(200))  # how "auto" chose the kind
    # the submitter's own name for it, unique per phase and owner: submitting a key
    # again returns the existing submission (bulk evaluations resume without duplicates)
    key: Mapped[str | None] = mapped_column(String(255))
    name: Mapped[str | None] = mapped_column(String(300))
    file: Mapped[str | None] = mapped_column(String(500))  # file store path of the zip
    size_bytes: Mapped[int | None] = mapped_column(Integer)
    image: Mapped[str | None] = mapped_column(String(500))
    command: Mapped[str | None] = mapped_column(Text)  # an image submission's own command
    status: Mapped[str] = mapped_column(String(16), default=SubmissionStatus.SUBMITTED.value,
                                        index=True)
    on_leaderboard: Mapped[bool] = mapped_column(Boolean, default=False)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    scores: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    scored_attempt: Mapped[int | None] = mapped_column(Integer)  # whose scores those are
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class Attempt(Base):
    __tablename__ = "submission_attempt"
    __table_args__ = (UniqueConstraint("submission_id", "number"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    submission_id: Mapped[int] = mapped_column(
        ForeignKey("submission.id", ondelete="CASCADE"), index=True)
    number: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16), default=AttemptStatus.RUNNING.value)
    error: Mapped[str | None] = mapped_column(Text)
    scores: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime)


class Run(Base):
    """One task of the phase for one attempt: its queue tasks and what they produced."""

    __tablename__ = "submission_run"

    id: Mapped[int] = mapped_column(primary_key=True)
    attempt_id: Mapped[int] = mapped_column(
        ForeignKey("submission_attempt.id", ondelete="CASCADE"), index=True)
    bench_task_id: Mapped[int] = mapped_column(ForeignKey("bench_task.id", ondelete="CASCADE"))
    position: Mapped[int] = mapped_column(Integer)
    prediction_task_id: Mapped[int | None] = mapped_column(
        ForeignKey("task.id", ondelete="SET NULL"), index=True)
    scoring_task_id: Mapped[int | None] = mapped_column(
        ForeignKey("task.id", ondelete="SET NULL"), index=True)
    status: Mapped[str] = mapped_column(String(16), default=RunStatus.RUNNING.value)
    error: Mapped[str | None] = mapped_column(Text)
    scores: Mapped[dict[str, Any] | None] = mapped_column(JSON)  # {board: {column: value}}
    detailed_results: Mapped[str | None] = mapped_column(String(500))


class LeaderboardEntry(Base):
    """A scored submission on one leaderboard, kept ready to rank: ``sort_key`` is the
    ranking order as bytes (``scitq_bench.bench.sortkey``); ``line`` and
    ``public_line`` are the end of its CSV line (submission id, instant, then the
    scores as displayed, per task: every column, or the visible ones only), so a ranked
    page is an indexed query and a CSV export a plain read. Rewritten whenever the
    submission's scores or its leaderboard choice change."""

    __tablename__ = "leaderboard_entry"
    __table_args__ = (
        UniqueConstraint("leaderboard_id", "submission_id"),
        Index("ix_leaderboard_entry_rank", "leaderboard_id", "phase_id", "chosen", "sort_key"),
        # the charts read a board in submission order, a page at a time
        Index("ix_leaderboard_entry_time", "leaderboard_id", "phase_id", "submitted_at",
              "submission_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    leaderboard_id: Mapped[int] = mapped_column(
        ForeignKey("leaderboard.id", ondelete="CASCADE"))
    phase_id: Mapped[int] = mapped_column(ForeignKey("phase.id", ondelete="CASCADE"))
    submission_id: Mapped[int] = mapped_column(
        ForeignKey("submission.id", ondelete="CASCADE"), index=True)
    owner_id: Mapped[int | None] = mapped_column(Integer)
    submitted_at: Mapped[datetime] = mapped_column(DateTime)
    selected: Mapped[bool] = mapped_column(Boolean, default=False)
    # on the board under its submission rule (``ranking.select`` over the owner's entries)
    chosen: Mapped[bool] = mapped_column(Boolean, default=False)
    sort_key: Mapped[bytes] = mapped_column(LargeBinary)
    line: Mapped[str] = mapped_column(Text)
    public_line: Mapped[str] = mapped_column(Text)
