"""Where submissions stand on their phase's leaderboards, read from the entries the
boards are drawn from (``leaderboard_entry``: ``chosen`` is what a board shows), so a
submission said to be on the leaderboard is a row of the board, at the rank it shows."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import and_, func, select
from sqlalchemy.orm import Session, aliased

from scitq_bench.bench import ranking
from scitq_bench.server.bench.boards import load_board
from scitq_bench.server.bench.leaderboards import shown_columns
from scitq_bench.server.bench.models import Leaderboard, LeaderboardEntry


def shown_on_boards(session: Session, submission_ids: Sequence[int],
                    include_hidden: bool) -> set[int]:
    """The submissions among ``submission_ids`` that a leaderboard shows (a chosen
    entry), on the boards this reader sees (hidden ones only with ``include_hidden``)."""
    if not submission_ids:
        return set()
    query = (select(LeaderboardEntry.submission_id).join(
        Leaderboard, Leaderboard.id == LeaderboardEntry.leaderboard_id)
        .where(LeaderboardEntry.submission_id.in_(list(submission_ids)),
               LeaderboardEntry.chosen.is_(True)))
    if not include_hidden:
        query = query.where(Leaderboard.hidden.is_(False))
    return set(session.scalars(query))


def standings(session: Session, benchmark_id: int, phase_id: int,
              submission_ids: Sequence[int],
              include_hidden: bool) -> dict[int, dict[str, Any]]:
    """{submission id: {board, title, rank, score}} on the first leaderboard this
    reader sees: ``rank`` as the board shows it (None when the board does not show the
    submission), ``score`` the primary column of the first task as the board displays
    it (None without scores)."""
    query = select(Leaderboard).where(Leaderboard.benchmark_id == benchmark_id)
    if not include_hidden:
        query = query.where(Leaderboard.hidden.is_(False))
    row = session.scalars(query.order_by(Leaderboard.index).limit(1)).first()
    if row is None or not submission_ids:
        return {}
    board, _ = load_board(session, row, phase_id)
    ranking_columns = board.ranking_columns
    shown = shown_columns(board, include_hidden)
    primary = ranking_columns[0] if ranking_columns else None
    cell = next((i for i, (task, column) in enumerate(shown)
                 if primary is not None and task == board.task_keys[0]
                 and column.key == primary.key), None)
    mine, other = LeaderboardEntry, aliased(LeaderboardEntry)
    ahead = (select(func.count()).select_from(other).where(
        other.leaderboard_id == mine.leaderboard_id, other.phase_id == mine.phase_id,
        other.chosen.is_(True), other.sort_key < mine.sort_key)
        .correlate(mine).scalar_subquery())
    line = mine.line if include_hidden else mine.public_line
    rows = session.execute(select(mine.submission_id, mine.chosen, ahead, line).where(and_(
        mine.leaderboard_id == row.id, mine.phase_id == phase_id,
        mine.submission_id.in_(list(submission_ids))))).all()
    answer: dict[int, dict[str, Any]] = {}
    for submission_id, chosen, before, text in rows:
        cells = text.split(",")[2:]
        text = cells[cell] if cell is not None and cell < len(cells) else ""
        score = ranking.format_score(float(text), primary.precision) \
            if text and primary is not None else None
        answer[submission_id] = {"board": row.key, "title": row.title,
                                 "rank": before + 1 if chosen else None, "score": score}
    return answer
