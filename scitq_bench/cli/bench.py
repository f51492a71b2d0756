"""Benchmarks: ``account``, ``bench``, ``phase``, ``submission`` and ``leaderboard``.

Accounts are named or numbered on the command line (the API takes ids: names are
looked up in the account list, which only admins may read). Organizers import
Codabench bundles and steer their phases; participants submit and read leaderboards.
"""

from __future__ import annotations

from datetime import datetime, timezone
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
from scitq_bench.client.bench import FINAL_SUBMISSION_STATUSES
from scitq_bench.exceptions import InvalidInput, NotFound, ScitqBenchError

STEPS = ("prediction", "scoring")


# -- parameter types ----------------------------------------------------------------------


class UtcDateTime(click.ParamType):
    """An ISO date or date-time (``2025-03-01``, ``2025-03-01T12:00``, with an optional
    offset or ``Z``); without an offset it is UTC. Becomes ISO text with ``Z``."""

    name = "DATETIME"

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> str:
        text = str(value).strip()
        try:
            moment = datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith("Z")
                                            else text)
        except ValueError:
            self.fail(f"{value!r} is not an ISO date or date-time (say 2025-03-01 or "
                      "2025-03-01T12:00)", param, ctx)
        if moment.tzinfo is not None:
            moment = moment.astimezone(timezone.utc).replace(tzinfo=None)
        return moment.isoformat() + "Z"


CLEAR = "none"


class Limit(click.ParamType):
    """A positive number, or ``none`` to lift the limit."""

    def __init__(self, kind: type[int] | type[float]) -> None:
        self.kind = kind
        self.name = "N|none"

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> int | float | str:
        text = str(value).strip().lower()
        if text == CLEAR:
            return CLEAR
        try:
            number = self.kind(text)
        except ValueError:
            self.fail(f"{value!r} is not a number nor 'none'", param, ctx)
        if number <= 0:
            self.fail(f"{value!r} is not above 0 (say 'none' for no limit)", param, ctx)
        return number


# -- shared helpers -----------------------------------------------------------------------


def account_id_of(client: Client, value: str) -> int:
    """An account given by id or by exact name."""
    if value.isdigit():
        return int(value)
    for account in client.account_list():
        if account["name"] == value:
            return int(account["id"])
    raise NotFound(f"no account {value!r}")


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


def _print_token(answer: dict[str, Any], done: str) -> None:
    """The token alone on stdout (so ``TOKEN=$(...)`` works); the rest on stderr."""
    account = answer["account"]
    note(f"account {account['name']!r} ({account['role']}, id {account['id']}) {done}.")
    note("Warning: this token is not shown again; keep it now.")
    click.echo(answer["token"])


# -- account ------------------------------------------------------------------------------

ACCOUNT_COLUMNS = [
    Column("id", "id", justify="right"),
    Column("name", "name"),
    Column("role", "role"),
    Column("email", "email"),
    Column("created", lambda a: when(a.get("created_at"))),
]


@click.group()
def account() -> None:
    """Participant and organizer accounts (admin)."""


@account.command("create")
@click.argument("name")
@click.option("--role", type=click.Choice(["participant", "organizer"]), default="participant",
              show_default=True, help="Participants submit; organizers also import and "
              "manage their own benchmarks.")
@click.option("--email", help="A contact address.")
@json_option
@pass_client
def create_account(client: Client, name: str, role: str, email: str | None,
                   as_json: bool) -> None:
    """Create an account and print its token, once."""
    answer = client.account_create(name, role=role, email=email)
    if as_json:
        note("Warning: this token is not shown again; keep it now.")
        print_json(answer)
    else:
        _print_token(answer, "created")


@account.command("list")
@json_option
@pass_client
def list_accounts(client: Client, as_json: bool) -> None:
    """List accounts."""
    print_list(client.account_list(), ACCOUNT_COLUMNS, as_json=as_json)


@account.command("token")
@click.argument("name_or_id")
@click.option("--revoke-others", is_flag=True, help="Invalidate the account's other tokens.")
@json_option
@pass_client
def account_token(client: Client, name_or_id: str, revoke_others: bool, as_json: bool) -> None:
    """Give an account a new token (printed once)."""
    answer = client.account_token(account_id_of(client, name_or_id), revoke_others)
    if as_json:
        note("Warning: this token is not shown again; keep it now.")
        print_json(answer)
    else:
        done = "has a new token" + (" (its other tokens are revoked)" if revoke_others else "")
        _print_token(answer, done)


@account.command("delete")
@click.argument("name_or_id")
@json_option
@pass_client
def delete_account(client: Client, name_or_id: str, as_json: bool) -> None:
    """Delete an account and its tokens (its submissions stay, without owner)."""
    answer = client.account_delete(account_id_of(client, name_or_id))
    show_or_say(answer, as_json, f"account {name_or_id} deleted")


# -- bench ----------------------------------------------------------------------------------

BENCH_COLUMNS = [
    Column("id", "id", justify="right"),
    Column("key", "key"),
    Column("title", "title", width=50),
    Column("visibility", "visibility"),
    Column("created", lambda b: when(b.get("created_at"))),
]

PHASE_COLUMNS = [
    Column("id", "id", justify="right"),
    Column("index", "index", justify="right"),
    Column("name", "name"),
    Column("start", lambda p: when(p.get("start"))),
    Column("end", lambda p: when(p.get("end")) or "never"),
    Column("max subs", "max_submissions", justify="right"),
    Column("per day", "max_submissions_per_day", justify="right"),
    Column("max MB", "max_submission_mb", justify="right"),
    Column("time limit", lambda p: f"{p['execution_time_limit']}s"
           if p.get("execution_time_limit") else "", justify="right"),
    Column("result only", "accepts_only_result_submissions"),
    Column("hide", lambda p: ", ".join(label for label, key in (
        ("output", "hide_output"), ("prediction", "hide_prediction_output"),
        ("scoring", "hide_score_output")) if p.get(key))),
    Column("tasks", "tasks"),
]

TASK_COLUMNS = [
    Column("id", "id", justify="right"),
    Column("index", "index", justify="right"),
    Column("name", "name"),
    Column("ingestion", "has_ingestion"),
    Column("gpu", "gpu"),
    Column("image", "image"),
    Column("description", "description", width=40),
]

BOARD_COLUMNS = [
    Column("index", "index", justify="right"),
    Column("key", "key"),
    Column("title", "title"),
    Column("sorting", "sorting"),
    Column("computation", lambda c: f"{c['computation']} {c.get('computation_indexes') or ''}"
           .strip() if c.get("computation") else ""),
    Column("precision", "precision", justify="right"),
    Column("hidden", lambda c: "yes" if c.get("hidden") else ""),
]


@click.group()
def bench() -> None:
    """Benchmarks: import Codabench bundles, list, show, delete."""


@bench.command("import")
@click.argument("bundle", type=click.Path(exists=True, path_type=Path))
@click.option("--key", help="Short name [default: from the title].")
@click.option("--private", is_flag=True, help="Only its organizers and admins see it.")
@click.option("--run-on-host", is_flag=True,
              help="Run its (trusted) programs sandboxed on the workers' hosts, without an "
                   "image (admin only).")
@json_option
@pass_client
def import_bench(client: Client, bundle: Path, key: str | None, private: bool,
                 run_on_host: bool, as_json: bool) -> None:
    """Import a Codabench bundle: a zip, or a folder (zipped and uploaded). All of it
    or nothing: any error leaves no benchmark behind."""
    created = client.bench_import(bundle, key=key,
                                  visibility="private" if private else "public",
                                  run_on_host=run_on_host)
    if as_json:
        print_json(created)
        return
    phases = ", ".join(f"{p['id']} ({p['name']})" for p in created.get("phases", []))
    success(f"benchmark {created['id']} imported: {created['key']} "
            f"({created['title']}); phases {phases}")


@bench.command("list")
@json_option
@pass_client
def list_benches(client: Client, as_json: bool) -> None:
    """List the benchmarks this token may see."""
    print_list(client.bench_list(), BENCH_COLUMNS, as_json=as_json)


@bench.command("show")
@click.argument("benchmark_id", type=int)
@json_option
@pass_client
def show_bench(client: Client, benchmark_id: int, as_json: bool) -> None:
    """Show a benchmark: its phases (dates, limits), tasks and leaderboards."""
    found = client.bench_get(benchmark_id)
    if as_json:
        print_json(found)
        return
    fields = ("id", "key", "title", "owner", "visibility", "docker_image", "run_on_host",
              "enable_detailed_results", "manage")
    record = {name: found.get(name) for name in fields}
    record["created"] = when(found.get("created_at"))
    print_record(record, title=f"benchmark {benchmark_id}")
    click.echo()
    print_table(found.get("phases", []), PHASE_COLUMNS, title="phases")
    click.echo()
    print_table(found.get("tasks", []), TASK_COLUMNS, title="tasks")
    for board in found.get("leaderboards", []):
        click.echo()
        hidden = ", hidden" if board.get("hidden") else ""
        print_table(board.get("columns", []), BOARD_COLUMNS,
                    title=f"leaderboard {board['key']}: {board['title']} "
                          f"({board['submission_rule']}{hidden})")


@bench.command("task")
@click.argument("benchmark_id", type=int)
@click.argument("index", type=int)
@click.option("--gpu", help="GPUs each step of the task needs: a count, or all.")
@click.option("--image", help="An image for this task ('' for the benchmark's).")
@json_option
@pass_client
def update_bench_task(client: Client, benchmark_id: int, index: int, gpu: str | None,
                      image: str | None, as_json: bool) -> None:
    """Set the resources of task INDEX of a benchmark."""
    if gpu is None and image is None:
        raise click.UsageError("give --gpu and/or --image")
    count: int | str | None = gpu
    if gpu is not None and gpu != "all":
        if not gpu.isdigit():
            raise click.BadParameter(f"{gpu!r} is not a count or all", param_hint="--gpu")
        count = int(gpu)
    answer = client.bench_task_update(benchmark_id, index, gpu=count, image=image)
    task = next(t for t in answer["tasks"] if t["index"] == index)
    show_or_say(task, as_json, f"benchmark {benchmark_id} task {index}: gpu {task['gpu']}, "
                 f"image {task.get('image') or '(the benchmark' + chr(39) + 's)'}")


@bench.command("delete")
@click.argument("benchmark_id", type=int)
@click.option("-y", "--yes", is_flag=True, help="Do not ask for confirmation.")
@json_option
@pass_client
def delete_bench(client: Client, benchmark_id: int, yes: bool, as_json: bool) -> None:
    """Delete a benchmark with its submissions, their tasks and its files."""
    found = client.bench_get(benchmark_id)
    if not yes:
        click.confirm(f"Delete benchmark {benchmark_id} ({found['key']}) with all its "
                      "submissions?", abort=True, err=True)
    answer = client.bench_delete(benchmark_id)
    show_or_say(answer, as_json, f"benchmark {benchmark_id} deleted")


# -- phase ----------------------------------------------------------------------------------


@click.group()
def phase() -> None:
    """Phases: dates, limits, what participants see (organizers)."""


@phase.command("update")
@click.argument("phase_id", type=int)
@click.option("--name", help="New name.")
@click.option("--description", help="New description.")
@click.option("--start", type=UtcDateTime(), help="Opening date (UTC unless an offset is given).")
@click.option("--end", type=UtcDateTime(), help="Closing date (UTC unless an offset is given).")
@click.option("--no-end", is_flag=True, help="Never close.")
@click.option("--max-submissions", type=Limit(int), metavar="N|none",
              help="Submissions per participant.")
@click.option("--max-per-day", type=Limit(int), metavar="N|none",
              help="Submissions per participant per UTC day.")
@click.option("--max-mb", type=Limit(float), metavar="MB|none",
              help="Largest submission, in MB.")
@click.option("--time-limit", type=click.IntRange(min=1), help="Seconds each step may run.")
@click.option("--hide-output/--show-output", default=None,
              help="Hide the logs of submissions from participants, or show them.")
@click.option("--hide-prediction-output/--show-prediction-output", default=None,
              help="Hide the prediction step's output files, or show them.")
@click.option("--hide-score-output/--show-score-output", default=None,
              help="Hide the scoring step's output files, or show them.")
@click.option("--result-only/--any-kind", default=None,
              help="Accept only result submissions, or code and images too.")
@json_option
@pass_client
def update_phase(client: Client, phase_id: int, name: str | None, description: str | None,
                 start: str | None, end: str | None, no_end: bool, max_submissions: Any,
                 max_per_day: Any, max_mb: Any, time_limit: int | None,
                 hide_output: bool | None, hide_prediction_output: bool | None,
                 hide_score_output: bool | None, result_only: bool | None,
                 as_json: bool) -> None:
    """Change a phase's dates, limits or output visibility. Limits take a number, or
    'none' to lift them."""
    if end is not None and no_end:
        raise click.UsageError("give --end or --no-end, not both")
    given = {
        "name": name, "description": description, "start": start, "end": end,
        "max_submissions": max_submissions, "max_submissions_per_day": max_per_day,
        "max_submission_mb": max_mb, "execution_time_limit": time_limit,
        "hide_output": hide_output, "hide_prediction_output": hide_prediction_output,
        "hide_score_output": hide_score_output,
        "accepts_only_result_submissions": result_only,
    }
    fields = {key: None if value == CLEAR else value
              for key, value in given.items() if value is not None}
    if no_end:
        fields["end"] = None
    if not fields:
        raise click.UsageError("nothing to update: give at least one field to change")
    updated = client.phase_update(phase_id, **fields)
    if as_json:
        print_json(updated)
        return
    end_text = when(updated.get("end")) or "never"
    success(f"phase {phase_id} ({updated['name']}) updated: open from "
            f"{when(updated.get('start'))} to {end_text}")


# -- submission -------------------------------------------------------------------------

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


def step_options(function: Any) -> Any:
    """``--attempt``, ``--run``, ``--step``: which step's logs or outputs."""
    function = click.option("--step", type=click.Choice(STEPS), default="scoring",
                            show_default=True, help="Which step of the run.")(function)
    function = click.option("--run", "run_position", type=click.IntRange(min=0), default=0,
                            show_default=True,
                            help="Which run: the task's position in the phase.")(function)
    function = click.option("--attempt", type=click.IntRange(min=1),
                            help="Attempt number [default: the latest].")(function)
    return function


@click.group()
def submission() -> None:
    """Submissions: submit, follow, inspect, re-run, pick for leaderboards."""


@submission.command("submit")
@click.argument("phase_id", type=int)
@click.argument("path", required=False, type=click.Path(exists=True, path_type=Path))
@click.option("--kind", type=click.Choice(["result", "code", "image"]),
              help="What PATH holds: predictions (result) or a program (code); 'image' "
                   "submits --image instead [default: image with --image, else result].")
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
    kind = kind or ("image" if image else "result")
    if kind == "image" and path is not None:
        raise click.UsageError("an image submission has no PATH: give --image only")
    if kind != "image" and path is None:
        raise click.UsageError(f"a {kind} submission needs its PATH (a zip or a folder)")
    created = client.submission_submit(phase_id, path, kind=kind, name=name, image=image,
                                       command=command)
    if not wait:
        show_or_say(created, as_json,
                     f"submission {created['id']} submitted to phase {phase_id} "
                     f"({created['status']})")
        return
    note(f"submission {created['id']} submitted to phase {phase_id}; waiting for it")
    (final,) = client.submission_wait([created["id"]])
    if as_json:
        print_json(final)
    else:
        scores = scores_text(final.get("scores"))
        success(f"submission {final['id']} {final['status']}" + (f": {scores}" if scores else ""))
    if final["status"] != "finished":
        raise ScitqBenchError(f"submission {final['id']} {final['status']}"
                              + _last_error(final))


def _last_error(record: dict[str, Any]) -> str:
    attempts = record.get("attempts_detail") or []
    error = attempts[-1].get("error") if attempts else None
    return f": {error}" if error else ""


@submission.command("list")
@click.option("--benchmark", type=int, help="Only this benchmark's submissions.")
@click.option("--phase", type=int, help="Only this phase's submissions.")
@click.option("--status", type=click.Choice(["submitted", "running", "finished", "failed",
                                             "cancelled"]), help="Only in this status.")
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
              if key not in ("attempts_detail", "scores", "created_at")}
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


@submission.command("logs", short_help="Print a step's logs.")
@click.argument("submission_id", type=int)
@step_options
@stream_options
@pass_client
def submission_logs(client: Client, submission_id: int, attempt: int | None,
                    run_position: int, step: str, stdout_only: bool, stderr_only: bool,
                    follow: bool) -> None:
    """Print the logs of a submission's step (scoring by default) as raw bytes: its
    stdout to stdout and its stderr to stderr; -o or -e prints just one, to stdout.
    With -f, follows them until the step ends."""

    def fetch(stream: str, offset: int, limit: int, wait: float) -> tuple[bytes, int, str]:
        return client.submission_log_page(submission_id, attempt, run_position, step,
                                          stream, offset, limit=limit, wait=wait)

    def gone() -> bool:
        """No execution yet: stop following only if the submission is done."""
        return client.submission_get(submission_id)["status"] in FINAL_SUBMISSION_STATUSES

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


# -- leaderboard --------------------------------------------------------------------------


@click.group()
def leaderboard() -> None:
    """A phase's leaderboards: ranked pages and CSV exports."""


def _board_columns(page: dict[str, Any]) -> list[Column]:
    """rank, owner, submitted, then each column (per task when there are several),
    shown as the server formats it (its precision)."""
    tasks = page.get("tasks") or []
    several = len(tasks) > 1
    columns = [Column("rank", "rank", justify="right"), Column("owner", "owner"),
               Column("submitted", lambda r: when(r.get("submitted_at")))]
    for task in tasks:
        for column in page.get("columns") or []:
            header = column["title"] + (" (hidden)" if column.get("hidden") else "")
            if several:
                header = f"{task['name']}/{header}"

            def cell(row: dict[str, Any], task_key: str = task["key"],
                     column_key: str = column["key"]) -> str:
                return ((row.get("display") or {}).get(task_key) or {}).get(column_key) or ""

            columns.append(Column(header, cell, justify="right"))
    return columns


@leaderboard.command("show")
@click.argument("phase_id", type=int)
@click.argument("key")
@click.option("--offset", type=click.IntRange(min=0), default=0, show_default=True,
              help="First rank to show, from 0.")
@click.option("--limit", type=click.IntRange(1, 1000), default=50, show_default=True,
              help="Rows to show.")
@json_option
@pass_client
def show_board(client: Client, phase_id: int, key: str, offset: int, limit: int,
               as_json: bool) -> None:
    """Show a ranked page of a phase's leaderboard KEY."""
    page = client.leaderboard(phase_id, key, offset=offset, limit=limit)
    if as_json:
        print_json(page)
        return
    rows = page.get("rows") or []
    print_table(rows, _board_columns(page), title=f"{page['title']} ({page['key']}, "
                f"phase {phase_id})")
    total = page.get("total", len(rows))
    if not rows:
        note(f"no ranked submission{' at this offset' if total else ' yet'} "
             f"({total} in all)")
    elif len(rows) < total:
        note(f"rows {offset + 1}-{offset + len(rows)} of {total}")


@leaderboard.command("export")
@click.argument("phase_id", type=int)
@click.argument("key")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the CSV to this file [default: stdout].")
@pass_client
def export_board(client: Client, phase_id: int, key: str, output: Path | None) -> None:
    """Export the whole leaderboard KEY of a phase as CSV."""
    text = client.leaderboard_csv(phase_id, key)
    if output is None:
        click.echo(text, nl=False)
        return
    output.write_text(text, encoding="utf-8", newline="")
    lines = max(0, len(text.splitlines()) - 1)
    note(f"{lines} row(s) written to {output}")


COMMANDS = (account, bench, phase, submission, leaderboard)
