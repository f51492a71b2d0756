"""The database ranks exactly as the ranking function: for every submission rule, the
entries kept when scores land, ordered by their byte keys, give ``ranking.rank``'s rows
(both databases)."""

from __future__ import annotations

import random
from datetime import datetime, timedelta

import pytest
from sqlalchemy import insert, select

from scitq_bench.bench import ranking
from scitq_bench.server.auth import ADMIN, Principal
from scitq_bench.server.bench import charts, leaderboards
from scitq_bench.server.bench.boards import load_board, sync_entries
from scitq_bench.server.bench.models import (
    Account,
    Benchmark,
    BenchTask,
    Leaderboard,
    LeaderboardColumn,
    Phase,
    PhaseTask,
    Submission,
)


def build(session, rule: str, tasks: int) -> tuple[Benchmark, Phase, Leaderboard]:
    bench = Benchmark(key=f"b-{rule.lower()}", title="B", visibility="public")
    session.add(bench)
    session.flush()
    phase = Phase(benchmark_id=bench.id, index=0, name="p", start=datetime(2020, 1, 1), batch="b")
    session.add(phase)
    session.flush()
    for index in range(tasks):
        task = BenchTask(benchmark_id=bench.id, index=index, name=f"t{index}",
                         scoring_program="x", scoring_command="true")
        session.add(task)
        session.flush()
        session.add(PhaseTask(phase_id=phase.id, bench_task_id=task.id, position=index))
    board = Leaderboard(benchmark_id=bench.id, key="main", title="Main", submission_rule=rule,
                        primary_index=1)
    session.add(board)
    session.flush()
    for index, (key, sorting, computation) in enumerate(
            [("a", "desc", None), ("b", "asc", None), ("m", "desc", "max")]):
        session.add(LeaderboardColumn(
            leaderboard_id=board.id, key=key, title=key.upper(), index=index, sorting=sorting,
            computation=computation, computation_indexes=[0, 1] if computation else [],
            hidden=key == "b"))
    session.flush()
    return bench, phase, board


@pytest.mark.parametrize("rule", ranking.RULES)
def test_database_ranking_equals_the_ranking_function(db, rule) -> None:
    rng = random.Random(rule)
    tasks = 2
    with db.write() as session:
        bench, phase, board_row = build(session, rule, tasks)
        session.execute(insert(Account), [{"name": f"p{i}", "role": "participant"}
                                          for i in range(4)])
        owners = [None, *session.scalars(select(Account.id))]
        board, _ = load_board(session, board_row, phase.id)
        submissions = []
        for _ in range(60):
            scores = {str(t): ranking.compute_columns(board.columns, {
                key: rng.choice([1.0, 2.0, 3.5, -1.0]) for key in ("a", "b")
                if rng.random() > 0.15}) for t in range(tasks)}
            submission = Submission(
                benchmark_id=bench.id, phase_id=phase.id, owner_id=rng.choice(owners),
                kind="result", status="finished", on_leaderboard=rng.random() < 0.3,
                scores={"main": scores} if rng.random() > 0.1 else None,
                created_at=datetime(2024, 1, 1) + timedelta(seconds=rng.randrange(40)))
            session.add(submission)
            session.flush()
            sync_entries(session, submission)
            submissions.append(submission)
        entries = [ranking.Entry(
            submission_id=s.id, owner=None if s.owner_id is None else str(s.owner_id),
            submitted_at=s.created_at, scores=s.scores["main"], selected=s.on_leaderboard)
            for s in submissions if s.scores]
        expected = [row.entry.submission_id for row in ranking.rank(board, entries)]
        admin = Principal(role=ADMIN)
        got = leaderboards.page(session, admin, bench, phase, "main", 0, 1000)
        assert [r["submission_id"] for r in got["rows"]] == expected
        assert got["total"] == len(expected)
        # the choice follows changes: drop one owner's shown submission's scores
        if expected:
            first = next(s for s in submissions if s.id == expected[0])
            first.scores = None
            sync_entries(session, first)
            entries = [e for e in entries if e.submission_id != first.id]
            again = [row.entry.submission_id for row in ranking.rank(board, entries)]
            got = leaderboards.page(session, admin, bench, phase, "main", 0, 1000)
            assert [r["submission_id"] for r in got["rows"]] == again
        # participants do not see the hidden column, in the page or the CSV
        participant = Principal(role="participant", account_id=owners[1])
        public = leaderboards.page(session, participant, bench, phase, "main", 0, 5)
        assert [c["key"] for c in public["columns"]] == ["a", "m"]
        header = leaderboards.csv_export(session, participant, bench, phase, "main").splitlines()[0]
        assert header == "rank,owner,submission,submitted_at,0/A,0/M,1/A,1/M"


def test_charts_read_a_board_in_pages_without_losing_or_repeating_a_row(db, monkeypatch):
    """Pages follow the submission order's own key: submissions sent in the same second
    are neither skipped nor repeated at a page's edge."""
    rng = random.Random(7)
    with db.write() as session:
        bench, phase, board_row = build(session, "Add", 1)
        board, _ = load_board(session, board_row, phase.id)
        for _ in range(40):
            submission = Submission(
                benchmark_id=bench.id, phase_id=phase.id, kind="result", status="finished",
                scores={"main": {"0": ranking.compute_columns(board.columns, {
                    "a": rng.choice([1.0, 2.0, 3.0]), "b": 1.0})}},
                created_at=datetime(2024, 1, 1) + timedelta(seconds=rng.randrange(8)))
            session.add(submission)
            session.flush()
            sync_entries(session, submission)
        admin = Principal(role=ADMIN)

        def read() -> list:
            _column, _tasks, rows = charts._values(session, admin, bench, phase, "main")
            return list(rows)

        whole = read()
        monkeypatch.setattr(charts, "BATCH", 3)
        assert read() == whole and len(whole) == 40
        assert [at for at, _ in whole] == sorted(at for at, _ in whole)
