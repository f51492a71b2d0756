"""Leaderboards as the ranking library sees them, and their entries kept up to date
(what ``leaderboards`` ranks with SQL, and ``runs`` writes when scores land)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, insert, select, update
from sqlalchemy.orm import Session

from scitq_bench.bench import ranking
from scitq_bench.bench.bundle.leaderboards import DEFAULT_PRECISION
from scitq_bench.bench.sortkey import encoder
from scitq_bench.server.bench.models import (
    BenchTask,
    Leaderboard,
    LeaderboardColumn,
    LeaderboardEntry,
    PhaseTask,
    Submission,
)


def phase_tasks(session: Session, phase_id: int) -> list[BenchTask]:
    return list(session.scalars(
        select(BenchTask).join(PhaseTask, PhaseTask.bench_task_id == BenchTask.id)
        .where(PhaseTask.phase_id == phase_id).order_by(PhaseTask.position)))


def board_columns(session: Session, benchmark_id: int) -> dict[str, list[ranking.Column]]:
    rows = session.execute(
        select(Leaderboard.key, LeaderboardColumn).join(LeaderboardColumn)
        .where(Leaderboard.benchmark_id == benchmark_id).order_by(LeaderboardColumn.index)
    ).all()
    boards: dict[str, list[ranking.Column]] = {}
    for key, column in rows:
        boards.setdefault(key, []).append(as_column(column))
    return boards


def as_column(column: LeaderboardColumn) -> ranking.Column:
    return ranking.Column(
        key=column.key, title=column.title, index=column.index, sorting=column.sorting,
        computation=column.computation,
        computation_indexes=tuple(column.computation_indexes or ()),
        precision=column.precision, hidden=column.hidden)


def load_board(session: Session, row: Leaderboard, phase_id: int) -> tuple[ranking.Board,
                                                                             list[str]]:
    """The leaderboard as a ranking board for this phase (one column group per task of
    the phase), and the tasks' names."""
    columns = tuple(as_column(c) for c in session.scalars(
        select(LeaderboardColumn).where(LeaderboardColumn.leaderboard_id == row.id)
        .order_by(LeaderboardColumn.index)))
    tasks = phase_tasks(session, phase_id)
    board = ranking.Board(
        key=row.key, title=row.title, rule=row.submission_rule, columns=columns,
        primary_index=row.primary_index, task_keys=tuple(str(i) for i in range(len(tasks))),
        hidden=row.hidden)
    return board, [t.name for t in tasks]


def sync_entries(session: Session, submission: Submission) -> None:
    """Rewrite the submission's entries from its scores and leaderboard choice, then
    which of its owner's entries each board shows."""
    session.execute(delete(LeaderboardEntry).where(
        LeaderboardEntry.submission_id == submission.id))
    for board_row in session.scalars(select(Leaderboard).where(
            Leaderboard.benchmark_id == submission.benchmark_id)):
        board, _ = load_board(session, board_row, submission.phase_id)
        if submission.scores:
            session.execute(insert(LeaderboardEntry), [entry_row(
                board_row.id, board, submission.phase_id, _entry(submission, board.key))])
        refresh_choice(session, board_row.id, board, submission.phase_id, submission.owner_id)


def _entry(submission: Any, board_key: str) -> ranking.Entry:
    return ranking.Entry(
        submission_id=submission.id,
        owner=None if submission.owner_id is None else str(submission.owner_id),
        submitted_at=submission.created_at,
        scores=(submission.scores or {}).get(board_key) or {},
        selected=bool(submission.on_leaderboard))


def refresh_choice(session: Session, leaderboard_id: int, board: ranking.Board,
                   phase_id: int, owner_id: int | None) -> None:
    """Mark ``chosen`` the owner's entries the board's rule shows (``ranking.select``,
    the same function that ranks in memory), the others not."""
    entry = LeaderboardEntry
    mine = entry.owner_id.is_(None) if owner_id is None else entry.owner_id == owner_id
    rows = session.execute(
        select(entry.id.label("entry_id"), Submission.id, Submission.owner_id,
               Submission.created_at, Submission.scores, Submission.on_leaderboard)
        .join(Submission, Submission.id == entry.submission_id)
        .where(entry.leaderboard_id == leaderboard_id, entry.phase_id == phase_id, mine)).all()
    if not rows:
        return
    ids = {r.id: r.entry_id for r in rows}
    chosen = {e.submission_id for e in ranking.select(board, [_entry(r, board.key)
                                                             for r in rows])}
    session.execute(update(entry).where(entry.id.in_(list(ids.values())))
                    .values(chosen=entry.id.in_([ids[s] for s in chosen] or [-1])))


def entry_row(leaderboard_id: int, board: ranking.Board, phase_id: int,
              entry: ranking.Entry) -> dict[str, Any]:
    """The ``leaderboard_entry`` values of one scored submission on one board. Values
    are exact (``exact_text``; precision is for display only): numbers or empty, so no
    CSV quoting is ever needed in ``line``."""
    start = f"{entry.submission_id},{entry.submitted_at.isoformat()}Z"
    every, public = [start], [start]
    for task in board.task_keys:
        for column in board.display_columns:
            text = exact_text(score_value(entry.scores, task, column.key))
            every.append(text)
            if not column.hidden:
                public.append(text)
    return {
        "leaderboard_id": leaderboard_id, "phase_id": phase_id,
        "submission_id": entry.submission_id,
        "owner_id": None if entry.owner is None else int(entry.owner),
        "submitted_at": entry.submitted_at, "selected": entry.selected,
        "sort_key": encoder(board)(entry), "line": ",".join(every),
        "public_line": ",".join(public),
    }


def score_value(scores: Any, task: str, key: str) -> float | None:
    value = (scores.get(task) or {}).get(key)
    return None if value is None or value != value else float(value)




def exact_text(value: float | None) -> str:
    """A score as the shortest text that reads back as the same float ('' when missing):
    whole numbers without a decimal part, never a negative zero."""
    if value is None or value != value:
        return ""
    if value == 0:
        return "0"
    if value.is_integer() and abs(value) < 1e16:
        return str(int(value))
    return repr(value)


def display_text(value: float | None, precision: int) -> str:
    """A score as the GUI shows it: a whole number without decimals when its column
    keeps the default precision (none was given), else the column's ``precision``
    decimals (``ranking.format_score``, what the API's ``display`` and the CLI show)."""
    if value is None or value != value:
        return ""
    if precision == DEFAULT_PRECISION and value.is_integer() and abs(value) < 1e16:
        return str(int(value)) if value else "0"
    return ranking.format_score(value, precision)
