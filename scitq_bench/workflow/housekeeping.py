"""After (or during) a run: the workflow's tasks as the server has them, their outputs
and logs fetched, and everything removed by ``clean``. These read the server, not the
script's declarations, so a script that only fetches or cleans need declare nothing."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from scitq_bench.exceptions import NotFound
from scitq_bench.storage.base import NotFoundError
from scitq_bench.workflow import naming

if TYPE_CHECKING:
    from scitq_bench.client.api import Client

PAGE = 1000


@dataclass
class StoredTask:
    """A task of the workflow on the server."""

    step: str
    key: str
    id: int
    name: str | None
    status: str
    status_reason: str | None
    command: str
    output: str | None


@dataclass
class TaskLog:
    step: str
    key: str
    task_id: int
    status: str
    stdout: str
    stderr: str


@dataclass
class Cleaned:
    """What ``clean`` removed (and where it saved the logs)."""

    batches: list[str] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)
    logs: list[Path] = field(default_factory=list)


def steps_on_server(client: Client, workflow: str) -> list[str]:
    """The steps of ``workflow`` that have a batch, oldest first."""
    found = []
    for batch in client.batch_list():
        step = naming.step_of_batch(workflow, batch["name"])
        if step is not None:
            found.append(step)
    return found


def stored_tasks(client: Client, workflow: str, steps: list[str],
                 status: str | None = None) -> list[StoredTask]:
    """The tasks of those steps (with that status), step by step, oldest first."""
    found: list[StoredTask] = []
    for step in steps:
        batch = naming.batch_name(workflow, step)
        offset = 0
        while True:
            page = client.task_list(batch=batch, status=status, limit=PAGE, offset=offset)
            found.extend(_stored(step, task) for task in page)
            if len(page) < PAGE:
                break
            offset += PAGE
    return found


def _stored(step: str, task: dict[str, Any]) -> StoredTask:
    key = task.get("key") or task.get("name") or str(task["id"])
    return StoredTask(step, key, int(task["id"]), task.get("name"), task["status"],
                      task.get("status_reason"), task["command"], task.get("output"))


def read_log(client: Client, task_id: int, stream: str) -> bytes:
    """The whole ``stream`` of the task's latest execution (empty when it never ran)."""
    chunks: list[bytes] = []
    offset = 0
    while True:
        try:
            data, offset, _ = client.task_output(task_id, stream, offset)
        except NotFound:
            break
        if not data:
            break
        chunks.append(data)
    return b"".join(chunks)


def logs(client: Client, tasks: list[StoredTask]) -> list[TaskLog]:
    return [TaskLog(t.step, t.key, t.id, t.status,
                    read_log(client, t.id, "stdout").decode(errors="replace"),
                    read_log(client, t.id, "stderr").decode(errors="replace"))
            for t in tasks]


def write_logs(found: list[TaskLog], dest: Path) -> list[Path]:
    """``dest/<step>/<key>.stdout`` and ``.stderr`` (keys made folder-safe)."""
    written = []
    for entry in found:
        folder = dest / entry.step
        folder.mkdir(parents=True, exist_ok=True)
        for stream, text in (("stdout", entry.stdout), ("stderr", entry.stderr)):
            path = folder / f"{naming.path_segment(entry.key)}.{stream}"
            path.write_text(text)
            written.append(path)
    return written


def fetch_outputs(client: Client, tasks: list[StoredTask], dest: Path) -> list[Path]:
    """Copy each task's output folder to ``dest/<step>/<key>/``; a task that left no
    output (or none yet) is skipped."""
    fetched = []
    for task in tasks:
        if not task.output:
            continue
        target = (dest / task.step / naming.path_segment(task.key)).resolve()
        source = task.output.split("|", 1)[0]
        try:
            client.files.copy(source if source.endswith("/") else source + "/",
                              f"file://{target}/")
        except NotFoundError:
            continue
        fetched.append(target)
    return fetched


def clean(client: Client, workflow: str, steps: list[str], *, delete_outputs: bool,
          logs_to: Path | None) -> Cleaned:
    """Logs saved first (when asked), outputs noted, then the batches deleted (their
    tasks, executions and recruiters go with them), then the outputs."""
    done = Cleaned()
    tasks = stored_tasks(client, workflow, steps)
    if logs_to is not None:
        done.logs = write_logs(logs(client, tasks), logs_to)
    for step in steps:
        name = naming.batch_name(workflow, step)
        try:
            client.batch_delete(client.batch_find(name)["id"])
        except NotFound:
            continue
        done.batches.append(name)
    if delete_outputs:
        for task in tasks:
            if not task.output:
                continue
            uri = task.output.split("|", 1)[0]
            try:
                client.files.delete(uri if uri.endswith("/") else uri + "/", recursive=True)
            except NotFoundError:
                continue
            done.outputs.append(uri)
    return done
