"""The leaderboards of ``competition.yaml``: their columns, which column ranks, and the
computed columns (which may not form a cycle). No file is read: only the YAML's values."""

from __future__ import annotations

from typing import Any

from scitq_bench.bench.bundle.fields import (
    as_bool,
    as_int,
    as_list,
    as_text,
    fail,
    indexed,
    int_list,
    required_text,
)
from scitq_bench.bench.bundle.model import (
    COMPETITION_YAML,
    BundleError,
    ColumnSpec,
    LeaderboardSpec,
)
from scitq_bench.bench.ranking import COMPUTATIONS, SORTINGS
from scitq_bench.bench.ranking import RULES as SUBMISSION_RULES

DEFAULT_SUBMISSION_RULE = "Force_Last"
DEFAULT_PRECISION = 2


def _columns(items: Any, where: str) -> tuple[ColumnSpec, ...]:
    if not items:
        raise fail(f"{where}.columns", "at least one column is needed")
    columns: list[ColumnSpec] = []
    keys: dict[str, int] = {}
    for index, position, item in indexed(as_list(items, f"{where}.columns"), f"{where}.columns"):
        at = f"{where}.columns[{position}]"
        key = required_text(item.get("key"), f"{at}.key")
        if key in keys:
            raise fail(f"{at}.key", f"{key!r} is already the key of {where}.columns[{keys[key]}]")
        keys[key] = position
        sorting = (as_text(item.get("sorting"), f"{at}.sorting") or "desc").lower()
        if sorting not in SORTINGS:
            raise fail(f"{at}.sorting", f"{sorting!r} is not asc or desc")
        computation = as_text(item.get("computation"), f"{at}.computation")
        indexes: tuple[int, ...] = ()
        if item.get("computation_indexes") is not None:
            indexes = int_list(item["computation_indexes"], f"{at}.computation_indexes")
        if computation is not None:
            computation = computation.lower()
            if computation not in COMPUTATIONS:
                raise fail(f"{at}.computation",
                            f"{computation!r} is not one of {', '.join(COMPUTATIONS)}")
            if not indexes:
                raise fail(f"{at}.computation_indexes",
                            "is missing (a computation needs the indexes of its columns)")
        elif indexes:
            raise fail(f"{at}.computation_indexes", "given without a computation")
        precision = item.get("precision")
        columns.append(ColumnSpec(
            key=key,
            title=as_text(item.get("title"), f"{at}.title") or key,
            index=index,
            sorting=sorting,
            computation=computation,
            computation_indexes=indexes,
            precision=(DEFAULT_PRECISION if precision is None
                       else as_int(precision, f"{at}.precision", 0)),
            hidden=as_bool(item.get("hidden"), f"{at}.hidden"),
        ))
    by_index = {column.index: column for column in columns}
    positions = {column.index: position for position, column in enumerate(columns)}
    for column in columns:
        at = f"{where}.columns[{positions[column.index]}].computation_indexes"
        for target in column.computation_indexes:
            if target == column.index:
                raise fail(at, f"{target} is the column's own index")
            if target not in by_index:
                raise fail(at, f"{target} is not the index of a column of this leaderboard")
    _refuse_cycles(columns, by_index, where)
    return tuple(sorted(columns, key=lambda c: c.index))


def _refuse_cycles(columns: list[ColumnSpec], by_index: dict[int, ColumnSpec], where: str) -> None:
    state: dict[int, int] = {}  # 1: being visited, 2: done

    def visit(column: ColumnSpec, trail: list[str]) -> None:
        if state.get(column.index) == 2:
            return
        if state.get(column.index) == 1:
            cycle = trail[trail.index(column.key):] + [column.key]
            raise fail(f"{where}.columns", f"computed columns form a cycle: {' -> '.join(cycle)}")
        state[column.index] = 1
        for target in column.computation_indexes:
            visit(by_index[target], trail + [column.key])
        state[column.index] = 2

    for column in columns:
        visit(column, [])


def read_leaderboards(doc: dict) -> tuple[LeaderboardSpec, ...]:
    """The ``leaderboards`` list (or the same under ``leaderboard``), sorted
    by index."""
    if "leaderboards" in doc and "leaderboard" in doc:
        raise BundleError(f"{COMPETITION_YAML}: give either 'leaderboards' or 'leaderboard', "
                          "not both")
    name = "leaderboards" if "leaderboards" in doc else "leaderboard"
    items = doc.get(name)
    if not items:
        raise fail(name, "at least one leaderboard is needed")
    if isinstance(items, dict):
        raise fail(name, "must be a list of leaderboards (a mapping is the CodaLab v1.5 "
                          "layout, which is not supported)")
    boards: list[LeaderboardSpec] = []
    keys: dict[str, int] = {}
    for index, position, item in indexed(as_list(items, name), name):
        where = f"{name}[{position}]"
        key = required_text(item.get("key"), f"{where}.key")
        if key in keys:
            raise fail(f"{where}.key", f"{key!r} is already the key of {name}[{keys[key]}]")
        keys[key] = position
        rule = as_text(item.get("submission_rule"), f"{where}.submission_rule") or \
            DEFAULT_SUBMISSION_RULE
        if rule not in SUBMISSION_RULES:
            raise fail(f"{where}.submission_rule",
                        f"{rule!r} is not one of {', '.join(SUBMISSION_RULES)}")
        columns = _columns(item.get("columns"), where)
        primary = columns[0].index
        if item.get("primary_index") is not None:
            primary = as_int(item["primary_index"], f"{where}.primary_index")
            if primary not in {column.index for column in columns}:
                raise fail(f"{where}.primary_index",
                            f"{primary} is not the index of a column of this leaderboard")
        boards.append(LeaderboardSpec(
            key=key,
            title=as_text(item.get("title"), f"{where}.title") or key,
            index=index,
            hidden=as_bool(item.get("hidden"), f"{where}.hidden"),
            submission_rule=rule,
            primary_index=primary,
            columns=columns,
        ))
    return tuple(sorted(boards, key=lambda b: b.index))


__all__ = ["DEFAULT_PRECISION", "DEFAULT_SUBMISSION_RULE", "read_leaderboards"]
