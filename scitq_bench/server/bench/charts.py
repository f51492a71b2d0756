"""Charts of a leaderboard: the best score over time and the distribution of scores.

Both read the leaderboard entries (the scores as displayed, kept by ``boards``) one
batch at a time in submission order, so a board of 100,000 submissions is never held
in memory; what comes out is a handful of points. Organizers chart every scored
submission; participants what the leaderboard shows them (its rule's entries, its
visible columns), so a chart tells nobody more than the table does."""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import Select, and_, or_, select
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
TICKS = 5  # about this many labels on a value axis
TIME_TICKS = 4  # dates are wider than numbers: fewer labels
MINUTE = 60.0
DAY = 86400.0


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
        for submitted_at, line in _pages(session, query):
            parts = line.split(",")
            yield submitted_at, [float(parts[i]) if parts[i] else None for i in cells]

    return column, tasks, rows()


def _pages(session: Session, query: Select[datetime, str]) -> Iterator[tuple[datetime, str]]:
    """(submitted_at, line) of ``query`` in submission order, read BATCH rows at a
    time: each page starts after the last row of the one before (the order's own key),
    so no server-side cursor stays open and no page repeats or skips a row."""
    entry = LeaderboardEntry
    page = query.add_columns(entry.submission_id).limit(BATCH)
    after: tuple[datetime, int] | None = None
    while True:
        statement = page
        if after is not None:
            statement = page.where(or_(
                entry.submitted_at > after[0],
                and_(entry.submitted_at == after[0], entry.submission_id > after[1])))
        found = session.execute(statement).all()
        for submitted_at, line, _submission in found:
            yield submitted_at, line
        if len(found) < BATCH:
            return
        after = (found[-1][0], found[-1][2])


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
    flat = [point for series in points for point in series]
    if flat:
        answer["x_axis"] = time_axis([p[0] for p in flat])
        answer["y_axis"] = value_axis([p[1] for p in flat])
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
    answer["x_axis"] = bin_axis(low, width, bins, precision)
    answer["y_axis"] = count_axis(max(counts))
    return answer


def _series_name(column: ranking.Column, task_name: str, tasks: int) -> str:
    return f"{column.title} ({task_name})" if tasks > 1 else column.title


# -- axes --------------------------------------------------------------------------------
# Computed here, not in the browser, so what an axis spans is tested like any other rule:
# {min, max, ticks: [[position, label]]}, positions in the points' own units.


def nice_step(span: float, count: int = TICKS) -> float:
    """A round step (1, 2, 2.5 or 5 times a power of ten) giving about ``count``
    intervals over ``span``."""
    raw = span / max(1, count)
    power = 10.0 ** math.floor(math.log10(raw))
    return next(m * power for m in (1.0, 2.0, 2.5, 5.0, 10.0) if m * power >= raw * 0.999)


def _decimals(step: float) -> int:
    """Decimals that show every tick of ``step`` exactly (0.25 needs two, 0.2 one)."""
    power = math.floor(math.log10(step) + 1e-9)
    extra = 1 if round(step / 10.0 ** power, 6) == 2.5 else 0
    return max(0, -power + extra)


def value_axis(values: Sequence[float], count: int = TICKS) -> dict[str, Any]:
    """An axis spanning ``values`` with round ends just outside them (0.78 to 0.86
    gives 0.78–0.86, not 0–1); a single value gets a small span around it."""
    low, high = min(values), max(values)
    if high == low:
        pad = abs(low) * 0.05 or 1.0
        low, high = low - pad, high + pad
    step = nice_step(high - low, count)
    start = math.floor(low / step + 1e-9) * step
    stop = math.ceil(high / step - 1e-9) * step
    decimals = _decimals(step)
    ticks = []
    for i in range(int(round((stop - start) / step)) + 1):
        position = round(start + i * step, decimals + 6) + 0.0  # never -0.0
        ticks.append([position, f"{position:.{decimals}f}"])
    return {"min": ticks[0][0], "max": ticks[-1][0], "ticks": ticks}


def count_axis(highest: int, count: int = TICKS) -> dict[str, Any]:
    """Counts from 0 to ``highest`` (rounded up), whole numbers only."""
    step = max(1, math.ceil(nice_step(max(1, highest), count)))
    stop = max(step, math.ceil(highest / step) * step)
    return {"min": 0, "max": stop,
            "ticks": [[v, str(v)] for v in range(0, stop + 1, step)]}


def bin_axis(low: float, width: float, bins: int, precision: int) -> dict[str, Any]:
    """A histogram's x axis: bin ``i`` spans ``i`` to ``i + 1``; a few of its edges
    (so labels never overlap) are labelled with the scores they stand for, with enough
    decimals to tell them apart."""
    if bins == 1:  # one value: its label sits under the single bar
        return {"min": 0, "max": 1, "ticks": [[0.5, ranking.format_score(low, precision)]]}
    every = max(1, math.ceil((bins + 1) / (TICKS + 1)))
    edges = sorted({*range(0, bins + 1, every), bins})
    decimals = max(precision, _decimals(width * every))
    return {"min": 0, "max": bins,
            "ticks": [[i, ranking.format_score(low + i * width, decimals)] for i in edges]}


def time_axis(epochs: Sequence[float], count: int = TIME_TICKS) -> dict[str, Any]:
    """Seconds since 1970 labelled as UTC dates: the day, with the time of day when
    the points span less than a few days (and the seconds under a few minutes); a
    label the one before already shows is left out."""
    low, high = min(epochs), max(epochs)
    if high - low < 2 * MINUTE:  # points close together: two minutes around them
        middle = (low + high) / 2
        low, high = middle - MINUTE, middle + MINUTE
    span = high - low
    shape = ("%Y-%m-%d" if span >= 3 * DAY else "%Y-%m-%d %H:%M" if span >= 4 * MINUTE
             else "%Y-%m-%d %H:%M:%S")
    ticks: list[list[Any]] = []
    for i in range(count):
        position = low + span * i / (count - 1)
        text = datetime.fromtimestamp(position, timezone.utc).strftime(shape)
        if not ticks or ticks[-1][1] != text:
            ticks.append([position, text])
    return {"min": low, "max": high, "ticks": ticks}
