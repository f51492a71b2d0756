"""Log buffers and shipping (with a fake client), event reporting and run slots."""

from __future__ import annotations

import os
import threading
import time
from typing import Any

import pytest

from scitq_bench.client.worker.gpus import GpuPool
from scitq_bench.client.worker.held import RunGate
from scitq_bench.client.worker.logship import MARKER, ExecutionLogs, LogFile
from scitq_bench.client.worker.reporter import Event, Reporter
from scitq_bench.exceptions import Conflict, Forbidden, NotFound, ServerUnreachable
from scitq_bench.hostprobe import Gpu
from tests.support.waiting import wait_until


class FakeLogServer:
    """log_append like the server's: skips overlaps, refuses gaps with the offset."""

    def __init__(self) -> None:
        self.logs: dict[tuple[int, str], bytearray] = {}
        self.calls: list[tuple[str, int, int]] = []
        self.fail: Exception | None = None

    def log_append(self, execution_id: int, stream: str, offset: int, data: bytes,
                   retry_for: float | None = None) -> int:
        self.calls.append((stream, offset, len(data)))
        if self.fail is not None:
            raise self.fail
        log = self.logs.setdefault((execution_id, stream), bytearray())
        if offset > len(log):
            raise Conflict("gap", details={"expected_offset": len(log)})
        log.extend(data[len(log) - offset:])
        return len(log)


def _append(log: LogFile, data: bytes) -> None:
    os.write(log.fd, data)


def test_ship_sends_only_new_bytes(tmp_path):
    server = FakeLogServer()
    logs = ExecutionLogs(tmp_path)
    assert logs.ship(server, 1)  # type: ignore[arg-type]
    assert server.calls == []  # nothing written: no request at all
    _append(logs.files["stdout"], b"line 1\n")
    logs.ship(server, 1)  # type: ignore[arg-type]
    _append(logs.files["stdout"], b"line 2\n")
    _append(logs.files["stderr"], b"oops\n")
    logs.ship(server, 1)  # type: ignore[arg-type]
    logs.close()
    assert bytes(server.logs[(1, "stdout")]) == b"line 1\nline 2\n"
    assert bytes(server.logs[(1, "stderr")]) == b"oops\n"
    assert server.calls == [("stdout", 0, 7), ("stdout", 7, 7), ("stderr", 0, 5)]


def test_ship_in_chunks_and_resume_from_expected_offset(tmp_path, monkeypatch):
    monkeypatch.setattr("scitq_bench.client.worker.logship.CHUNK", 4)
    server = FakeLogServer()
    log = LogFile(tmp_path / "stdout.log", "stdout")
    _append(log, b"0123456789")
    log.shipped = 6  # believes more was sent than the server has
    server.logs[(1, "stdout")] = bytearray(b"0123")
    assert log.ship(server, 1)  # type: ignore[arg-type]
    assert bytes(server.logs[(1, "stdout")]) == b"0123456789"
    assert max(size for _, _, size in server.calls) <= 4
    log.close()


def test_unreachable_keeps_bytes_for_later(tmp_path):
    server = FakeLogServer()
    log = LogFile(tmp_path / "stdout.log", "stdout")
    _append(log, b"kept\n")
    server.fail = ServerUnreachable("down")
    with pytest.raises(ServerUnreachable):
        log.ship(server, 1)  # type: ignore[arg-type]
    server.fail = None
    assert log.ship(server, 1)  # type: ignore[arg-type]
    assert bytes(server.logs[(1, "stdout")]) == b"kept\n"
    log.close()


@pytest.mark.parametrize("error", [NotFound("gone"), Forbidden("not yours"), Conflict("no worker")])
def test_execution_gone_stops_shipping(tmp_path, error):
    server = FakeLogServer()
    log = LogFile(tmp_path / "stdout.log", "stdout")
    _append(log, b"x")
    server.fail = error
    assert log.ship(server, 1)  # type: ignore[arg-type]
    assert log.dead
    _append(log, b"y")
    assert log.ship(server, 1)  # type: ignore[arg-type]
    assert len(server.calls) == 1
    log.close()


def test_cap_truncates_with_marker_while_writer_appends(tmp_path):
    server = FakeLogServer()
    log = LogFile(tmp_path / "stdout.log", "stdout", cap=10)
    writer = os.open(tmp_path / "stdout.log", os.O_WRONLY | os.O_APPEND)
    os.write(writer, b"abcdefghijklmnop")
    assert log.enforce_cap() == 10 + len(MARKER)
    os.write(writer, b"more and more")  # the task keeps printing
    log.ship(server, 1)  # type: ignore[arg-type]
    assert bytes(server.logs[(1, "stdout")]) == b"abcdefghij" + MARKER
    assert os.path.getsize(tmp_path / "stdout.log") == 10 + len(MARKER)
    os.close(writer)
    log.close()


def test_flat_memory_for_big_logs(tmp_path):
    """Shipping reads chunk by chunk from disk: a 50 MB log never sits in memory."""
    server = FakeLogServer()
    sizes: list[int] = []
    server.log_append = lambda e, s, o, data, retry_for=None: sizes.append(len(data))  # type: ignore[method-assign]
    log = LogFile(tmp_path / "stdout.log", "stdout")
    block = b"y" * (1 << 20)
    for _ in range(50):
        _append(log, block)
    assert log.ship(server, 1)  # type: ignore[arg-type]
    assert sum(sizes) == 50 << 20 and max(sizes) == 1 << 20
    log.close()


# -- reporter ------------------------------------------------------------------------


class FakeReports:
    def __init__(self) -> None:
        self.batches: list[list[dict[str, Any]]] = []
        self.gate = threading.Event()
        self.gate.set()
        self.down = 0

    def send(self, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
        self.gate.wait(5)
        if self.down:
            self.down -= 1
            raise ServerUnreachable("down")
        self.batches.append(events)
        return [{"execution_id": e["execution_id"], "ok": e["execution_id"] != 99,
                 "error": None} for e in events]


def _reporter(fake: FakeReports, results: list[tuple[int, str, bool]],
              linger: float = 0.05) -> Reporter:
    def record(pairs: list[tuple[Event, dict[str, Any]]]) -> None:
        results.extend((e.execution_id, e.status, r["ok"]) for e, r in pairs)

    reporter = Reporter(fake.send, record, lambda exc: None, linger=linger, max_backoff=0.05)
    threading.Thread(target=reporter.run, daemon=True).start()
    return reporter


def _wait(predicate: Any, timeout: float = 5) -> None:
    wait_until(predicate, timeout=timeout, interval=0.01)


def _sent(fake: FakeReports) -> list[tuple[int, str]]:
    return [(e["execution_id"], e["status"]) for b in fake.batches for e in b]


def test_reporter_batches_while_in_flight_and_keeps_order():
    fake, results = FakeReports(), []
    reporter = _reporter(fake, results)
    fake.gate.clear()
    reporter.put(Event(1, "running"))
    _wait(lambda: reporter.pending() == 1 and not reporter._queue)  # in flight
    reporter.put(Event(1, "succeeded"))
    for i in range(2, 6):
        reporter.put(Event(i, "running"))
    fake.gate.set()
    _wait(lambda: len(results) == 6)
    assert [len(b) for b in fake.batches] == [1, 5]
    assert _sent(fake)[0] == (1, "running") and (1, "succeeded") in _sent(fake)[1:]
    reporter.close()


def test_reporter_sorts_a_batch_by_stage_keeping_each_execution_in_order():
    fake, results = FakeReports(), []
    reporter = _reporter(fake, results)
    fake.gate.clear()
    reporter.put(Event(9, "running"))
    _wait(lambda: not reporter._queue)
    for event in [Event(1, "succeeded"), Event(2, "accepted"), Event(3, "running"),
                  Event(3, "failed"), Event(2, "running"), Event(2, "succeeded")]:
        reporter.put(event)
    fake.gate.set()
    _wait(lambda: len(results) == 7)
    assert fake.batches[1] and [(e["execution_id"], e["status"]) for e in fake.batches[1]] == [
        (2, "accepted"), (3, "running"), (2, "running"),
        (1, "succeeded"), (3, "failed"), (2, "succeeded")]
    reporter.close()


def test_reporter_lingers_while_claimed_executions_are_open():
    fake, results = FakeReports(), []
    reporter = _reporter(fake, results, linger=10)  # far longer than the test's sleeps
    reporter.expect([1, 2])
    reporter.put(Event(1, "running"))
    reporter.put(Event(2, "running"))
    time.sleep(0.15)  # lingering: nothing goes meanwhile
    assert fake.batches == []  # both still open: wait for company
    reporter.put(Event(1, "succeeded"))
    time.sleep(0.1)  # still lingering
    assert fake.batches == []
    assert reporter.finals_pending() == 1
    reporter.put(Event(2, "succeeded"))  # none open any more: go now, not after lingering
    _wait(lambda: len(results) == 4, timeout=5)
    assert len(fake.batches) == 1 and reporter.finals_pending() == 0
    reporter.close()


def test_reporter_sends_a_long_tasks_start_after_the_linger():
    fake, results = FakeReports(), []
    reporter = _reporter(fake, results, linger=0.5)
    reporter.expect([3])
    began = time.monotonic()
    reporter.put(Event(3, "running"))  # a long task: its start goes after the linger
    _wait(lambda: len(results) == 1)
    assert 0.4 < time.monotonic() - began < 2
    reporter.close()


def test_reporter_sends_early_with_enough_finals():
    fake, results = FakeReports(), []
    reporter = _reporter(fake, results, linger=5)
    reporter.enough_finals = 2
    reporter.expect([1, 2, 3])
    for i in (1, 2):
        reporter.put(Event(i, "running"))
        reporter.put(Event(i, "succeeded"))
    _wait(lambda: len(results) == 4, timeout=2)
    reporter.close()


def test_reporter_retries_without_losing_events_and_sends_age():
    fake, results = FakeReports(), []
    fake.down = 3
    reporter = _reporter(fake, results)
    reporter.put(Event(1, "running", at=time.monotonic() - 2))
    reporter.put(Event(1, "failed", fields={"return_code": 1}))
    _wait(lambda: len(results) == 2)
    sent = [e for b in fake.batches for e in b]
    assert [e["status"] for e in sent] == ["running", "failed"]
    assert sent[0]["age"] >= 2 and sent[1]["return_code"] == 1
    reporter.close()


def test_reporter_results_purge_and_close_drains():
    fake, results = FakeReports(), []
    reporter = _reporter(fake, results)
    fake.gate.clear()
    reporter.put(Event(7, "running"))
    _wait(lambda: not reporter._queue)
    reporter.put(Event(8, "running"))
    reporter.put(Event(99, "succeeded"))
    reporter.purge(8)
    reporter.close()
    fake.gate.set()
    _wait(lambda: reporter.pending() == 0 and len(results) == 2)
    assert results == [(7, "running", True), (99, "succeeded", False)]


def test_reporter_truncates_long_errors():
    body = Event(1, "failed", fields={"error": "e" * 20_000}).body(time.monotonic())
    assert len(body["error"]) < 10_000


# -- run gate ------------------------------------------------------------------------


def test_gate_serves_in_order_and_follows_limit():
    gate = RunGate(1)
    order: list[int] = []
    assert gate.acquire(lambda: False)

    def wait_turn(n: int) -> None:
        if gate.acquire(lambda: False):
            order.append(n)

    threads = []
    for n in range(3):
        thread = threading.Thread(target=wait_turn, args=(n,))
        thread.start()
        threads.append(thread)
        _wait(lambda n=n: gate.waiting == n + 1)  # arrived: the next one comes after it
    assert order == []
    gate.set_limit(3)
    _wait(lambda: len(order) == 2)
    gate.release()
    _wait(lambda: len(order) == 3)
    assert order == [0, 1, 2]


def test_gate_waiter_gives_up_when_abandoned():
    gate = RunGate(0)
    abandoned = threading.Event()
    outcome: list[object] = []
    thread = threading.Thread(target=lambda: outcome.append(gate.acquire(abandoned.is_set)))
    thread.start()
    _wait(lambda: gate.waiting == 1)  # in line
    abandoned.set()
    gate.wake()
    thread.join(2)
    assert outcome == [None]


def test_gate_grants_in_claim_order_not_arrival_order():
    """A two-GPU task claimed after a one-GPU task, but ready first, must not jump the
    line: the one-GPU task takes the GPU that is free and the big one waits for both."""
    pool = GpuPool([Gpu(i, "Fake", 1024, None) for i in range(2)])
    gate = RunGate(3, pool)
    first = gate.acquire(lambda: False, gpus=1, place=0)
    assert first is not None and [gpu.index for gpu in first.gpus] == [0]
    granted: dict[str, object] = {}

    looks = [0]  # how often the big one looked at its turn

    def big_abandoned() -> bool:
        looks[0] += 1
        return False

    def wait_turn(name: str, gpus: int, place: int) -> None:
        abandoned = big_abandoned if name == "big" else lambda: False
        granted[name] = gate.acquire(abandoned, gpus=gpus, place=place)

    big = threading.Thread(target=wait_turn, args=("big", 2, 2))
    big.start()
    _wait(lambda: gate.waiting == 1)  # the big one is waiting at the head of the line
    small = threading.Thread(target=wait_turn, args=("small", 1, 1))
    small.start()
    small.join(2)
    assert [gpu.index for gpu in granted["small"].gpus] == [1]  # type: ignore[attr-defined]
    assert "big" not in granted
    before = looks[0]
    gate.release(first)
    _wait(lambda: looks[0] > before)  # woken, it looked again
    # the gate's lock is held from that look until it waits again or is granted
    assert gate.running == 1 and gate.waiting == 1
    assert "big" not in granted  # still one GPU short
    gate.release(granted["small"])  # type: ignore[arg-type]
    big.join(2)
    assert [gpu.index for gpu in granted["big"].gpus] == [0, 1]  # type: ignore[attr-defined]


def test_gate_wakes_only_the_head_of_the_line():
    """A freed slot can only go to the first in line: waking every waiter (dozens on a
    busy worker) at each task's end costs more CPU than a short task."""
    gate = RunGate(1)
    held = gate.acquire(lambda: False)
    checks = [0, 0, 0]
    granted: list[int] = []

    def wait_turn(n: int) -> None:
        def abandoned() -> bool:
            checks[n] += 1
            return False
        if gate.acquire(abandoned, place=n):
            granted.append(n)

    threads = [threading.Thread(target=wait_turn, args=(n,), daemon=True) for n in range(3)]
    for thread in threads:
        thread.start()
    _wait(lambda: all(checks))
    # each looked with the gate's lock held and lets it go only to sleep in line
    assert gate.waiting == 3
    before = list(checks)
    gate.release(held)
    _wait(lambda: granted == [0])
    _wait(lambda: checks[1] == before[1] + 1)  # the new head looked
    time.sleep(0.05)  # time for a wrongly woken waiter to look too
    assert checks[1] == before[1] + 1  # once
    assert checks[2] == before[2]  # the one behind it slept through
    gate.release()
    gate.release()
    for thread in threads:
        thread.join(2)
    assert granted == [0, 1, 2]


def _second_in_line(gate: RunGate, granted: list[int]) -> threading.Thread:
    """The execution claimed second (place 1), waiting at the gate before the first."""
    second = threading.Thread(target=lambda: granted.append(
        1 if gate.acquire(lambda: False, place=1) else -1), daemon=True)
    second.start()
    # in line (asleep: it lets the gate's lock go only to wait), or (wrongly) through
    _wait(lambda: gate.waiting == 1 or granted)
    return second


def test_gate_keeps_the_turn_of_executions_announced_at_claim_time():
    """Threads may start in any order: the one claimed second must not take the slot
    while the first, which has nothing to download, is on its way."""
    gate = RunGate(1)
    gate.expect([0, 1])
    granted: list[int] = []
    second = _second_in_line(gate, granted)
    assert granted == []  # waiting for the first, though the slot is free
    first = gate.acquire(lambda: False, place=0)
    assert first is not None
    gate.release(first)
    second.join(2)
    assert granted == [1]


def test_gate_forgets_an_execution_that_ended_before_its_turn():
    gate = RunGate(1)
    gate.expect([0, 1])
    granted: list[int] = []
    second = _second_in_line(gate, granted)
    assert granted == []
    gate.forget(0)  # e.g. it failed before running: unknown layout
    second.join(2)
    assert granted == [1]
