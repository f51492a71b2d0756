"""The Python client's ``join`` against a real server and worker (both databases)."""

from __future__ import annotations

from pathlib import Path

import pytest

from scitq_bench.client.api import server_session
from scitq_bench.exceptions import Conflict, NotFound
from tests.support.workers import running_worker


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


def test_join_retries_root_failures_and_their_dependents_come_back_with_them(
        live_server, tmp_path: Path) -> None:
    """A failed prerequisite takes its dependents down; ``join(retry=)`` relaunches the
    prerequisite only, and the dependents run (or fail again) with it."""
    client = live_server.client()
    marker = tmp_path / "second-time"
    flaky = client.task_create(f"test -f {marker} || {{ touch {marker}; exit 3; }}",
                               shell=True, batch="chain")
    after_flaky = client.task_create("true", batch="chain", requires=[flaky["id"]])
    hopeless = client.task_create("exit 4", shell=True, batch="chain")
    after_hopeless = client.task_create("true", batch="chain", requires=[hopeless["id"]])
    chain = [after_flaky, flaky, after_hopeless, hopeless]  # dependents listed first
    with running_worker(live_server, tmp_path):
        final = client.join(chain, retry=1, interval=0.05, timeout=30)
    assert [t["status"] for t in final] == ["succeeded", "succeeded", "failed", "failed"]
    assert final[2]["status_reason"] == f"prerequisite task {hopeless['id']} failed"
    runs = {t["id"]: len(client.task_executions(t["id"])) for t in chain}
    assert runs == {after_flaky["id"]: 1, flaky["id"]: 2, after_hopeless["id"]: 0,
                    hopeless["id"]: 2}
    with pytest.raises(Conflict) as caught:  # it can only come back with its prerequisite
        client.task_relaunch(after_hopeless["id"])
    assert f"relaunch task {hopeless['id']}" in str(caught.value)


def test_join_refuses_ids_that_do_not_exist_instead_of_waiting_for_ever(live_server) -> None:
    client = live_server.client()
    real = client.task_create("true", batch="missing")
    with pytest.raises(NotFound) as caught:
        client.join([real, 987654, 987655], timeout=5)
    assert "987654, 987655" in str(caught.value)


def test_a_netrc_entry_for_the_server_does_not_replace_the_token(
    live_server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """requests would send Basic credentials from ~/.netrc instead of our bearer token."""
    netrc = tmp_path / ".netrc"
    netrc.write_text("machine 127.0.0.1 login someone password something\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    monkeypatch.setenv("HOME", str(tmp_path))
    client = live_server.client()
    assert client.task_create("true", batch="netrc")["status"] == "pending"


def test_proxy_settings_are_read_once_for_the_server(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    monkeypatch.setenv("NO_PROXY", "inside.example")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/ssl/certs/ca-certificates.crt")
    outside = server_session("https://outside.example")
    assert outside.proxies.get("https") == "http://proxy.example:3128"
    assert outside.verify == "/etc/ssl/certs/ca-certificates.crt"
    assert not outside.trust_env
    inside = server_session("https://inside.example")
    assert not inside.proxies.get("https")  # NO_PROXY names it
    monkeypatch.setenv("HTTPS_PROXY", "http://elsewhere.example:3128")
    assert outside.proxies.get("https") == "http://proxy.example:3128"  # frozen
