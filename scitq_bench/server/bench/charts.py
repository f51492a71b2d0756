"""Charts of a leaderboard: the best score over time and the distribution of scores.

Both read the leaderboard entries (the scores as displayed, kept by ``boards``) one
batch at a time in submission order, so a board of 100,000 submissions is never held
in memory; what comes out is a handful of points. Organizers chart every scored
submission; participants what the leaderboard shows them (its rule's entries, its
visible columns), so a chart tells nobody more than the table does."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from scitq_bench.bench import ranking
from scitq_bench.exceptions import NotFound
from scitq_bench.server.auth import Principal
from scitq_bench.server.bench.access import manages
from scitq_bench.server.bench.leaderboards import board_of, shown_columns
from scitq_bench.server.bench.models import Benchmark, LeaderboardEntry, Phase
from scitq_bench.server.serialize import epoch

BINS = 10
BATCH = 1000


def chart_column(board: ranking.Board, everything: bool) -> ranking.Column | None:
    """The column charts follow: the primary one, or the first in ranking order the
    reader may see."""
    return next((c for c in board.ranking_columns if everything or not c.hidden), None)


def _values(session: Session, principal: Principal, benchmark: Benchmark, phase: Phase,
            key: str) -> tuple[ranking.Column | None, list[tuple[str, str]],
                               Iterator[tuple[datetime, list[float | None]]]]:
    """(column, [(task key, task name)], (submitted_at, [value per task]) in
    submission order)."""
    row, board, names = board_of(session, principal, benchmark, phase, key)
    everything = manages(principal, benchmark)
    column = chart_column(board, everything)
    tasks = list(zip(board.task_keys, names, strict=True))
    if column is None:
        return None, tasks, iter(())
    shown = shown_columns(board, everything)
    cells = [2 + shown.index((task, column)) for task in board.task_keys]
    entry = LeaderboardEntry
    query = (select(entry.submitted_at, entry.line if everything else entry.public_line)
             .where(entry.leaderboard_id == row.id, entry.phase_id == phase.id)
             .order_by(entry.submitted_at, entry.submission_id))
    if not everything:
        query = query.where(entry.chosen.is_(True))

    def rows() -> Iterator[tuple[datetime, list[float | None]]]:
        for submitted_at, line in session.execute(query.execution_options(yield_per=BATCH)):
            parts = line.split(",")
            yield submitted_at, [float(parts[i]) if parts[i] else None for i in cells]

    return column, tasks, rows()


def best_over_time(session: Session, principal: Principal, benchmark: Benchmark,
                   phase: Phase, key: str) -> dict[str, Any]:
    """One line per task: the best value of the chart column so far, a point each time
    a submission improved it (and one at the latest submission, so the line reaches
    now)."""
    column, tasks, rows = _values(session, principal, benchmark, phase, key)
    answer: dict[str, Any] = {"kind": "line", "x": "time", "x_label": "submitted (UTC)",
                              "series": [], "empty": "No scored submission yet."}
    if column is None:
        answer["empty"] = "This leaderboard shows no column."
        return answer
    better = (lambda a, b: a < b) if column.sorting == "asc" else (lambda a, b: a > b)
    best: list[float | None] = [None] * len(tasks)
    points: list[list[list[float]]] = [[] for _ in tasks]
    last: datetime | None = None
    for submitted_at, values in rows:
        last = submitted_at
        for i, value in enumerate(values):
            if value is not None and (best[i] is None or better(value, best[i])):
                best[i] = value
                points[i].append([epoch(submitted_at), value])
    for i, value in enumerate(best):
        if value is not None and last is not None and points[i][-1][0] != epoch(last):
            points[i].append([epoch(last), value])
    answer["series"] = [{"name": _series_name(column, name, len(tasks)), "points": series}
                        for (_, name), series in zip(tasks, points, strict=True)]
    answer["title"] = f"Best {column.title}"
    return answer


def distribution(session: Session, principal: Principal, benchmark: Benchmark, phase: Phase,
                 key: str, task: str = "0") -> dict[str, Any]:
    """A histogram of the chart column for one task: ``BINS`` equal bins from the
    lowest value to the highest."""
    column, tasks, rows = _values(session, principal, benchmark, phase, key)
    answer: dict[str, Any] = {"kind": "bar", "x": "number", "series": [],
                              "empty": "No scored submission yet."}
    if column is None:
        answer["empty"] = "This leaderboard shows no column."
        return answer
    keys = [k for k, _ in tasks]
    if task not in keys:
        raise NotFound(f"leaderboard {key!r} has no task {task!r} in this phase")
    at = keys.index(task)
    values = [value for _, v in rows if (value := v[at]) is not None]
    answer["x_label"] = column.title
    answer["title"] = f"{column.title} distribution"
    if not values:
        return answer
    low, high = min(values), max(values)
    bins = BINS if high > low else 1
    width = (high - low) / bins if high > low else 1.0
    counts = [0] * bins
    for value in values:
        counts[min(int((value - low) / width), bins - 1)] += 1
    precision = column.precision
    answer["series"] = [{"name": _series_name(column, tasks[at][1], len(tasks)), "points": [
        [i, count, f"{ranking.format_score(low + i * width, precision)}–"
                   f"{ranking.format_score(low + (i + 1) * width, precision)}"
         if bins > 1 else ranking.format_score(low, precision)]
        for i, count in enumerate(counts)]}]
    return answer


def _series_name(column: ranking.Column, task_name: str, tasks: int) -> str:
    return f"{column.title} ({task_name})" if tasks > 1 else column.title
