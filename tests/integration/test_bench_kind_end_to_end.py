"""A code zip sent without a kind, scored through a real worker on the host: detected as
code (its metadata names a command), run by the prediction step, ranked."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from scitq_bench.client import Client
from tests.support.bundles import DEFAULT_CODE, make_bundle, make_submission
from tests.support.workers import running_worker


def test_a_code_zip_without_a_kind_is_run_as_code_and_scored(live_server: Any,
                                                             tmp_path: Path) -> None:
    admin = live_server.client()
    bench = admin.bench_import(make_bundle(tmp_path / "b", kind="code"), run_on_host=True)
    token = admin.account_create("carol", role="participant")["token"]
    carol = Client(live_server.url, token)
    code = make_submission(tmp_path / "c", "code", {"run.sh": DEFAULT_CODE,
                                                    "metadata.yaml": "command: sh run.sh\n"})
    sub = carol.submission_submit(bench["phases"][0]["id"], code)  # no kind given
    assert (sub["kind"], sub["kind_note"]) == ("code", "detected: code (metadata with a command)")
    with running_worker(live_server, tmp_path, concurrency=1):
        deadline = time.monotonic() + 90
        while (found := carol.submission_get(sub["id"]))["status"] not in (
                "finished", "failed", "cancelled"):
            assert time.monotonic() < deadline, found
            time.sleep(0.2)
    assert found["status"] == "finished", found
    assert [s["step"] for s in found["steps"]] == ["prediction", "scoring"]
    assert found["scores"], found
