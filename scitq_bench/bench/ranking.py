"""Leaderboard ranking: computed columns, ordering, submission rules and CSV export.

Pure functions over plain values; the server reads the entries from the database and
hands them here.

Ordering (one ordering for everything: ranking, "best of an owner", ties):

1. the primary column (``Board.primary_index``; by default the lowest column index),
2. then every other column in index order (hidden columns included: hiding is a
   display matter),
3. within a column, the phase's tasks in ``Board.task_keys`` order,
4. then the earliest ``submitted_at``, then the lowest ``submission_id``.

Each column sorts in its own direction (``asc``: smaller is better, ``desc``: larger is
better). A missing score (absent, ``None`` or NaN) never ranks above a real one,
whatever the direction.
"""

from __future__ import annotations

import csv
import gc
import io
import math
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from operator import itemgetter

RULES = (
    "Add",
    "Add_And_Delete",
    "Add_And_Delete_Multiple",
    "Force_Last",
    "Force_Latest_Multiple",
    "Force_Best",
)
SORTINGS = ("asc", "desc")
COMPUTATIONS = ("sum", "avg", "min", "max")

# a spreadsheet reads a cell starting with one of these as a formula
_FORMULA_LEADS = ("=", "+", "-", "@", "\t", "\r")
_NO_SCORES: Mapping[str, float] = {}


@contextmanager
def _gc_paused() -> Iterator[None]:
    """No cyclic garbage collection while a large board is ranked.

    Ranking holds a key tuple per entry and builds a row per entry, next to the (long
    lived) entries: the allocations trigger collections that walk all of them, a full
    one included, for nothing (nothing here creates cycles, so pausing costs no
    memory). The previous state is restored (a caller that disabled collection keeps
    it disabled)."""
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


@dataclass(frozen=True)
class Column:
    key: str
    title: str
    index: int
    sorting: str  # 'asc' (smaller is better) | 'desc' (larger is better)
    computation: str | None = None  # sum | avg | min | max
    computation_indexes: tuple[int, ...] = ()
    precision: int = 2
    hidden: bool = False

    def __post_init__(self) -> None:
        if self.sorting not in SORTINGS:
            raise ValueError(f"column {self.key!r}: sorting must be 'asc' or 'desc', "
                             f"not {self.sorting!r}")
        if self.computation is not None and self.computation not in COMPUTATIONS:
            raise ValueError(f"column {self.key!r}: unknown computation {self.computation!r} "
                             f"(one of {', '.join(COMPUTATIONS)})")
        if self.computation is not None and not self.computation_indexes:
            raise ValueError(f"column {self.key!r}: a computation needs computation_indexes")
        if self.computation is None and self.computation_indexes:
            raise ValueError(f"column {self.key!r}: computation_indexes without a computation")
        if self.precision < 0:
            raise ValueError(f"column {self.key!r}: precision must be >= 0")
        # accept any sequence from a parsed bundle, keep a hashable tuple
        object.__setattr__(self, "computation_indexes", tuple(self.computation_indexes))


@dataclass(frozen=True)
class Board:
    key: str
    title: str
    rule: str
    columns: tuple[Column, ...]
    primary_index: int | None = None  # None: the lowest column index
    task_keys: tuple[str, ...] = ("0",)  # one column group per task of the phase, in order
    hidden: bool = False

    def __post_init__(self) -> None:
        if self.rule not in RULES:
            raise ValueError(f"board {self.key!r}: unknown submission rule {self.rule!r} "
                             f"(one of {', '.join(RULES)})")
        object.__setattr__(self, "columns", tuple(self.columns))
        object.__setattr__(self, "task_keys", tuple(self.task_keys))
        if not self.task_keys:
            raise ValueError(f"board {self.key!r}: no task keys")
        if len(set(self.task_keys)) != len(self.task_keys):
            raise ValueError(f"board {self.key!r}: duplicate task keys")
        if self.primary_index is not None and all(
                c.index != self.primary_index for c in self.columns):
            raise ValueError(f"board {self.key!r}: no column has the primary index "
                             f"{self.primary_index}")
        _plan(self.columns)  # duplicate keys or indexes, unknown inputs, cycles

    @property
    def display_columns(self) -> tuple[Column, ...]:
        """Every column in index order (hidden ones included)."""
        return tuple(sorted(self.columns, key=lambda c: c.index))

    @property
    def ranking_columns(self) -> tuple[Column, ...]:
        """The primary column, then the others in index order."""
        ordered = self.display_columns
        if not ordered:
            return ()
        primary = ordered[0].index if self.primary_index is None else self.primary_index
        return tuple(c for c in ordered if c.index == primary) + tuple(
            c for c in ordered if c.index != primary)


@dataclass(frozen=True, slots=True)
class Entry:
    submission_id: int
    owner: str | None  # who submitted (None counts as one owner: the organizers)
    submitted_at: datetime
    # task key -> column key -> value, computed columns included (see compute_columns)
    scores: Mapping[str, Mapping[str, float]]
    selected: bool = False  # the participant put it on the leaderboard (Add* rules)


@dataclass(frozen=True, slots=True)
class Row:
    rank: int
    entry: Entry


# --- computed columns --------------------------------------------------------------


def _avg(values: list[float]) -> float:
    return math.fsum(values) / len(values)


_OPERATIONS: dict[str, Callable[[list[float]], float]] = {
    "sum": math.fsum,
    "avg": _avg,
    "min": min,
    "max": max,
}


@lru_cache(maxsize=256)
def _plan(columns: tuple[Column, ...]) -> tuple[tuple[str, str, tuple[str, ...]], ...]:
    """The computed columns as (key, computation, input keys), in dependency order.

    Refuses duplicate keys or indexes, inputs naming no column, and cycles."""
    by_index: dict[int, Column] = {}
    keys: set[str] = set()
    for column in columns:
        if column.index in by_index:
            raise ValueError(f"two columns have the index {column.index}")
        if column.key in keys:
            raise ValueError(f"two columns have the key {column.key!r}")
        by_index[column.index] = column
        keys.add(column.key)
    for column in columns:
        for index in column.computation_indexes:
            if index not in by_index:
                raise ValueError(f"column {column.key!r} computes over index {index}, "
                                 "which no column has")

    ordered: list[tuple[str, str, tuple[str, ...]]] = []
    state: dict[int, int] = {}  # index -> 1 visiting, 2 done

    def visit(column: Column, path: list[str]) -> None:
        mark = state.get(column.index)
        if mark == 2 or column.computation is None:
            return
        if mark == 1:
            cycle = path[path.index(column.key):] + [column.key]
            raise ValueError(f"computed columns form a cycle: {' -> '.join(cycle)}")
        state[column.index] = 1
        for index in column.computation_indexes:
            visit(by_index[index], path + [column.key])
        state[column.index] = 2
        ordered.append((column.key, column.computation,
                        tuple(by_index[i].key for i in column.computation_indexes)))

    for column in sorted(columns, key=lambda c: c.index):
        visit(column, [])
    return tuple(ordered)


def compute_columns(columns: Sequence[Column], scores: Mapping[str, float]) -> dict[str, float]:
    """The raw scores of one task plus every computed column.

    A computed column is the sum/avg/min/max of the columns at its computation indexes
    (which may themselves be computed); it is missing when any input is missing (absent,
    None or NaN). A value written by the scoring program under a computed column's key
    is replaced (or dropped, when the computation has a missing input). Raises
    ValueError for cycles, unknown input indexes and duplicate keys or indexes."""
    result = dict(scores)
    for key, computation, inputs in _plan(tuple(columns)):
        values = []
        for name in inputs:
            value = result.get(name)
            if value is None or value != value:
                result.pop(key, None)
                break
            values.append(value)
        else:
            result[key] = _OPERATIONS[computation](values)
    return result


# --- ordering ----------------------------------------------------------------------


def sort_key(board: Board) -> Callable[[Entry], tuple]:
    """The key of the one ordering (see the module docstring): smaller is better.

    One flat tuple per entry: for each (column, task) the value as a float (negated for
    'desc'; +inf when missing) then a missing flag (0 real, 1 missing: it only decides
    between a real +inf and a missing score), then submitted_at, then submission_id.
    Values lead their pair so that every key starts with a float, which CPython's sort
    compares fastest."""
    return _key_function(tuple((c.key, c.sorting == "desc") for c in board.ranking_columns),
                         board.task_keys)


@lru_cache(maxsize=256)
def _key_function(columns: tuple[tuple[str, bool], ...],
                  tasks: tuple[str, ...]) -> Callable[[Entry], tuple]:
    """A key function unrolled for these (column key, descending) pairs and tasks.

    Ranking a large board is mostly building its keys, and a straight-line function
    builds them about a third faster than a loop over the columns. The generated source
    holds only names made here: column and task keys are values in its namespace,
    never text in its code."""
    namespace: dict[str, object] = {"inf": math.inf, "empty": _NO_SCORES}
    lines = ["def key(entry):", "    scores = entry.scores"]
    for t, task in enumerate(tasks):
        namespace[f"task{t}"] = task
        lines.append(f"    group{t} = scores.get(task{t}) or empty")
    fields = []
    for c, (column, descending) in enumerate(columns):
        namespace[f"column{c}"] = column
        for t in range(len(tasks)):
            value, flag = f"value{c}_{t}", f"missing{c}_{t}"
            signed = f"0.0 - {value}" if descending else f"{value} + 0.0"  # ints too: floats
            lines += [
                f"    {value} = group{t}.get(column{c})",
                f"    if {value} is None or {value} != {value}:",
                f"        {value} = inf",
                f"        {flag} = 1",
                "    else:",
                f"        {value} = {signed}",
                f"        {flag} = 0",
            ]
            fields += [value, flag]
    fields += ["entry.submitted_at", "entry.submission_id"]
    lines.append(f"    return ({', '.join(fields)},)")
    exec(compile("\n".join(lines), "<leaderboard sort key>", "exec"), namespace)
    return namespace["key"]  # type: ignore[return-value]


# --- submission rules --------------------------------------------------------------


def _latest(entries: Iterable[Entry]) -> list[Entry]:
    """Per owner, the latest submitted (the highest id among equal instants)."""
    latest: dict[str | None, Entry] = {}
    for entry in entries:
        current = latest.get(entry.owner)
        if current is None or (entry.submitted_at, entry.submission_id) > (
                current.submitted_at, current.submission_id):
            latest[entry.owner] = entry
    return list(latest.values())


def _best(board: Board, entries: Iterable[Entry]) -> list[tuple[tuple, Entry]]:
    """Per owner, (key, entry) of the best by sort_key."""
    key = sort_key(board)
    best: dict[str | None, tuple[tuple, Entry]] = {}
    for entry in entries:
        k = key(entry)
        current = best.get(entry.owner)
        if current is None or k < current[0]:
            best[entry.owner] = (k, entry)
    return list(best.values())


def select(board: Board, entries: Iterable[Entry]) -> list[Entry]:
    """The entries that appear on the board under its submission rule (one pass).

    - Force_Last: per owner, the latest submitted;
    - Force_Best: per owner, the best by sort_key;
    - Force_Latest_Multiple: every entry;
    - Add, Add_And_Delete: per owner, the selected entry (the latest if several are);
    - Add_And_Delete_Multiple: every selected entry.

    ``owner`` None is one owner (the organizers). The result is in input order for the
    "every" rules, in order of each owner's first appearance otherwise."""
    rule = board.rule
    if rule == "Force_Latest_Multiple":
        return list(entries)
    if rule == "Add_And_Delete_Multiple":
        return [e for e in entries if e.selected]
    if rule == "Force_Last":
        return _latest(entries)
    if rule in ("Add", "Add_And_Delete"):
        return _latest(e for e in entries if e.selected)
    if rule == "Force_Best":
        return [entry for _, entry in _best(board, entries)]
    raise ValueError(f"unknown submission rule {rule!r}")  # Board refuses it already


def rank(board: Board, entries: Iterable[Entry]) -> list[Row]:
    """The board's rows: the selected entries in sort_key order, ranked 1..n (ties on
    every score are broken by submitted_at then submission_id, so ranks are distinct)."""
    with _gc_paused():
        if board.rule == "Force_Best":
            pairs = _best(board, entries)  # keys already computed: not twice
            pairs.sort(key=itemgetter(0))
            return [Row(position, entry) for position, (_, entry) in enumerate(pairs, 1)]
        chosen = select(board, entries)
        chosen.sort(key=sort_key(board))
        return [Row(position, entry) for position, entry in enumerate(chosen, 1)]


# --- display and export ------------------------------------------------------------


def _supports_z() -> bool:
    try:
        return format(-0.0, "z.1f") == "0.0"
    except ValueError:  # Python < 3.11
        return False


_Z = "z" if _supports_z() else ""  # the format option that prints -0.001 as '0.00'


def _fixed(value: float, spec: str) -> str:
    text = format(value, spec)
    if not _Z and text[0] == "-" and not text.strip("-0."):
        return text[1:]
    return text


def format_score(value: float | None, precision: int) -> str:
    """``value`` with ``precision`` fixed decimals; '' when missing (None or NaN).
    Never shows a negative zero ('-0.00')."""
    if value is None or value != value:
        return ""
    return _fixed(value, f"{_Z}.{max(0, precision)}f")


def _safe_text(text: str) -> str:
    """A text cell a spreadsheet will not run as a formula."""
    return "'" + text if text.startswith(_FORMULA_LEADS) else text


def _csv_field(text: str) -> str:
    """``text`` as one field of a CSV line, quoted by the csv module where needed."""
    if not text:
        return ""  # the writer quotes a lone empty field, never one inside a line
    buffer = io.StringIO()
    # the writer's own line terminator: it quotes fields that contain \r or \n
    # because they are in the terminator, so it must not be left empty
    csv.writer(buffer).writerow([text])
    return buffer.getvalue()[:-2]


def csv_text(text: str) -> str:
    """A text cell (a title, an owner's name) as one CSV field: neutralised for
    spreadsheets, quoted where the csv module would."""
    return _csv_field(_safe_text(text))


def score_titles(board: Board, include_hidden: bool) -> list[str]:
    """The CSV titles of the score cells, in their order: for each task, each shown
    column by index ("<task key>/<title>", only the title for a single task)."""
    columns = [c for c in board.display_columns if include_hidden or not c.hidden]
    single = len(board.task_keys) == 1
    return [c.title if single else f"{task}/{c.title}"
            for task in board.task_keys for c in columns]


def export_csv(board: Board, rows: Sequence[Row], include_hidden: bool,
               owner_names: Mapping[str | None, str] | None = None) -> str:
    """The ranked rows as CSV text (lines end with CRLF, as the csv module writes them).

    Header: rank, submission, owner, submitted_at, then for each task (in task_keys
    order) each shown column in index order, titled "<task key>/<column title>" (only
    the title when the phase has one task). Hidden columns only with include_hidden.
    Owners are shown through ``owner_names`` when it names them (else the owner itself;
    'organizers' for None). Scores use their column's precision, '' when missing.

    Text cells (titles, task keys, owner names) that a spreadsheet would read as a
    formula (leading = + - @, tab or carriage return) get a leading single quote; the
    csv module quotes commas, quotes and newlines. The other cells (integers, ISO
    instants, fixed-point numbers) never need quoting: each line is assembled from
    them and the owner's field, quoted once per owner."""
    columns = [c for c in board.display_columns if include_hidden or not c.hidden]
    tasks = board.task_keys
    single = len(tasks) == 1
    header = ["rank", "submission", "owner", "submitted_at"]
    header += [_safe_text(title) for title in score_titles(board, include_hidden)]
    # (task position, column key, format spec) per score cell, in header order
    cells = [(position, c.key, f"{_Z}.{c.precision}f")
             for position, _ in enumerate(tasks) for c in columns]
    keys = [c.key for c in columns]
    pick: Callable[[Mapping[str, float]], tuple[float, ...]]
    if len(keys) > 1:
        pick = itemgetter(*keys)  # a task's values as a tuple, in one call
    else:
        def pick_one(group: Mapping[str, float],
                     key: str = keys[0] if keys else "") -> tuple[float, ...]:
            return (group[key],) if keys else ()
        pick = pick_one
    scores_format = ",".join(["{:" + spec + "}" for _, _, spec in cells]).format
    names = owner_names or {}
    owner_fields: dict[str | None, str] = {}
    empty = _NO_SCORES

    def owner_field(owner: str | None) -> str:
        name = names.get(owner)
        if name is None:
            name = "organizers" if owner is None else owner
        owner_fields[owner] = field = _csv_field(_safe_text(str(name)))
        return field

    def gather(scores: Mapping[str, Mapping[str, float]]) -> tuple:
        values: tuple = ()
        for task in tasks:
            values += pick(scores[task])
        return values

    def slow_scores(scores: Mapping[str, Mapping[str, float]]) -> str:
        """The score cells of a row with a missing task, a missing score or a NaN."""
        getters = [(scores.get(task) or empty).get for task in tasks]
        return ",".join(["" if (value := getters[position](key)) is None or value != value
                         else _fixed(value, spec) for position, key, spec in cells])

    first_task = tasks[0]
    lines: list[str] = []
    append = lines.append
    for row in rows:
        entry = row.entry
        owner = entry.owner
        scores = entry.scores
        line = (f"{row.rank},{entry.submission_id},"
                f"{owner_fields.get(owner) or owner_field(owner)},"
                f"{entry.submitted_at.isoformat()}")
        if cells:
            # every score real: the whole row's scores in one format call
            try:
                text = scores_format(*(pick(scores[first_task]) if single
                                       else gather(scores)))
                if "nan" in text or (not _Z and "-0" in text):
                    text = slow_scores(scores)
            except (KeyError, TypeError):  # a missing task or score, or a None
                text = slow_scores(scores)
            line = f"{line},{text}"
        append(line)
    buffer = io.StringIO()
    csv.writer(buffer).writerow(header)
    if lines:
        buffer.write("\r\n".join(lines))
        buffer.write("\r\n")
    return buffer.getvalue()
