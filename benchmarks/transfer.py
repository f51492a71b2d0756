"""Object-store transfers through a task, against boto3's own calls on the same store.

One task downloads a 1 GB object (``-i s3://bench/big.bin``) and uploads a 1 GB output
folder (``-o s3://bench/out-N/``: the input split into four 256 MB files by the command,
``split`` on the task's local disk). Our time is the task's life on the server's clock
(creation to finish) minus the seconds its command ran: the claim, the download with
its size and SHA-256 checks, the upload of the four files and of the manifest, the
reports. The baseline is what a script would do by hand on the same store in the same
run: ``boto3``'s ``download_file`` of the object, then ``upload_file`` of each of the
four files, twice: with boto3's default transfer settings (what a script gets), and
with the part size and concurrency the worker uses (16 MB, 8 at a time: what is left
is our pipeline's own cost, checks included). Rounds alternate; for each baseline the
round with the median ratio is reported. moto keeps objects in spooled temporary files
and serves each ranged GET by reading up to it, so smaller parts cost it more: the gap
to boto3's defaults says as much about moto as about the part size.

    python -m benchmarks.transfer [--size-mb 1024] [--rounds 3] [--json]

The store is moto's standalone S3 server, started here (as the test suite does),
through boto3's real request code on loopback. Target: baseline / ours >= 0.9.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import instant, median_round  # noqa: E402
from tests.support.objectstores import Processes, start_moto  # noqa: E402
from tests.support.stack import Stack, wait_until  # noqa: E402

BUCKET = "bench"
PARTS = 4


def make_input(path: Path, size_mb: int) -> None:
    block = os.urandom(1 << 20)
    with open(path, "wb") as handle:
        for index in range(size_mb):
            handle.write(block[:-8] + index.to_bytes(8, "big"))  # every MiB differs


def baseline_seconds(s3: object, scratch: Path, size_mb: int, config: object = None) -> float:
    """boto3's download_file of the object, then upload_file of each output part,
    with ``config`` (a TransferConfig; None: boto3's defaults)."""
    scratch.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    s3.download_file(BUCKET, "big.bin", str(scratch / "big.bin"),  # type: ignore[attr-defined]
                     Config=config)
    download = time.perf_counter() - start
    parts = split(scratch / "big.bin", scratch / "parts", size_mb)
    start = time.perf_counter()
    for part in parts:
        s3.upload_file(str(part), BUCKET, f"direct/{part.name}",  # type: ignore[attr-defined]
                       Config=config)
    upload = time.perf_counter() - start
    for path in [scratch / "big.bin", *parts]:
        path.unlink()
    return download + upload


def split(source: Path, folder: Path, size_mb: int) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    piece = (size_mb << 20) // PARTS
    parts = []
    with open(source, "rb") as handle:
        for index in range(PARTS):
            part = folder / f"part-{index}"
            with open(part, "wb") as out:
                out.write(handle.read(piece))
            parts.append(part)
    return parts


def ours_seconds(stack: Stack, round_index: int, size_mb: int) -> float:
    client = stack.client()
    piece = (size_mb << 20) // PARTS
    batch = f"transfer{round_index}"
    created = client.tasks_create([{
        "command": f"split -b {piece} -d -a 1 $INPUT/big.bin $OUTPUT/part-",
        "shell": True, "batch": batch,
        "inputs": [f"s3://{BUCKET}/big.bin"], "output": f"s3://{BUCKET}/out-{round_index}/",
    }])
    task_id = created[0]["id"]
    wait_until(lambda: client.task_get(task_id)["status"] in ("succeeded", "failed"),
               timeout=1800, interval=0.5, what="the transfer task")
    executions = client.execution_list(task=task_id)
    done = executions[-1]
    if done["status"] != "succeeded":
        raise SystemExit(f"the transfer task failed: {done.get('reason')}: {done.get('error')}")
    life = (instant(done["finished_at"]) - instant(created[0]["created_at"])).total_seconds()
    return life - float(done["duration"] or 0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=1024)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()

    import boto3
    from boto3.s3.transfer import TransferConfig

    tuned = TransferConfig(multipart_threshold=16 << 20, multipart_chunksize=16 << 20,
                           max_concurrency=8)
    baselines = {"boto3 defaults": None, "boto3 with the worker's part size": tuned}

    processes = Processes.create()
    try:
        endpoint = start_moto(processes)
        os.environ.update(AWS_ENDPOINT_URL=endpoint, AWS_ACCESS_KEY_ID="bench",
                          AWS_SECRET_ACCESS_KEY="bench", AWS_DEFAULT_REGION="us-east-1")
        s3 = boto3.client("s3")
        s3.create_bucket(Bucket=BUCKET)
        with tempfile.TemporaryDirectory(prefix="scitq-bench-transfer-") as tmp:
            root = Path(tmp)
            make_input(root / "big.bin", args.size_mb)
            s3.upload_file(str(root / "big.bin"), BUCKET, "big.bin")
            (root / "big.bin").unlink()
            stack = Stack(root=root / "stack", database_url=f"sqlite:///{root / 'bench.db'}",
                          lease_seconds=60)
            stack.init()
            stack.start_server()
            rounds: dict[str, list[tuple[float, float]]] = {name: [] for name in baselines}
            try:
                stack.start_worker("bench", concurrency=1)
                wait_until(lambda: stack.client().worker_list(), timeout=60, what="the worker")
                for index in range(args.rounds):
                    mine = ours_seconds(stack, index, args.size_mb)
                    for name, config in baselines.items():
                        direct = baseline_seconds(s3, root / f"direct{index}", args.size_mb,
                                                  config)
                        rounds[name].append((direct, mine))  # ratio: baseline / ours
            finally:
                stack.stop()
    finally:
        processes.stop()
    figures: dict[str, object] = {"size_mb": args.size_mb, "rounds": args.rounds,
                                  "target": "baseline seconds / our seconds >= 0.9"}
    for name, pairs in rounds.items():
        (direct, mine), ratios = median_round(pairs)
        figures[name] = {
            "ours_seconds": round(mine, 2), "boto3_seconds": round(direct, 2),
            "ours_mb_per_s": round(2 * args.size_mb / mine, 1),
            "boto3_mb_per_s": round(2 * args.size_mb / direct, 1),
            "ratio": round(direct / mine, 3),
            "ratios_all_rounds": [round(r, 3) for r in ratios],
        }
    if args.json:
        print(json.dumps(figures, indent=2))
        return
    print(f"transfer through a task vs boto3 on the same store ({args.size_mb} MB in, "
          f"{args.size_mb} MB out in {PARTS} files; 2x{args.size_mb} MB moved)")
    for name in baselines:
        row: dict[str, Any] = figures[name]  # type: ignore[assignment]
        print(f"  {name}: boto3 {row['boto3_seconds']:.2f} s ({row['boto3_mb_per_s']} MB/s), "
              f"ours {row['ours_seconds']:.2f} s ({row['ours_mb_per_s']} MB/s): ratio "
              f"{row['ratio']} (target >= 0.9), rounds {row['ratios_all_rounds']}")


if __name__ == "__main__":
    main()
