"""Leaderboards from the database.

Every scored submission has one ``leaderboard_entry`` per leaderboard, written when its
scores change: the ranking order as bytes (``scitq_bench.bench.sortkey``, the same
order as ``ranking.rank``) and the exact scores (``boards.exact_text``). The submission rule picks the
entries when scores land (``chosen``, by ``ranking.select`` over the owner's entries),
and a ranked page is an indexed ``ORDER BY sort_key LIMIT``; a CSV export reads the chosen
entries' pre-rendered lines in order. Nothing is sorted in Python; a page's display
text (the column's precision) is made as it is read.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, literal, select
from sqlalchemy.orm import Session

from scitq_bench.bench import ranking
from scitq_bench.exceptions import NotFound
from scitq_bench.server.auth import Principal
from scitq_bench.server.bench.access import manages, visible_phase
from scitq_bench.server.bench.boards import display_text, load_board
from scitq_bench.server.bench.models import (
    Account,
    Benchmark,
    Leaderboard,
    LeaderboardEntry,
    Phase,
)


def board_of(session: Session, principal: Principal, benchmark: Benchmark, phase: Phase,
             key: str) -> tuple[Leaderboard, ranking.Board, list[str]]:
    """A hidden leaderboard is not found for those who do not manage the benchmark."""
    row = session.scalars(select(Leaderboard).where(
        Leaderboard.benchmark_id == benchmark.id, Leaderboard.key == key)).first()
    if row is None or (row.hidden and not manages(principal, benchmark)):
        raise NotFound(f"benchmark {benchmark.id} has no leaderboard {key!r}")
    board, names = load_board(session, row, phase.id)
    return row, board, names


# -- ranking ----------------------------------------------------------------------------


def ranked_rows(session: Session, row: Leaderboard, phase_id: int, everything: bool,
                offset: int = 0, limit: int | None = None) -> tuple[int, list[tuple[str, str]]]:
    """(total, [(owner, line)] in rank order from ``offset``) of the entries the rule
    shows (``chosen``, kept up to date when scores land); ``line`` holds every column
    or only the visible ones."""
    entry = LeaderboardEntry
    shown = (entry.leaderboard_id == row.id, entry.phase_id == phase_id,
             entry.chosen.is_(True))
    total = session.scalar(select(func.count()).select_from(entry).where(*shown)) or 0
    line = entry.line if everything else entry.public_line
    query = (select(func.coalesce(Account.name, literal("organizers")), line)
             .select_from(entry).outerjoin(Account, Account.id == entry.owner_id)
             .where(*shown).order_by(entry.sort_key).offset(offset))
    if limit is not None:
        query = query.limit(limit)
    return total, [(owner, text) for owner, text in session.execute(query)]


def shown_columns(board: ranking.Board, everything: bool) -> list[tuple[str, ranking.Column]]:
    """(task key, column) of the values in a line, in order."""
    return [(task, column) for task in board.task_keys for column in board.display_columns
            if everything or not column.hidden]


def page(session: Session, principal: Principal, benchmark: Benchmark, phase: Phase, key: str,
         offset: int = 0, limit: int = 50) -> dict[str, Any]:
    row, board, task_names = board_of(session, principal, benchmark, phase, key)
    everything = manages(principal, benchmark)
    total, rows = ranked_rows(session, row, phase.id, everything, offset, limit)
    shown = shown_columns(board, everything)
    answer_rows = []
    for position, (owner, line) in enumerate(rows, offset + 1):
        submission_id, submitted_at, *cells = line.split(",")
        display: dict[str, dict[str, str]] = {task: {} for task in board.task_keys}
        scores: dict[str, dict[str, float | None]] = {task: {} for task in board.task_keys}
        for (task, column), text in zip(shown, cells, strict=True):
            value = float(text) if text else None
            display[task][column.key] = ranking.format_score(value, column.precision)
            scores[task][column.key] = value
        answer_rows.append({"rank": position, "submission_id": int(submission_id),
                            "owner": owner, "submitted_at": submitted_at,
                            "scores": scores, "display": display})
    columns = [c for c in board.display_columns if everything or not c.hidden]
    return {
        "benchmark_id": benchmark.id, "phase_id": phase.id, "key": board.key,
        "title": board.title, "rule": board.rule, "total": total, "offset": offset,
        "limit": limit,
        "tasks": [{"key": k, "name": n} for k, n in zip(board.task_keys, task_names,
                                                         strict=True)],
        "columns": [{"key": c.key, "title": c.title, "index": c.index, "sorting": c.sorting,
                     "computation": c.computation, "precision": c.precision,
                     "hidden": c.hidden} for c in columns],
        "rows": answer_rows,
    }


def phase_page(session: Session, principal: Principal, phase_id: int, key: str,
               offset: int = 0, limit: int = 50) -> dict[str, Any]:
    """``page`` of a phase ``principal`` may see."""
    phase, benchmark = visible_phase(session, principal, phase_id)
    return page(session, principal, benchmark, phase, key, offset, limit)


def board_view(session: Session, principal: Principal, phase_id: int, key: str,
               offset: int, limit: int) -> dict[str, Any]:
    """What a leaderboard's page shows: the ranked ``page`` (as ``board``, displayed as
    the GUI shows scores: ``display_text``), and its phase and benchmark as plain
    values."""
    phase, benchmark = visible_phase(session, principal, phase_id)
    board = page(session, principal, benchmark, phase, key, offset, limit)
    precisions = {column["key"]: column["precision"] for column in board["columns"]}
    for row in board["rows"]:
        for task, values in row["scores"].items():
            row["display"][task] = {key: display_text(value, precisions[key])
                                    for key, value in values.items()}
    return {"board": board,
            "phase": {"id": phase.id, "name": phase.name},
            "bench": {"id": benchmark.id, "title": benchmark.title,
                      "manage": manages(principal, benchmark)}}


def csv_file(session: Session, principal: Principal, phase_id: int,
             key: str) -> tuple[str, str]:
    """(file name, text) of ``csv_export``: the download the API and the GUI both
    serve."""
    phase, benchmark = visible_phase(session, principal, phase_id)
    text = csv_export(session, principal, benchmark, phase, key)
    return f"{benchmark.key}-{phase.index}-{key}.csv", text


def csv_export(session: Session, principal: Principal, benchmark: Benchmark, phase: Phase,
               key: str) -> str:
    """The whole board as CSV: rank, owner, submission, submitted_at, then the shown
    columns (``ranking.score_titles``). Scores are exact (the precision is for display
    only)."""
    row, board, _ = board_of(session, principal, benchmark, phase, key)
    everything = manages(principal, benchmark)
    header = ["rank", "owner", "submission", "submitted_at",
              *(ranking.csv_text(title) for title in ranking.score_titles(board, everything))]
    _, rows = ranked_rows(session, row, phase.id, everything)
    return "".join([",".join(header) + "\r\n", *[
        f"{position},{ranking.csv_text(owner)},{line}\r\n"
        for position, (owner, line) in enumerate(rows, 1)]])
