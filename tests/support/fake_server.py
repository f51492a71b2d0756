"""The server's worker protocol in memory, for fast tests of the worker agent.

``FakeServer`` keeps workers, tasks, executions, signals, logs and stored files in
dicts; ``FakeServer.client()`` is the subset of ``scitq_bench.client.api.Client`` the
agent calls (``worker_register``, ``claim``, ``heartbeat``, ``report_and_claim``,
``report``, ``worker_evicted``, ``log_append``, ``file_list``, ``file_put``, the
``request`` that streams a stored file, ``with_own_pool``, ``set_token``). Answers and
refusals follow the server's endpoints (``scitq_bench.server.api.workers``, the
executions' logs and the files endpoints): bodies are checked with the server's own
schemas, reports are refused as the server refuses them, claims and heartbeats long-poll
and wake when there is something for them. No HTTP, no database: a test of the agent's
logic runs in milliseconds.

Tests act as users and as the server's background work (``add_task``, ``signal``,
``delete_task``, ``lose``, ``update_worker``, ``hold_reports``) and wait on its state
with ``wait_for``, which wakes at every change instead of polling.
"""

from __future__ import annotations

import copy
import itertools
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import IO, Any, TypeVar

from pydantic import ValidationError

from scitq_bench.exceptions import (
    Conflict,
    Forbidden,
    InvalidInput,
    NotFound,
    ServerUnreachable,
    Unauthorized,
)
from scitq_bench.server.queue.transitions import EXECUTION_TRANSITIONS
from scitq_bench.server.schemas import Heartbeat, WorkerRegister, WorkerReport
from scitq_bench.states import LIVE_EXECUTION_VALUES

T = TypeVar("T")

# What a report may move an execution to, and the executions still live: the server's
# own sets (``queue.transitions``, ``states``), as the plain strings the fake stores.
TRANSITIONS: dict[str, frozenset[str]] = {
    current.value: frozenset(target.value for target in targets)
    for current, targets in EXECUTION_TRANSITIONS.items()
}
LIVE = frozenset(LIVE_EXECUTION_VALUES)
ADMIN_TOKEN = "admin-token"
# the fields of a claimed execution (``scheduling.task_snapshot``), with their defaults
SNAPSHOT: dict[str, Any] = {
    "name": None, "command": "true", "shell": False, "container": None,
    "container_options": None, "network": False, "inputs": [], "resources": [],
    "output": None, "download_timeout": None, "run_timeout": None, "cpu": None, "mem": None,
    "gpu": None, "layout": None, "score_keys": None,
}


@dataclass
class TaskRecord:
    id: int
    snapshot: dict[str, Any]
    retry: int = 0
    status: str = "pending"
    retries_used: int = 0
    losses: int = 0


@dataclass
class ExecutionRecord:
    id: int
    task_id: int
    worker_id: int | None
    payload: dict[str, Any]
    status: str = "pending"
    values: dict[str, Any] = field(default_factory=dict)  # what the reports said
    statuses: list[str] = field(default_factory=list)  # every status it took, in order
    via: str = "claim"  # claimed by a claim, or by the report that freed its slot


@dataclass
class WorkerRecord:
    id: int
    name: str
    token: str
    concurrency: int
    prefetch: int
    batch: str | None
    registered: dict[str, Any]
    status: str = "running"
    stats: dict[str, Any] = field(default_factory=dict)
    changes: int = 0  # bumped by what a waiting heartbeat must hear about at once
    notice: str | None = None  # the spot interruption notice, once evicted


@dataclass
class SignalRecord:
    id: int
    execution_id: int
    signal: str
    acknowledged: bool = False


class FakeServer:
    """Everything the server holds, behind one condition that every change notifies."""

    def __init__(self, lease_seconds: float = 30.0, claim_max_wait: float = 20.0) -> None:
        self.lease_seconds = lease_seconds
        self.claim_max_wait = claim_max_wait
        self.cond = threading.Condition()
        self.workers: dict[int, WorkerRecord] = {}
        self.tasks: dict[int, TaskRecord] = {}
        self.executions: dict[int, ExecutionRecord] = {}
        self.signals: dict[int, SignalRecord] = {}
        self.logs: dict[tuple[int, str], bytearray] = {}
        self.files: dict[str, bytes] = {}
        self.reports: list[list[dict[str, Any]]] = []  # every report's events, in order
        self.refusals: list[dict[str, Any]] = []  # every refused event's result
        self.calls: dict[str, int] = {}  # protocol calls by name
        self.unreachable = False  # every protocol call fails as if the server were down
        self.closed = False
        self._reports_held = False
        self.reports_waiting = 0  # reports held by ``hold_reports``
        self._tokens: dict[str, int] = {}
        self._ids = itertools.count(1)

    # -- what users and the server's background work do -----------------------------------

    def client(self, token: str = ADMIN_TOKEN) -> FakeClient:
        return FakeClient(self, token)

    def add_task(self, command: str, *, retry: int = 0, **fields: Any) -> int:
        """Queue a task; ``fields`` are those of a claimed execution (``SNAPSHOT``)."""
        unknown = set(fields) - set(SNAPSHOT)
        assert not unknown, f"not a task field: {unknown}"
        with self.cond:
            task = TaskRecord(next(self._ids), {**copy.deepcopy(SNAPSHOT), **fields,
                                              "command": command}, retry=retry)
            self.tasks[task.id] = task
            self.cond.notify_all()
            return task.id

    def signal(self, task_id: int, kind: str) -> int:
        """Signal the task's live execution (pause, resume, stop, kill); its signal id."""
        with self.cond:
            execution = self.live_execution(task_id)
            assert execution is not None and execution.worker_id is not None
            signal = SignalRecord(next(self._ids), execution.id, kind)
            self.signals[signal.id] = signal
            self._changed(execution.worker_id)
            return signal.id

    def delete_task(self, task_id: int) -> None:
        """The task and its executions are gone: the worker hears it from a heartbeat."""
        with self.cond:
            self.tasks.pop(task_id)
            for execution in [e for e in self.executions.values() if e.task_id == task_id]:
                del self.executions[execution.id]
                if execution.worker_id is not None:
                    self._changed(execution.worker_id)

    def lose(self, execution_id: int) -> None:
        """What the reaper does to an execution whose lease expired: lost, its task
        queued again without spending a retry. The worker is not told (it learns from
        a refused report or its next heartbeat)."""
        with self.cond:
            execution = self.executions[execution_id]
            self._move(execution, "lost", {"error": "lease expired"})
            task = self.tasks[execution.task_id]
            task.status, task.losses = "pending", task.losses + 1
            self.cond.notify_all()

    def update_worker(self, worker_id: int, **fields: Any) -> None:
        """Change status, concurrency or prefetch, as ``PATCH /workers/<id>`` does."""
        with self.cond:
            worker = self.workers[worker_id]
            for name, value in fields.items():
                assert name in ("status", "concurrency", "prefetch"), name
                setattr(worker, name, value)
            self._changed(worker_id)

    def hold_reports(self) -> None:
        """Reports wait (in the server, as a slow request would) until ``release_reports``."""
        with self.cond:
            self._reports_held = True

    def release_reports(self) -> None:
        with self.cond:
            self._reports_held = False
            self.cond.notify_all()

    def close(self) -> None:
        """Answer every waiting long poll now, and every later one at once."""
        with self.cond:
            self.closed = True
            self._reports_held = False
            self.cond.notify_all()

    # -- what tests read ---------------------------------------------------------------------

    def wait_for(self, condition: Callable[[], T | None], timeout: float = 5.0,
                 what: str = "condition") -> T:
        """Wait until ``condition()`` (called with the state locked) is truthy; woken by
        every change, so it never sleeps longer than needed."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while not (value := condition()):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"{what} not reached within {timeout} s")
                self.cond.wait(remaining)
            return value

    def live_execution(self, task_id: int) -> ExecutionRecord | None:
        found = [e for e in self.executions.values() if e.task_id == task_id
                 and e.status in LIVE]
        return found[-1] if found else None

    def executions_of(self, task_id: int) -> list[ExecutionRecord]:
        with self.cond:
            return [e for e in self.executions.values() if e.task_id == task_id]

    def last_execution(self, task_id: int) -> ExecutionRecord:
        return self.executions_of(task_id)[-1]

    def log(self, execution_id: int, stream: str = "stdout") -> bytes:
        with self.cond:
            return bytes(self.logs.get((execution_id, stream), b""))

    def held_by(self, worker_id: int) -> int:
        """Live executions of the worker, as the server counts them for claims."""
        return sum(1 for e in self.executions.values()
                   if e.worker_id == worker_id and e.status in LIVE)

    # -- the protocol ------------------------------------------------------------------------

    def call(self, name: str, token: str | None, worker_id: int | None = None) -> None:
        """Count the call; refuse it as the server would (down, bad token, other worker)."""
        with self.cond:
            self.calls[name] = self.calls.get(name, 0) + 1
            self.cond.notify_all()
            if self.unreachable:
                raise ServerUnreachable(f"fake server: {name} while unreachable")
            if worker_id is None:
                return
            owner = self._tokens.get(token or "")
            if owner is None:
                raise Unauthorized("a valid token is required")
            if owner != worker_id:
                raise Forbidden(f"this token belongs to worker {owner}")

    def register(self, fields: dict[str, Any]) -> dict[str, Any]:
        body = _valid(WorkerRegister, fields).model_dump()
        with self.cond:
            worker = next((w for w in self.workers.values() if w.name == body["name"]), None)
            token = f"worker-token-{next(self._ids)}"
            if worker is None:
                worker = WorkerRecord(next(self._ids), body["name"], token, body["concurrency"],
                                    body["prefetch"], body["batch"], body)
                self.workers[worker.id] = worker
            else:  # same name: take over the record; what it held is lost
                self._tokens.pop(worker.token, None)
                for execution in self._live_of(worker.id):
                    self._move(execution, "lost", {"error": "the worker registered again"})
                    self.tasks[execution.task_id].status = "pending"
                worker.token, worker.status, worker.registered = token, "running", body
                worker.concurrency, worker.prefetch = body["concurrency"], body["prefetch"]
            self._tokens[token] = worker.id
            self.cond.notify_all()
            return {"worker": self._worker_dict(worker), "token": token,
                    "lease_seconds": self.lease_seconds}

    def claim(self, worker_id: int, max_count: int, wait: float) -> list[dict[str, Any]]:
        if max_count < 1:
            raise InvalidInput("max: at least 1")
        deadline = time.monotonic() + min(wait, self.claim_max_wait)
        with self.cond:
            while True:
                claimed = self._claim_in(worker_id, max_count, "claim")
                remaining = deadline - time.monotonic()
                if claimed or remaining <= 0 or self.closed:
                    return claimed
                self.cond.wait(remaining)

    def heartbeat(self, worker_id: int, body: dict[str, Any], wait: float) -> dict[str, Any]:
        beat = _valid(Heartbeat, body)
        deadline = time.monotonic() + min(wait, self.claim_max_wait)
        with self.cond:
            worker = self.workers[worker_id]
            seen = worker.changes
            answer = self._beat(worker, beat.executions, beat.acknowledged_signals, beat.stats)
            if answer["signals"] or answer["drop"]:
                return answer
            while not self.closed and worker.changes == seen:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return answer
                self.cond.wait(remaining)
            return self._beat(worker, beat.executions, [], beat.stats)

    def report(self, worker_id: int, events: Sequence[dict[str, Any]],
               claim: int) -> dict[str, Any]:
        checked = _valid(WorkerReport, {"events": list(events)}).events
        with self.cond:
            if self._reports_held:
                self.reports_waiting += 1
                self.cond.notify_all()
                while self._reports_held:
                    self.cond.wait()
                self.reports_waiting -= 1
            self.reports.append([dict(event) for event in events])
            results = []
            for event, body in zip(checked, events, strict=True):
                error = self._refusal(worker_id, event.execution_id, event.status,
                                      event.duration is not None)
                results.append({"execution_id": event.execution_id, "ok": error is None,
                                "error": error})
                if error is None:
                    self._apply(self.executions[event.execution_id], event.status, body)
                else:
                    self.refusals.append(results[-1])
            answer: dict[str, Any] = {"results": results}
            if claim:
                answer["executions"] = self._claim_in(worker_id, claim, "report")
            self.cond.notify_all()
            return answer

    def evicted(self, worker_id: int, notice: str) -> dict[str, Any]:
        with self.cond:
            worker = self.workers[worker_id]
            worker.status, worker.notice = "evicted", notice
            requeued = 0
            for execution in self._live_of(worker_id):
                self._move(execution, "lost",
                           {"error": f"the worker was reclaimed by its provider: {notice}"})
                task = self.tasks[execution.task_id]
                task.status, task.losses = "pending", task.losses + 1
                requeued += 1
            self.cond.notify_all()
            return {"requeued": requeued}

    def log_append(self, token: str | None, execution_id: int, stream: str, offset: int,
                   data: bytes) -> int:
        with self.cond:
            execution = self.executions.get(execution_id)
            if execution is None:
                raise NotFound(f"execution {execution_id} not found")
            if execution.worker_id is None:
                raise Conflict(f"execution {execution_id} has no worker")
            if self._tokens.get(token or "") != execution.worker_id:
                raise Forbidden("this token may not do that")
            log = self.logs.setdefault((execution_id, stream), bytearray())
            if offset > len(log):
                raise Conflict(f"log offset {offset} is past the end ({len(log)}) of {stream}",
                               details={"expected_offset": len(log)})
            log.extend(data[len(log) - offset:])
            self.cond.notify_all()
            return len(log)

    def file_list(self, prefix: str) -> list[dict[str, Any]]:
        clean = prefix.strip("/")
        with self.cond:
            return [{"path": path, "size": len(data)} for path, data in sorted(self.files.items())
                    if not clean or path == clean or path.startswith(f"{clean}/")]

    def file_get(self, path: str) -> bytes:
        with self.cond:
            if path.strip("/") not in self.files:
                raise NotFound(f"no stored file {path}")
            return self.files[path.strip("/")]

    def file_put(self, path: str, data: bytes) -> dict[str, Any]:
        with self.cond:
            self.files[path.strip("/")] = data
            self.cond.notify_all()
            return {"path": path.strip("/"), "size": len(data)}

    # -- inside (call with ``cond`` held) ------------------------------------------------------

    def _changed(self, worker_id: int) -> None:
        """Something a waiting heartbeat of this worker must answer with now."""
        self.workers[worker_id].changes += 1
        self.cond.notify_all()

    def _live_of(self, worker_id: int) -> list[ExecutionRecord]:
        return [e for e in self.executions.values()
                if e.worker_id == worker_id and e.status in LIVE]

    def _claim_in(self, worker_id: int, max_count: int, via: str) -> list[dict[str, Any]]:
        worker = self.workers[worker_id]
        if worker.status != "running":
            return []
        room = min(max_count, worker.concurrency + worker.prefetch - self.held_by(worker_id))
        picked = [t for t in self.tasks.values() if t.status == "pending"][:max(room, 0)]
        claimed = []
        for task in picked:
            task.status = "assigned"
            execution = ExecutionRecord(next(self._ids), task.id, worker_id,
                                        {"task_id": task.id, **copy.deepcopy(task.snapshot)},
                                        via=via)
            execution.statuses.append("pending")
            self.executions[execution.id] = execution
            attempt = task.retries_used + task.losses + 1
            claimed.append({"execution_id": execution.id, "attempt": attempt,
                            **execution.payload})
        if claimed:
            self.cond.notify_all()
        return claimed

    def _beat(self, worker: WorkerRecord, held: list[int], acknowledged: list[int],
              stats: dict[str, Any]) -> dict[str, Any]:
        for signal_id in acknowledged:
            if signal_id in self.signals:
                self.signals[signal_id].acknowledged = True
        worker.stats = stats
        live = {e.id for e in self._live_of(worker.id)}
        signals = [{"id": s.id, "execution_id": s.execution_id, "signal": s.signal}
                   for s in self.signals.values()
                   if not s.acknowledged and s.execution_id in live]
        self.cond.notify_all()
        return {"status": worker.status, "concurrency": worker.concurrency,
                "prefetch": worker.prefetch, "batch": worker.batch, "signals": signals,
                "drop": [i for i in sorted(set(held)) if i not in live],
                "lease_seconds": self.lease_seconds}

    def _refusal(self, worker_id: int, execution_id: int, status: str,
                 with_duration: bool) -> str | None:
        execution = self.executions.get(execution_id)
        if execution is None:
            return f"execution {execution_id} not found"
        if execution.worker_id != worker_id:
            return f"execution {execution_id} belongs to another worker"
        allowed = TRANSITIONS[execution.status]
        implied = (with_duration and "running" in allowed
                   and status in TRANSITIONS["running"])
        if status in allowed or implied:
            return None
        return f"execution {execution_id} is {execution.status}; it cannot become {status}"

    def _apply(self, execution: ExecutionRecord, status: str, body: dict[str, Any]) -> None:
        self._move(execution, status, {k: v for k, v in body.items()
                                       if k not in ("execution_id", "status", "age")})
        task = self.tasks.get(execution.task_id)
        if task is None or status in LIVE:
            if task is not None:
                task.status = "running" if status == "running" else task.status
            return
        if status == "succeeded":
            task.status = "succeeded"
        elif status == "cancelled":
            task.status = "cancelled"
        elif status == "refused":
            task.status = "pending"
        elif task.retries_used < task.retry:  # failed or timeout: spend a retry
            task.status, task.retries_used = "pending", task.retries_used + 1
        else:
            task.status = "failed"

    def _move(self, execution: ExecutionRecord, status: str, values: dict[str, Any]) -> None:
        execution.status = status
        execution.statuses.append(status)
        execution.values.update(values)

    @staticmethod
    def _worker_dict(worker: WorkerRecord) -> dict[str, Any]:
        return {"id": worker.id, "name": worker.name, "status": worker.status,
                "concurrency": worker.concurrency, "prefetch": worker.prefetch,
                "batch": worker.batch}


def _valid(schema: Any, body: dict[str, Any]) -> Any:
    """The body checked as the server checks it (a refusal is InvalidInput, a 400)."""
    try:
        return schema.model_validate(body)
    except ValidationError as exc:
        raise InvalidInput(f"invalid body: {exc}") from None


class _FakeHttp:
    """The client's HTTP session, as far as the agent touches it."""

    def __init__(self) -> None:
        self.headers: dict[str, str] = {}
        self.closed = False

    def close(self) -> None:
        self.closed = True


class FakeResponse:
    """A streamed download, as ``transfer`` reads it (``iter_content`` in a ``with``)."""

    def __init__(self, data: bytes) -> None:
        self._data = data
        self.raw = object()  # no ``read1``: ``transfer`` reads ``iter_content``
        self.status_code = 200

    def iter_content(self, chunk_size: int = 1 << 16) -> Iterator[bytes]:
        for start in range(0, len(self._data), chunk_size):
            yield self._data[start:start + chunk_size]

    def __enter__(self) -> FakeResponse:
        return self

    def __exit__(self, *exc: object) -> None:
        return None


class FakeClient:
    """The calls of ``Client`` that the worker agent makes, answered by a FakeServer."""

    def __init__(self, server: FakeServer, token: str | None, *, timeout: float = 60.0,
                 retry_for: float = 30.0) -> None:
        self.fake = server
        self.server = "fake://server"
        self.token = token
        self.timeout = timeout
        self.retry_for = retry_for
        self.http = _FakeHttp()

    def with_own_pool(self, size: int = 4) -> FakeClient:
        return FakeClient(self.fake, self.token, timeout=self.timeout, retry_for=self.retry_for)

    def set_token(self, token: str | None) -> None:
        self.token = token

    def worker_register(self, **fields: Any) -> dict[str, Any]:
        self.fake.call("register", self.token)
        return self.fake.register(fields)

    def worker_evicted(self, worker_id: int, notice: str = "") -> dict[str, Any]:
        self.fake.call("evicted", self.token, worker_id)
        return self.fake.evicted(worker_id, notice)

    def heartbeat(self, worker_id: int, *, stats: dict[str, Any], executions: Sequence[int],
                  acknowledged_signals: Sequence[int] = (), wait: float = 0,
                  retry_for: float | None = None) -> dict[str, Any]:
        self.fake.call("heartbeat", self.token, worker_id)
        body = {"stats": stats, "executions": list(executions),
                "acknowledged_signals": list(acknowledged_signals)}
        return self.fake.heartbeat(worker_id, body, wait)

    def claim(self, worker_id: int, max_count: int, wait: float = 0,
              retry_for: float | None = None) -> list[dict[str, Any]]:
        self.fake.call("claim", self.token, worker_id)
        return self.fake.claim(worker_id, max_count, wait)

    def report(self, worker_id: int, events: Sequence[dict[str, Any]],
               retry_for: float | None = None) -> list[dict[str, Any]]:
        return self.report_and_claim(worker_id, events, 0, retry_for=retry_for)[0]

    def report_and_claim(self, worker_id: int, events: Sequence[dict[str, Any]], claim: int,
                         retry_for: float | None = None,
                         ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        self.fake.call("report", self.token, worker_id)
        answer = self.fake.report(worker_id, events, claim)
        return answer["results"], answer.get("executions", [])

    def log_append(self, execution_id: int, stream: str, offset: int, data: bytes,
                   retry_for: float | None = None) -> int:
        self.fake.call("log_append", self.token)
        return self.fake.log_append(self.token, execution_id, stream, offset, data)

    def file_list(self, prefix: str = "") -> list[dict[str, Any]]:
        self.fake.call("file_list", self.token)
        return self.fake.file_list(prefix)

    def file_put(self, path: str, data: bytes | IO[bytes]) -> dict[str, Any]:
        self.fake.call("file_put", self.token)
        return self.fake.file_put(path, data if isinstance(data, bytes) else data.read())

    def request(self, method: str, path: str, *, stream: bool = False,
                timeout: float | None = None, retry_for: float | None = None,
                **unused: Any) -> FakeResponse:
        """Only what ``transfer`` sends: GET /files/<path>."""
        assert method == "GET" and path.startswith("/files/"), (method, path)
        self.fake.call("file_get", self.token)
        return FakeResponse(self.fake.file_get(path[len("/files/"):]))
