"""``leaderboard``: a phase's ranked pages and CSV exports."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from scitq_bench.cli.common import json_option, pass_client
from scitq_bench.cli.output import Column, note, print_json, print_table, when
from scitq_bench.client import Client


@click.group()
def leaderboard() -> None:
    """A phase's leaderboards: ranked pages and CSV exports."""


def _board_columns(page: dict[str, Any]) -> list[Column]:
    """rank, owner, submitted, then each column (per task when there are several),
    shown as the server formats it for display (its precision; exact values are in
    ``scores`` and ``--json``)."""
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


def _phase_boards(client: Client, phase_id: int) -> list[str]:
    """The keys of the leaderboards a phase shows to this token (its benchmark's)."""
    for summary in client.bench_list():
        benchmark = client.bench_get(summary["id"])
        if any(phase["id"] == phase_id for phase in benchmark.get("phases") or []):
            return [board["key"] for board in benchmark.get("leaderboards") or []]
    raise click.ClickException(f"no phase {phase_id} among the benchmarks this token may see")


def _board_key(client: Client, phase_id: int, key: str | None) -> str:
    """KEY as given, or the phase's only leaderboard."""
    if key is not None:
        return key
    keys = _phase_boards(client, phase_id)
    if len(keys) == 1:
        return keys[0]
    if not keys:
        raise click.ClickException(f"phase {phase_id} has no leaderboard")
    raise click.ClickException(f"phase {phase_id} has {len(keys)} leaderboards; give KEY, "
                               f"one of: {', '.join(keys)}")


@leaderboard.command("show")
@click.argument("phase_id", type=int)
@click.argument("key", required=False)
@click.option("--offset", type=click.IntRange(min=0), default=0, show_default=True,
              help="First rank to show, from 0.")
@click.option("--limit", type=click.IntRange(1, 1000), default=50, show_default=True,
              help="Rows to show.")
@json_option
@pass_client
def show_board(client: Client, phase_id: int, key: str | None, offset: int, limit: int,
               as_json: bool) -> None:
    """Show a ranked page of a phase's leaderboard KEY (optional when the phase has one)."""
    page = client.leaderboard(phase_id, _board_key(client, phase_id, key), offset=offset,
                              limit=limit)
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
