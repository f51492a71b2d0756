"""Loading a bundle: its files copied or extracted into the staging folder, then
``competition.yaml`` read and checked section by section into a ``BundleSpec``.

Only ``version: 2`` bundles are read; a file without ``version`` is read the same way
when it has the version 2 shape (lists of phases, tasks and leaderboards), and refused
as a CodaLab v1.5 bundle otherwise.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from scitq_bench.bench.archives import ArchiveBudget, ArchiveLimits, copy_tree, extract_zip
from scitq_bench.bench.bundle.fields import (
    as_bool,
    as_datetime,
    as_int,
    as_list,
    as_mapping,
    as_text,
    fail,
    indexed,
    int_list,
    parse_yaml,
    required_text,
)
from scitq_bench.bench.bundle.leaderboards import read_leaderboards
from scitq_bench.bench.bundle.model import (
    COMPETITION_YAML,
    BundleError,
    BundleSpec,
    PageSpec,
    PhaseSpec,
    SolutionSpec,
    TaskSpec,
)
from scitq_bench.bench.bundle.staging import Staging, find_root

DEFAULT_EXECUTION_TIME_LIMIT = 600


def _check_version(doc: dict) -> None:
    version = doc.get("version")
    if version is None:
        v2_shape = all(isinstance(doc.get(key), list) for key in ("phases", "tasks")) and (
            isinstance(doc.get("leaderboards", doc.get("leaderboard")), list))
        if not v2_shape:
            raise BundleError(
                f"{COMPETITION_YAML}: no 'version: 2', and this is not the version 2 layout "
                "(lists of phases, tasks and leaderboards): CodaLab v1.5 bundles are not "
                "supported; convert it to a version 2 bundle")
        return
    if str(version).strip() not in ("2", "2.0"):
        raise BundleError(f"{COMPETITION_YAML}: version {version!r} is not supported "
                          "(only version 2)")


def _tasks(loading: Staging, doc: dict) -> tuple[TaskSpec, ...]:
    items = doc.get("tasks")
    if not items:
        raise fail("tasks", "at least one task is needed")
    tasks: list[TaskSpec] = []
    for index, position, item in indexed(as_list(items, "tasks"), "tasks"):
        where = f"tasks[{position}]"
        if "key" in item and item.get("scoring_program") is None:
            raise fail(f"{where}.key", "a task already on a Codabench server cannot be used "
                                        "here; give its scoring_program instead")
        if item.get("scoring_program") is None:
            raise fail(f"{where}.scoring_program", "is missing")
        scoring = loading.program(item["scoring_program"], f"{where}.scoring_program")
        ingestion = None
        if item.get("ingestion_program") is not None:
            ingestion = loading.program(item["ingestion_program"], f"{where}.ingestion_program")
        data: dict[str, Path | None] = {}
        for key in ("input_data", "reference_data"):
            data[key] = None
            if item.get(key) is not None:
                data[key] = loading.data(item[key], f"{where}.{key}")
        only_during_scoring = as_bool(item.get("ingestion_only_during_scoring"),
                                    f"{where}.ingestion_only_during_scoring")
        if only_during_scoring and ingestion is None:
            raise fail(f"{where}.ingestion_only_during_scoring",
                        "needs an ingestion_program")
        tasks.append(TaskSpec(
            index=index,
            name=as_text(item.get("name"), f"{where}.name") or f"Task {index}",
            description=as_text(item.get("description"), f"{where}.description"),
            scoring_program=scoring,
            ingestion_program=ingestion,
            input_data=data["input_data"],
            reference_data=data["reference_data"],
            ingestion_only_during_scoring=only_during_scoring,
        ))
    return tuple(sorted(tasks, key=lambda t: t.index))


def _limit(value: Any, where: str) -> int | None:
    """A submission limit; absent, null or 0 mean no limit."""
    if value is None:
        return None
    number = as_int(value, where, minimum=0)
    return number or None


def _phases(loading: Staging, doc: dict, task_indexes: set[int]) -> tuple[PhaseSpec, ...]:
    items = doc.get("phases")
    if not items:
        raise fail("phases", "at least one phase is needed")
    ordered = sorted(indexed(as_list(items, "phases"), "phases"), key=lambda e: e[0])
    phases: list[tuple[int, PhaseSpec]] = []
    for number, (_, position, item) in enumerate(ordered):
        where = f"phases[{position}]"
        if item.get("start") is None:
            raise fail(f"{where}.start", "is missing")
        start = as_datetime(item["start"], f"{where}.start")
        end = None
        if item.get("end") is not None:
            end = as_datetime(item["end"], f"{where}.end")
            if end <= start:
                raise fail(f"{where}.end", f"{end} is not after the start ({start})")
        elif number < len(ordered) - 1:
            raise fail(f"{where}.end", "is missing (only the last phase may have no end)")
        if item.get("tasks") is None:
            raise fail(f"{where}.tasks", "is missing (a phase needs at least one task)")
        tasks = int_list(item["tasks"], f"{where}.tasks")
        if not tasks:
            raise fail(f"{where}.tasks", "is empty (a phase needs at least one task)")
        for task in tasks:
            if task not in task_indexes:
                raise fail(f"{where}.tasks", f"task {task} is not declared in tasks")
        limit = item.get("execution_time_limit")
        optional: dict[str, Path | None] = {}
        for key in ("starting_kit", "public_data"):
            optional[key] = None
            if item.get(key) is not None:
                optional[key] = loading.data(item[key], f"{where}.{key}")
        phases.append((position, PhaseSpec(
            index=number,
            name=as_text(item.get("name"), f"{where}.name") or f"Phase {number + 1}",
            description=as_text(item.get("description"), f"{where}.description"),
            start=start,
            end=end,
            tasks=tasks,
            max_submissions=_limit(item.get("max_submissions"), f"{where}.max_submissions"),
            max_submissions_per_day=_limit(item.get("max_submissions_per_day"),
                                           f"{where}.max_submissions_per_day"),
            execution_time_limit=(DEFAULT_EXECUTION_TIME_LIMIT if limit is None
                                  else as_int(limit, f"{where}.execution_time_limit", 1)),
            hide_output=as_bool(item.get("hide_output"), f"{where}.hide_output"),
            hide_prediction_output=as_bool(item.get("hide_prediction_output"),
                                         f"{where}.hide_prediction_output"),
            hide_score_output=as_bool(item.get("hide_score_output"), f"{where}.hide_score_output"),
            accepts_only_result_submissions=as_bool(item.get("accepts_only_result_submissions"),
                                                  f"{where}.accepts_only_result_submissions"),
            starting_kit=optional["starting_kit"],
            public_data=optional["public_data"],
        )))
    problem = phase_overlap([(f"phases[{pos}]", p.name, p.start, p.end) for pos, p in phases])
    if problem:
        raise BundleError(f"{COMPETITION_YAML}: {problem}")
    return tuple(phase for _, phase in phases)


def phase_overlap(phases: Sequence[tuple[str, str, datetime, datetime | None]]) -> str | None:
    """What is wrong when phases, in their order, overlap: each must start at or after the
    end of the one before (which must then have an end). ``phases``: (label, name, start,
    end). The import and a phase's update both check with this."""
    for (before_at, before, _, before_end), (after_at, after, after_start, _) in zip(
            phases, phases[1:], strict=False):
        if before_end is None:
            return (f"phases overlap: {after!r} ({after_at}) starts {after_start}, but "
                    f"{before!r} ({before_at}) has no end")
        if after_start < before_end:
            return (f"phases overlap: {after!r} ({after_at}) starts {after_start}, before "
                    f"{before!r} ({before_at}) ends {before_end}")
    return None


def _solutions(loading: Staging, doc: dict, task_indexes: set[int]) -> tuple[SolutionSpec, ...]:
    items = doc.get("solutions")
    if not items:
        return ()
    solutions: list[SolutionSpec] = []
    for index, position, item in indexed(as_list(items, "solutions"), "solutions"):
        where = f"solutions[{position}]"
        if item.get("path") is None:
            raise fail(f"{where}.path", "is missing")
        if item.get("tasks") is None:
            raise fail(f"{where}.tasks", "is missing")
        tasks = int_list(item["tasks"], f"{where}.tasks")
        for task in tasks:
            if task not in task_indexes:
                raise fail(f"{where}.tasks", f"task {task} is not declared in tasks")
        path = loading.data(item["path"], f"{where}.path")
        solutions.append(SolutionSpec(index=index, path=path, tasks=tasks))
    return tuple(sorted(solutions, key=lambda s: s.index))


def _pages(loading: Staging, doc: dict) -> tuple[PageSpec, ...]:
    items = doc.get("pages")
    if not items:
        return ()
    pages: list[PageSpec] = []
    for position, item in enumerate(as_list(items, "pages")):
        where = f"pages[{position}]"
        item = as_mapping(item, where)
        if item.get("file") is None:
            raise fail(f"{where}.file", "is missing")
        content = loading.read_text(item["file"], f"{where}.file")
        title = as_text(item.get("title"), f"{where}.title") or Path(str(item["file"])).stem
        pages.append(PageSpec(title=title, content=content))
    return tuple(pages)


def load_bundle(source: Path, staging: Path, limits: ArchiveLimits = ArchiveLimits()) -> BundleSpec:
    """Read and check the bundle at ``source`` (a .zip file or a folder).

    ``staging`` is an empty folder that the caller made and deletes afterwards; all that
    is extracted or produced goes under it, and the returned paths point there. Raises
    ``BundleError`` for anything wrong with the bundle."""
    source = Path(source)
    staging = Path(staging)
    budget = ArchiveBudget(limits)
    tree = staging / "bundle"
    if source.is_dir():
        copy_tree(source, tree, budget, BundleError)
    elif source.is_file():
        extract_zip(source, tree, budget)
    else:
        raise BundleError(f"{source.name}: no such file or folder")
    root = find_root(tree, source.name)
    raw = (root / COMPETITION_YAML).read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise BundleError(f"{COMPETITION_YAML}: not UTF-8 text") from None
    doc = parse_yaml(text, COMPETITION_YAML)
    if not isinstance(doc, dict):
        raise BundleError(f"{COMPETITION_YAML}: must be a mapping of competition settings")
    _check_version(doc)
    loading = Staging(root, staging, limits)
    title = required_text(doc.get("title"), "title")
    tasks = _tasks(loading, doc)
    task_indexes = {task.index for task in tasks}
    phases = _phases(loading, doc, task_indexes)
    leaderboards = read_leaderboards(doc)
    solutions = _solutions(loading, doc, task_indexes)
    pages = _pages(loading, doc)
    logo = None
    if doc.get("image") is not None:
        logo = loading.copy_file(doc["image"], "image", "logo")
    terms = None
    if doc.get("terms") is not None:
        terms = loading.read_text(doc["terms"], "terms")
    return BundleSpec(
        title=title,
        description=as_text(doc.get("description"), "description"),
        docker_image=as_text(doc.get("docker_image"), "docker_image"),
        logo=logo,
        terms=terms,
        pages=pages,
        phases=phases,
        tasks=tasks,
        leaderboards=leaderboards,
        solutions=solutions,
        enable_detailed_results=as_bool(doc.get("enable_detailed_results"),
                                      "enable_detailed_results"),
        make_programs_available=as_bool(doc.get("make_programs_available"),
                                      "make_programs_available"),
        make_input_data_available=as_bool(doc.get("make_input_data_available"),
                                        "make_input_data_available"),
        staging=staging,
    )


__all__ = ["DEFAULT_EXECUTION_TIME_LIMIT", "load_bundle", "phase_overlap"]
