"""Leaderboards from the database: one read of the phase's scored submissions, then the
one ranking function (``scitq_bench.bench.ranking``) for both the page and the CSV."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from scitq_bench.bench import ranking
from scitq_bench.exceptions import NotFound
from scitq_bench.server.auth import Principal
from scitq_bench.server.bench.access import manages
from scitq_bench.server.bench.models import (
    Account,
    Benchmark,
    Leaderboard,
    LeaderboardColumn,
    Phase,
    Submission,
)
from scitq_bench.server.bench.runs import as_column, phase_tasks


def board_of(session: Session, principal: Principal, benchmark: Benchmark, phase: Phase,
             key: str) -> tuple[Leaderboard, ranking.Board, list[str]]:
    """The leaderboard ``key`` as a ranking board, with the task names of its column
    groups. A hidden one is not found for those who do not manage the benchmark."""
    row = session.scalars(select(Leaderboard).where(
        Leaderboard.benchmark_id == benchmark.id, Leaderboard.key == key)).first()
    if row is None or (row.hidden and not manages(principal, benchmark)):
        raise NotFound(f"benchmark {benchmark.id} has no leaderboard {key!r}")
    columns = tuple(as_column(c) for c in session.scalars(
        select(LeaderboardColumn).where(LeaderboardColumn.leaderboard_id == row.id)
        .order_by(LeaderboardColumn.index)))
    tasks = phase_tasks(session, phase.id)
    board = ranking.Board(
        key=row.key, title=row.title, rule=row.submission_rule, columns=columns,
        primary_index=row.primary_index, task_keys=tuple(str(i) for i in range(len(tasks))),
        hidden=row.hidden)
    return row, board, [t.name for t in tasks]


def entries(session: Session, phase_id: int, board_key: str) -> list[ranking.Entry]:
    """Every scored submission of the phase: one query, no ORM objects."""
    rows = session.execute(select(
        Submission.id, Submission.owner_id, Submission.created_at, Submission.on_leaderboard,
        Submission.scores,
    ).where(Submission.phase_id == phase_id, Submission.scores.is_not(None))).all()
    return [
        ranking.Entry(submission_id=r.id, owner=None if r.owner_id is None else str(r.owner_id),
                      submitted_at=r.created_at, scores=(r.scores or {}).get(board_key) or {},
                      selected=bool(r.on_leaderboard))
        for r in rows
    ]


def owner_names(session: Session, rows: list[ranking.Row]) -> dict[str | None, str]:
    ids = {int(r.entry.owner) for r in rows if r.entry.owner is not None}
    names: dict[str | None, str] = {None: "organizers"}
    if ids:
        names.update({str(i): n for i, n in session.execute(
            select(Account.id, Account.name).where(Account.id.in_(ids))).all()})
    return names


def page(session: Session, principal: Principal, benchmark: Benchmark, phase: Phase, key: str,
         offset: int = 0, limit: int = 50) -> dict[str, Any]:
    _, board, task_names = board_of(session, principal, benchmark, phase, key)
    rows = ranking.rank(board, entries(session, phase.id, key))
    shown = rows[offset:offset + limit]
    names = owner_names(session, shown)
    everything = manages(principal, benchmark)
    columns = [c for c in sorted(board.columns, key=lambda c: c.index)
               if everything or not c.hidden]
    return {
        "benchmark_id": benchmark.id, "phase_id": phase.id, "key": board.key,
        "title": board.title, "rule": board.rule, "total": len(rows),
        "offset": offset, "limit": limit,
        "tasks": [{"key": k, "name": n} for k, n in zip(board.task_keys, task_names,
                                                         strict=True)],
        "columns": [{"key": c.key, "title": c.title, "index": c.index, "sorting": c.sorting,
                     "computation": c.computation, "precision": c.precision,
                     "hidden": c.hidden} for c in columns],
        "rows": [{
            "rank": row.rank, "submission_id": row.entry.submission_id,
            "owner": names.get(row.entry.owner, row.entry.owner),
            "submitted_at": row.entry.submitted_at.isoformat() + "Z",
            "scores": {task: {c.key: _value(row.entry.scores, task, c.key) for c in columns}
                       for task in board.task_keys},
            "display": {task: {c.key: ranking.format_score(
                _value(row.entry.scores, task, c.key), c.precision) for c in columns}
                for task in board.task_keys},
        } for row in shown],
    }


def _value(scores: Any, task: str, key: str) -> float | None:
    value = (scores.get(task) or {}).get(key)
    return None if value is None else float(value)


def csv_export(session: Session, principal: Principal, benchmark: Benchmark, phase: Phase,
               key: str) -> str:
    _, board, _ = board_of(session, principal, benchmark, phase, key)
    rows = ranking.rank(board, entries(session, phase.id, key))
    return ranking.export_csv(board, rows, include_hidden=manages(principal, benchmark),
                              owner_names=owner_names(session, rows))
