"""An attempt ends with its last run, even when its last two runs end at the same time
in two transactions (on PostgreSQL each would otherwise read the other's run as still
running and leave the attempt running for ever)."""

from __future__ import annotations

import threading
from datetime import datetime, timezone

from scitq_bench.server.bench import runs
from scitq_bench.server.bench.models import Attempt, Benchmark, BenchTask, Phase, Run, Submission
from scitq_bench.server.bench.transitions import move_run
from scitq_bench.server.db import Database
from scitq_bench.states import AttemptStatus, RunStatus


def _attempt_with_two_runs(db: Database) -> tuple[int, list[int]]:
    with db.write() as session:
        benchmark = Benchmark(key="race", title="race")
        session.add(benchmark)
        session.flush()
        phase = Phase(benchmark_id=benchmark.id, index=0, name="p", batch="race",
                      start=datetime(2026, 1, 1, tzinfo=timezone.utc).replace(tzinfo=None))
        tasks = [BenchTask(benchmark_id=benchmark.id, index=i, name=f"t{i}",
                           scoring_program="server://s.zip", scoring_command="true")
                 for i in range(2)]
        session.add_all([phase, *tasks])
        session.flush()
        submission = Submission(benchmark_id=benchmark.id, phase_id=phase.id, kind="result")
        session.add(submission)
        session.flush()
        attempt = Attempt(submission_id=submission.id, number=1)
        session.add(attempt)
        session.flush()
        pair = [Run(attempt_id=attempt.id, bench_task_id=task.id, position=i)
                for i, task in enumerate(tasks)]
        session.add_all(pair)
        session.flush()
        return attempt.id, [run.id for run in pair]


def test_the_last_two_runs_ending_together_end_the_attempt(db: Database) -> None:
    attempt_id, run_ids = _attempt_with_two_runs(db)
    first_refreshed, release = threading.Event(), threading.Event()
    errors: list[BaseException] = []

    def end(run_id: int, hold: bool) -> None:
        try:
            with db.write() as session:
                assert move_run(session, run_id, RunStatus.FAILED, {"error": f"run {run_id}"})
                runs.refresh_attempt(session, attempt_id)
                if hold:  # keep the first transaction open while the second refreshes
                    first_refreshed.set()
                    release.wait(10)
        except BaseException as exc:  # reported by the test below
            errors.append(exc)
            first_refreshed.set()

    first = threading.Thread(target=end, args=(run_ids[0], True))
    first.start()
    assert first_refreshed.wait(10)
    second = threading.Thread(target=end, args=(run_ids[1], False))
    second.start()
    second.join(0.5)  # on SQLite it waits for the write lock, on PostgreSQL for the row
    release.set()
    first.join(10)
    second.join(10)
    assert not errors
    with db.read() as session:
        attempt = session.get(Attempt, attempt_id)
        assert attempt is not None and attempt.status == AttemptStatus.FAILED
