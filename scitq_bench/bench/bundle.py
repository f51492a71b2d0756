"""Codabench competition bundles: read one, check it, and stage its parts as zips.

A bundle is a zip file or a folder holding ``competition.yaml`` (at its top, or inside
its single top folder). Only ``version: 2`` bundles are read; a file without
``version`` is read the same way when it has the version 2 shape (lists of phases, tasks
and leaderboards), and refused as a CodaLab v1.5 bundle otherwise.

Everything ``load_bundle`` produces lies under the staging folder it is given::

    staging/bundle/     the bundle's files (extracted from the zip, or copied from the folder)
    staging/files/      the normalized zips (programs, data, starting kits, solutions) and the logo

A normalized zip holds its files at its root: a zip whose files all sit in one single
folder is flattened (for a program: when its metadata sits in that folder), macOS
leftovers (``__MACOSX/``, ``.DS_Store``) are dropped, directories are implied, and every
entry gets the same timestamp, so the same content always gives the same bytes. The
execute bit of a file is kept. A zip or folder named by several tasks is normalized once.

Safety, checked before anything is written, is that of ``scitq_bench.bench.archives``
(no entry outside the archive, no link or device, no encrypted entry, limits on entries
and bytes enforced on the headers and again on the bytes actually read); a folder bundle
holds no symbolic link anywhere. The bundle itself and the zips inside it have one
``ArchiveLimits`` budget each.

Field names in messages are those of ``competition.yaml``, with the position of an item
in its list (``phases[1].start`` is the second phase written in the file).
Dates are UTC (naive datetimes): ``YYYY-MM-DD``, ``YYYY-MM-DD HH:MM[:SS]``, the same
with a ``T``, optionally with ``Z`` or an offset (converted to UTC).
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import zipfile
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import yaml

from scitq_bench.bench.archives import (
    CHUNK,
    DRIVE,
    ArchiveBudget,
    ArchiveLimits,
    Member,
    copy_zip_member,
    extract_zip,
    open_zip,
    scan_zip,
)
from scitq_bench.bench.ranking import COMPUTATIONS, SORTINGS
from scitq_bench.bench.ranking import RULES as SUBMISSION_RULES
from scitq_bench.exceptions import InvalidInput

COMPETITION_YAML = "competition.yaml"
METADATA_NAMES = ("metadata.yaml", "metadata")
DEFAULT_SUBMISSION_RULE = "Force_Last"
DEFAULT_EXECUTION_TIME_LIMIT = 600
DEFAULT_PRECISION = 2

_ZIP_TIME = (1980, 1, 1, 0, 0, 0)
_JUNK_DIRS = frozenset({"__MACOSX"})
_JUNK_FILES = frozenset({".DS_Store"})
_DATE = re.compile(r"^(\d{4})-(\d{2})-(\d{2})$")
_DATETIME = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[T ](\d{1,2}):(\d{2})(?::(\d{2})(?:\.(\d{1,6})\d*)?)?"
    r"\s*(Z|[+-]\d{2}(?::?\d{2})?)?$"
)


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


# -- YAML --------------------------------------------------------------------------------


class _Loader(yaml.SafeLoader):
    """``yaml.safe_load``'s loader, except that a timestamp that is not a real date (say
    ``2024-13-01``) stays a string, so that it is refused naming its field."""


def _timestamp(loader: _Loader, node: yaml.Node) -> Any:
    try:
        return yaml.SafeLoader.construct_yaml_timestamp(loader, node)
    except ValueError:
        return loader.construct_scalar(node)


_Loader.add_constructor("tag:yaml.org,2002:timestamp", _timestamp)


def _parse_yaml(text: str, label: str) -> Any:
    try:
        return yaml.load(text, Loader=_Loader)  # noqa: S506 - a SafeLoader subclass
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = exc.problem or exc.context or "invalid YAML"
        if mark is None:
            raise BundleError(f"{label}: {problem}") from None
        raise BundleError(f"{label} line {mark.line + 1}: {problem}") from None
    except yaml.YAMLError as exc:
        raise BundleError(f"{label}: {exc}") from None
    except RecursionError:
        raise BundleError(f"{label}: nested too deeply") from None


# -- archives ----------------------------------------------------------------------------


def _copy_tree(source: Path, dest: Path, budget: ArchiveBudget) -> None:
    """Copy a folder bundle, refusing links and special files anywhere in it."""
    label = source.name
    files: list[tuple[Path, tuple[str, ...], int]] = []
    dirs: list[tuple[str, ...]] = []
    total = 0
    def unreadable(exc: OSError) -> None:
        raise BundleError(f"{label}: cannot read {exc.filename!r} ({exc.strerror})")

    for current, dirnames, filenames in os.walk(source, onerror=unreadable, followlinks=False):
        base = Path(current)
        for name in sorted(dirnames) + sorted(filenames):
            path = base / name
            rel = path.relative_to(source)
            info = path.lstat()
            if stat.S_ISLNK(info.st_mode):
                raise BundleError(f"{label}: {rel.as_posix()!r} is a symbolic link")
            if stat.S_ISDIR(info.st_mode):
                dirs.append(rel.parts)
            elif stat.S_ISREG(info.st_mode):
                if info.st_size > budget.limits.max_file_bytes:
                    raise BundleError(
                        f"{label}: {rel.as_posix()!r} is too big ({info.st_size} bytes; "
                        f"at most {budget.limits.max_file_bytes} allowed)")
                total += info.st_size
                files.append((path, rel.parts, info.st_mode))
            else:
                raise BundleError(f"{label}: {rel.as_posix()!r} is not a plain file or folder")
    budget.check_declared(label, len(files) + len(dirs), total)
    dest.mkdir()
    for parts in dirs:
        dest.joinpath(*parts).mkdir(parents=True, exist_ok=True)
    for path, parts, mode in files:
        name = "/".join(parts)
        try:
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
            with os.fdopen(fd, "rb") as src, open(dest.joinpath(*parts), "xb") as out:
                budget.copy(label, name, src, out)
            os.chmod(dest.joinpath(*parts), 0o755 if mode & 0o111 else 0o644)
        except OSError as exc:
            raise BundleError(f"{label}: cannot copy {name!r} ({exc})") from None
        budget.files += 1
    budget.files += len(dirs)


def _find_root(tree: Path, label: str) -> Path:
    if (tree / COMPETITION_YAML).is_file():
        return tree
    children = [c for c in tree.iterdir() if c.name not in _JUNK_DIRS | _JUNK_FILES]
    if len(children) == 1 and children[0].is_dir() and (children[0] / COMPETITION_YAML).is_file():
        return children[0]
    raise BundleError(f"{label}: no {COMPETITION_YAML} at its top (or in its single top folder)")


# -- field checks --------------------------------------------------------------------------


def _fail(where: str, message: str) -> BundleError:
    return BundleError(f"{COMPETITION_YAML}: {where}: {message}")


def _mapping(value: Any, where: str) -> dict:
    if not isinstance(value, dict):
        raise _fail(where, "must be a mapping (key: value lines)")
    return value


def _list(value: Any, where: str) -> list:
    if not isinstance(value, list):
        raise _fail(where, "must be a list")
    return value


def _text(value: Any, where: str, default: str | None = None) -> str | None:
    if value is None:
        return default
    if isinstance(value, (dict, list)):
        raise _fail(where, "must be text")
    text = str(value).strip()
    return text or default


def _required_text(value: Any, where: str) -> str:
    text = _text(value, where)
    if text is None:
        raise _fail(where, "is missing")
    return text


_TRUE = frozenset({"true", "yes", "on", "1"})
_FALSE = frozenset({"false", "no", "off", "0"})


def _bool(value: Any, where: str, default: bool = False) -> bool:
    if value is None:
        return default
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    raise _fail(where, f"{value!r} is not true or false")


def _int(value: Any, where: str, minimum: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        if isinstance(value, str) and re.fullmatch(r"\s*-?\d+\s*", value):
            value = int(value)
        else:
            raise _fail(where, f"{value!r} is not a whole number")
    if minimum is not None and value < minimum:
        raise _fail(where, f"{value} is less than {minimum}")
    return value


def _int_list(value: Any, where: str) -> tuple[int, ...]:
    if isinstance(value, int) and not isinstance(value, bool):
        value = [value]
    items = _list(value, where)
    result: list[int] = []
    for position, item in enumerate(items):
        number = _int(item, f"{where}[{position}]")
        if number not in result:
            result.append(number)
    return tuple(result)


def _datetime(value: Any, where: str) -> datetime:
    if isinstance(value, datetime):
        if value.tzinfo is not None:
            value = value.astimezone(timezone.utc).replace(tzinfo=None)
        return value
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day)
    hint = "is not a date (use YYYY-MM-DD or YYYY-MM-DD HH:MM:SS, UTC)"
    if not isinstance(value, str):
        raise _fail(where, f"{value!r} {hint}")
    text = value.strip()
    try:
        match = _DATE.match(text)
        if match:
            return datetime(*(int(g) for g in match.groups()))
        match = _DATETIME.match(text)
        if match:
            year, month, day, hour, minute, second, fraction, zone = match.groups()
            result = datetime(int(year), int(month), int(day), int(hour), int(minute),
                              int(second or 0), int((fraction or "0").ljust(6, "0")))
            if zone and zone != "Z":
                sign = -1 if zone[0] == "-" else 1
                digits = zone[1:].replace(":", "")
                offset = timedelta(hours=int(digits[:2]), minutes=int(digits[2:] or 0))
                result -= sign * offset
            return result
    except ValueError:
        pass
    raise _fail(where, f"{value!r} {hint}")


def _indexed(items: list, where: str) -> list[tuple[int, int, dict]]:
    """(index, position, item) for a list whose items all give an ``index``, or none does
    (then the index is the position)."""
    entries = [_mapping(item, f"{where}[{position}]") for position, item in enumerate(items)]
    given = ["index" in item and item["index"] is not None for item in entries]
    if any(given) and not all(given):
        missing = given.index(False)
        raise _fail(f"{where}[{missing}].index",
                    f"is missing (give every item of {where} an index, or none)")
    result: list[tuple[int, int, dict]] = []
    seen: dict[int, int] = {}
    for position, item in enumerate(entries):
        index = _int(item["index"], f"{where}[{position}].index") if all(given) else position
        if index in seen:
            raise _fail(f"{where}[{position}].index",
                        f"{index} is already the index of {where}[{seen[index]}]")
        seen[index] = position
        result.append((index, position, item))
    return result


# -- the loader ---------------------------------------------------------------------------


class _Loading:
    """The state of one ``load_bundle`` call."""

    def __init__(self, root: Path, staging: Path, limits: ArchiveLimits) -> None:
        self.root = root
        self.resolved_root = root.resolve()
        self.files = staging / "files"
        self.files.mkdir()
        self.inner = ArchiveBudget(limits)
        self.count = 0
        self.cache: dict[tuple[Path, str], Path | Program] = {}

    # paths

    def resolve(self, value: Any, where: str) -> Path:
        text = _text(value, where)
        if text is None:
            raise _fail(where, "is missing")
        if "\x00" in text:
            raise _fail(where, f"{text!r} is not a path")
        if text.startswith(("/", "\\")) or DRIVE.match(text):
            raise _fail(where, f"{text!r} is outside the bundle (use a path relative to "
                               f"{COMPETITION_YAML})")
        path = (self.root / text.replace("\\", "/")).resolve()
        if path != self.resolved_root and self.resolved_root not in path.parents:
            raise _fail(where, f"{text!r} is outside the bundle")
        if not path.exists():
            raise _fail(where, f"{text!r} is not in the bundle")
        return path

    def read_text(self, value: Any, where: str) -> str:
        path = self.resolve(value, where)
        if not path.is_file():
            raise _fail(where, f"{_text(value, where)!r} is not a file")
        return path.read_bytes().decode("utf-8-sig", errors="replace")

    def copy_file(self, value: Any, where: str, stem: str) -> Path:
        path = self.resolve(value, where)
        if not path.is_file():
            raise _fail(where, f"{_text(value, where)!r} is not a file")
        target = self.files / f"{stem}{path.suffix.lower()}"
        shutil.copyfile(path, target)
        return target

    # normalized zips

    def _members(self, path: Path, label: str, zf: zipfile.ZipFile | None) -> list[Member]:
        if zf is not None:
            members, _ = scan_zip(label, zf, self.inner)
        else:
            members = []
            for file in sorted(p for p in path.rglob("*") if p.is_file()):
                info = file.stat()
                members.append(Member(file.relative_to(path).parts, info.st_size,
                                       bool(info.st_mode & 0o111), False, path=file))
        return [m for m in members
                if m.parts[0] not in _JUNK_DIRS and m.parts[-1] not in _JUNK_FILES]

    def program(self, value: Any, where: str) -> Program:
        result = self.normalize(value, where, True)
        assert isinstance(result, Program)
        return result

    def data(self, value: Any, where: str) -> Path:
        result = self.normalize(value, where, False)
        assert isinstance(result, Path)
        return result

    def normalize(self, value: Any, where: str, program: bool) -> Path | Program:
        path = self.resolve(value, where)
        kind = "program" if program else "data"
        if (path, kind) in self.cache:
            return self.cache[(path, kind)]
        text = _text(value, where) or ""
        label = text.rstrip("/\\") or text
        if path.is_dir():
            result = self._normalize(path, label, program, None)
        elif path.is_file() and zipfile.is_zipfile(path):
            with open_zip(label, path) as zf:
                result = self._normalize(path, label, program, zf)
        else:
            raise _fail(where, f"{text!r} is neither a zip file nor a folder")
        self.cache[(path, kind)] = result
        return result

    def _normalize(self, path: Path, label: str, program: bool,
                   zf: zipfile.ZipFile | None) -> Path | Program:
        members = self._members(path, label, zf)
        prefix = 0
        tops = {m.parts[0] for m in members}
        single = len(tops) == 1 and all(len(m.parts) > 1 for m in members)
        if program:
            names = {m.parts for m in members}
            if not any((name,) in names for name in METADATA_NAMES):
                if single and any((*tops, name) in names for name in METADATA_NAMES):
                    prefix = 1
                else:
                    raise BundleError(f"{label}: no metadata.yaml (or metadata) with a command")
        elif single and zf is not None:
            prefix = 1
        self.count += 1
        stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(label).stem or "data")[:60]
        target = self.files / f"{self.count:02d}-{stem}.zip"
        with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as out:
            for member in sorted(members, key=lambda m: m.parts):
                info = zipfile.ZipInfo("/".join(member.parts[prefix:]), date_time=_ZIP_TIME)
                info.compress_type = zipfile.ZIP_STORED if member.stored else zipfile.ZIP_DEFLATED
                info.external_attr = (stat.S_IFREG | (0o755 if member.executable else 0o644)) << 16
                with out.open(info, "w", force_zip64=member.size > (1 << 30)) as sink:
                    if zf is not None:
                        copy_zip_member(label, zf, member, sink, self.inner)
                    else:
                        assert member.path is not None
                        with open(member.path, "rb") as src:
                            shutil.copyfileobj(src, sink, CHUNK)
        if not program:
            return target
        return Program(target, _command(target, label))


def _command(archive: Path, label: str) -> str:
    with zipfile.ZipFile(archive) as zf:
        names = set(zf.namelist())
        name = next(n for n in METADATA_NAMES if n in names)
        raw = zf.read(name)
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise BundleError(f"{label}: {name} is not UTF-8 text") from None
    metadata = _parse_yaml(text, f"{label}: {name}")
    command = metadata.get("command") if isinstance(metadata, dict) else None
    if not isinstance(command, str) or not command.strip():
        raise BundleError(f"{label}: no metadata.yaml (or metadata) with a command")
    return command.strip()


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


def _tasks(loading: _Loading, doc: dict) -> tuple[TaskSpec, ...]:
    items = doc.get("tasks")
    if not items:
        raise _fail("tasks", "at least one task is needed")
    tasks: list[TaskSpec] = []
    for index, position, item in _indexed(_list(items, "tasks"), "tasks"):
        where = f"tasks[{position}]"
        if "key" in item and item.get("scoring_program") is None:
            raise _fail(f"{where}.key", "a task already on a Codabench server cannot be used "
                                        "here; give its scoring_program instead")
        if item.get("scoring_program") is None:
            raise _fail(f"{where}.scoring_program", "is missing")
        scoring = loading.program(item["scoring_program"], f"{where}.scoring_program")
        ingestion = None
        if item.get("ingestion_program") is not None:
            ingestion = loading.program(item["ingestion_program"], f"{where}.ingestion_program")
        data: dict[str, Path | None] = {}
        for key in ("input_data", "reference_data"):
            data[key] = None
            if item.get(key) is not None:
                data[key] = loading.data(item[key], f"{where}.{key}")
        only_during_scoring = _bool(item.get("ingestion_only_during_scoring"),
                                    f"{where}.ingestion_only_during_scoring")
        if only_during_scoring and ingestion is None:
            raise _fail(f"{where}.ingestion_only_during_scoring",
                        "needs an ingestion_program")
        tasks.append(TaskSpec(
            index=index,
            name=_text(item.get("name"), f"{where}.name") or f"Task {index}",
            description=_text(item.get("description"), f"{where}.description"),
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
    number = _int(value, where, minimum=0)
    return number or None


def _phases(loading: _Loading, doc: dict, task_indexes: set[int]) -> tuple[PhaseSpec, ...]:
    items = doc.get("phases")
    if not items:
        raise _fail("phases", "at least one phase is needed")
    ordered = sorted(_indexed(_list(items, "phases"), "phases"), key=lambda e: e[0])
    phases: list[tuple[int, PhaseSpec]] = []
    for number, (_, position, item) in enumerate(ordered):
        where = f"phases[{position}]"
        if item.get("start") is None:
            raise _fail(f"{where}.start", "is missing")
        start = _datetime(item["start"], f"{where}.start")
        end = None
        if item.get("end") is not None:
            end = _datetime(item["end"], f"{where}.end")
            if end <= start:
                raise _fail(f"{where}.end", f"{end} is not after the start ({start})")
        elif number < len(ordered) - 1:
            raise _fail(f"{where}.end", "is missing (only the last phase may have no end)")
        if item.get("tasks") is None:
            raise _fail(f"{where}.tasks", "is missing (a phase needs at least one task)")
        tasks = _int_list(item["tasks"], f"{where}.tasks")
        if not tasks:
            raise _fail(f"{where}.tasks", "is empty (a phase needs at least one task)")
        for task in tasks:
            if task not in task_indexes:
                raise _fail(f"{where}.tasks", f"task {task} is not declared in tasks")
        limit = item.get("execution_time_limit")
        optional: dict[str, Path | None] = {}
        for key in ("starting_kit", "public_data"):
            optional[key] = None
            if item.get(key) is not None:
                optional[key] = loading.data(item[key], f"{where}.{key}")
        phases.append((position, PhaseSpec(
            index=number,
            name=_text(item.get("name"), f"{where}.name") or f"Phase {number + 1}",
            description=_text(item.get("description"), f"{where}.description"),
            start=start,
            end=end,
            tasks=tasks,
            max_submissions=_limit(item.get("max_submissions"), f"{where}.max_submissions"),
            max_submissions_per_day=_limit(item.get("max_submissions_per_day"),
                                           f"{where}.max_submissions_per_day"),
            execution_time_limit=(DEFAULT_EXECUTION_TIME_LIMIT if limit is None
                                  else _int(limit, f"{where}.execution_time_limit", 1)),
            hide_output=_bool(item.get("hide_output"), f"{where}.hide_output"),
            hide_prediction_output=_bool(item.get("hide_prediction_output"),
                                         f"{where}.hide_prediction_output"),
            hide_score_output=_bool(item.get("hide_score_output"), f"{where}.hide_score_output"),
            accepts_only_result_submissions=_bool(item.get("accepts_only_result_submissions"),
                                                  f"{where}.accepts_only_result_submissions"),
            starting_kit=optional["starting_kit"],
            public_data=optional["public_data"],
        )))
    for (before_pos, before), (after_pos, after) in zip(phases, phases[1:], strict=False):
        assert before.end is not None
        if after.start < before.end:
            raise BundleError(
                f"{COMPETITION_YAML}: phases overlap: {after.name!r} (phases[{after_pos}]) "
                f"starts {after.start}, before {before.name!r} (phases[{before_pos}]) ends "
                f"{before.end}")
    return tuple(phase for _, phase in phases)


def _columns(items: Any, where: str) -> tuple[ColumnSpec, ...]:
    if not items:
        raise _fail(f"{where}.columns", "at least one column is needed")
    columns: list[ColumnSpec] = []
    keys: dict[str, int] = {}
    for index, position, item in _indexed(_list(items, f"{where}.columns"), f"{where}.columns"):
        at = f"{where}.columns[{position}]"
        key = _required_text(item.get("key"), f"{at}.key")
        if key in keys:
            raise _fail(f"{at}.key", f"{key!r} is already the key of {where}.columns[{keys[key]}]")
        keys[key] = position
        sorting = (_text(item.get("sorting"), f"{at}.sorting") or "desc").lower()
        if sorting not in SORTINGS:
            raise _fail(f"{at}.sorting", f"{sorting!r} is not asc or desc")
        computation = _text(item.get("computation"), f"{at}.computation")
        indexes: tuple[int, ...] = ()
        if item.get("computation_indexes") is not None:
            indexes = _int_list(item["computation_indexes"], f"{at}.computation_indexes")
        if computation is not None:
            computation = computation.lower()
            if computation not in COMPUTATIONS:
                raise _fail(f"{at}.computation",
                            f"{computation!r} is not one of {', '.join(COMPUTATIONS)}")
            if not indexes:
                raise _fail(f"{at}.computation_indexes",
                            "is missing (a computation needs the indexes of its columns)")
        elif indexes:
            raise _fail(f"{at}.computation_indexes", "given without a computation")
        precision = item.get("precision")
        columns.append(ColumnSpec(
            key=key,
            title=_text(item.get("title"), f"{at}.title") or key,
            index=index,
            sorting=sorting,
            computation=computation,
            computation_indexes=indexes,
            precision=(DEFAULT_PRECISION if precision is None
                       else _int(precision, f"{at}.precision", 0)),
            hidden=_bool(item.get("hidden"), f"{at}.hidden"),
        ))
    by_index = {column.index: column for column in columns}
    positions = {column.index: position for position, column in enumerate(columns)}
    for column in columns:
        at = f"{where}.columns[{positions[column.index]}].computation_indexes"
        for target in column.computation_indexes:
            if target == column.index:
                raise _fail(at, f"{target} is the column's own index")
            if target not in by_index:
                raise _fail(at, f"{target} is not the index of a column of this leaderboard")
    _refuse_cycles(columns, by_index, where)
    return tuple(sorted(columns, key=lambda c: c.index))


def _refuse_cycles(columns: list[ColumnSpec], by_index: dict[int, ColumnSpec], where: str) -> None:
    state: dict[int, int] = {}  # 1: being visited, 2: done

    def visit(column: ColumnSpec, trail: list[str]) -> None:
        if state.get(column.index) == 2:
            return
        if state.get(column.index) == 1:
            cycle = trail[trail.index(column.key):] + [column.key]
            raise _fail(f"{where}.columns", f"computed columns form a cycle: {' -> '.join(cycle)}")
        state[column.index] = 1
        for target in column.computation_indexes:
            visit(by_index[target], trail + [column.key])
        state[column.index] = 2

    for column in columns:
        visit(column, [])


def _leaderboards(doc: dict) -> tuple[LeaderboardSpec, ...]:
    if "leaderboards" in doc and "leaderboard" in doc:
        raise BundleError(f"{COMPETITION_YAML}: give either 'leaderboards' or 'leaderboard', "
                          "not both")
    name = "leaderboards" if "leaderboards" in doc else "leaderboard"
    items = doc.get(name)
    if not items:
        raise _fail(name, "at least one leaderboard is needed")
    if isinstance(items, dict):
        raise _fail(name, "must be a list of leaderboards (a mapping is the CodaLab v1.5 "
                          "layout, which is not supported)")
    boards: list[LeaderboardSpec] = []
    keys: dict[str, int] = {}
    for index, position, item in _indexed(_list(items, name), name):
        where = f"{name}[{position}]"
        key = _required_text(item.get("key"), f"{where}.key")
        if key in keys:
            raise _fail(f"{where}.key", f"{key!r} is already the key of {name}[{keys[key]}]")
        keys[key] = position
        rule = _text(item.get("submission_rule"), f"{where}.submission_rule") or \
            DEFAULT_SUBMISSION_RULE
        if rule not in SUBMISSION_RULES:
            raise _fail(f"{where}.submission_rule",
                        f"{rule!r} is not one of {', '.join(SUBMISSION_RULES)}")
        columns = _columns(item.get("columns"), where)
        primary = columns[0].index
        if item.get("primary_index") is not None:
            primary = _int(item["primary_index"], f"{where}.primary_index")
            if primary not in {column.index for column in columns}:
                raise _fail(f"{where}.primary_index",
                            f"{primary} is not the index of a column of this leaderboard")
        boards.append(LeaderboardSpec(
            key=key,
            title=_text(item.get("title"), f"{where}.title") or key,
            index=index,
            hidden=_bool(item.get("hidden"), f"{where}.hidden"),
            submission_rule=rule,
            primary_index=primary,
            columns=columns,
        ))
    return tuple(sorted(boards, key=lambda b: b.index))


def _solutions(loading: _Loading, doc: dict, task_indexes: set[int]) -> tuple[SolutionSpec, ...]:
    items = doc.get("solutions")
    if not items:
        return ()
    solutions: list[SolutionSpec] = []
    for index, position, item in _indexed(_list(items, "solutions"), "solutions"):
        where = f"solutions[{position}]"
        if item.get("path") is None:
            raise _fail(f"{where}.path", "is missing")
        if item.get("tasks") is None:
            raise _fail(f"{where}.tasks", "is missing")
        tasks = _int_list(item["tasks"], f"{where}.tasks")
        for task in tasks:
            if task not in task_indexes:
                raise _fail(f"{where}.tasks", f"task {task} is not declared in tasks")
        path = loading.data(item["path"], f"{where}.path")
        solutions.append(SolutionSpec(index=index, path=path, tasks=tasks))
    return tuple(sorted(solutions, key=lambda s: s.index))


def _pages(loading: _Loading, doc: dict) -> tuple[PageSpec, ...]:
    items = doc.get("pages")
    if not items:
        return ()
    pages: list[PageSpec] = []
    for position, item in enumerate(_list(items, "pages")):
        where = f"pages[{position}]"
        item = _mapping(item, where)
        if item.get("file") is None:
            raise _fail(f"{where}.file", "is missing")
        content = loading.read_text(item["file"], f"{where}.file")
        title = _text(item.get("title"), f"{where}.title") or Path(str(item["file"])).stem
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
        _copy_tree(source, tree, budget)
    elif source.is_file():
        extract_zip(source, tree, budget)
    else:
        raise BundleError(f"{source.name}: no such file or folder")
    root = _find_root(tree, source.name)
    raw = (root / COMPETITION_YAML).read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise BundleError(f"{COMPETITION_YAML}: not UTF-8 text") from None
    doc = _parse_yaml(text, COMPETITION_YAML)
    if not isinstance(doc, dict):
        raise BundleError(f"{COMPETITION_YAML}: must be a mapping of competition settings")
    _check_version(doc)
    loading = _Loading(root, staging, limits)
    title = _required_text(doc.get("title"), "title")
    tasks = _tasks(loading, doc)
    task_indexes = {task.index for task in tasks}
    phases = _phases(loading, doc, task_indexes)
    leaderboards = _leaderboards(doc)
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
        description=_text(doc.get("description"), "description"),
        docker_image=_text(doc.get("docker_image"), "docker_image"),
        logo=logo,
        terms=terms,
        pages=pages,
        phases=phases,
        tasks=tasks,
        leaderboards=leaderboards,
        solutions=solutions,
        enable_detailed_results=_bool(doc.get("enable_detailed_results"),
                                      "enable_detailed_results"),
        make_programs_available=_bool(doc.get("make_programs_available"),
                                      "make_programs_available"),
        make_input_data_available=_bool(doc.get("make_input_data_available"),
                                        "make_input_data_available"),
        staging=staging,
    )


__all__ = [
    "BundleError",
    "BundleSpec",
    "ColumnSpec",
    "LeaderboardSpec",
    "PageSpec",
    "PhaseSpec",
    "Program",
    "SolutionSpec",
    "TaskSpec",
    "load_bundle",
]
