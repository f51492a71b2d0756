"""A typed HTTP client for the scitq_bench API.

A server that cannot be reached is tried again with exponential backoff, and one that
answers 503 with ``Retry-After`` (a busy database) again after that delay, for up to
``retry_for`` seconds in all (``SCITQ_BENCH_RETRY_SECONDS``); the first retry of an
outage is logged once on the ``scitq_bench.client`` logger. Then the call fails with a
short ``ServerUnreachable`` (or ``Busy``) naming the URL and the cause. Error answers
are raised as the project's own exceptions (``scitq_bench.exceptions``) carrying the
server's message.
"""

from __future__ import annotations

import copy
import functools
import logging
import random
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import requests
from requests.adapters import HTTPAdapter

from scitq_bench.client.bench import BenchClientMixin
from scitq_bench.client.recruit import RecruitClientMixin
from scitq_bench.exceptions import (
    ERRORS_BY_CODE,
    Busy,
    InvalidInput,
    NotFound,
    ScitqBenchError,
    ServerUnreachable,
    TasksFailed,
)
from scitq_bench.settings import load_client_settings
from scitq_bench.states import FINAL_TASK_VALUES, TaskStatus

if TYPE_CHECKING:
    from scitq_bench.client.files import Files

API = "/api/v1"
DEFAULT_RETRY_SECONDS = 30.0  # rides over a server restart; overridden by the settings
FIRST_RETRY_DELAY = 0.2
MAX_RETRY_DELAY = 5.0
MAX_CONNECT_TIMEOUT = 10.0  # a host that drops packets fails a try in this time
log = logging.getLogger("scitq_bench.client")


def server_session(server: str, pool: int | None = None) -> requests.Session:
    """An HTTP session for one server. The proxy and CA-bundle settings of the
    environment are read once, for that server, and then frozen (``trust_env`` off):
    requests would otherwise scan the environment and look for a .netrc file at every
    call, and a .netrc entry for the server's host would replace the bearer token."""
    session = requests.Session()
    found = session.merge_environment_settings(server, {}, None, None, None)
    session.trust_env = False
    session.proxies.update(found["proxies"])
    session.verify = found["verify"]
    session.headers["User-Agent"] = "scitq-bench-client"
    if pool is not None:
        adapter = HTTPAdapter(pool_connections=1, pool_maxsize=max(pool, 4))
        session.mount("http://", adapter)
        session.mount("https://", adapter)
    return session


class Client(BenchClientMixin, RecruitClientMixin):
    """``Client()`` reads SCITQ_BENCH_SERVER/SCITQ_BENCH_TOKEN or the config file that
    ``scitq-bench server init`` wrote."""

    def __init__(
        self,
        server: str | None = None,
        token: str | None = None,
        *,
        timeout: float = 60.0,
        retry_for: float | None = None,
    ) -> None:
        """``retry_for``: seconds to keep trying a server that is down or busy
        [default: SCITQ_BENCH_RETRY_SECONDS, else the config file's ``retry_seconds``,
        else 30]; 0 tries once."""
        settings = load_client_settings(server, token, retry_for)
        self.server = settings.server
        self.timeout = timeout
        self.retry_for = (DEFAULT_RETRY_SECONDS if settings.retry_seconds is None
                          else settings.retry_seconds)
        self.http = server_session(self.server)
        self._retrying = False  # an outage was announced and has not ended yet
        self.set_token(settings.token)

    def with_own_pool(self, size: int = 4) -> Client:
        """A copy with a connection pool of its own (``size`` connections): long polls
        and parallel transfers must not queue behind each other in one pool."""
        clone = copy.copy(self)
        clone.http = server_session(self.server, pool=size)
        clone.http.headers.update(self.http.headers)
        return clone

    def set_token(self, token: str | None) -> None:
        self.token = token
        if token:
            self.http.headers["Authorization"] = f"Bearer {token}"
        else:
            self.http.headers.pop("Authorization", None)

    # -- transport ---------------------------------------------------------------

    def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: dict[str, Any] | None = None,
        data: bytes | IO[bytes] | None = None,
        stream: bool = False,
        timeout: float | None = None,
        retry_for: float | None = None,
    ) -> requests.Response:
        """Send one request; try again, for up to ``retry_for`` seconds, while the
        server cannot be reached or answers that it is busy."""
        url = f"{self.server}{API}{path}"
        clean = {k: _param(v) for k, v in (params or {}).items() if v is not None}
        budget = self.retry_for if retry_for is None else retry_for
        read_timeout = timeout or self.timeout
        started, tries, delay = time.monotonic(), 0, FIRST_RETRY_DELAY
        while True:
            tries += 1
            if hasattr(data, "seek"):
                data.seek(0)  # type: ignore[union-attr]
            try:
                response = self.http.request(
                    method, url, json=json, params=clean, data=data, stream=stream,
                    timeout=(min(read_timeout, MAX_CONNECT_TIMEOUT), read_timeout),
                )
            except (requests.ConnectionError, requests.exceptions.ChunkedEncodingError) as exc:
                # connect timeouts included, and an answer cut short (the server died
                # while sending it): the call may have taken effect, as when the
                # connection broke after the request was sent; protocol calls are
                # idempotent or reconciled by the next heartbeat
                cause = _cause(exc)
                left = budget - (time.monotonic() - started)
                if left <= 0:
                    raise ServerUnreachable(
                        f"cannot reach {self.server}: {cause} "
                        f"({_tries(tries)} in {time.monotonic() - started:.1f} s)") from None
                self._announce(f"cannot reach {self.server}: {cause}", budget)
                time.sleep(min(delay, left))
                delay = min(delay * 2, MAX_RETRY_DELAY)
                continue
            except requests.Timeout:
                raise ServerUnreachable(
                    f"{self.server} did not answer {method} {path} within {read_timeout:g} s"
                ) from None
            except requests.RequestException as exc:  # nothing of requests leaks out
                raise ServerUnreachable(
                    f"{method} {path} to {self.server} failed: {_cause(exc)}") from None
            wait = _retry_after(response)
            if wait is None or time.monotonic() - started + wait > budget:
                break
            response.close()
            self._announce(f"{self.server} is busy", budget)
            time.sleep(wait * random.uniform(1.0, 1.5))  # spread the herd out
        if self._retrying:
            self._retrying = False
            log.info("%s answers again", self.server)
        if response.status_code >= 400:
            raise _error_from(response)
        return response

    def _announce(self, what: str, budget: float) -> None:
        """Say once per outage that we are retrying (the caller may be a person)."""
        if not self._retrying:
            self._retrying = True
            log.warning("%s; retrying for up to %g s", what, budget)

    def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        return self.request(method, path, **kwargs).json()

    # -- tasks -------------------------------------------------------------------

    def task_create(self, command: str, **options: Any) -> dict[str, Any]:
        """Create one task; options are the fields of TaskCreate (batch, name, shell,
        container, inputs, resources, output, retry, requires, ...)."""
        return self.tasks_create([{"command": command, **options}])[0]

    def tasks_create(self, tasks: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
        """Create many tasks in one transaction: all of them or, on any error, none."""
        return self._json("POST", "/tasks", json={"tasks": list(tasks)})["tasks"]

    def task_list(
        self,
        *,
        batch: str | None = None,
        status: str | Sequence[str] | None = None,
        name: str | None = None,
        ids: Sequence[int] | None = None,
        worker: int | None = None,
        limit: int | None = None,
        offset: int | None = None,
        key: str | None = None,
        newest_first: bool = False,
    ) -> list[dict[str, Any]]:
        """Tasks matching every filter given; ``name`` treats % as a wildcard (see
        ``task_find`` for an exact name), ``key`` is the task's key in its batch."""
        return self.task_page(batch=batch, status=status, name=name, ids=ids, worker=worker,
                              limit=limit, offset=offset, key=key,
                              newest_first=newest_first)[0]

    def task_page(
        self,
        *,
        batch: str | None = None,
        status: str | Sequence[str] | None = None,
        name: str | None = None,
        ids: Sequence[int] | None = None,
        worker: int | None = None,
        limit: int | None = None,
        offset: int | None = None,
        key: str | None = None,
        newest_first: bool = False,
    ) -> tuple[list[dict[str, Any]], int | None]:
        """One page of ``task_list`` and how many tasks match in all (None unless a
        ``limit`` is given: only a page has a total worth counting)."""
        params = {"batch": batch, "status": status, "name": name, "id": ids,
                  "worker": worker, "limit": limit, "offset": offset, "key": key,
                  "order": "newest" if newest_first else None}
        answer = self._json("GET", "/tasks", params=params)
        return answer["tasks"], answer.get("total")

    def task_find(self, name: str, batch: str | None = None) -> dict[str, Any]:
        """The one task named exactly ``name`` (in ``batch`` if given): NotFound when
        none is, InvalidInput (its details hold ``task_ids``) when several are."""
        matches = [t for t in self.task_list(name=name, batch=batch) if t["name"] == name]
        where = f" in batch {batch!r}" if batch is not None else ""
        if not matches:
            raise NotFound(f"no task named {name!r}{where}", details={"name": name})
        if len(matches) > 1:
            ids = sorted(t["id"] for t in matches)
            raise InvalidInput(
                f"{len(ids)} tasks are named {name!r}{where} (ids {_listed(ids)}): "
                "name one by its id" + ("" if batch is not None else " or narrow by batch"),
                details={"name": name, "task_ids": ids})
        return matches[0]

    def task_get(self, task_id: int) -> dict[str, Any]:
        return self._json("GET", f"/tasks/{task_id}")

    def task_update(self, task_id: int, **fields: Any) -> dict[str, Any]:
        return self._json("PATCH", f"/tasks/{task_id}", json=fields)

    def task_delete(self, task_id: int) -> None:
        self.request("DELETE", f"/tasks/{task_id}")

    def task_relaunch(self, task_id: int) -> dict[str, Any]:
        return self._json("POST", f"/tasks/{task_id}/relaunch")

    def task_signal(self, task_id: int, signal: str) -> dict[str, Any]:
        return self._json("POST", f"/tasks/{task_id}/signal", json={"signal": signal})

    def task_executions(self, task_id: int) -> list[dict[str, Any]]:
        return self._json("GET", f"/tasks/{task_id}/executions")["executions"]

    def task_output(
        self, task_id: int, stream: str = "stdout", offset: int = 0,
        limit: int | None = None, wait: float = 0,
    ) -> tuple[bytes, int, str]:
        """Bytes of the latest execution's log from ``offset``; returns
        (data, next offset, execution status)."""
        response = self.request(
            "GET", f"/tasks/{task_id}/output",
            params={"stream": stream, "offset": offset, "limit": limit, "wait": wait or None},
            timeout=self.timeout + wait,
        )
        return _log_answer(response, offset)

    def join(
        self,
        tasks: Iterable[dict[str, Any] | int],
        *,
        retry: int = 0,
        interval: float = 1.0,
        progress: bool = False,
        timeout: float | None = None,
        check: bool = False,
    ) -> list[dict[str, Any]]:
        """Wait until every task is finished; relaunch each task that failed on its own
        up to ``retry`` times (the dependents that failed with it come back with it).
        Returns the tasks' final states; ``NotFound`` names any id that does not exist.
        With ``check``, ``TasksFailed`` names the tasks that ended failed or cancelled."""
        wanted = [t if isinstance(t, int) else t["id"] for t in tasks]
        ids = list(dict.fromkeys(wanted))
        relaunched: dict[int, int] = {}
        deadline = None if timeout is None else time.monotonic() + timeout
        display = _Progress(len(ids)) if progress else None
        try:
            while True:
                states = self._states_of(ids)
                for task_id in self._failed_on_their_own(states):
                    if relaunched.get(task_id, 0) < retry:
                        relaunched[task_id] = relaunched.get(task_id, 0) + 1
                        states[task_id] = self.task_relaunch(task_id)
                done = [s for s in states.values() if s["status"] in FINAL_TASK_VALUES]
                if display:
                    display.update(len(done), states.values())
                if len(done) == len(ids):
                    final = [states[i] for i in wanted]
                    if check:
                        _raise_failed(states[i] for i in ids)
                    return final
                if deadline is not None and time.monotonic() > deadline:
                    raise TimeoutError(f"{len(ids) - len(done)} task(s) not finished in time")
                time.sleep(interval)
        finally:
            if display:
                display.close()

    def _states_of(self, ids: list[int]) -> dict[int, dict[str, Any]]:
        """Every task of ``ids`` by id; NotFound naming those that do not exist (a wait
        for them would never end)."""
        states = {t["id"]: t for t in self._tasks_by_id(ids)}
        missing = [i for i in ids if i not in states]
        if missing:
            raise NotFound(f"task(s) not found: {_listed(missing)}",
                           details={"task_ids": missing})
        return states

    def _failed_on_their_own(self, states: dict[int, dict[str, Any]]) -> list[int]:
        """The failed tasks none of whose prerequisites failed or was cancelled: the
        others failed because of one, and relaunching it brings them back."""
        failed = [s for s in states.values() if s["status"] == TaskStatus.FAILED.value]
        status = {task_id: state["status"] for task_id, state in states.items()}
        outside = sorted({p for s in failed for p in s.get("requires", ()) if p not in status})
        if outside:
            status.update({t["id"]: t["status"] for t in self._tasks_by_id(outside)})
        broken = {TaskStatus.FAILED.value, TaskStatus.CANCELLED.value}
        return [s["id"] for s in failed
                if not any(status.get(p) in broken for p in s.get("requires", ()))]

    def _tasks_by_id(self, ids: list[int]) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        for start in range(0, len(ids), 500):
            found.extend(self.task_list(ids=ids[start:start + 500]))
        return found

    # -- batches -----------------------------------------------------------------

    def batch_list(self, name: str | None = None) -> list[dict[str, Any]]:
        return self._json("GET", "/batches", params={"name": name})["batches"]

    def batch_find(self, name: str) -> dict[str, Any]:
        """The batch named exactly ``name`` (the server's filter treats % as a
        wildcard), or NotFound."""
        found = [b for b in self.batch_list(name=name) if b["name"] == name]
        if not found:
            raise NotFound(f"batch {name!r} not found", details={"name": name})
        return found[0]

    def _batch_id(self, batch: int | str) -> int:
        """A batch given by id (an int) or by name (a str, even one of digits)."""
        if isinstance(batch, str):
            return int(self.batch_find(batch)["id"])
        return batch

    def batch_get(self, batch: int | str) -> dict[str, Any]:
        """``batch``: its id, or its name."""
        return self._json("GET", f"/batches/{self._batch_id(batch)}")

    def batch_create(self, name: str, priority: int = 0, network: bool = False) -> dict[str, Any]:
        return self._json("POST", "/batches",
                          json={"name": name, "priority": priority, "network": network})

    def batch_update(self, batch: int | str, priority: int | None = None, *,
                     network: bool | None = None, **budget: float | None) -> dict[str, Any]:
        """Change the priority of a batch (by id or name), whether its tasks may use
        the network, and/or its ``budget`` (give ``budget=None`` to remove it)."""
        fields: dict[str, Any] = {key: value for key, value in (
            ("priority", priority), ("network", network)) if value is not None}
        if set(budget) - {"budget"}:
            raise TypeError(f"unexpected arguments: {', '.join(sorted(set(budget) - {'budget'}))}")
        fields.update(budget)
        return self._json("PATCH", f"/batches/{self._batch_id(batch)}", json=fields)

    def batch_stop(self, batch: int | str, signal: str = "none",
                   workers: bool = False) -> dict[str, Any]:
        """Pause a batch (by id or name); ``signal`` says what to do to its running
        tasks, ``workers`` also pauses its workers."""
        return self._json("POST", f"/batches/{self._batch_id(batch)}/stop",
                          json={"signal": signal, "workers": workers})

    def batch_go(self, batch: int | str) -> dict[str, Any]:
        return self._json("POST", f"/batches/{self._batch_id(batch)}/go")

    def batch_delete(self, batch: int | str) -> dict[str, Any]:
        return self._json("DELETE", f"/batches/{self._batch_id(batch)}")

    # -- workers (admin side) ------------------------------------------------------

    def worker_list(self, name: str | None = None, status: str | Sequence[str] | None = None) -> list[dict[str, Any]]:
        return self._json("GET", "/workers", params={"name": name, "status": status})["workers"]

    def worker_get(self, worker_id: int) -> dict[str, Any]:
        return self._json("GET", f"/workers/{worker_id}")

    def worker_update(self, worker_id: int, **fields: Any) -> dict[str, Any]:
        return self._json("PATCH", f"/workers/{worker_id}", json=fields)

    def worker_delete(self, worker_id: int, force: bool = False) -> None:
        self.request("DELETE", f"/workers/{worker_id}", params={"force": force or None})

    # -- worker protocol -----------------------------------------------------------

    def worker_register(self, **fields: Any) -> dict[str, Any]:
        """Returns {"worker", "token", "lease_seconds"}; use the token from then on."""
        return self._json("POST", "/workers", json=fields)

    def worker_evicted(self, worker_id: int, notice: str = "") -> dict[str, Any]:
        """Tell the server the provider takes this machine back (spot interruption)."""
        return self._json("POST", f"/workers/{worker_id}/evicted", params={"notice": notice},
                          retry_for=10.0)

    def heartbeat(
        self, worker_id: int, *, stats: dict[str, Any], executions: Sequence[int],
        acknowledged_signals: Sequence[int] = (), wait: float = 0, retry_for: float | None = None,
    ) -> dict[str, Any]:
        return self._json(
            "POST", f"/workers/{worker_id}/heartbeat",
            json={"stats": stats, "executions": list(executions),
                  "acknowledged_signals": list(acknowledged_signals)},
            params={"wait": wait or None}, timeout=self.timeout + wait, retry_for=retry_for,
        )

    def claim(self, worker_id: int, max_count: int, wait: float = 0,
              retry_for: float | None = None) -> list[dict[str, Any]]:
        return self._json(
            "POST", f"/workers/{worker_id}/claim", params={"max": max_count, "wait": wait or None},
            timeout=self.timeout + wait, retry_for=retry_for,
        )["executions"]

    def report(self, worker_id: int, events: Sequence[dict[str, Any]],
               retry_for: float | None = None) -> list[dict[str, Any]]:
        return self.report_and_claim(worker_id, events, 0, retry_for=retry_for)[0]

    def report_and_claim(
        self, worker_id: int, events: Sequence[dict[str, Any]], claim: int,
        retry_for: float | None = None,
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """Report events, then claim up to ``claim`` executions in the same call (a
        busy worker refills the slots its report frees without a second request).
        Returns (per-event results, claimed executions)."""
        answer = self._json("POST", f"/workers/{worker_id}/report",
                            json={"events": list(events)},
                            params={"claim": claim or None}, retry_for=retry_for)
        return answer["results"], answer.get("executions", [])

    def log_append(self, execution_id: int, stream: str, offset: int, data: bytes,
                   retry_for: float | None = None) -> int:
        """Append at ``offset``; returns the log's new size."""
        return self._json("PUT", f"/executions/{execution_id}/logs/{stream}",
                          params={"offset": offset}, data=data, retry_for=retry_for)["size"]

    # -- executions ----------------------------------------------------------------

    def execution_list(self, *, task: int | None = None, worker: int | None = None,
                       status: str | Sequence[str] | None = None, batch: str | None = None,
                       limit: int | None = None) -> list[dict[str, Any]]:
        params = {"task": task, "worker": worker, "status": status, "batch": batch, "limit": limit}
        return self._json("GET", "/executions", params=params)["executions"]

    def execution_get(self, execution_id: int) -> dict[str, Any]:
        return self._json("GET", f"/executions/{execution_id}")

    def execution_log(self, execution_id: int, stream: str = "stdout", offset: int = 0,
                      limit: int | None = None, wait: float = 0) -> tuple[bytes, int, str]:
        response = self.request(
            "GET", f"/executions/{execution_id}/logs/{stream}",
            params={"offset": offset, "limit": limit, "wait": wait or None},
            timeout=self.timeout + wait,
        )
        return _log_answer(response, offset)

    # -- files (server:// store) ------------------------------------------------------

    def file_put(self, path: str, data: bytes | IO[bytes]) -> dict[str, Any]:
        return self._json("PUT", f"/files/{path.strip('/')}", data=data)

    def file_download(self, path: str, destination: Path) -> int:
        """Stream a stored file to ``destination``; returns its size."""
        response = self.request("GET", f"/files/{path.strip('/')}", stream=True)
        destination.parent.mkdir(parents=True, exist_ok=True)
        size = 0
        with open(destination, "wb") as handle:
            for chunk in response.iter_content(1 << 16):
                handle.write(chunk)
                size += len(chunk)
        return size

    def file_list(self, prefix: str = "") -> list[dict[str, Any]]:
        return self._json("GET", "/files", params={"prefix": prefix or None})["files"]

    @functools.cached_property
    def files(self) -> Files:
        """Files across every store (list, copy, sync, delete, cat); ``server://``
        through this client."""
        from scitq_bench.client.files import Files

        return Files(self)

    def file_delete(self, path: str) -> None:
        """Remove a stored file (admins only); NotFound when there is none."""
        self.request("DELETE", f"/files/{path.strip('/')}")

    def openapi(self) -> dict[str, Any]:
        return self._json("GET", "/openapi.json")

    # -- flavors and quotas --------------------------------------------------------

    def flavor_list(self, **filters: Any) -> list[dict[str, Any]]:
        """Offers that may be hired now, best first; filters: protofilters, provider,
        region, min_cpu, min_ram, min_disk, max_eviction, limit."""
        return self._json("GET", "/flavors", params=filters)["flavors"]

    def flavor_update(self, provider: str | None = None) -> dict[str, Any]:
        """Refresh the catalog of a provider (default: of every provider with an
        updater): ``{"updated": {provider: counts}, "errors": {provider: message}}``."""
        return self._json("POST", "/flavors/update", params={"provider": provider})

    def quota_list(self) -> list[dict[str, Any]]:
        return self._json("GET", "/quotas")["quotas"]

    def quota_set(self, provider: str, region: str, **fields: Any) -> dict[str, Any]:
        """Fields: max_cpus, max_instances (None: no limit), preferred; those left out
        keep their value."""
        from urllib.parse import quote

        path = f"/quotas/{quote(provider, safe='')}/{quote(region, safe='')}"
        return self._json("PUT", path, json=fields)


def _listed(ids: Sequence[int], most: int = 10) -> str:
    return ", ".join(str(i) for i in ids[:most]) + (", ..." if len(ids) > most else "")


def _raise_failed(states: Iterable[dict[str, Any]]) -> None:
    """``TasksFailed`` naming each task that ended failed or cancelled, with why."""
    broken = (TaskStatus.FAILED.value, TaskStatus.CANCELLED.value)
    bad = [s for s in states if s["status"] in broken]
    if not bad:
        return
    lines = [f"task {s['id']}" + (f" {s['name']!r}" if s.get("name") else "")
             + f" {s['status']}" + (f": {s['status_reason']}" if s.get("status_reason") else "")
             for s in bad]
    shown = lines[:20] + ([f"... and {len(lines) - 20} more"] if len(lines) > 20 else [])
    raise TasksFailed(f"{len(bad)} task(s) did not succeed:\n  " + "\n  ".join(shown),
                      details={"task_ids": [s["id"] for s in bad]}, tasks=bad)


def _param(value: Any) -> Any:
    if isinstance(value, (list, tuple, set)):
        return ",".join(str(v) for v in value)
    if isinstance(value, bool):
        return "true" if value else "false"
    return value


def _short(exc: Exception) -> str:
    text = str(exc)
    return text if len(text) < 200 else text[:200] + "..."


def _tries(count: int) -> str:
    return "after 1 try" if count == 1 else f"after {count} tries"


def _cause(exc: BaseException) -> str:
    """The operating system's words under requests' and urllib3's wrappers
    ("connection refused", "name or service not known", "timed out")."""
    seen: set[int] = set()
    pending: list[BaseException] = [exc]
    while pending:
        current = pending.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, OSError) and type(current).__module__ in (
                "builtins", "socket", "ssl", "http.client"):
            words = current.strerror or str(current) or type(current).__name__
            return words[:1].lower() + words[1:]
        inside = [*getattr(current, "args", ()),
                  *(getattr(current, name, None) for name in ("reason", "__cause__", "__context__"))]
        pending.extend(e for e in inside if isinstance(e, BaseException))
    return _short(exc)  # type: ignore[arg-type]


def _retry_after(response: requests.Response) -> float | None:
    """Seconds to wait before asking again, if the answer is a 503 that says so."""
    if response.status_code != 503:
        return None
    value = response.headers.get("Retry-After", "")
    try:
        seconds = float(value)
    except ValueError:
        return None  # absent, or an HTTP date: not ours, do not guess
    return max(seconds, 0.0) if seconds == seconds else None


def _error_from(response: requests.Response) -> ScitqBenchError:
    try:
        body = response.json()
        cls = ERRORS_BY_CODE.get(body.get("error"), ScitqBenchError)
        message, details = body.get("message") or response.reason, body.get("details")
    except ValueError:
        cls, message, details = ScitqBenchError, f"{response.status_code} {response.reason}", None
    if cls is ScitqBenchError:
        for candidate in ERRORS_BY_CODE.values():
            if candidate.http_status == response.status_code:
                cls = candidate
                break
    if issubclass(cls, Busy):
        return cls(message, details, retry_after=_retry_after(response) or 1.0)
    return cls(message, details)


def _log_answer(response: requests.Response, offset: int) -> tuple[bytes, int, str]:
    data = response.content
    next_offset = int(response.headers.get("X-Next-Offset", offset + len(data)))
    return data, next_offset, response.headers.get("X-Execution-Status", "")


class _Progress:
    """A rich progress bar for ``join``."""

    def __init__(self, total: int) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

        self.progress = Progress(TextColumn("{task.description}"), BarColumn(),
                                 MofNCompleteColumn(), TextColumn("{task.fields[detail]}"))
        self.task = self.progress.add_task("tasks", total=total, detail="")
        self.progress.start()

    def update(self, done: int, states: Iterable[dict[str, Any]]) -> None:
        counts: dict[str, int] = {}
        for state in states:
            counts[state["status"]] = counts.get(state["status"], 0) + 1
        detail = " ".join(f"{k}={v}" for k, v in sorted(counts.items()))
        self.progress.update(self.task, completed=done, detail=detail)

    def close(self) -> None:
        self.progress.stop()
