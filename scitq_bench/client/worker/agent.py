"""The worker agent: registers, claims executions, runs them, reports back.

Threads, each with one job and its own HTTP session:
- claim: long-polls the server for work whenever the worker holds less than
  concurrency + prefetch executions; an idle worker starts new work at once.
- one per held execution (reused from a pool): the execution's pipeline (``runner``:
  download, wait for a run slot, run, flush logs, upload), then its final event queued.
  Nothing on this path sleeps; it waits on conditions.
- reporter: sends execution events in batches (``reporter``).
- heartbeat: renews leases, applies signals and setting changes; the server answers
  early when a signal arrives.
- logs: ships new log bytes of running executions every ``log_interval`` seconds.

An execution stays held until the server has taken its final event: only then does
the server see the free slot, so claiming earlier would just wait.

The work folder holds ``executions/`` (emptied at each start: the server re-queues
what a previous run held), ``state/`` and, unless ``cache_dir`` puts it elsewhere,
``cache/``: the resource cache, kept across restarts (``cache``).
"""

from __future__ import annotations

import itertools
import logging
import queue
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import scitq_bench
from scitq_bench import hostprobe
from scitq_bench.client.api import Client
from scitq_bench.client.worker import stats
from scitq_bench.client.worker.container import ContainerDefaults
from scitq_bench.client.worker.engine import Engine
from scitq_bench.client.worker.executor import base_environment
from scitq_bench.client.worker.gpus import GpuPool
from scitq_bench.client.worker.held import (
    CANCELLED,
    DROP,
    STOPPING,
    Held,
    RunGate,
    ThreadPool,
)
from scitq_bench.client.worker.keeper import Keeper, reap
from scitq_bench.client.worker.logship import DEFAULT_CAP
from scitq_bench.client.worker.reporter import NOT_FINAL, Event, Reporter
from scitq_bench.client.worker.runner import (
    FAILED,
    GB,
    PROGRESS_INTERVAL,
    REFUSED,
    ExecutionRunner,
    RunnerSettings,
    fetches,
    final_event,
)
from scitq_bench.client.worker.workdir import ExecutionDirs
from scitq_bench.exceptions import (
    Forbidden,
    ScitqBenchError,
    ServerUnreachable,
    Unauthorized,
)
from scitq_bench.hostprobe import Gpu, detect_gpus, summarize
from scitq_bench.states import WorkerStatus
from scitq_bench.storage.config import StorageConfig

log = logging.getLogger("scitq_bench.worker")

CLAIM_RETRY_FOR = 5.0  # the client's own retries; our loops retry forever on top
REPORT_RETRY_FOR = 5.0
CLAIM_GATHER = 0.2  # how long a claim may wait for slots being freed by a report
LOG_TICK_BYTES = 16 << 20  # per stream per tick, so one chatty task cannot starve others
FATAL = (Unauthorized, Forbidden)  # the token was revoked: another process took our name


class WorkerAgent:
    """Runs tasks for a scitq_bench server until ``stop()``.

    ``client`` holds an admin or enrollment token; registration replaces it with the
    worker's own token. ``run()`` blocks; ``stop()`` may be called from any thread or a
    signal handler (it takes no lock)."""

    def __init__(
        self,
        client: Client,
        name: str,
        concurrency: int = 1,
        prefetch: int = 0,
        batch: str | None = None,
        work_dir: Path | str = Path("scitq_bench_work"),
        *,
        log_cap: int = DEFAULT_CAP,
        kill_grace: float = 10.0,
        claim_wait: float = 20.0,
        log_interval: float = 0.3,
        stop_timeout: float = 20.0,
        claim_stop_wait: float = 1.0,
        gpus: list[Gpu] | None = None,
        engine: Engine | None = None,
        container_defaults: ContainerDefaults | None = None,
        spot_notice: Callable[[], str | None] | None = None,
        spot_interval: float = 5.0,
        cache_dir: Path | str | None = None,
        cache_max_gb: float = 20.0,
        storage: StorageConfig | None = None,
        progress_interval: float = PROGRESS_INTERVAL,
    ) -> None:
        """``gpus``: None to detect them. ``engine``: the container engine to run
        container tasks with (``engine.connect`` finds one), None for processes only.
        ``spot_notice``: polled every ``spot_interval`` seconds on spot machines; a
        notice (``interruption.reader``) evicts the worker and stops it.
        ``cache_dir`` (default ``<work_dir>/cache``) keeps resources, at most
        ``cache_max_gb`` of them. ``storage``: the storage settings (None: read the
        settings file when ``run`` starts; a bad one stops it there)."""
        self.client = client
        self.name = name
        self.concurrency = concurrency
        self.prefetch = prefetch
        self.batch = batch
        self.work_dir = Path(work_dir).absolute()
        self.executions_dir = self.work_dir / "executions"
        self.cache_dir = Path(cache_dir).absolute() if cache_dir else self.work_dir / "cache"
        self.cache_max_gb = cache_max_gb
        self.storage = storage
        self.progress_interval = progress_interval
        self.keeper_journal = self.work_dir / "state" / "live-tasks"
        self.log_cap = log_cap
        self.kill_grace = kill_grace
        self.claim_wait = claim_wait
        self.log_interval = log_interval
        self.stop_timeout = stop_timeout
        self.claim_stop_wait = claim_stop_wait
        self.worker_id: int | None = None
        self.lease_seconds = 30.0
        self.status: str = WorkerStatus.RUNNING.value
        self._wake: queue.SimpleQueue[str] = queue.SimpleQueue()  # stop()/fatal -> run()
        self._stop_requested = False
        self._stopping = threading.Event()  # run() began shutting down
        self._finished = threading.Event()  # shutdown over: background loops end
        self._state = threading.Condition()  # guards what follows
        self._held: dict[int, Held] = {}
        self._dirs = ExecutionDirs(self.executions_dir)
        self._serving = 0  # executions whose thread has not finished
        self._pool = ThreadPool("execution")
        self._signals_seen: set[int] = set()
        self._signals_to_ack: set[int] = set()
        self._claimed_with_report: list[dict[str, Any]] = []
        self._give_up_at: float | None = None
        self._fatal: ScitqBenchError | None = None
        self._env = base_environment()
        self.gpus = detect_gpus() if gpus is None else list(gpus)
        self._gate = RunGate(concurrency, GpuPool(self.gpus))
        self._claim_order = itertools.count()
        self.container_defaults = container_defaults or ContainerDefaults()
        self.engine = engine
        self.spot_notice = spot_notice
        self.spot_interval = spot_interval
        self._keeper: Keeper | None = None

    # -- public --------------------------------------------------------------------------

    def run(self) -> None:
        """Register, then work until ``stop()``; raises if the server revokes us."""
        if self._stop_requested:
            return
        if self.storage is None:
            self.storage = StorageConfig.load()  # InvalidInput: refuse to start
        self._reap_leftovers()
        self._reset_work_dir()
        self._clear_engine()
        self._keeper = Keeper.start(self.keeper_journal, self.name, self._docker_host())
        try:
            self._work()
        finally:
            self._keeper.close()  # the keeper ends whatever still runs, then exits

    def _work(self) -> None:
        if not self._register():
            return
        self._io = self.client.with_own_pool(min(64, self.concurrency + self.prefetch + 4))
        self._reporter_client = self.client.with_own_pool()
        self._reporter = Reporter(self._send_report, self._on_results, self._fail)
        self._reporter.enough_finals = self._round()
        self._runner = self._new_runner()
        self._service_threads = {
            "reporter": self._start(self._reporter.run, "reporter"),
            "heartbeat": self._start(self._heartbeat_loop, "heartbeat"),
            "claim": self._start(self._claim_loop, "claim"),
            "logs": self._start(self._log_loop, "logs"),
        }
        if self.spot_notice is not None:
            self._start(self._spot_loop, "spot")
        log.info("worker %s (id %s) running, concurrency %d, prefetch %d",
                 self.name, self.worker_id, self.concurrency, self.prefetch)
        self._wake.get()
        self._shutdown()
        if self._fatal is not None:
            raise self._fatal

    def _new_runner(self) -> ExecutionRunner:
        """The execution pipeline, once registered (its transfers use the worker's
        token) and with the keeper started."""
        assert self.storage is not None  # read by run()
        settings = RunnerSettings(
            name=self.name, cache_dir=self.cache_dir, log_cap=self.log_cap,
            kill_grace=self.kill_grace, container_defaults=self.container_defaults,
            has_gpus=bool(self.gpus), environment=self._env,
            cache_max_bytes=int(self.cache_max_gb * GB), storage=self.storage,
            progress_interval=self.progress_interval,
        )
        return ExecutionRunner(
            settings, io=self._io, reporter=self._reporter, gate=self._gate, dirs=self._dirs,
            engine=self.engine, keeper=self._keeper, concurrency=lambda: self.concurrency,
            out_of_time=self._out_of_time, finished=self._finished,
        )

    def stop(self) -> None:
        """Ask ``run()`` to stop gracefully. Safe from a signal handler: SimpleQueue.put
        is reentrant, and nothing here takes a lock."""
        self._stop_requested = True
        self._wake.put("stop")

    # -- start ---------------------------------------------------------------------------

    def _reset_work_dir(self) -> None:
        """Executions start empty; the resource cache is kept (made here, so that a
        folder the worker cannot write stops it before it registers)."""
        self._dirs.reset()
        self.cache_dir.mkdir(parents=True, exist_ok=True)

    def _reap_leftovers(self) -> None:
        """Kill what a previous run of this worker left running (its keeper journals
        it, and may have been killed too), before registering re-queues it."""
        killed, removed = reap(self.keeper_journal)
        if killed or removed:
            log.warning("killed %d process(es) and removed %d container(s) left running "
                        "by a previous run of %s", killed, removed, self.name)

    def _docker_host(self) -> str | None:
        return None if self.engine is None else self.engine.host

    def _clear_engine(self) -> None:
        """Remove the containers a previous run of this worker left, before registering
        (registering re-queues their executions)."""
        if self.engine is not None:
            self.engine.remove_orphans()
        log.info("container engine: %s; GPUs: %d",
                 "available" if self.engine is not None else "none", len(self.gpus))

    def _register(self) -> bool:
        delay = 0.5
        gpu_count, gpu_model, gpu_mem_gb = summarize(self.gpus)
        while not self._stop_requested:
            try:
                answer = self.client.worker_register(
                    name=self.name, hostname=socket.gethostname(),
                    concurrency=self.concurrency, prefetch=self.prefetch, batch=self.batch,
                    cpus=hostprobe.cpu_count(), mem_gb=hostprobe.memory_gb(), gpus=gpu_count,
                    gpu_model=gpu_model, gpu_mem_gb=gpu_mem_gb,
                    containers=self.engine is not None,
                    version=scitq_bench.__version__,
                )
            except ServerUnreachable as exc:
                log.warning("cannot register yet, retrying in %.0f s: %s", delay, exc)
                try:
                    self._wake.get(timeout=delay)
                    return False  # stop() was called
                except queue.Empty:
                    delay = min(delay * 2, 30.0)
                    continue
            self.client.set_token(answer["token"])
            worker = answer["worker"]
            self.worker_id = int(worker["id"])
            self.lease_seconds = float(answer.get("lease_seconds") or self.lease_seconds)
            self._apply_settings(worker)
            return True
        return False

    def _start(self, target: Any, name: str, *args: Any) -> threading.Thread:
        thread = threading.Thread(target=target, args=args, name=f"worker-{name}", daemon=True)
        thread.start()
        return thread

    # -- claiming ------------------------------------------------------------------------

    def _round(self) -> int:
        """Final events worth a report of their own: a whole round of running tasks, or
        half the tasks fetched ahead when there are more. Every report costs the worker
        and the server a request whatever it carries, and while finals wait for company,
        the slots they freed run the tasks fetched ahead: up to half of those can wait,
        the other half covers the report's round trip. (No final waits longer than the
        reporter's linger either way.) On a worker running no-op tasks with 96 fetched
        ahead, reports of 8 finals ran 0.41-0.43 of ``xargs -P``'s rate, of 48 finals
        0.54-0.60 (``benchmarks/dispatch.py``)."""
        return max(1, self.concurrency, self.prefetch // 2)

    def _room(self) -> int:
        """Call with ``_state`` held."""
        if not self._room_allowed():
            return 0
        return self.concurrency + self.prefetch - len(self._held)

    def _wait_for_room(self) -> int:
        """Free slots to claim, 0 when stopping. Slots whose final events are being
        reported free up in a moment: unless a whole round (``concurrency``) is free
        already, wait for them (briefly) to claim together, since the server's cost is
        mostly per request."""
        with self._state:
            gather_until = None
            while not self._stopping.is_set():
                room = self._room()
                if room <= 0:
                    self._state.wait()
                    continue
                now = time.monotonic()
                gather_until = gather_until or now + CLAIM_GATHER
                enough = min(self._round(), self.concurrency + self.prefetch)
                if room < enough and now < gather_until and self._reporter.finals_pending():
                    self._state.wait(gather_until - now)
                    continue
                return room
            return 0

    def _claim_loop(self) -> None:
        client = self.client.with_own_pool()
        delay = 0.2
        while True:
            room = self._wait_for_room()
            if not room:
                return
            try:
                payloads = client.claim(self.worker_id, room,  # type: ignore[arg-type]
                                        wait=self.claim_wait, retry_for=CLAIM_RETRY_FOR)
            except FATAL as exc:
                self._fail(exc)
                return
            except ScitqBenchError as exc:
                if self._stopping.is_set():
                    return
                log.warning("claim failed, retrying in %.1f s: %s", delay, exc)
                if self._stopping.wait(delay):
                    return
                delay = min(delay * 2, 10.0)
                continue
            delay = 0.2
            if payloads:
                self._take(payloads, client)

    def _take(self, payloads: list[dict[str, Any]], client: Client) -> None:
        started: list[Held] = []
        with self._state:
            if not self._stopping.is_set():
                for payload in payloads:
                    held = Held(payload, self.executions_dir / str(payload["execution_id"]),
                                place=next(self._claim_order))
                    self._held[held.id] = held
                    started.append(held)
        if not started:
            self._refuse(payloads, client)
            return
        self._reporter.expect([held.id for held in started])
        self._gate.expect([held.place for held in started if not fetches(held.payload)])
        with self._state:
            self._serving += len(started)
        for held in started:
            self._pool.submit(self._serve, held)

    def _refuse(self, payloads: list[dict[str, Any]], client: Client) -> None:
        """Claimed while stopping: hand them straight back (the reporter may be gone)."""
        events = [{"execution_id": p["execution_id"], "status": REFUSED, "age": 0}
                  for p in payloads]
        try:
            client.report(self.worker_id, events, retry_for=REPORT_RETRY_FOR)  # type: ignore[arg-type]
        except ScitqBenchError as exc:
            log.warning("could not refuse %d execution(s) claimed while stopping: %s",
                        len(events), exc)

    # -- one execution -------------------------------------------------------------------

    def _serve(self, held: Held) -> None:
        """The thread of one held execution: its pipeline, then its final event queued
        and its folder, run-gate turn and count given back, whatever happened."""
        final: Event | None = None
        try:
            final = self._runner.execute(held)
        except Exception as exc:  # a bug or an OS failure must still end the execution
            log.exception("execution %s: unexpected worker error", held.id)
            final = final_event(held, FAILED, error=f"worker error: {exc}")
        finally:
            if held.logs is not None:
                held.logs.close()
            if final is not None and held.reason != DROP:
                self._reporter.put(final)
            self._dirs.release(held.directory)
            self._gate.forget(held.place)  # if it ended before reaching the gate
            with self._state:
                self._serving -= 1
                if self._stopping.is_set():  # only ``stop`` waits for this count
                    self._state.notify_all()

    def _out_of_time(self) -> bool:
        """Stopping, and past ``stop_timeout``: what is left is given up."""
        return self._give_up_at is not None and time.monotonic() > self._give_up_at

    # -- reports -------------------------------------------------------------------------

    def _send_report(self, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Report, and claim in the same call the slots this report frees: a busy
        worker refills itself without a separate claim request."""
        finals = sum(1 for e in events if e["status"] not in NOT_FINAL)
        with self._state:
            wanted = self._room() + finals if self._room_allowed() else 0
        results, claimed = self._reporter_client.report_and_claim(
            self.worker_id, events, max(wanted, 0), retry_for=REPORT_RETRY_FOR,  # type: ignore[arg-type]
        )
        self._claimed_with_report = claimed
        return results

    def _room_allowed(self) -> bool:
        """Call with ``_state`` held: whether this worker may take new work at all."""
        return self.status == WorkerStatus.RUNNING and not self._stopping.is_set()

    def _on_results(self, results: list[tuple[Event, dict[str, Any]]]) -> None:
        """Free the slots of every final event the server took, all at once, and fill
        them with what the report claimed in the same critical section (the claim loop
        never sees them free); refused events drop their execution."""
        dropped = []
        claimed, self._claimed_with_report = self._claimed_with_report, []
        with self._state:
            for event, result in results:
                if not result.get("ok"):
                    log.warning("the server refused %s for execution %s: %s", event.status,
                                event.execution_id, result.get("error"))
                    if not event.final:
                        dropped.append(event.execution_id)
                        continue
                if event.final:
                    self._held.pop(event.execution_id, None)
            if claimed:
                self._take(claimed, self._reporter_client)
            self._state.notify_all()
        for execution_id in dropped:
            self._drop(execution_id)

    def _drop(self, execution_id: int) -> None:
        """The server no longer counts this execution as ours: kill, discard, tell no one."""
        with self._state:
            held = self._held.pop(execution_id, None)
            self._state.notify_all()
        if held is None:
            return
        with held.lock:
            held.abandon(DROP)
            process = held.live_process()
            if process is not None:
                process.kill()
        self._reporter.purge(execution_id)
        self._gate.wake()

    # -- heartbeat -----------------------------------------------------------------------

    def _heartbeat_loop(self) -> None:
        client = self.client.with_own_pool()
        delay = 0.2
        while not self._finished.is_set():
            wait = max(0.1, min(5.0, self.lease_seconds / 3))
            with self._state:
                acks = sorted(self._signals_to_ack)
                held = sorted(self._held)
            began = time.monotonic()
            try:
                answer = client.heartbeat(
                    self.worker_id,  # type: ignore[arg-type]
                    stats=self._stats(len(held)), executions=held,
                    acknowledged_signals=acks, wait=wait, retry_for=wait,
                )
            except FATAL as exc:
                self._fail(exc)
                return
            except ScitqBenchError as exc:
                if self._finished.is_set():
                    return
                log.warning("heartbeat failed, retrying in %.1f s: %s", delay, exc)
                self._finished.wait(delay)
                delay = min(delay * 2, wait)
                continue
            delay = 0.2
            with self._state:
                self._signals_to_ack.difference_update(acks)
                self._signals_seen.difference_update(acks)
            self._on_heartbeat(answer)
            self._prune_images()
            if time.monotonic() - began < 0.05 and not answer.get("signals"):
                self._finished.wait(0.05)  # never spin, whatever the server answers

    def _prune_images(self) -> None:
        """The image cache policy, checked from the heartbeat (``maybe_prune`` does the
        real work at most every ``prune_every`` seconds): never an image in use."""
        if self.engine is None:
            return
        try:
            self.engine.maybe_prune(self._images_in_use)
        except Exception:  # noqa: BLE001 - the cache policy must never stop the worker
            log.exception("image pruning failed")

    def _images_in_use(self) -> set[str]:
        with self._state:
            return {h.payload["container"] for h in self._held.values()
                    if h.payload.get("container")}

    def _stats(self, held: int) -> dict[str, Any]:
        figures = stats.collect(self.work_dir)
        figures.update(held=held, running=self._gate.running)
        return figures

    def _apply_settings(self, settings: dict[str, Any]) -> None:
        with self._state:
            self.status = settings.get("status") or self.status
            if settings.get("concurrency") is not None:
                self.concurrency = int(settings["concurrency"])
            if settings.get("prefetch") is not None:
                self.prefetch = int(settings["prefetch"])
            self._state.notify_all()
        self._gate.set_limit(self.concurrency)
        if hasattr(self, "_reporter"):
            self._reporter.enough_finals = self._round()

    def _on_heartbeat(self, answer: dict[str, Any]) -> None:
        if answer.get("lease_seconds"):
            self.lease_seconds = float(answer["lease_seconds"])
        self._apply_settings(answer)
        for signal in answer.get("signals") or []:
            self._apply_signal(signal)
        for execution_id in answer.get("drop") or []:
            self._drop(int(execution_id))

    def _apply_signal(self, signal: dict[str, Any]) -> None:
        """Signals come back until acknowledged: applying one twice must be harmless."""
        signal_id = int(signal["id"])
        with self._state:
            if signal_id in self._signals_seen:
                return
            self._signals_seen.add(signal_id)
            self._signals_to_ack.add(signal_id)
            held = self._held.get(int(signal["execution_id"]))
        if held is None:
            return
        kind = signal["signal"]
        with held.lock:
            process = held.live_process()
            if kind == "pause" and process is not None:
                process.pause()
            elif kind == "resume" and process is not None:
                process.resume()
            elif kind in ("stop", "kill"):
                held.abandon(CANCELLED)
                if process is not None and kind == "kill":
                    process.kill()
                elif process is not None:
                    process.terminate(self.kill_grace)
        self._gate.wake()

    # -- logs ----------------------------------------------------------------------------

    def _log_loop(self) -> None:
        client = self.client.with_own_pool()
        resume_at, delay = 0.0, 0.5
        while not self._finished.wait(self.log_interval):
            with self._state:
                live = [(h.id, h.logs) for h in self._held.values() if h.logs is not None]
            for _, logs in live:
                logs.enforce_caps()
            if time.monotonic() < resume_at:
                continue
            for execution_id, logs in live:
                try:
                    logs.ship(client, execution_id, max_bytes=LOG_TICK_BYTES, retry_for=0,
                              blocking=False)
                except ServerUnreachable as exc:
                    log.warning("cannot ship logs, retrying in %.1f s: %s", delay, exc)
                    resume_at = time.monotonic() + delay
                    delay = min(delay * 2, 10.0)
                    break
                except ScitqBenchError as exc:
                    log.warning("execution %s: log shipping failed: %s", execution_id, exc)
            else:
                delay = 0.5

    # -- spot interruptions --------------------------------------------------------------

    def _spot_loop(self) -> None:
        assert self.spot_notice is not None
        while not self._finished.wait(self.spot_interval):
            notice = self.spot_notice()
            if notice is None:
                continue
            log.warning("spot interruption notice: %s; giving the work back", notice)
            try:
                self._reporter_client.worker_evicted(self.worker_id, notice)  # type: ignore[arg-type]
            except ScitqBenchError as exc:
                log.warning("could not tell the server about the eviction: %s", exc)
            self.stop()
            return

    # -- stopping ------------------------------------------------------------------------

    def _fail(self, exc: ScitqBenchError) -> None:
        """The server revoked this worker (another process registered the same name):
        stop everything."""
        if self._fatal is None:
            log.error("the server no longer accepts this worker: %s", exc)
            self._fatal = exc
        self._wake.put("fatal")

    def _shutdown(self) -> None:
        """Stop claiming; refuse what has not started, terminate what runs (both go
        back to the queue without spending retries); flush logs and events, within
        ``stop_timeout`` seconds."""
        self._give_up_at = time.monotonic() + self.stop_timeout
        with self._state:
            self._stopping.set()
            held = list(self._held.values())
            self._state.notify_all()
        for item in held:
            with item.lock:
                item.abandon(STOPPING)
                process = item.live_process()
                if process is not None:
                    process.terminate(self.kill_grace)
        self._gate.wake()
        with self._state:
            while self._serving and self._remaining() > 0:
                self._state.wait(self._remaining())
        self._service_threads["claim"].join(min(self.claim_stop_wait, self._remaining()))
        self._reporter.close()
        self._service_threads["reporter"].join(self._remaining())
        if self._service_threads["reporter"].is_alive():
            log.warning("stopping with %d event(s) not reported", self._reporter.pending())
            self._reporter.abandon()
        self._finished.set()
        self._dirs.discard_spares()
        if not self._serving:
            self._runner.close()
            self._io.http.close()
        log.info("worker %s stopped", self.name)

    def _remaining(self) -> float:
        assert self._give_up_at is not None
        return max(0.0, self._give_up_at - time.monotonic())
