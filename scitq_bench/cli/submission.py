"""``submission``: submit to a phase; follow, inspect and re-run submissions, and pick
them for leaderboards."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import click

from scitq_bench.cli.common import json_option, pass_client, stream_options
from scitq_bench.cli.logs import copy_logs, selected_streams
from scitq_bench.cli.output import (
    Column,
    format_value,
    note,
    print_json,
    print_list,
    print_record,
    print_table,
    show_or_say,
    success,
    when,
)
from scitq_bench.client import Client
from scitq_bench.client.bulk import BulkEvaluation, Entry, as_entries, list_entries, scores_format
from scitq_bench.exceptions import InvalidInput, ScitqBenchError
from scitq_bench.states import FINAL_SUBMISSION_VALUES, SubmissionStatus

STEPS = ("prediction", "scoring")


def scores_text(scores: dict[str, Any] | None) -> str:
    """Scores as one line. A submission's or attempt's are per leaderboard, per task:
    ``{"main": {"0": {"score": 98}}}`` reads ``main: score=98`` (one task) or
    ``main[0]: score=98; main[1]: ...``; a run's are per leaderboard only
    (``{"main": {"score": 98}}``)."""
    parts = []
    for board, inner in (scores or {}).items():
        inner = inner or {}
        if not all(isinstance(v, dict) for v in inner.values()):
            inner = {"": inner}  # a run's: the columns themselves
        for task, values in inner.items():
            label = board if len(inner) == 1 else f"{board}[{task}]"
            shown = " ".join(f"{k}={format_value(v)}" for k, v in (values or {}).items())
            parts.append(f"{label}: {shown}")
    return "; ".join(parts)


def _step(step: dict[str, Any] | None) -> str:
    if not step:
        return ""
    return f"task {step['id']} ({step.get('status') or '?'})"


SUBMISSION_COLUMNS = [
    Column("id", "id", justify="right"),
    Column("bench", "benchmark_id", justify="right"),
    Column("phase", "phase_id", justify="right"),
    Column("owner", "owner"),
    Column("kind", "kind"),
    Column("name", "name", width=30),
    Column("status", "status"),
    Column("attempts", "attempts", justify="right"),
    Column("board", lambda s: "yes" if s.get("on_leaderboard") else ""),
    Column("scores", lambda s: scores_text(s.get("scores")), width=60),
    Column("created", lambda s: when(s.get("created_at"))),
]

ATTEMPT_COLUMNS = [
    Column("attempt", "number", justify="right"),
    Column("status", "status"),
    Column("created", lambda a: when(a.get("created_at"))),
    Column("finished", lambda a: when(a.get("finished_at"))),
    Column("scores", lambda a: scores_text(a.get("scores"))),
    Column("error", "error"),
]

RUN_COLUMNS = [
    Column("attempt", "attempt", justify="right"),
    Column("run", "position", justify="right"),
    Column("status", "status"),
    Column("prediction", lambda r: _step(r.get("prediction_task"))),
    Column("scoring", lambda r: _step(r.get("scoring_task"))),
    Column("scores", lambda r: scores_text(r.get("scores"))),
    Column("error", "error"),
]


STEP_COLUMNS = [
    Column("run", "run", justify="right"),
    Column("step", "step"),
    Column("task", "task", justify="right"),
    Column("state", "state"),
    Column("exit", "exit_code", justify="right"),
    Column("reason", "reason"),
]


def step_options(function: Any, default: str | None = "scoring") -> Any:
    """``--attempt``, ``--run``, ``--step``: which step's logs or outputs."""
    shown = default or "the step that failed, else scoring"
    function = click.option("--step", type=click.Choice(STEPS), default=default,
                            help=f"Which step of the run [default: {shown}].")(function)
    function = click.option("--run", "run_position", type=click.IntRange(min=0), default=0,
                            show_default=True,
                            help="Which run: the task's position in the phase.")(function)
    function = click.option("--attempt", type=click.IntRange(min=1),
                            help="Attempt number [default: the latest].")(function)
    return function


def failed_step_options(function: Any) -> Any:
    """``step_options`` whose step defaults to the one that failed."""
    return step_options(function, default=None)


@click.group()
def submission() -> None:
    """Submissions: submit, follow, inspect, re-run, pick for leaderboards."""


@submission.command("submit")
@click.argument("phase_id", type=int)
@click.argument("path", required=False, type=click.Path(exists=True, path_type=Path))
@click.option("--kind", type=click.Choice(["auto", "result", "code", "image"]),
              help="What PATH holds: predictions (result) or a program (code); 'image' "
                   "submits --image instead [default: image with --image, else auto: "
                   "code when PATH holds a metadata file with a command, else result].")
@click.option("--image", help="The image of an image submission.")
@click.option("--command", help="What an image or code submission runs, when the task has "
              "no ingestion program.")
@click.option("--name", help="A name for the submission.")
@click.option("--wait", is_flag=True,
              help="Wait until it is scored; exit 1 if it fails or is cancelled.")
@json_option
@pass_client
def submit(client: Client, phase_id: int, path: Path | None, kind: str | None,
           image: str | None, command: str | None, name: str | None, wait: bool,
           as_json: bool) -> None:
    """Submit PATH (a zip, or a folder zipped on the fly) to a phase, or an image with
    --image."""
    kind = kind or ("image" if image else "auto")
    if kind == "image" and path is not None:
        raise click.UsageError("an image submission has no PATH: give --image only")
    if kind != "image" and path is None:
        raise click.UsageError(f"a {'' if kind == 'auto' else kind + ' '}submission needs "
                               "its PATH (a zip or a folder)")
    created = client.submission_submit(phase_id, path, kind=kind, name=name, image=image,
                                       command=command)
    if not wait:
        show_or_say(created, as_json,
                     f"submission {created['id']} submitted to phase {phase_id} "
                     f"({created['status']})")
        return
    note(f"submission {created['id']} submitted to phase {phase_id}; waiting for it")
    final = follow_steps(client, created["id"])
    if as_json:
        print_json(final)
    else:
        scores = scores_text(final.get("scores"))
        success(f"submission {final['id']} {final['status']}" + (f": {scores}" if scores else ""))
    if final["status"] != SubmissionStatus.FINISHED.value:
        raise ScitqBenchError(f"submission {final['id']} {final['status']}"
                              + _last_error(final))


@submission.command("bulk", short_help="Evaluate many entries on a phase.")
@click.argument("phase_id", type=int)
@click.argument("folder", required=False, type=click.Path(path_type=Path))
@click.option("--list", "list_file", metavar="FILE", type=click.Path(path_type=Path),
              help="A file listing the entries, one a line: PATH, KEY<TAB>PATH or "
                   "KEY<TAB>IMAGE<TAB>COMMAND (relative paths from the file's folder).")
@click.option("--scores", "scores_path", required=True, metavar="FILE",
              type=click.Path(path_type=Path),
              help="Where the scores go, rewritten as they land: FILE.csv or FILE.json.")
@click.option("--kind", type=click.Choice(["auto", "result", "code"]), default="auto",
              show_default=True, help="What the zips and folders hold.")
@click.option("--retry-failed", is_flag=True,
              help="Run each failed submission again, once (organizers of the benchmark).")
@click.option("--no-wait", is_flag=True,
              help="Submit and write the statuses, without waiting for the scores.")
@click.option("--concurrency", type=click.IntRange(1, 32), default=4, show_default=True,
              help="Uploads at once.")
@click.option("--interval", type=click.FloatRange(min=0.1), default=2.0, show_default=True,
              help="Seconds between two looks at the running submissions.")
@click.option("--timeout", type=click.FloatRange(min=0), help="Stop waiting after this "
              "many seconds (exit 1; the scores file holds what landed).")
@pass_client
def bulk(client: Client, phase_id: int, folder: Path | None, list_file: Path | None,
         scores_path: Path, kind: str, retry_failed: bool, no_wait: bool, concurrency: int,
         interval: float, timeout: float | None) -> None:
    """Submit every entry of FOLDER (each zip file or sub-folder is one, keyed by its
    name without .zip) or of --list to a phase, each under its key, and wait for their
    scores, written to --scores as they land. Run it again after an interruption: keys
    already submitted are not submitted again. Exits 1 when an entry failed."""
    if (folder is None) == (list_file is None):
        raise click.UsageError("give a FOLDER of entries or --list FILE (one of them)")
    try:
        scores_format(scores_path)
        entries: list[Entry] = as_entries(folder) if folder is not None \
            else list_entries(Path(list_file or ""))
    except FileNotFoundError as exc:
        raise click.ClickException(str(exc)) from None
    evaluation = BulkEvaluation(client, phase_id, entries, scores_path=scores_path, kind=kind,
                                retry_failed=retry_failed, concurrency=concurrency,
                                wait=not no_wait, interval=interval, timeout=timeout,
                                progress=sys.stderr.isatty())
    try:
        evaluation.run()
    except TimeoutError as exc:
        raise ScitqBenchError(f"{exc}; {evaluation.summary.line()}") from None
    summary = evaluation.summary
    success(f"phase {phase_id}: {summary.line()}; scores in {scores_path}")
    if summary.failed:
        raise ScitqBenchError(f"{summary.failed} of {summary.total} entries failed "
                              f"(their rows in {scores_path})")


def progress_text(found: dict[str, Any]) -> str:
    """Where a submission stands, in one line: ``queued``, ``prediction running``,
    ``scoring running`` (``run N`` named when the phase has several tasks), or its
    final status with the reason of a failed step."""
    status = found["status"]
    steps = found.get("steps") or []
    several = len({s["run"] for s in steps}) > 1

    def named(step: dict[str, Any]) -> str:
        return f"run {step['run']} {step['step']}" if several else step["step"]

    if status in FINAL_SUBMISSION_VALUES:
        failed = [f"{named(s)} failed" + (f": {s['reason']}" if s.get("reason") else "")
                  for s in steps if s["state"] == "failed"]
        return "; ".join([status, *failed]) if failed else status
    running = [f"{named(s)} running" for s in steps if s["state"] == "running"]
    return ", ".join(running) if running else status


def follow_steps(client: Client, submission_id: int, interval: float = 1.0) -> dict[str, Any]:
    """Poll the submission until it ends, printing each change of its steps (stderr);
    returns it as ``submission_get`` does."""
    shown = None
    while True:
        found = client.submission_get(submission_id)
        line = progress_text(found)
        if line != shown:
            note(f"submission {submission_id}: {line}")
            shown = line
        if found["status"] in FINAL_SUBMISSION_VALUES:
            return found
        time.sleep(interval)


def _last_error(record: dict[str, Any]) -> str:
    attempts = record.get("attempts_detail") or []
    error = attempts[-1].get("error") if attempts else None
    return f": {error}" if error else ""


@submission.command("list")
@click.option("--benchmark", type=int, help="Only this benchmark's submissions.")
@click.option("--phase", type=int, help="Only this phase's submissions.")
@click.option("--status", type=click.Choice([s.value for s in SubmissionStatus]),
              help="Only in this status.")
@click.option("--limit", type=click.IntRange(min=1), help="At most this many (newest first).")
@json_option
@pass_client
def list_submissions(client: Client, benchmark: int | None, phase: int | None,
                     status: str | None, limit: int | None, as_json: bool) -> None:
    """List submissions: your own, or all of your benchmarks' for organizers."""
    found = client.submission_list(benchmark=benchmark, phase=phase, status=status,
                                   limit=limit)
    print_list(found, SUBMISSION_COLUMNS, as_json=as_json)


@submission.command("show")
@click.argument("submission_id", type=int)
@json_option
@pass_client
def show_submission(client: Client, submission_id: int, as_json: bool) -> None:
    """Show a submission: its attempts, their runs, statuses, errors and scores."""
    found = client.submission_get(submission_id)
    if as_json:
        print_json(found)
        return
    attempts = found.get("attempts_detail") or []
    record = {key: value for key, value in found.items()
              if key not in ("attempts_detail", "scores", "created_at", "steps")}
    record["scores"] = scores_text(found.get("scores"))
    record["created"] = when(found.get("created_at"))
    print_record(record, title=f"submission {submission_id}")
    if not attempts:
        return
    click.echo()
    print_table(attempts, ATTEMPT_COLUMNS, title="attempts")
    runs = [{**r, "attempt": a["number"]} for a in attempts for r in a.get("runs") or []]
    if runs:
        click.echo()
        print_table(runs, RUN_COLUMNS, title="runs")
    if found.get("steps"):
        click.echo()
        print_table(found["steps"], STEP_COLUMNS, title="steps of the latest attempt")


@submission.command("logs", short_help="Print a step's logs.")
@click.argument("submission_id", type=int)
@failed_step_options
@click.option("--ingestion", is_flag=True,
              help="The ingestion program's logs of a scoring step that ran it (tasks "
                   "whose ingestion runs only during scoring); printed once the step ended.")
@stream_options
@pass_client
def submission_logs(client: Client, submission_id: int, attempt: int | None,
                    run_position: int, step: str | None, ingestion: bool, stdout_only: bool,
                    stderr_only: bool, follow: bool) -> None:
    """Print the logs of a submission's step as raw bytes: its stdout to stdout and its
    stderr to stderr; -o or -e prints just one, to stdout. The step: --step, else the
    one that failed in the latest attempt, else scoring. With -f, follows them until
    the step ends."""
    if ingestion:
        for stream, sink in selected_streams(stdout_only, stderr_only):
            sink.write(client.submission_ingestion_log(submission_id, attempt, run_position,
                                                       stream))
            sink.flush()
        return
    if step is None:
        steps = client.submission_get(submission_id).get("steps") or []
        step = next((s["step"] for s in steps if s["run"] == run_position
                     and s["state"] == "failed"), "scoring") if attempt is None else "scoring"
    chosen = step

    def fetch(stream: str, offset: int, limit: int, wait: float) -> tuple[bytes, int, str]:
        return client.submission_log_page(submission_id, attempt, run_position, chosen,
                                          stream, offset, limit=limit, wait=wait)

    def gone() -> bool:
        """No execution yet: stop following only if the submission is done."""
        return client.submission_get(submission_id)["status"] in FINAL_SUBMISSION_VALUES

    copy_logs(fetch, selected_streams(stdout_only, stderr_only), follow=follow, gone=gone)


@submission.command("rerun")
@click.argument("submission_id", type=int, required=False)
@click.option("--phase", "phase_id", type=int,
              help="Re-run every submission of this phase (those not running).")
@json_option
@pass_client
def rerun(client: Client, submission_id: int | None, phase_id: int | None,
          as_json: bool) -> None:
    """Run a submission again, as a new attempt (earlier ones are kept), or every
    submission of a phase with --phase."""
    if (submission_id is None) == (phase_id is None):
        raise click.UsageError("give a submission id or --phase PHASE_ID (one of them)")
    if phase_id is not None:
        answer = client.phase_rerun(phase_id)
        started = answer.get("rerun") or []
        listed = ": " + ", ".join(str(i) for i in started) if started else ""
        show_or_say(answer, as_json,
                     f"phase {phase_id}: {len(started)} submission(s) re-run{listed}")
        return
    assert submission_id is not None
    updated = client.submission_rerun(submission_id)
    show_or_say(updated, as_json, f"submission {submission_id} re-run: attempt "
                 f"{updated['attempts']} {updated['status']}")


@submission.command("cancel")
@click.argument("submission_id", type=int)
@json_option
@pass_client
def cancel(client: Client, submission_id: int, as_json: bool) -> None:
    """Cancel a running submission (its latest attempt)."""
    updated = client.submission_cancel(submission_id)
    show_or_say(updated, as_json, f"submission {submission_id} {updated['status']}")


@submission.command("delete")
@click.argument("submission_id", type=int)
@click.option("--attempt", type=click.IntRange(min=1),
              help="Delete only this re-run (never attempt 1).")
@json_option
@pass_client
def delete_submission(client: Client, submission_id: int, attempt: int | None,
                      as_json: bool) -> None:
    """Delete a submission with all its attempts, or one re-run with --attempt."""
    if attempt is not None:
        updated = client.attempt_delete(submission_id, attempt)
        show_or_say(updated, as_json,
                     f"attempt {attempt} of submission {submission_id} deleted")
        return
    answer = client.submission_delete(submission_id)
    show_or_say(answer, as_json, f"submission {submission_id} deleted")


@submission.command("add")
@click.argument("submission_id", type=int)
@json_option
@pass_client
def add_to_board(client: Client, submission_id: int, as_json: bool) -> None:
    """Put a submission on its phase's leaderboard (when the rule lets you choose)."""
    updated = client.submission_leaderboard(submission_id, True)
    show_or_say(updated, as_json, f"submission {submission_id} is on the leaderboard")


@submission.command("remove")
@click.argument("submission_id", type=int)
@json_option
@pass_client
def remove_from_board(client: Client, submission_id: int, as_json: bool) -> None:
    """Take a submission off its phase's leaderboard (when the rule allows it)."""
    updated = client.submission_leaderboard(submission_id, False)
    show_or_say(updated, as_json, f"submission {submission_id} is off the leaderboard")


@submission.command("outputs")
@click.argument("submission_id", type=int)
@step_options
@click.option("--download", "directory", type=click.Path(file_okay=False, path_type=Path),
              help="Download every file into this folder.")
@json_option
@pass_client
def outputs(client: Client, submission_id: int, attempt: int | None, run_position: int,
            step: str, directory: Path | None, as_json: bool) -> None:
    """List the files a step wrote to /app/output, or download them with --download."""
    files = client.submission_outputs(submission_id, attempt, run_position, step)
    if directory is None:
        print_list(files, [Column("path", "path"), Column("size", "size", justify="right")],
                   as_json=as_json)
        return
    root = directory.resolve()
    done = []
    for entry in files:
        target = (root / entry["path"]).resolve()
        if not target.is_relative_to(root):
            raise InvalidInput(f"output path {entry['path']!r} leaves {directory}")
        size = client.submission_output_download(submission_id, entry["path"], target,
                                                 attempt, run_position, step)
        done.append({"path": entry["path"], "size": size, "file": str(target)})
    show_or_say(done, as_json, f"{len(done)} file(s) downloaded to {directory}")
