"""Importing a Codabench bundle: all of it or nothing.

The bundle is read and checked completely in a staging directory first
(``scitq_bench.bench.bundle``); only then are its programs and data copied into the
file store and its rows written, in one transaction. If anything fails after the
copies, they are removed: a failed import leaves no benchmark and no files behind.
"""

from __future__ import annotations

import re
import shutil
import tempfile
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import IO

from sqlalchemy import select
from sqlalchemy.orm import Session

from scitq_bench.bench.archives import ArchiveLimits
from scitq_bench.bench.bundle import BundleSpec, load_bundle
from scitq_bench.exceptions import Conflict, Forbidden, InvalidInput
from scitq_bench.server.auth import ADMIN, Principal
from scitq_bench.server.bench.logos import LOGO_TYPES
from scitq_bench.server.bench.models import (
    Benchmark,
    BenchTask,
    Leaderboard,
    LeaderboardColumn,
    Phase,
    PhaseTask,
)
from scitq_bench.server.bench.runs import phase_batch
from scitq_bench.server.db import Database
from scitq_bench.server.storage import FileStorage

KEY_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_-]{0,99}$")
DEFAULT_IMAGE = "codalab/codalab-legacy:py37"  # what bundles without docker_image expect
MAX_BUNDLE_UPLOAD = 4 << 30


def slug(title: str) -> str:
    text = re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")
    return (text or "benchmark")[:60]


def import_bundle(
    db: Database, files: FileStorage, source: Path, *, key: str | None = None,
    owner_id: int | None = None, run_on_host: bool = False, visibility: str = "public",
    limits: ArchiveLimits | None = None, work_dir: Path | None = None,
) -> int:
    """Import the bundle at ``source`` (a zip or a directory); returns the benchmark id.
    ``run_on_host``: the programs are trusted and run in the worker's sandbox without
    an image."""
    if visibility not in ("public", "private"):
        raise InvalidInput(f"visibility: {visibility!r} is not public or private",
                           field="visibility")
    staging = Path(tempfile.mkdtemp(prefix="bundle-", dir=work_dir))
    stored: list[str] = []
    try:
        spec = load_bundle(source, staging, limits or ArchiveLimits())
        key = _free_key(db, key or slug(spec.title), explicit=key is not None)
        prefix = f"benchmarks/{key}-{uuid.uuid4().hex[:8]}"

        def keep(path: Path | None, name: str) -> str | None:
            if path is None:
                return None
            target = f"{prefix}/{name}"
            with open(path, "rb") as handle:
                files.write(target, handle)
            stored.append(target)
            return target

        with db.write() as session:
            benchmark = _write(session, spec, key, keep, owner_id=owner_id,
                               run_on_host=run_on_host, visibility=visibility)
            return benchmark.id
    except BaseException:
        files.discard(*stored)
        raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def import_upload(
    db: Database, files: FileStorage, work_dir: Path, principal: Principal, body: IO[bytes], *,
    declared_size: int | None = None, key: str | None = None, visibility: str = "public",
    run_on_host: bool = False,
) -> int:
    """Import a bundle uploaded as ``body`` (the API's request body or the GUI's form
    file): only an admin may let programs run on the hosts; the upload is spooled to
    ``work_dir`` and refused past ``MAX_BUNDLE_UPLOAD``. Returns the benchmark id."""
    if run_on_host and principal.role != ADMIN:
        raise Forbidden("only an admin may let a benchmark's programs run on the hosts",
                        field="run_on_host")
    if declared_size is not None and declared_size > MAX_BUNDLE_UPLOAD:
        raise InvalidInput(f"bundle of {declared_size} bytes is over the {MAX_BUNDLE_UPLOAD} "
                           "limit")
    work_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=work_dir, suffix=".zip") as upload:
        written = 0
        while chunk := body.read(1 << 16):
            written += len(chunk)
            if written > MAX_BUNDLE_UPLOAD:
                raise InvalidInput(f"bundle is over the {MAX_BUNDLE_UPLOAD} bytes limit")
            upload.write(chunk)
        upload.flush()
        if not written:
            raise InvalidInput("the bundle is empty; a Codabench bundle (a zip) is expected")
        return import_bundle(db, files, Path(upload.name), key=key or None,
                             owner_id=principal.account_id, run_on_host=run_on_host,
                             visibility=visibility, work_dir=work_dir)


def _free_key(db: Database, key: str, *, explicit: bool) -> str:
    if not KEY_PATTERN.match(key):
        raise InvalidInput(f"key: {key!r} must be lowercase letters, digits, - or _ "
                           "(at most 100, starting with a letter or digit)", field="key")
    with db.read() as session:
        taken = set(session.scalars(select(Benchmark.key).where(Benchmark.key.like(f"{key}%"))))
    if key not in taken:
        return key
    if explicit:
        raise Conflict(f"a benchmark with key {key!r} exists already", field="key")
    number = 2
    while f"{key}-{number}" in taken:
        number += 1
    return f"{key}-{number}"


def _logo(path: Path | None, keep: Callable[[Path | None, str], str | None]) -> str | None:
    """The bundle's logo kept when it is a raster image the GUI may show; anything else
    (an SVG can run scripts) is left out."""
    if path is None or path.suffix.lower() not in LOGO_TYPES:
        return None
    return keep(path, "logo" + path.suffix.lower())


def _write(session: Session, spec: BundleSpec, key: str,
           keep: Callable[[Path | None, str], str | None], *, owner_id: int | None,
           run_on_host: bool, visibility: str) -> Benchmark:
    benchmark = Benchmark(
        key=key, title=spec.title, description=spec.description, owner_id=owner_id,
        visibility=visibility, run_on_host=run_on_host,
        docker_image=None if run_on_host else (spec.docker_image or DEFAULT_IMAGE),
        enable_detailed_results=spec.enable_detailed_results,
        make_programs_available=spec.make_programs_available,
        make_input_data_available=spec.make_input_data_available,
        pages=[{"title": p.title, "content": p.content} for p in spec.pages], terms=spec.terms,
        logo=_logo(spec.logo, keep),
    )
    session.add(benchmark)
    session.flush()
    tasks: dict[int, BenchTask] = {}
    for task in spec.tasks:
        where = f"tasks/{task.index}"
        task_row = BenchTask(
            benchmark_id=benchmark.id, index=task.index, name=task.name,
            description=task.description,
            scoring_program=keep(task.scoring_program.archive, f"{where}/scoring_program.zip"),
            scoring_command=task.scoring_program.command,
            ingestion_program=keep(task.ingestion_program.archive if task.ingestion_program
                                   else None, f"{where}/ingestion_program.zip"),
            ingestion_command=task.ingestion_program.command if task.ingestion_program else None,
            input_data=keep(task.input_data, f"{where}/input_data.zip"),
            reference_data=keep(task.reference_data, f"{where}/reference_data.zip"),
            ingestion_only_during_scoring=task.ingestion_only_during_scoring,
        )
        session.add(task_row)
        tasks[task.index] = task_row
    session.flush()
    for phase in spec.phases:
        phase_row = Phase(
            benchmark_id=benchmark.id, index=phase.index, name=phase.name,
            description=phase.description, start=phase.start, end=phase.end,
            max_submissions=phase.max_submissions,
            max_submissions_per_day=phase.max_submissions_per_day,
            execution_time_limit=phase.execution_time_limit, hide_output=phase.hide_output,
            hide_prediction_output=phase.hide_prediction_output,
            hide_score_output=phase.hide_score_output,
            accepts_only_result_submissions=phase.accepts_only_result_submissions,
            starting_kit=keep(phase.starting_kit, f"phases/{phase.index}/starting_kit.zip"),
            public_data=keep(phase.public_data, f"phases/{phase.index}/public_data.zip"),
            batch="",
        )
        phase_row.batch = phase_batch(benchmark, phase_row)
        session.add(phase_row)
        session.flush()
        for position, index in enumerate(phase.tasks):
            session.add(PhaseTask(phase_id=phase_row.id, bench_task_id=tasks[index].id,
                                  position=position))
    for board in spec.leaderboards:
        board_row = Leaderboard(
            benchmark_id=benchmark.id, key=board.key, title=board.title, index=board.index,
            hidden=board.hidden, submission_rule=board.submission_rule,
            primary_index=board.primary_index,
        )
        session.add(board_row)
        session.flush()
        for column in board.columns:
            session.add(LeaderboardColumn(
                leaderboard_id=board_row.id, key=column.key, title=column.title, index=column.index,
                sorting=column.sorting, computation=column.computation,
                computation_indexes=list(column.computation_indexes),
                precision=column.precision, hidden=column.hidden,
            ))
    session.flush()
    return benchmark

