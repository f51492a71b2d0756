"""The benchmark half of the client: accounts, bundles, phases, submissions and
leaderboards (``/api/v1`` routes of ``server/api/bench.py``).

``BenchClientMixin`` only adds methods; ``Client`` inherits it, so every call goes
through the same transport (retries, error mapping to ``scitq_bench.exceptions``).
Bundles and submissions are uploaded as zips, streamed from disk: a folder is zipped
into a temporary file first.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
import zipfile
from collections.abc import Iterable, Iterator
from datetime import date, datetime, timezone
from pathlib import Path
from typing import IO, Any
from urllib.parse import quote

from scitq_bench.client.bulk import BulkEvaluation, Entries
from scitq_bench.client.transport import Transport
from scitq_bench.states import FINAL_SUBMISSION_VALUES


class BenchClientMixin(Transport):
    """Benchmark methods for ``Client`` (which provides ``request`` and ``_json``)."""

    # -- accounts (admin) ------------------------------------------------------------

    def account_create(self, name: str, role: str = "participant",
                       email: str | None = None) -> dict[str, Any]:
        """Create a participant or organizer account. Returns {"account", "token"}:
        the token is only ever shown in this answer."""
        return self._json("POST", "/accounts",
                          json={"name": name, "role": role, "email": email})

    def account_list(self) -> list[dict[str, Any]]:
        return self._json("GET", "/accounts")

    def account_token(self, account_id: int, revoke_others: bool = False) -> dict[str, Any]:
        """A new token for the account ({"account", "token"}); ``revoke_others``
        invalidates every token it had before."""
        return self._json("POST", f"/accounts/{int(account_id)}/tokens",
                          json={"revoke_others": revoke_others})

    def account_delete(self, account_id: int) -> dict[str, Any]:
        """Delete the account and its tokens; its submissions stay, ownerless."""
        return self._json("DELETE", f"/accounts/{int(account_id)}")

    def me(self) -> dict[str, Any]:
        """{"role", "account"} of this client's token."""
        return self._json("GET", "/me")

    # -- benchmarks ----------------------------------------------------------------

    def bench_import(self, path: str | os.PathLike[str], key: str | None = None,
                     visibility: str = "public", run_on_host: bool = False) -> dict[str, Any]:
        """Import a Codabench bundle: a zip file, or a folder (zipped here first).
        All of it or nothing; returns the benchmark as ``bench_get`` does."""
        with _zip_of(path) as body:
            return self._json("POST", "/benchmarks", data=body, params={
                "key": key, "visibility": visibility, "run_on_host": run_on_host or None})

    def bench_list(self) -> list[dict[str, Any]]:
        return self._json("GET", "/benchmarks")

    def bench_get(self, benchmark_id: int) -> dict[str, Any]:
        """A benchmark with its pages, phases, tasks and leaderboards."""
        return self._json("GET", f"/benchmarks/{int(benchmark_id)}")

    def bench_delete(self, benchmark_id: int) -> dict[str, Any]:
        """Delete a benchmark with its submissions, their tasks and its files."""
        return self._json("DELETE", f"/benchmarks/{int(benchmark_id)}")

    def bench_task_update(self, benchmark_id: int, index: int, *, gpu: int | str | None = None,
                          image: str | None = None) -> dict[str, Any]:
        """A task's resources: GPUs per step (a count or "all") and/or an image of its
        own ("" for the benchmark's). Returns the benchmark."""
        body: dict[str, Any] = {}
        if gpu is not None:
            body["gpu"] = gpu
        if image is not None:
            body["image"] = image
        return self._json("PATCH", f"/benchmarks/{int(benchmark_id)}/tasks/{int(index)}",
                          json=body)

    def bench_update(self, benchmark_id: int, *, docker_image: str | None = None,
                     host_environment: str | None = None) -> dict[str, Any]:
        """What every step runs in: the image (tasks with their own keep theirs; "" for
        the default) and/or, for a benchmark run on the workers' hosts, the environment
        there (a virtualenv or conda prefix; "" for none). Returns the benchmark."""
        body: dict[str, Any] = {}
        if docker_image is not None:
            body["docker_image"] = docker_image
        if host_environment is not None:
            body["host_environment"] = host_environment
        return self._json("PATCH", f"/benchmarks/{int(benchmark_id)}", json=body)

    def bench_priority(self, benchmark_id: int, priority: int | None) -> dict[str, Any]:
        """Set the priority of the benchmark's batches (None: back to 0), within the
        server's bounds; returns {priority, batches, bounds}."""
        return self._json("PUT", f"/benchmarks/{int(benchmark_id)}/priority",
                          json={"priority": priority})

    def phase_update(self, phase_id: int, **fields: Any) -> dict[str, Any]:
        """Change a phase: name, description, start, end (None: no end),
        max_submissions, max_submissions_per_day, max_submission_mb,
        execution_time_limit, hide_output, hide_prediction_output, hide_score_output,
        accepts_only_result_submissions. Dates may be ``datetime`` objects (naive
        ones are UTC) or ISO strings."""
        body = {key: _json_value(value) for key, value in fields.items()}
        return self._json("PATCH", f"/phases/{int(phase_id)}", json=body)

    # -- submissions -----------------------------------------------------------------

    def submission_submit(self, phase_id: int, path: str | os.PathLike[str] | None = None,
                          kind: str = "auto", name: str | None = None,
                          image: str | None = None,
                          command: str | None = None,
                          key: str | None = None) -> dict[str, Any]:
        """Submit to a phase: ``path`` (a zip, or a folder zipped here) for result and
        code submissions; ``image`` (and no path) for an image submission. ``kind``
        auto: the server detects it (code when the zip holds a metadata file with a
        command, else result; image without a path). ``key``: this entry's name, unique
        per phase and owner; a key already used returns that submission (with
        ``"existing": true``) and submits nothing, whatever ``path`` holds."""
        params = {"kind": kind, "name": name, "image": image, "command": command,
                  "key": key}
        route = f"/phases/{int(phase_id)}/submissions"
        if path is None:
            return self._json("POST", route, params=params)
        with _zip_of(path) as body:
            return self._json("POST", route, params=params, data=body)

    def submission_list(self, benchmark: int | None = None, phase: int | None = None,
                        status: str | None = None, limit: int | None = None,
                        key: str | None = None) -> list[dict[str, Any]]:
        """A participant's own submissions; every submission of their benchmarks for
        organizers; newest first. ``key``: only those submitted under it."""
        return self._json("GET", "/submissions", params={
            "benchmark": benchmark, "phase": phase, "status": status, "limit": limit,
            "key": key})

    def submission_bulk(self, phase_id: int, entries: Entries, *,
                        scores_path: str | os.PathLike[str] | None = None,
                        **options: Any) -> list[dict[str, Any]]:
        """Evaluate many entries on one phase, each submitted under its key (a re-run
        resumes: keys already submitted are not submitted again), and wait for their
        scores, written to ``scores_path`` (.csv or .json) as they land. ``entries``: a
        folder (each zip or sub-folder an entry, keyed by its name), or paths, or
        (key, path) pairs, or (key, image, command) triples. ``options``: those of
        ``BulkEvaluation`` (``retry_failed``, ``concurrency``, ``wait``,
        ``interval``, ``timeout``, ``kind``, ``progress``). Returns the rows."""
        return BulkEvaluation(self, phase_id, entries, scores_path=scores_path,
                              **options).run()

    def submission_get(self, id: int) -> dict[str, Any]:  # noqa: A002 - the API's word
        """A submission with its attempts, runs, statuses, errors and scores."""
        return self._json("GET", f"/submissions/{int(id)}")

    def submission_ingestion_log(self, id: int, attempt: int | None = None,  # noqa: A002
                                 run: int = 0, stream: str = "stdout") -> bytes:
        """What the ingestion program printed during a scoring step that ran it beside
        the scoring program (ingestion only during scoring)."""
        return self.request("GET", f"/submissions/{int(id)}/logs", params={
            "attempt": attempt, "run": run, "step": "scoring", "part": "ingestion",
            "stream": stream}).content

    def submission_log_page(self, id: int, attempt: int | None = None,  # noqa: A002
                            run: int = 0, step: str = "scoring", stream: str = "stdout",
                            offset: int = 0, limit: int | None = None,
                            wait: float | None = None) -> tuple[bytes, int, str]:
        """One page of a step's log from ``offset``: (bytes, next offset, execution
        status; "" while the step has no execution)."""
        response = self.request(
            "GET", f"/submissions/{int(id)}/logs",
            params={"attempt": attempt, "run": run, "step": step, "stream": stream,
                    "offset": offset, "limit": limit, "wait": wait or None},
            timeout=self.timeout + (wait or 0),
        )
        data = response.content
        next_offset = int(response.headers.get("X-Next-Offset", offset + len(data)))
        return data, next_offset, response.headers.get("X-Execution-Status", "")

    def submission_logs(self, id: int, attempt: int | None = None,  # noqa: A002
                        run: int = 0, step: str = "scoring", stream: str = "stdout",
                        offset: int = 0, wait: float | None = None) -> bytes:
        """A step's log (``stream`` stdout or stderr) from ``offset``. The attempt
        defaults to the latest, the run to the phase's first task. Refused (Forbidden)
        when the phase hides the output from participants."""
        return self.submission_log_page(id, attempt, run, step, stream, offset,
                                        wait=wait)[0]

    def submission_outputs(self, id: int, attempt: int | None = None,  # noqa: A002
                           run: int = 0, step: str = "scoring") -> list[dict[str, Any]]:
        """Files the step wrote to /app/output: [{"path", "size"}]."""
        return self._json("GET", f"/submissions/{int(id)}/outputs",
                          params={"attempt": attempt, "run": run, "step": step})["files"]

    def submission_output_download(self, id: int, path: str,  # noqa: A002
                                   target: str | os.PathLike[str],
                                   attempt: int | None = None, run: int = 0,
                                   step: str = "scoring") -> int:
        """Stream one output file of a step to the file ``target``; returns its size."""
        response = self.request(
            "GET", f"/submissions/{int(id)}/outputs/{quote(path.strip('/'))}",
            params={"attempt": attempt, "run": run, "step": step}, stream=True)
        destination = Path(target)
        destination.parent.mkdir(parents=True, exist_ok=True)
        size = 0
        with response, open(destination, "wb") as handle:
            for chunk in response.iter_content(1 << 16):
                handle.write(chunk)
                size += len(chunk)
        return size

    def submission_rerun(self, id: int) -> dict[str, Any]:  # noqa: A002
        """Run a submission again as a new attempt (earlier ones are kept)."""
        return self._json("POST", f"/submissions/{int(id)}/rerun")

    def phase_rerun(self, phase_id: int) -> dict[str, Any]:
        """Run every submission of a phase that is not running again: {"rerun": [ids]}."""
        return self._json("POST", f"/phases/{int(phase_id)}/rerun")

    def submission_cancel(self, id: int) -> dict[str, Any]:  # noqa: A002
        return self._json("POST", f"/submissions/{int(id)}/cancel")

    def attempt_delete(self, id: int, number: int) -> dict[str, Any]:  # noqa: A002
        """Delete a re-run of a submission (never attempt 1); returns the submission."""
        return self._json("DELETE", f"/submissions/{int(id)}/attempts/{int(number)}")

    def submission_delete(self, id: int) -> dict[str, Any]:  # noqa: A002
        return self._json("DELETE", f"/submissions/{int(id)}")

    def submission_leaderboard(self, id: int, on: bool) -> dict[str, Any]:  # noqa: A002
        """Put a submission on its phase's leaderboards (``on``) or take it off, as
        their submission rule allows."""
        return self._json("PUT", f"/submissions/{int(id)}/leaderboard", json={"on": bool(on)})

    def submission_wait(self, ids: int | dict[str, Any] | Iterable[int | dict[str, Any]],
                        timeout: float | None = None,
                        interval: float = 1.0) -> list[dict[str, Any]]:
        """Poll until none of the submissions is running; returns them (as
        ``submission_get``) in the order given. Raises TimeoutError naming those still
        running after ``timeout`` seconds."""
        wanted = _ids(ids)
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            states = [self.submission_get(i) for i in wanted]
            running = [s["id"] for s in states if s["status"] not in FINAL_SUBMISSION_VALUES]
            if not running:
                return states
            if deadline is not None and time.monotonic() >= deadline:
                listed = ", ".join(str(i) for i in running)
                raise TimeoutError(f"submission(s) still running after {timeout:g}s: {listed}")
            time.sleep(interval if deadline is None
                       else max(0.0, min(interval, deadline - time.monotonic())))

    # -- leaderboards --------------------------------------------------------------

    def leaderboard(self, phase_id: int, key: str, offset: int = 0,
                    limit: int = 50) -> dict[str, Any]:
        """A ranked page: {"title", "rule", "total", "tasks", "columns", "rows", ...};
        each row has "rank", "submission_id", "owner", "submitted_at", "scores" and
        "display" (per task key, per column key)."""
        return self._json("GET", f"/phases/{int(phase_id)}/leaderboards/{quote(key, safe='')}",
                          params={"offset": offset, "limit": limit})

    def leaderboard_csv(self, phase_id: int, key: str) -> str:
        """The whole leaderboard as CSV text."""
        response = self.request(
            "GET", f"/phases/{int(phase_id)}/leaderboards/{quote(key, safe='')}/csv")
        response.encoding = response.encoding or "utf-8"
        return response.text


def _ids(ids: int | dict[str, Any] | Iterable[int | dict[str, Any]]) -> list[int]:
    if isinstance(ids, (int, dict)):
        ids = [ids]
    return [int(i["id"]) if isinstance(i, dict) else int(i) for i in ids]


def _json_value(value: Any) -> Any:
    """Dates as ISO strings (naive ones are UTC); everything else as it is."""
    if isinstance(value, datetime):
        if value.tzinfo is not None:
            value = value.astimezone(timezone.utc).replace(tzinfo=None)
        return value.isoformat() + "Z"
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day).isoformat() + "Z"
    return value


@contextlib.contextmanager
def _zip_of(path: str | os.PathLike[str]) -> Iterator[IO[bytes]]:
    """An open zip to upload: the file itself, or a folder zipped into a temporary
    file (removed afterwards), so nothing is held in memory."""
    source = Path(path)
    if source.is_dir():
        with tempfile.TemporaryFile(suffix=".zip") as handle:
            zip_folder(source, handle)
            handle.seek(0)
            yield handle
        return
    if not source.is_file():
        raise FileNotFoundError(f"{source}: no such file or folder")
    with open(source, "rb") as handle:
        yield handle


def zip_folder(folder: Path, sink: IO[bytes]) -> None:
    """Write the files under ``folder`` (paths relative to it, modes kept, in a
    stable order) as a zip to ``sink``."""
    with zipfile.ZipFile(sink, "w", zipfile.ZIP_DEFLATED) as archive:
        for root, dirs, files in os.walk(folder):
            dirs.sort()
            for name in sorted(files):
                full = Path(root) / name
                archive.write(full, full.relative_to(folder).as_posix())
