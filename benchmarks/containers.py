"""Container task overhead: N short container tasks through a real server and worker,
versus the same N containers started directly with the engine's own CLIs, with the
same isolation flags and slot mounts, at the same concurrency, alternately, for a few
rounds; for each baseline the round with the median ratio is reported. Baselines:
``docker run`` against ``DOCKER_HOST`` (the engine API the worker uses: the gap is
ours alone), and ``podman run`` when the engine is Podman (no API service at all).

Our time runs from the first task's creation to the last one's finish (server clock);
the direct time is the wall time of ``xargs -P C`` running the CLI N times.

    python -m benchmarks.containers --tasks 40 --concurrency 4

Needs an engine: the one ``DOCKER_HOST`` names, else a Podman service started here
(as the test suite does). Target: our overhead under 15% of the direct engine time.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import batch_span, median_round  # noqa: E402
from tests.support.engine import TEST_IMAGE, Engine, ensure_test_image, start_engine  # noqa: E402
from tests.support.stack import Stack, wait_until  # noqa: E402


def direct_seconds(cli: list[str], tasks: int, concurrency: int, scratch: Path,
                   env: dict[str, str]) -> float:
    """``xargs -P C`` running ``<cli> run --rm`` N times with the worker's flags."""
    for name in ("input", "output", "tmp", "resource"):
        (scratch / name).mkdir(parents=True, exist_ok=True)
        (scratch / name).chmod(0o777)
    flags = [
        "run", "--rm", "--network", "none", "--cap-drop", "ALL",
        "--security-opt", "no-new-privileges", "--user", "65534:65534",
        "--pids-limit", "1024", "--memory", "1g", "--cpus", "1",
        "-v", f"{scratch / 'input'}:/input:ro", "-v", f"{scratch / 'resource'}:/resource:ro",
        "-v", f"{scratch / 'output'}:/output", "-v", f"{scratch / 'tmp'}:/tmp",
        TEST_IMAGE, "true",
    ]
    lines = "".join(f"{i}\n" for i in range(tasks)).encode()
    # `xargs -I` substitutes nothing here: each line just triggers one identical run
    start = time.perf_counter()
    subprocess.run(["xargs", "-P", str(concurrency), "-I", "{}", *cli, *flags], input=lines,
                   check=True, env=env, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def ours_seconds(stack: Stack, tasks: int, batch: str) -> float:
    client = stack.client()
    created = client.tasks_create([{"command": "true", "container": TEST_IMAGE, "batch": batch,
                                    "mem": 1.0, "cpu": 1} for _ in range(tasks)])
    wait_until(lambda: _counts(stack, batch).get("succeeded", 0) +
               _counts(stack, batch).get("failed", 0) == tasks,
               timeout=1200, interval=0.5, what=f"the {batch} batch")
    counts = _counts(stack, batch)
    if counts.get("succeeded") != tasks:
        raise SystemExit(f"some container tasks failed: {counts}")
    return batch_span(client, batch, created)


def _counts(stack: Stack, batch: str) -> dict[str, int]:
    found = stack.client().batch_list(name=batch)
    return found[0]["counts"] if found else {}


def baselines(docker_host: str, engine: Engine | None) -> dict[str, tuple[list[str], dict[str, str]]]:
    """The engine's own CLIs: ``docker run`` against ``DOCKER_HOST`` (the very API the
    worker uses, so the difference is ours alone), and ``podman run`` when the engine is
    Podman (it then starts containers itself, without the service)."""
    found: dict[str, tuple[list[str], dict[str, str]]] = {}
    if shutil.which("docker"):
        found["docker run (same engine API)"] = (
            ["docker"], {**os.environ, "DOCKER_HOST": docker_host})
    conf = str(engine.conf) if engine is not None else os.environ.get("CONTAINERS_CONF")
    if shutil.which("podman") and conf:
        found["podman run (no API service)"] = (
            ["podman"], {**os.environ, "CONTAINERS_CONF": conf})
    if not found:
        raise SystemExit("neither docker nor podman CLI found for the direct runs")
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=40)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()

    import docker

    engine = None
    docker_host = os.environ.get("DOCKER_HOST")
    if docker_host is None:
        engine = start_engine()
        docker_host = engine.docker_host
    direct = baselines(docker_host, engine)
    rounds: dict[str, list[tuple[float, float]]] = {name: [] for name in direct}
    with tempfile.TemporaryDirectory(prefix="scitq-bench-containers-") as tmp:
        root = Path(tmp)
        ensure_test_image(docker.DockerClient(base_url=docker_host), TEST_IMAGE, root)
        stack = Stack(root=root, database_url=f"sqlite:///{root / 'bench.db'}",
                      lease_seconds=30, extra_env={"DOCKER_HOST": docker_host})
        stack.init()
        stack.start_server()
        try:
            stack.start_worker("bench", concurrency=args.concurrency, containers=True)
            wait_until(lambda: stack.client().worker_list(), timeout=60, what="the worker")
            ours_seconds(stack, args.concurrency, "warmup")
            for index in range(args.rounds):
                mine = ours_seconds(stack, args.tasks, f"round{index}")
                for name, (cli, env) in direct.items():
                    seconds = direct_seconds(cli, args.tasks, args.concurrency,
                                             root / f"direct{index}", env)
                    rounds[name].append((mine, seconds))
        finally:
            stack.stop()
            if engine is not None:
                engine.stop()
    figures: dict[str, object] = {"tasks": args.tasks, "concurrency": args.concurrency,
                                  "baselines": {}}
    for name, pairs in rounds.items():
        (mine, seconds), ratios = median_round(pairs)
        figures["baselines"][name] = {  # type: ignore[index]
            "scheduler_tasks_per_s": round(args.tasks / mine, 2),
            "direct_tasks_per_s": round(args.tasks / seconds, 2),
            "overhead_percent": round((mine / seconds - 1) * 100, 1),
            "time_ratios_all_rounds": [round(r, 3) for r in ratios],
        }
    if args.json:
        print(json.dumps(figures))
        return
    print(f"tasks={args.tasks} concurrency={args.concurrency} (median round of {args.rounds})")
    for name, result in figures["baselines"].items():  # type: ignore[union-attr]
        print(f"vs {name}: ours {result['scheduler_tasks_per_s']:.2f} tasks/s, direct "
              f"{result['direct_tasks_per_s']:.2f} tasks/s, overhead "
              f"{result['overhead_percent']:+.1f}% (time ratios "
              f"{', '.join(f'{r:.3f}' for r in result['time_ratios_all_rounds'])}; "
              "target < +15%)")


if __name__ == "__main__":
    main()
