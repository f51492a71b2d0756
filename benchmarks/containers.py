"""Container task overhead: N short container tasks through a real server and worker,
versus the same N containers started directly with the engine's own CLI
(``podman run`` or ``docker run``, with the same isolation flags and slot mounts), at
the same concurrency, alternately, for a few rounds; the round with the median ratio
is reported.

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


def engine_cli(docker_host: str, engine: Engine | None) -> tuple[list[str], dict[str, str]]:
    """The engine's own CLI: podman when the engine is Podman (it then runs containers
    itself, without the service), else the docker client against ``DOCKER_HOST``."""
    env = dict(os.environ)
    if engine is not None:
        env["CONTAINERS_CONF"] = str(engine.conf)
    if shutil.which("podman") and (engine is not None or "CONTAINERS_CONF" in env):
        return ["podman"], env
    env["DOCKER_HOST"] = docker_host
    return ["docker"], env


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
    cli, cli_env = engine_cli(docker_host, engine)
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
            rounds = []
            for index in range(args.rounds):
                mine = ours_seconds(stack, args.tasks, f"round{index}")
                direct = direct_seconds(cli, args.tasks, args.concurrency,
                                        root / f"direct{index}", cli_env)
                rounds.append((mine, direct))
        finally:
            stack.stop()
            if engine is not None:
                engine.stop()
    (mine, direct), ratios = median_round(rounds)
    figures = {
        "tasks": args.tasks,
        "concurrency": args.concurrency,
        "direct_cli": cli[0],
        "scheduler_tasks_per_s": round(args.tasks / mine, 2),
        "direct_tasks_per_s": round(args.tasks / direct, 2),
        "time_ratio": round(mine / direct, 3),
        "overhead_percent": round((mine / direct - 1) * 100, 1),
        "time_ratios_all_rounds": [round(r, 3) for r in ratios],
    }
    if args.json:
        print(json.dumps(figures))
        return
    print(f"tasks={args.tasks} concurrency={args.concurrency} direct={cli[0]} run")
    print(f"scheduler: {figures['scheduler_tasks_per_s']:.2f} tasks/s (median round)")
    print(f"direct:    {figures['direct_tasks_per_s']:.2f} tasks/s (same round)")
    print(f"overhead:  {figures['overhead_percent']:+.1f}% of the direct engine time "
          f"(time ratios {', '.join(f'{r:.3f}' for r in ratios)}; target < +15%)")


if __name__ == "__main__":
    main()
