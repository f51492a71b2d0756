"""Dispatch throughput and latency, against ``xargs -P`` in the same run.

Throughput: N no-op tasks (``true``) through a real server and local workers with total
concurrency C (from the first task's creation to the last one's finish, on the server's
clock), versus the same N commands run by ``xargs -P C``, alternately, for a few rounds;
the round with the median ratio is reported. Latency: single tasks
created one at a time while the workers sit idle; measured from the task's creation to
the start of its command, both instants on the server's clock.

    python -m benchmarks.dispatch --tasks 2000 --concurrency 8
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import batch_span, instant, median_round  # noqa: E402
from tests.support.stack import Stack, wait_until  # noqa: E402


def xargs_rate(tasks: int, concurrency: int) -> float:
    # `true N` ignores its argument: xargs runs exactly `tasks` processes of `true`
    lines = "".join(f"{i}\n" for i in range(tasks)).encode()
    start = time.perf_counter()
    subprocess.run(["xargs", "-P", str(concurrency), "-n", "1", "true"], input=lines, check=True)
    return tasks / (time.perf_counter() - start)


def scheduler_rate(stack: Stack, tasks: int, batch: str) -> float:
    """Tasks per second from the first task's creation to the last one's finish, both
    on the server's clock; polling for the end is slow on purpose so that the
    benchmark itself does not load the server."""
    client = stack.client()
    created = client.tasks_create([{"command": "true", "batch": batch} for _ in range(tasks)])
    wait_until(
        lambda: client.batch_list(name=batch)[0]["counts"]["succeeded"] == tasks,
        timeout=600, interval=0.5, what=f"the {batch} batch",
    )
    return tasks / batch_span(client, batch, created)


def dispatch_latencies(stack: Stack, samples: int) -> list[float]:
    client = stack.client()
    latencies = []
    for _ in range(samples):
        task = client.task_create("true", batch="latency")
        execution = wait_until(
            lambda t=task: [e for e in client.task_executions(t["id"]) if e["started_at"]],
            timeout=30, interval=0.01, what="a latency task to start",
        )[0]
        started = instant(execution["started_at"]) - instant(task["created_at"])
        latencies.append(started.total_seconds() * 1000)
        client.join([task], interval=0.02)
    return latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=8, help="total, across workers")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--prefetch", type=int, default=None,
                        help="per worker; default 12 x its concurrency: a worker running "
                        "no-op tasks ends about a thousand a second, so its local queue "
                        "must cover a report's round trip (25-50 ms) or its slots idle "
                        "while the next tasks are on their way")
    parser.add_argument("--latency-samples", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=3,
                        help="throughput rounds, each ours then xargs; the median ratio "
                        "is reported (this machine is noisy)")
    parser.add_argument("--database-url", help="default: SQLite in a temporary directory")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="scitq-bench-dispatch-") as tmp:
        root = Path(tmp)
        url = args.database_url or f"sqlite:///{root / 'bench.db'}"
        stack = Stack(root=root, database_url=url, lease_seconds=30)
        stack.init()
        stack.start_server()
        try:
            per_worker = max(1, args.concurrency // args.workers)
            prefetch = 12 * per_worker if args.prefetch is None else args.prefetch
            for index in range(args.workers):
                stack.start_worker(f"bench{index}", concurrency=per_worker, prefetch=prefetch)
            wait_until(lambda: len(stack.client().worker_list()) == args.workers, timeout=60,
                       what="workers to register")
            latencies = dispatch_latencies(stack, args.latency_samples)
            rounds = []
            for index in range(args.rounds):
                ours = scheduler_rate(stack, args.tasks, f"throughput{index}")
                rounds.append((ours, xargs_rate(args.tasks, args.concurrency)))
        finally:
            stack.stop()
    (ours, baseline), ratios = median_round(rounds)
    figures = {
        "tasks": args.tasks,
        "concurrency": args.concurrency,
        "workers": args.workers,
        "prefetch": prefetch,
        "database": "sqlite" if url.startswith("sqlite") else "postgresql",
        "scheduler_tasks_per_s": round(ours, 1),
        "xargs_tasks_per_s": round(baseline, 1),
        "ratio": round(ours / baseline, 3),
        "ratios_all_rounds": [round(r, 3) for r in ratios],
        "latency_median_ms": round(statistics.median(latencies), 1),
        "latency_p90_ms": round(sorted(latencies)[int(len(latencies) * 0.9) - 1], 1),
    }
    if args.json:
        print(json.dumps(figures))
        return
    print(f"tasks={figures['tasks']} concurrency={figures['concurrency']} "
          f"workers={figures['workers']} prefetch={figures['prefetch']} "
          f"database={figures['database']}")
    print(f"scheduler: {figures['scheduler_tasks_per_s']:.1f} tasks/s (median round)")
    print(f"xargs -P:  {figures['xargs_tasks_per_s']:.1f} tasks/s (same round)")
    print(f"ratio:     {figures['ratio']:.3f} (median of {len(ratios)} rounds: "
          f"{', '.join(f'{r:.3f}' for r in ratios)}; target >= 0.5)")
    print(f"dispatch latency: median {figures['latency_median_ms']:.1f} ms, "
          f"p90 {figures['latency_p90_ms']:.1f} ms (target median < 50 ms)")


if __name__ == "__main__":
    main()
