"""Leaderboard ranking and CSV export, against plain ``sorted`` in the same run.

Two boards: N=100,000 entries x 5 columns x 1 task, and 20,000 x 5 x 3 tasks (mixed
directions, about 1% of scores missing, 1,000 owners). For each: ``rank`` under
Force_Latest_Multiple (every entry on the board) and under Force_Best (one per owner),
and ``export_csv`` of the full ranking; the baseline is Python's ``sorted`` on plain
tuples of the same data, precomputed (signed values, missing as +inf, then the
submission time and id: the least work any ranking must do). The CSV export is also
compared with ``csv.writer`` writing rows whose cells are formatted one by one, the
obvious way. Median of a few repetitions (``time.perf_counter``).

    python -m benchmarks.ranking [--repeat 5] [--json]
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import random
import statistics
import sys
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from scitq_bench.bench.ranking import Board, Column, Entry, export_csv, rank  # noqa: E402

CASES = ((100_000, 5, 1), (20_000, 5, 3))
OWNERS = 1_000
MISSING = 0.01


def make_case(entries: int, columns: int, tasks: int, seed: int = 1):
    rng = random.Random(seed)
    cols = tuple(Column(f"c{i}", f"Score {i}", i, "desc" if i % 2 == 0 else "asc",
                        precision=2 + i % 3) for i in range(columns))
    task_keys = tuple(str(t) for t in range(tasks))
    start = datetime(2024, 1, 1, tzinfo=timezone.utc)
    data = []
    for i in range(entries):
        # 4 decimals: some ties, as real leaderboards have
        scores = {task: {c.key: round(rng.random(), 4) for c in cols if rng.random() >= MISSING}
                  for task in task_keys}
        data.append(Entry(i + 1, f"user{rng.randrange(OWNERS)}",
                          start + timedelta(seconds=rng.randrange(90 * 86400)), scores))

    def board(rule: str) -> Board:
        return Board("main", "Results", rule, cols, task_keys=task_keys)

    # the baseline's tuples: the same order, built beforehand, no flags
    plain = []
    for e in data:
        key: list = []
        for c in cols:
            for task in task_keys:
                v = e.scores[task].get(c.key)
                key.append(math.inf if v is None else (-v if c.sorting == "desc" else v))
        plain.append((*key, e.submitted_at, e.submission_id))
    return board, data, plain


def naive_csv(board: Board, rows) -> str:
    """csv.writer with every cell formatted on its own: the obvious export."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    cols = sorted(board.columns, key=lambda c: c.index)
    writer.writerow(["rank", "submission", "owner", "submitted_at"]
                    + [f"{t}/{c.title}" for t in board.task_keys for c in cols])
    for row in rows:
        e = row.entry
        line = [row.rank, e.submission_id, e.owner, e.submitted_at.isoformat()]
        for t in board.task_keys:
            for c in cols:
                v = e.scores.get(t, {}).get(c.key)
                line.append("" if v is None or v != v else f"{v:.{c.precision}f}")
        writer.writerow(line)
    return buffer.getvalue()


def timed(function: Callable[[], object]) -> float:
    start = time.perf_counter()
    function()
    return time.perf_counter() - start


def measure(entries: int, columns: int, tasks: int, repeat: int) -> dict:
    board, data, plain = make_case(entries, columns, tasks)
    everyone, best = board("Force_Latest_Multiple"), board("Force_Best")
    rows = rank(everyone, data)
    assert len(rows) == entries
    figures = {"entries": entries, "columns": columns, "tasks": tasks}
    # interleaved, so that a noisy moment hits every measure alike
    samples: dict[str, list[float]] = {name: [] for name in (
        "sorted_baseline_s", "rank_s", "rank_force_best_s", "export_csv_s", "naive_csv_s")}
    for _ in range(repeat):
        samples["sorted_baseline_s"].append(timed(lambda: sorted(plain)))
        samples["rank_s"].append(timed(lambda: rank(everyone, data)))
        samples["rank_force_best_s"].append(timed(lambda: rank(best, data)))
        samples["export_csv_s"].append(
            timed(lambda: export_csv(everyone, rows, include_hidden=True)))
        samples["naive_csv_s"].append(timed(lambda: naive_csv(everyone, rows)))
    for name, values in samples.items():
        figures[name] = round(statistics.median(values), 4)
    baseline = figures["sorted_baseline_s"]
    figures["rank_ratio"] = round(figures["rank_s"] / baseline, 2)
    figures["rank_force_best_ratio"] = round(figures["rank_force_best_s"] / baseline, 2)
    figures["export_csv_ratio"] = round(figures["export_csv_s"] / baseline, 2)
    figures["export_vs_naive_csv"] = round(figures["export_csv_s"] / figures["naive_csv_s"], 2)
    figures["rank_plus_csv_s"] = round(figures["rank_s"] + figures["export_csv_s"], 4)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5, help="repetitions (median reported)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()
    results = [measure(n, c, t, args.repeat) for n, c, t in CASES]
    if args.json:
        print(json.dumps({"repeat": args.repeat, "cases": results}))
        return
    print(f"median of {args.repeat} runs; ratios are against sorted() on precomputed tuples")
    for f in results:
        print(f"\n{f['entries']:,} entries x {f['columns']} columns x {f['tasks']} task(s)")
        print(f"  sorted() baseline        {f['sorted_baseline_s'] * 1000:8.1f} ms")
        print(f"  rank (all entries)       {f['rank_s'] * 1000:8.1f} ms  "
              f"x{f['rank_ratio']:.2f} baseline")
        print(f"  rank (Force_Best)        {f['rank_force_best_s'] * 1000:8.1f} ms  "
              f"x{f['rank_force_best_ratio']:.2f} baseline")
        print(f"  export_csv (all rows)    {f['export_csv_s'] * 1000:8.1f} ms  "
              f"x{f['export_csv_ratio']:.2f} baseline, "
              f"x{f['export_vs_naive_csv']:.2f} the naive csv.writer export "
              f"({f['naive_csv_s'] * 1000:.1f} ms)")
        print(f"  rank + export_csv        {f['rank_plus_csv_s'] * 1000:8.1f} ms")


if __name__ == "__main__":
    main()
