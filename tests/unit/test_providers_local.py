"""The local provider: real worker processes against a live server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from scitq_bench.exceptions import InvalidInput
from scitq_bench.recruiters.providers import (
    OWNER_TAG,
    CredentialsError,
    InstanceSpec,
    build_provider,
    known_providers,
)
from scitq_bench.recruiters.providers.local import REGISTRY, LocalProvider, start_time
from scitq_bench.server.setup import create_token
from tests.support.stack import wait_until

SECRET = "not-a-real-secret-token-value"


def _config(root: Path, url: str = "http://127.0.0.1:9", token: str = SECRET) -> dict:
    return {"server_url": url, "token": token, "work_root": str(root), "grace_seconds": 10}


def test_unknown_provider_lists_the_known_ones() -> None:
    with pytest.raises(InvalidInput) as info:
        build_provider("gcp", {}, "me")
    for name in ("local", "ssh", "aws", "azure", "ovh"):
        assert name in str(info.value)
    assert set(known_providers()) >= {"local", "ssh", "aws", "azure", "ovh"}


def test_missing_settings_are_named(tmp_path: Path) -> None:
    with pytest.raises(CredentialsError) as info:
        build_provider("local", {"work_root": str(tmp_path)}, "me")
    assert "server_url" in str(info.value) and "token" in str(info.value)
    assert "work_root" not in str(info.value)


def test_repr_and_errors_hold_no_secret(tmp_path: Path) -> None:
    provider = build_provider("local", _config(tmp_path), "me")
    assert SECRET not in repr(provider)
    with pytest.raises(InvalidInput) as info:
        provider.create(InstanceSpec(name="bad name!", flavor="local", region="local"))
    assert SECRET not in str(info.value)
    with pytest.raises(InvalidInput):
        provider.create(InstanceSpec(name="w", flavor="big", region="local"))


def test_offers_describe_this_machine(tmp_path: Path) -> None:
    provider = build_provider("local", _config(tmp_path), "me")
    (offer,) = provider.offers()
    assert (offer.provider, offer.region, offer.flavor) == ("local", "local", "local")
    assert offer.cpu == os.cpu_count() and offer.ram_gb > 0 and offer.cost == 0.0
    assert offer.eviction is None and offer.tags == ""
    assert "CPUs" in provider.check()


def test_start_time_tells_a_reused_pid_apart() -> None:
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        first = start_time(process.pid)
        assert first is not None and start_time(process.pid) == first
    finally:
        process.kill()
        process.wait()
    assert start_time(process.pid) is None


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_worker_lifecycle_against_a_live_server(live_server, tmp_path: Path) -> None:  # noqa: ANN001
    enroll = create_token(live_server.settings, "enroll")
    root = tmp_path / "local"
    provider = build_provider("local", _config(root, live_server.url, enroll), "server-a")
    other = build_provider("local", _config(root, live_server.url, enroll), "server-b")
    client = live_server.client()

    created = provider.create(InstanceSpec(name="loc-1", flavor="local", region="local",
                                           tags={"batch": "b1"}))
    try:
        assert created.status == "running" and created.name == "loc-1"
        assert created.tags == {"batch": "b1", OWNER_TAG: "server-a"}
        pid = int(created.instance_id.split("-")[0])

        def registered() -> list:
            return [w for w in client.worker_list(name="loc-1") if w["status"] == "running"]

        try:
            wait_until(registered, timeout=60, what="the worker to register")
        except AssertionError:
            log = (root / "loc-1" / "worker.log").read_text(errors="replace")
            raise AssertionError(f"worker did not register; its log:\n{log[-3000:]}") from None

        # the token travels in the environment, never on the command line
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode()
        assert enroll not in cmdline and "--token" not in cmdline
        environ = Path(f"/proc/{pid}/environ").read_bytes().decode().split("\0")
        assert f"SCITQ_BENCH_TOKEN={enroll}" in environ
        assert not any(item.startswith("SCITQ_BENCH_SERVER=") for item in environ)

        state = provider.state(created.instance_id, "local")
        assert state.status == "running" and state.name == "loc-1"
        owned = provider.list_owned()
        assert [i.instance_id for i in owned] == [created.instance_id]
        assert other.list_owned() == []  # another server's identity sees none of ours
        registry = json.loads((root / REGISTRY).read_text())
        assert created.instance_id in registry and enroll not in json.dumps(registry)
        with pytest.raises(InvalidInput):  # one running worker per name
            provider.create(InstanceSpec(name="loc-1", flavor="local", region="local"))

        started = time.monotonic()
        provider.delete(created.instance_id, "local")
        assert time.monotonic() - started < 15
        assert start_time(pid) is None
        assert provider.state(created.instance_id, "local").status == "gone"
        assert provider.list_owned() == []
        provider.delete(created.instance_id, "local")  # idempotent
    finally:
        provider.delete(created.instance_id, "local")


def test_a_killed_worker_is_gone_and_forgotten(tmp_path: Path) -> None:
    """A worker that cannot reach its server keeps retrying; killed from outside, it is
    gone, and list_owned forgets it."""
    provider = LocalProvider(_config(tmp_path), "me")
    created = provider.create(InstanceSpec(name="lost", flavor="local", region="local"))
    pid = int(created.instance_id.split("-")[0])
    try:
        assert provider.state(created.instance_id, "local").status == "running"
        os.killpg(pid, 9)
        wait_until(lambda: provider.state(created.instance_id, "local").status == "gone",
                   timeout=10, what="the worker to be gone")
        assert provider.list_owned() == []
        assert created.instance_id not in json.loads((tmp_path / REGISTRY).read_text())
    finally:
        provider.delete(created.instance_id, "local")


def test_a_reused_pid_is_not_ours(tmp_path: Path) -> None:
    provider = LocalProvider(_config(tmp_path), "me")
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"],
                               start_new_session=True)
    try:
        forged = f"{process.pid}-1"  # same pid, another start time
        assert provider.state(forged, "local").status == "gone"
        provider.delete(forged, "local")
        assert process.poll() is None  # not signalled
    finally:
        process.kill()
        process.wait()
