"""What a loaded bundle is: the specs ``load_bundle`` returns, and the error it raises.

Indexes are those of ``competition.yaml``; paths point to normalized zips (or the logo)
under the staging folder the loader was given, and datetimes are naive UTC.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from scitq_bench.exceptions import InvalidInput

COMPETITION_YAML = "competition.yaml"


class BundleError(InvalidInput):
    """The competition bundle is not valid."""


@dataclass(frozen=True)
class Program:
    """A scoring or ingestion program: its normalized zip and its command."""

    archive: Path
    command: str


@dataclass(frozen=True)
class TaskSpec:
    index: int
    name: str
    description: str | None
    scoring_program: Program
    ingestion_program: Program | None
    input_data: Path | None
    reference_data: Path | None
    ingestion_only_during_scoring: bool


@dataclass(frozen=True)
class PhaseSpec:
    index: int  # 0, 1, ... in phase order
    name: str
    description: str | None
    start: datetime  # naive UTC
    end: datetime | None  # naive UTC; None only for the last phase
    tasks: tuple[int, ...]  # task indexes
    max_submissions: int | None
    max_submissions_per_day: int | None
    execution_time_limit: int  # seconds
    hide_output: bool
    hide_prediction_output: bool
    hide_score_output: bool
    accepts_only_result_submissions: bool
    starting_kit: Path | None
    public_data: Path | None


@dataclass(frozen=True)
class ColumnSpec:
    key: str
    title: str
    index: int
    sorting: str  # asc: smaller is better; desc: larger is better
    computation: str | None  # sum | avg | min | max
    computation_indexes: tuple[int, ...]
    precision: int
    hidden: bool


@dataclass(frozen=True)
class LeaderboardSpec:
    key: str
    title: str
    index: int
    hidden: bool
    submission_rule: str
    primary_index: int
    columns: tuple[ColumnSpec, ...]  # sorted by index


@dataclass(frozen=True)
class SolutionSpec:
    index: int
    path: Path  # normalized zip
    tasks: tuple[int, ...]


@dataclass(frozen=True)
class PageSpec:
    title: str
    content: str


@dataclass(frozen=True)
class BundleSpec:
    title: str
    description: str | None
    docker_image: str | None
    logo: Path | None
    terms: str | None
    pages: tuple[PageSpec, ...]
    phases: tuple[PhaseSpec, ...]
    tasks: tuple[TaskSpec, ...]  # sorted by index
    leaderboards: tuple[LeaderboardSpec, ...]  # sorted by index
    solutions: tuple[SolutionSpec, ...]
    enable_detailed_results: bool
    make_programs_available: bool
    make_input_data_available: bool
    staging: Path


__all__ = [
    "COMPETITION_YAML",
    "BundleError",
    "BundleSpec",
    "ColumnSpec",
    "LeaderboardSpec",
    "PageSpec",
    "PhaseSpec",
    "Program",
    "SolutionSpec",
    "TaskSpec",
]
