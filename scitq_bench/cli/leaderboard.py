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
