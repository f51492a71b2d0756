"""Tasks pages: a filtered, paginated list (the database counts and slices it, so
100,000 tasks cost one page), and one task with its attempts, its live output and
the actions the API offers on it."""

from __future__ import annotations

from datetime import datetime
from pathlib import PurePosixPath
from types import SimpleNamespace
from typing import Any

from flask import Response, request, url_for
from sqlalchemy import select
from sqlalchemy.orm import Session

from scitq_bench.exceptions import InvalidInput, ScitqBenchError
from scitq_bench.server.context import server_context
from scitq_bench.server.downloads import attachment, send_stored
from scitq_bench.server.gui import formats  # noqa: F401  (the templates' filters)
from scitq_bench.server.gui.model_forms import validate
from scitq_bench.server.gui.tails import tail_answer
from scitq_bench.server.gui.web import (
    Pager,
    bp,
    done,
    failed,
    is_fragment,
    not_found,
    page,
    reading,
    render,
    sort_arguments,
)
from scitq_bench.server.limits import whole_number
from scitq_bench.server.queue import batches, workers
from scitq_bench.server.queue import executions as attempts
from scitq_bench.server.queue import tasks as domain
from scitq_bench.server.queue.models import Batch, Task, Worker, utcnow
from scitq_bench.server.schemas import TaskCreate, TaskUpdate, gpu_label
from scitq_bench.server.storage import STREAMS
from scitq_bench.server.web import execution_log
from scitq_bench.states import (
    FINAL_EXECUTION_VALUES,
    FINAL_TASK_VALUES,
    LIVE_EXECUTION_VALUES,
    ExecutionStatus,
    TaskStatus,
)
from scitq_bench.states import Signal as SignalKind
from scitq_bench.uris import parse_uri

PAGE_SIZE = 50
SORT_LABELS = {"id": "Id", "name": "Name", "status": "Status", "batch": "Batch",
               "created": "Created (UTC)", "modified": "Modified (UTC)"}
FAILED_RUNS = (ExecutionStatus.FAILED.value, ExecutionStatus.TIMEOUT.value)
NEWEST_FIRST = ("id", "created", "modified")  # sorted by these, the newest come first
SIGNAL_WORDS = {"pause": "suspended", "resume": "resumed", "stop": "asked to stop",
                "kill": "killed"}


# -- the list ------------------------------------------------------------------------------


@page("/tasks")
def tasks() -> Any:
    return _tasks_page()


def _tasks_page(*, errors: dict[str, str] | None = None, form: Any = None,
                status: int = 200) -> Any:
    problems: list[str] = []
    with reading() as session:
        filters, args = _filters(session, problems)
        sort, descending = _sorting(args, problems)
        total = 0 if filters is None else domain.count_tasks(session, **filters)
        pager = _pager(total, args, problems)
        found = [] if filters is None else domain.list_tasks_sorted(
            session, **filters, sort=sort, descending=descending, limit=pager.limit,
            offset=pager.offset)
        rows = _rows(session, found)
        # the filter choices are the full page's; the live region (polled) has no use
        choices = {} if is_fragment() else {
            "batches": batches.choices(session), "workers": workers.choices(session)}
    return render("tasks/list.html", fragment="tasks/_table.html", status=status,
                  tasks=rows, pager=pager, pages=page_numbers(pager), args=args, **choices,
                  statuses=[s.value for s in TaskStatus], errors=errors or {},
                  form=form or {}, problems=problems, sort=sort, descending=descending,
                  sorts=SORT_LABELS)


def _filters(session: Session, problems: list[str]
             ) -> tuple[dict[str, Any] | None, dict[str, str]]:
    """The list's filters from the query string, for the service and for the links
    that keep them (pages, the live region). A value that names nothing (a status that
    does not exist, a batch or worker not found) is said in ``problems`` and the list is
    empty (None): what was asked for matches no task."""
    args: dict[str, str] = {}
    filters: dict[str, Any] = {}
    matches = True
    batch = (request.args.get("batch") or "").strip()
    if batch:
        args["batch"] = batch
        found = _batch_named(session, batch)
        if found is None:
            problems.append(f"no batch {batch!r}: no batch has this id or name")
            matches = False
        else:
            filters["batch_id"] = found
    worker = (request.args.get("worker") or "").strip()
    if worker:
        args["worker"] = worker
        try:
            worker_id = whole_number(worker)
        except ValueError:
            problems.append(f"no worker {worker!r}: a worker is chosen by its id")
            matches = False
            worker_id = None
        if worker_id is not None and session.get(Worker, worker_id) is None:
            problems.append(f"no worker {worker!r}: no worker has this id")
            matches = False
        elif worker_id is not None:
            filters["worker_id"] = worker_id
    status = (request.args.get("status") or "").strip()
    if status:
        args["status"] = status
        if status in {s.value for s in TaskStatus}:
            filters["statuses"] = [status]
        else:
            problems.append(f"no status {status!r}: a task is "
                            f"{', '.join(s.value for s in TaskStatus)}")
            matches = False
    search = (request.args.get("q") or "").strip()
    if search:
        args["q"] = search
        filters["name_contains"] = search
    return (filters if matches else None), args


def _batch_named(session: Session, given: str) -> int | None:
    """The id of the batch ``given`` names: its id, else its name."""
    try:
        wanted = whole_number(given)
    except ValueError:
        wanted = None
    if wanted is not None and session.get(Batch, wanted) is not None:
        return wanted
    return session.scalar(select(Batch.id).where(Batch.name == given))


def _sorting(args: dict[str, str], problems: list[str]) -> tuple[str, bool]:
    """The order from ``?sort=`` (one of ``TASK_SORTS``) and ``?order=``; newest first
    unless asked."""
    sort, order = sort_arguments(domain.TASK_SORTS, problems, args)
    return sort or "id", order != "asc" if order else not sort or sort in NEWEST_FIRST


def _pager(total: int, args: dict[str, str], problems: list[str]) -> Pager:
    """The page asked for by ``?page=`` (from 1) or ``?offset=``; a page that is not a
    number, or past the last, is said in ``problems`` (the nearest page is shown)."""
    last_page = max(1, -(-total // PAGE_SIZE))
    raw = (request.args.get("page") or "").strip()
    if raw:
        try:
            number = whole_number(raw)
        except ValueError:
            problems.append(f"page {raw!r} is not a page number: pages go from 1 to {last_page}")
            number = 1
        if number < 1 or number > last_page:
            problems.append(f"there is no page {number}: pages go from 1 to {last_page}")
            number = min(max(number, 1), last_page)
        return Pager(offset=(number - 1) * PAGE_SIZE, limit=PAGE_SIZE, total=total)
    raw = (request.args.get("offset") or "").strip()
    if raw and not raw.isdigit():
        problems.append(f"offset {raw!r} is not a whole number")
    return Pager.from_request(total, PAGE_SIZE)


def page_numbers(pager: Pager, around: int = 2) -> list[tuple[int, int] | None]:
    """The page links to show, as (number, offset): the first, the last and ``around``
    pages either side of this one, None where pages are skipped."""
    count = max(1, -(-pager.total // pager.limit))
    here = pager.offset // pager.limit + 1
    wanted = sorted({1, count, *range(max(1, here - around), min(count, here + around) + 1)})
    shown: list[tuple[int, int] | None] = []
    for number in wanted:
        if shown and shown[-1] is not None and number > shown[-1][0] + 1:
            shown.append(None)
        shown.append((number, (number - 1) * pager.limit))
    return shown


def _rows(session: Session, found: list[Task]) -> list[dict[str, Any]]:
    """Rows of one page: three queries whatever the page's size."""
    runs = domain.latest_runs(session, [t.id for t in found])
    names = domain.batch_names(session, (t.batch_id for t in found))
    rows = []
    for task in found:
        run = runs.get(task.id)
        rows.append({
            "id": task.id, "name": task.name, "batch_id": task.batch_id,
            "batch": names.get(task.batch_id, ""), "status": task.status,
            "command": task.command, "retries_used": task.retries_used,
            "retries_allowed": task.retries_allowed, "attempts": run.attempts if run else 0,
            "worker": run.worker if run else None, "worker_id": run.worker_id if run else None,
            "created_at": task.created_at, "modified_at": task.modified_at,
            "started_at": run.started_at if run else None,
            "finished_at": run.finished_at if run else None,
            "duration": run.duration if run else None,
        })
    return rows


@page("/tasks/new", methods=("POST",))
def task_create() -> Any:
    """A task from the list's small form: command, batch, name, shell."""
    errors: dict[str, str] = {}
    data = {"command": (request.form.get("command") or "").strip(),
            "batch": (request.form.get("batch") or "").strip() or "default",
            "name": (request.form.get("name") or "").strip() or None,
            "shell": request.form.get("shell") == "1"}
    if not data["command"]:
        errors["command"] = "command is required"
    spec = validate(TaskCreate, data, errors) if not errors else None
    if spec is None:
        return _tasks_page(errors=errors, form=request.form, status=400)
    try:
        ids = domain.commit_create(server_context(), [spec],
                                   describe=lambda _session, rows: [row.id for row in rows])
        assert ids is not None  # given ``describe``, its answer comes back
    except InvalidInput as exc:
        errors["command"] = str(exc)
        return _tasks_page(errors=errors, form=request.form, status=400)
    return done(f"Task {ids[0]} created.", url_for("gui.task", task_id=ids[0]))


# -- one task -----------------------------------------------------------------------------------


@page("/tasks/<id:task_id>")
def task(task_id: int) -> Any:
    pin = request.args.get("execution", type=whole_number)  # this attempt; without it, the latest
    with reading() as session:
        facts = _facts(session, task_id)
    shown = _shown_execution(facts["executions"], pin)
    failed_run = facts["task"].status == TaskStatus.FAILED.value if pin is None else \
        shown is not None and shown["status"] in FAILED_RUNS
    return render("tasks/detail.html", fragment="tasks/_detail.html", pin=pin,
                  shown=shown, side_by_side=failed_run, **facts)


def _facts(session: Session, task_id: int) -> dict[str, Any]:
    found = domain.get_task(session, task_id)
    executions = [
        {"id": e.id, "attempt": e.attempt, "status": e.status, "worker": name,
         "worker_id": e.worker_id, "return_code": e.return_code, "error": e.error,
         "reason": e.reason, "created_at": e.created_at, "started_at": e.started_at,
         "finished_at": e.finished_at, "duration": e.duration,
         "output_files": e.output_files or [],
         "output_base": _server_store_base((e.snapshot or {}).get("output"))}
        for e, name in attempts.of_task_with_workers(session, task_id)
    ]
    live = next((e for e in executions if e["status"] in LIVE_EXECUTION_VALUES), None)
    running_for = None  # the page's script counts on from it, second by second
    started = live["started_at"] if live is not None else None
    if live is not None and live["status"] == ExecutionStatus.RUNNING.value \
            and isinstance(started, datetime):
        running_for = max(0.0, (utcnow() - started).total_seconds())
    columns = {column.key: getattr(found, column.key) for column in Task.__table__.columns}
    return {
        "task": SimpleNamespace(**columns), "batch_name": found.batch.name,
        "gpu": gpu_label(found.gpu),
        "requires": domain.prerequisites_of(session, [task_id])[task_id],
        "executions": executions, "live": live, "running_for": running_for,
    }


def _server_store_base(output: str | None) -> str | None:
    """The store folder of a ``server://`` output (files the GUI can hand out); None
    for outputs kept elsewhere (a worker's disk, a web server)."""
    if not output:
        return None
    try:
        parsed = parse_uri(output, field="output", allow_actions=False)
    except InvalidInput:
        return None
    return parsed.path if parsed.scheme == "server" else None


@page("/tasks/<id:task_id>/files/<id:execution_id>/<path:name>")
def task_file(task_id: int, execution_id: int, name: str) -> Any:
    """One output file an attempt uploaded to the server's store: only names the
    attempt reported, so this never reaches other files of the store."""
    with reading() as session:
        execution = domain.execution_of(session, task_id, execution_id)
        if execution is None or name not in (execution.output_files or []):
            not_found(f"output file {name!r} of attempt {execution_id} of task {task_id}")
        base = _server_store_base((execution.snapshot or {}).get("output"))
    if base is None:
        not_found(f"output file {name!r}: it was not stored on this server")
    stored = server_context().files.open(f"{base}/{name}" if base else name)
    return send_stored(stored, name=PurePosixPath(name).name)


def _shown_execution(executions: list[dict[str, Any]],
                     wanted: int | None) -> dict[str, Any] | None:
    """The attempt whose logs the page shows: ``wanted`` or the latest."""
    if wanted is not None:
        return next((e for e in executions if e["id"] == wanted), None)
    return executions[-1] if executions else None


@page("/tasks/<id:task_id>/log/<stream>")
def task_log(task_id: int, stream: str) -> Any:
    """A live tail (see ``tails``) of ``?execution=`` or, without it, of the task's
    latest attempt, moving on to a retry or relaunch; done once the attempt read has
    ended and all of its log was sent, and, when following, the task is over."""
    if stream not in STREAMS:
        not_found(f"log stream {stream!r}")
    wanted = request.args.get("execution", type=whole_number)
    with reading() as session:
        found = domain.get_task(session, task_id)
        execution = domain.execution_of(session, task_id, wanted)
        if execution is None and wanted is not None:
            not_found(f"execution {wanted} of task {task_id}")
        reading_one = (execution.id, execution.status in FINAL_EXECUTION_VALUES) \
            if execution is not None else None
        # following the latest attempt: a retry or a relaunch may still come
        more = wanted is None and found.status not in FINAL_TASK_VALUES
    return tail_answer(reading_one, stream, more_may_come=more)


@page("/tasks/<id:task_id>/output/<stream>")
def task_output(task_id: int, stream: str) -> Any:
    """The file the API's task output serves (the latest attempt's log, or the attempt
    of ``?execution=``), as a download authorized by the session."""
    if stream not in STREAMS:
        not_found(f"log stream {stream!r}")
    wanted = request.args.get("execution", type=whole_number)
    with reading() as session:
        domain.get_task(session, task_id)
        execution = domain.execution_of(session, task_id, wanted)
        if execution is None:
            not_found(f"attempt of task {task_id}")
        execution_id = execution.id
    response: Response = execution_log(execution_id, stream)
    response.headers["Content-Disposition"] = attachment(
        f"task-{task_id}-{execution_id}-{stream}.log")
    return response


# -- actions on one task --------------------------------------------------------------------


def _back(task_id: int) -> str:
    return url_for("gui.task", task_id=task_id)


@page("/tasks/<id:task_id>/relaunch", methods=("POST",))
def task_relaunch(task_id: int) -> Any:
    try:
        domain.commit_relaunch(server_context(), task_id)
    except ScitqBenchError as exc:
        return failed(exc, _back(task_id))
    return done(f"Task {task_id} relaunched.", _back(task_id))


@page("/tasks/<id:task_id>/signal", methods=("POST",))
def task_signal(task_id: int) -> Any:
    try:
        kind = SignalKind(request.form.get("signal", ""))
    except ValueError:
        return failed(InvalidInput("signal must be pause, resume, stop or kill"), _back(task_id))
    try:
        domain.commit_signal(server_context(), task_id, kind)
    except ScitqBenchError as exc:
        return failed(exc, _back(task_id))
    return done(f"Task {task_id} {SIGNAL_WORDS[kind.value]}.", _back(task_id))


@page("/tasks/<id:task_id>/queue", methods=("POST",))
def task_queue(task_id: int) -> Any:
    """Hold a queued task back (paused), or put a held one back in the queue."""
    wanted = request.form.get("status")
    if wanted not in (TaskStatus.PAUSED.value, TaskStatus.PENDING.value):
        return failed(InvalidInput("status must be paused or pending"), _back(task_id))
    try:
        domain.commit_update(server_context(), task_id,
                             TaskUpdate.model_validate({"status": wanted}))
    except ScitqBenchError as exc:
        return failed(exc, _back(task_id))
    words = "held back" if wanted == TaskStatus.PAUSED.value else "back in the queue"
    return done(f"Task {task_id} {words}.", _back(task_id))


@page("/tasks/<id:task_id>/delete", methods=("POST",))
def task_delete(task_id: int) -> Any:
    try:
        domain.commit_delete(server_context(), task_id)
    except ScitqBenchError as exc:
        return failed(exc, _back(task_id))
    return done(f"Task {task_id} deleted.", url_for("gui.tasks"))


@page("/tasks/<id:task_id>/edit", methods=("GET", "POST"))
def task_edit(task_id: int) -> Any:
    """Its command, shell flag and name, as ``PATCH /tasks/<id>`` changes them (the
    next attempt runs the new command)."""
    with reading() as session:
        found = domain.get_task(session, task_id)
        current = {"command": found.command, "shell": found.shell, "name": found.name or "",
                   "status": found.status}
    if request.method == "GET":
        return render("tasks/edit.html", task_id=task_id, form=current, current=current,
                      errors={})
    errors: dict[str, str] = {}
    data = {"command": (request.form.get("command") or "").strip(),
            "shell": request.form.get("shell") == "1",
            "name": (request.form.get("name") or "").strip() or None}
    if not data["command"]:
        errors["command"] = "command is required"
    changes = validate(TaskUpdate, data, errors) if not errors else None
    if changes is not None:
        try:
            domain.commit_update(server_context(), task_id, changes)
        except ScitqBenchError as exc:
            errors["command"] = str(exc)
        else:
            return done(f"Task {task_id} saved.", _back(task_id))
    form = {**data, "name": data["name"] or ""}
    return render("tasks/edit.html", task_id=task_id, form=form, current=current,
                  errors=errors, status=400)


__all__ = ["bp"]
