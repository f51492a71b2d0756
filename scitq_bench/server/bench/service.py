"""Benchmarks, their phases and their tasks, as the API and the GUI handle them: one
function per thing a view asks, with the same rules of who sees what
(``bench.access``). Reads take the caller's session; a change with something to do after
its commit (files to remove) opens its own transaction."""

from __future__ import annotations

from typing import IO, TYPE_CHECKING, Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from scitq_bench.bench.bundle.loader import phase_overlap
from scitq_bench.container_options import GPU_ALL, validate_image
from scitq_bench.exceptions import InvalidInput, NotFound
from scitq_bench.server.auth import Principal
from scitq_bench.server.bench import importer, leaderboards
from scitq_bench.server.bench.access import (
    managed_benchmark,
    require_manager,
    visible_benchmark,
    visible_benchmarks,
    visible_phase,
)
from scitq_bench.server.bench.models import (
    Account,
    Attempt,
    Benchmark,
    BenchTask,
    Phase,
    Run,
    Submission,
)
from scitq_bench.server.bench.schemas import BenchmarkUpdate, BenchTaskUpdate, PhaseUpdate
from scitq_bench.server.bench.serialize import benchmark_dict, phase_dict
from scitq_bench.server.bench.submissions import phase_state
from scitq_bench.server.queue import tasks as queue
from scitq_bench.server.queue.models import utcnow
from scitq_bench.server.schemas import changed_fields
from scitq_bench.server.serialize import iso

if TYPE_CHECKING:
    from scitq_bench.server.context import ServerContext

# -- benchmarks -------------------------------------------------------------------------


def import_benchmark(ctx: ServerContext, principal: Principal, body: IO[bytes], *,
                     declared_size: int | None = None, key: str | None = None,
                     visibility: str = "public", run_on_host: bool = False) -> int:
    """A Codabench bundle (the API's body or the GUI's upload), all of it or nothing;
    returns the new benchmark's id."""
    return importer.import_upload(
        ctx.db, ctx.files, ctx.settings.data_dir / "imports", principal, body,
        declared_size=declared_size, key=key, visibility=visibility, run_on_host=run_on_host)


def describe(session: Session, principal: Principal, benchmark_id: int) -> dict[str, Any]:
    """The benchmark as ``principal`` may see it (``benchmark_dict``)."""
    return benchmark_dict(session, principal, visible_benchmark(session, principal, benchmark_id))


def list_benchmarks(session: Session, principal: Principal) -> list[dict[str, Any]]:
    """The benchmarks ``principal`` may see, by id."""
    found = session.scalars(select(Benchmark).where(visible_benchmarks(principal))
                            .order_by(Benchmark.id))
    return [{"id": b.id, "key": b.key, "title": b.title, "visibility": b.visibility,
             "created_at": iso(b.created_at)} for b in found]


def count_benchmarks(session: Session, principal: Principal) -> int:
    return session.scalar(select(func.count()).select_from(Benchmark)
                          .where(visible_benchmarks(principal))) or 0


def benchmark_rows(session: Session, principal: Principal, offset: int,
                   limit: int) -> list[dict[str, Any]]:
    """A page of the benchmarks ``principal`` may see, newest first, with their owner's
    name."""
    rows = session.execute(
        select(Benchmark, Account.name).outerjoin(Account, Account.id == Benchmark.owner_id)
        .where(visible_benchmarks(principal)).order_by(Benchmark.id.desc())
        .offset(offset).limit(limit)).all()
    return [{"id": b.id, "key": b.key, "title": b.title, "visibility": b.visibility,
             "owner": owner, "created_at": b.created_at} for b, owner in rows]


def benchmark_title(session: Session, benchmark_id: int) -> str | None:
    return session.scalar(select(Benchmark.title).where(Benchmark.id == benchmark_id))


def overview(session: Session, principal: Principal, benchmark_id: int, wanted_phase: str,
             preview_rows: int) -> dict[str, Any]:
    """A benchmark's page: the benchmark (``benchmark_dict``), its phases, the phase
    chosen (``wanted_phase``, else the open one, else the latest) and the first
    ``preview_rows`` of each of its leaderboards there."""
    found = visible_benchmark(session, principal, benchmark_id)
    info = benchmark_dict(session, principal, found)
    rows = phases_of(session, found.id)
    chosen = _chosen_phase(rows, wanted_phase)
    boards = [leaderboards.page(session, principal, found, chosen, board["key"], 0,
                                preview_rows)
              for board in info["leaderboards"]] if chosen is not None else []
    return {"bench": info, "phases": phase_rows(rows), "boards": boards,
            "chosen": {"id": chosen.id, "name": chosen.name} if chosen is not None else None}


def _chosen_phase(phases: list[Phase], wanted: str) -> Phase | None:
    for phase in phases:
        if str(phase.id) == wanted:
            return phase
    now = utcnow()
    return next((p for p in phases if phase_state(p, now) == "open"),
                phases[-1] if phases else None)


def submit_choices(session: Session, principal: Principal,
                   benchmark_id: int) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """What a submission form offers: the benchmark ({id, title}) and its phases."""
    benchmark = visible_benchmark(session, principal, benchmark_id)
    return ({"id": benchmark.id, "title": benchmark.title},
            phase_rows(phases_of(session, benchmark.id)))


def update_benchmark(session: Session, principal: Principal, benchmark_id: int,
                     changes: BenchmarkUpdate) -> dict[str, Any]:
    """Set what every step of the benchmark runs in (its organizers only): the image
    (tasks with an image of their own keep it; '' or null: the default image) and, for
    a benchmark run on the workers' hosts, the environment there ('' or null: none)."""
    benchmark = managed_benchmark(session, principal, benchmark_id)
    if "docker_image" in changes.model_fields_set:
        image = changes.docker_image
        if image and benchmark.run_on_host:
            raise InvalidInput(f"docker_image: benchmark {benchmark.key!r} runs its programs "
                               "on the workers' hosts, in no image", field="docker_image")
        benchmark.docker_image = validate_image(image, field="docker_image") if image \
            else (None if benchmark.run_on_host else importer.DEFAULT_IMAGE)
    if "host_environment" in changes.model_fields_set:
        path = changes.host_environment
        if path and not benchmark.run_on_host:
            raise InvalidInput(f"host_environment: benchmark {benchmark.key!r} runs its "
                               "programs in images, not on the workers' hosts",
                               field="host_environment")
        benchmark.host_environment = path or None
    session.flush()
    return benchmark_dict(session, principal, benchmark)


def commit_delete(ctx: ServerContext, principal: Principal, benchmark_id: int) -> None:
    """Delete a benchmark its organizer manages; its files go once the rows are gone."""
    with ctx.db.write() as session:
        stored = delete_benchmark(session, managed_benchmark(session, principal, benchmark_id))
    ctx.files.discard(*stored)


def delete_benchmark(session: Session, benchmark: Benchmark) -> list[str]:
    """Delete the benchmark and every queue task of its submissions; return the file
    store paths to remove once the transaction committed."""
    task_ids = [i for row in session.execute(
        select(Run.prediction_task_id, Run.scoring_task_id).join(Attempt)
        .join(Submission).where(Submission.benchmark_id == benchmark.id)).all()
        for i in row if i]
    for task_id in reversed(task_ids):  # scoring before prediction: nothing re-queues
        queue.delete_task(session, task_id)
    stored = [p for row in session.execute(select(
        BenchTask.scoring_program, BenchTask.ingestion_program, BenchTask.input_data,
        BenchTask.reference_data).where(BenchTask.benchmark_id == benchmark.id)).all()
        for p in row if p]
    stored += [p for row in session.execute(select(Phase.starting_kit, Phase.public_data)
                                            .where(Phase.benchmark_id == benchmark.id)).all()
               for p in row if p]
    stored += [p for p in session.scalars(select(Submission.file).where(
        Submission.benchmark_id == benchmark.id)) if p]
    if benchmark.logo:
        stored.append(benchmark.logo)
    session.delete(benchmark)
    session.flush()
    return stored


# -- phases and tasks -------------------------------------------------------------------


def phases_of(session: Session, benchmark_id: int) -> list[Phase]:
    return list(session.scalars(select(Phase).where(Phase.benchmark_id == benchmark_id)
                                .order_by(Phase.index)))


def phase_rows(phases: list[Phase]) -> list[dict[str, Any]]:
    """Phases as plain values for templates (rendered once the session is closed),
    with whether each is open now."""
    now = utcnow()
    keep = ("id", "index", "name", "description", "start", "end", "max_submissions",
            "max_submissions_per_day", "max_submission_mb", "execution_time_limit",
            "accepts_only_result_submissions")
    return [{**{k: getattr(p, k) for k in keep}, "state": phase_state(p, now)} for p in phases]


def update_phase(session: Session, principal: Principal, phase_id: int,
                 changes: PhaseUpdate) -> dict[str, Any]:
    """Change a phase's dates, limits or output visibility (its organizers only)."""
    phase, benchmark = visible_phase(session, principal, phase_id)
    require_manager(principal, benchmark)
    for key, value in changed_fields(changes, Phase).items():
        setattr(phase, key, value)
    if phase.end is not None and phase.end <= phase.start:
        raise InvalidInput(f"end: {phase.end} is not after start {phase.start}")
    ordered = sorted(phases_of(session, benchmark.id), key=lambda p: p.index)
    problem = phase_overlap([(f"phases[{p.index}]", p.name, p.start, p.end) for p in ordered])
    if problem:
        raise InvalidInput(problem)
    session.flush()
    return phase_dict(phase, [])


def update_task(session: Session, principal: Principal, benchmark_id: int, index: int,
                changes: BenchTaskUpdate) -> dict[str, Any]:
    """Set a task's resources (GPUs per step, an image of its own); returns the
    benchmark."""
    benchmark = managed_benchmark(session, principal, benchmark_id)
    task = session.scalars(select(BenchTask).where(
        BenchTask.benchmark_id == benchmark.id, BenchTask.index == index)).first()
    if task is None:
        raise NotFound(f"benchmark {benchmark_id} has no task {index}")
    if "gpu" in changes.model_fields_set:
        task.gpu = GPU_ALL if changes.gpu == "all" else int(changes.gpu or 0)
    if "image" in changes.model_fields_set:
        task.image = validate_image(changes.image, field="image") if changes.image else None
    session.flush()
    return benchmark_dict(session, principal, benchmark)
