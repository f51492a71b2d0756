"""The Python client's ``join`` against a real server and worker (both databases)."""

from __future__ import annotations

from pathlib import Path

from tests.integration.test_worker_agent import running_worker


def test_join_relaunches_failures_and_reports_final_states(live_server, tmp_path: Path) -> None:
    client = live_server.client()
    marker = tmp_path / "second-time"
    flaky = client.task_create(f"test -f {marker} || {{ touch {marker}; exit 3; }}",
                               shell=True, batch="joined")
    hopeless = client.task_create("exit 4", shell=True, batch="joined")
    fine = client.task_create("true", batch="joined")
    with running_worker(live_server, tmp_path):
        final = client.join([flaky, hopeless, fine["id"]], retry=1, interval=0.05,
                            progress=True, timeout=30)
    assert [t["status"] for t in final] == ["succeeded", "failed", "succeeded"]
    assert [e["return_code"] for e in client.task_executions(flaky["id"])] == [3, 0]
    assert [e["return_code"] for e in client.task_executions(hopeless["id"])] == [4, 4]
    durations = client.batch_list(name="joined")[0]["durations"]
    assert durations["runs"] == 2 and durations["mean"] is not None
