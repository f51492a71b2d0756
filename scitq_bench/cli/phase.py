"""``phase``: organizers steer a benchmark's phases (dates, limits, what participants
see)."""

from __future__ import annotations

from datetime import timezone
from typing import Any

import click
from dateutil import parser as date_parser  # type: ignore[import-untyped]

from scitq_bench.cli.common import json_option, pass_client
from scitq_bench.cli.output import print_json, success, when
from scitq_bench.client import Client


class UtcDateTime(click.ParamType):
    """A date or date-time in any form competition.yaml takes (``2025-03-01``,
    ``2025-03-01T12:00Z``, ``3/1/2025``, month first), read with dateutil as Codabench
    reads phase dates; without an offset it is UTC. Becomes ISO text with ``Z``."""

    name = "DATETIME"

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> str:
        text = str(value).strip()
        try:
            moment = date_parser.parse(text)
        except (ValueError, OverflowError):
            self.fail(f"{value!r} is not a date (say an ISO date or date-time: 2025-03-01 "
                      "or 2025-03-01T12:00)", param, ctx)
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
