"""Leaderboard ranking from the database: 100,000 scored submissions across 5 columns.

For SQLite and PostgreSQL, the time to produce the first ranked page (50 rows) and the
whole CSV export through the server's own code (the rule's choice and the order in SQL
over the ready-to-rank entries), against a baseline measured in the same run: ranking
the same submissions in Python straight from their stored scores (read them all, then
``ranking.rank``), the straightforward way. Medians of a few repetitions.

    python -m benchmarks.leaderboard --submissions 100000

PostgreSQL comes from ``--database-url``, else a throwaway server from the machine's own
binaries (as the test suite starts it); ``--sqlite-only`` skips it.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import insert, select  # noqa: E402

from scitq_bench.bench.ranking import Entry, rank  # noqa: E402
from scitq_bench.bench.ranking import select as select_entries  # noqa: E402
from scitq_bench.server.auth import ADMIN, Principal  # noqa: E402
from scitq_bench.server.bench import leaderboards  # noqa: E402
from scitq_bench.server.bench.boards import entry_row, load_board  # noqa: E402
from scitq_bench.server.bench.models import (  # noqa: E402
    Account,
    Benchmark,
    BenchTask,
    Leaderboard,
    LeaderboardColumn,
    LeaderboardEntry,
    Phase,
    PhaseTask,
    Submission,
)
from scitq_bench.server.db import Database  # noqa: E402
from scitq_bench.server.migrate import upgrade  # noqa: E402

COLUMNS = (("accuracy", "desc", None), ("f1", "desc", None), ("latency", "asc", None),
           ("memory", "asc", None), ("mean", "desc", "avg"))
ADMIN_PRINCIPAL = Principal(role=ADMIN)


def populate(db: Database, submissions: int, owners: int, rule: str) -> tuple[int, int]:
    """A benchmark with one phase, one task and one 5-column leaderboard (the last
    column computed), and ``submissions`` scored submissions; returns (benchmark, phase)."""
    rng = random.Random(7)
    with db.write() as session:
        bench = Benchmark(key="perf", title="Leaderboard benchmark", visibility="public")
        session.add(bench)
        session.flush()
        task = BenchTask(benchmark_id=bench.id, index=0, name="t", scoring_program="x",
                         scoring_command="true")
        phase = Phase(benchmark_id=bench.id, index=0, name="p", start=datetime(2020, 1, 1),
                      batch="perf")
        session.add_all([task, phase])
        session.flush()
        session.add(PhaseTask(phase_id=phase.id, bench_task_id=task.id, position=0))
        board = Leaderboard(benchmark_id=bench.id, key="main", title="Main",
                            submission_rule=rule, primary_index=0)
        session.add(board)
        session.flush()
        for index, (key, sorting, computation) in enumerate(COLUMNS):
            session.add(LeaderboardColumn(
                leaderboard_id=board.id, key=key, title=key.title(), index=index,
                sorting=sorting, computation=computation,
                computation_indexes=[0, 1] if computation else [], precision=3))
        session.execute(insert(Account), [{"name": f"p{i}", "role": "participant",
                                           "created_at": datetime(2020, 1, 1)}
                                          for i in range(owners)])
        first_owner = session.scalar(select(Account.id).order_by(Account.id).limit(1))
        start = datetime(2024, 1, 1)
        rows = []
        for i in range(submissions):
            accuracy, f1 = round(rng.random(), 4), round(rng.random(), 4)
            scores = {"accuracy": accuracy, "f1": f1, "latency": round(rng.uniform(1, 100), 2),
                      "memory": round(rng.uniform(10, 1000), 1),
                      "mean": round((accuracy + f1) / 2, 4)}
            if i % 97 == 0:
                del scores["f1"], scores["mean"]  # some missing scores
            rows.append({
                "benchmark_id": bench.id, "phase_id": phase.id, "kind": "result",
                "owner_id": first_owner + rng.randrange(owners), "status": "finished",
                "attempts": 1, "scored_attempt": 1, "on_leaderboard": False,
                "scores": {"main": {"0": scores}},
                "created_at": start + timedelta(seconds=i),
            })
        for chunk in range(0, len(rows), 10_000):
            session.execute(insert(Submission), rows[chunk:chunk + 10_000])
        # what the server writes when scores land: one ready-to-rank entry each
        ranked, _ = load_board(session, board, phase.id)
        stored = session.execute(select(Submission.id, Submission.owner_id,
                                        Submission.created_at, Submission.scores)).all()
        entries = [Entry(submission_id=r.id, owner=str(r.owner_id), submitted_at=r.created_at,
                         scores=r.scores["main"]) for r in stored]
        shown = {e.submission_id for e in select_entries(ranked, entries)}
        entries = [{**entry_row(board.id, ranked, phase.id, e), "chosen": e.submission_id in shown}
                   for e in entries]
        for chunk in range(0, len(entries), 10_000):
            session.execute(insert(LeaderboardEntry), entries[chunk:chunk + 10_000])
        return bench.id, phase.id


def median_seconds(action: Callable[[], Any], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        began = time.perf_counter()
        action()
        times.append(time.perf_counter() - began)
    return statistics.median(times)


def measure(url: str, submissions: int, owners: int, rule: str, repeat: int) -> dict[str, Any]:
    upgrade(url)
    db = Database(url)
    try:
        bench_id, phase_id = populate(db, submissions, owners, rule)

        def python_rank() -> int:
            """The baseline: read every scored submission and rank in Python."""
            with db.read() as session:
                row = session.scalars(select(Leaderboard)).one()
                board, _ = load_board(session, row, phase_id)
                stored = session.execute(select(
                    Submission.id, Submission.owner_id, Submission.created_at,
                    Submission.scores).where(Submission.phase_id == phase_id)).all()
                return len(rank(board, [Entry(
                    submission_id=r.id, owner=str(r.owner_id), submitted_at=r.created_at,
                    scores=r.scores["main"]) for r in stored]))

        def page() -> dict[str, Any]:
            with db.read() as session:
                bench = session.get(Benchmark, bench_id)
                phase = session.get(Phase, phase_id)
                return leaderboards.page(session, ADMIN_PRINCIPAL, bench, phase, "main", 0, 50)

        def csv() -> str:
            with db.read() as session:
                bench = session.get(Benchmark, bench_id)
                phase = session.get(Phase, phase_id)
                return leaderboards.csv_export(session, ADMIN_PRINCIPAL, bench, phase, "main")

        first = page()
        assert first["total"] > 0 and len(first["rows"]) == min(50, first["total"])
        baseline = median_seconds(python_rank, repeat)
        page_s = median_seconds(page, repeat)
        csv_s = median_seconds(csv, repeat)
        return {"ranked_rows": first["total"], "python_rank_s": round(baseline, 3),
                "page_s": round(page_s, 3), "csv_s": round(csv_s, 3),
                "page_vs_python": round(page_s / baseline, 3),
                "csv_vs_python": round(csv_s / baseline, 3)}
    finally:
        db.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--submissions", type=int, default=100_000)
    parser.add_argument("--owners", type=int, default=5_000)
    parser.add_argument("--rule", default="Force_Latest_Multiple",
                        help="submission rule (Force_Latest_Multiple ranks every row)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--database-url", help="PostgreSQL URL (default: a throwaway server)")
    parser.add_argument("--sqlite-only", action="store_true")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="scitq-bench-leaderboard-") as tmp:
        results["sqlite"] = measure(f"sqlite:///{Path(tmp) / 'lb.db'}", args.submissions,
                                    args.owners, args.rule, args.repeat)
    if not args.sqlite_only:
        server = None
        url = args.database_url
        if url is None:
            from tests.support.postgres import start_postgres

            server = start_postgres()
            url = server.url
        try:
            results["postgresql"] = measure(url, args.submissions, args.owners, args.rule,
                                            args.repeat)
        finally:
            if server is not None:
                server.stop()
    if args.json:
        print(json.dumps({"submissions": args.submissions, "rule": args.rule, **results}))
        return
    print(f"{args.submissions} scored submissions, 5 columns (one computed), rule {args.rule}, "
          f"median of {args.repeat}")
    for backend, figures in results.items():
        print(f"{backend:>10}: {figures['ranked_rows']} ranked rows; first page "
              f"{figures['page_s']:.3f} s, CSV export {figures['csv_s']:.3f} s; baseline "
              f"(read all + rank in Python) {figures['python_rank_s']:.3f} s (page "
              f"{figures['page_vs_python']:.3f}x, CSV {figures['csv_vs_python']:.3f}x the "
              "baseline; target: well under 1 s)")


if __name__ == "__main__":
    main()
