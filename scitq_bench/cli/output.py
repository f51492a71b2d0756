"""Printing for every command: rich tables for people, ``--json`` for scripts.

Cells are passed to rich as ``Text`` so that brackets in commands or names are never
read as rich markup.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import click
from rich.console import Console
from rich.table import Table
from rich.text import Text

Getter = Callable[[dict[str, Any]], Any]
UNBOUNDED_WIDTH = 100_000
NO_HEADER = "scitq_bench.no_header"  # ctx.meta key set by -H/--no-header


@dataclass(frozen=True)
class Column:
    """One column: ``value`` is a key of the record or a function of it; ``width``
    truncates in the short listing; ``long`` columns only show with ``-L``."""

    header: str
    value: str | Getter
    width: int | None = None
    long: bool = False
    justify: str = "left"

    def cell(self, record: dict[str, Any], long: bool) -> str:
        raw = self.value(record) if callable(self.value) else record.get(self.value)
        text = format_value(raw)
        if self.width and not long:
            text = shorten(text, self.width)
        return text


def console(stderr: bool = False) -> Console:
    """A console on the current stdout/stderr (so click's test runner captures it).
    Off a terminal, rows are never wrapped (rich would wrap at 80 columns), so piped
    tables stay one line per row for grep and awk."""
    stream = sys.stderr if stderr else sys.stdout
    unbounded = not _isatty(stream)
    return Console(file=stream, highlight=False, soft_wrap=False,
                   width=UNBOUNDED_WIDTH if unbounded else None)


def _isatty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def format_value(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (list, tuple)):
        return " ".join(format_value(v) for v in value)
    if isinstance(value, dict):
        return json.dumps(value, sort_keys=True) if value else ""
    return str(value)


def shorten(text: str, width: int) -> str:
    text = " ".join(text.split()) if "\n" in text else text
    return text if len(text) <= width else text[: width - 1] + "…"


def when(value: str | None) -> str:
    """ISO timestamps from the server (UTC) as ``YYYY-MM-DD HH:MM:SS``."""
    if not value:
        return ""
    try:
        return datetime.fromisoformat(value.rstrip("Z")).strftime("%Y-%m-%d %H:%M:%S")
    except ValueError:
        return value


def duration(seconds: float | None) -> str:
    if seconds is None:
        return ""
    seconds = float(seconds)
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m{secs:02d}s" if hours else f"{minutes}m{secs:02d}s"


def print_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=False, default=str))


def _remember_no_header(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    if value:
        ctx.meta[NO_HEADER] = True


def no_header_param() -> click.Option:
    """``-H/--no-header`` (as in scitq-manage): tables without their header line, for
    scripts. It sets a flag of the invocation that ``print_table`` reads, so adding it
    to a command needs no change to the command itself."""
    return click.Option(["-H", "--no-header"], is_flag=True, expose_value=False,
                        callback=_remember_no_header,
                        help="Do not print the header line of the table.")


def add_no_header(group: click.Group) -> None:
    """Give every ``list`` command under ``group`` (at any depth) ``-H``."""
    for command in group.commands.values():
        if isinstance(command, click.Group):
            add_no_header(command)
        elif command.name == "list" and not any(
                "-H" in getattr(p, "opts", ()) for p in command.params):
            command.params.append(no_header_param())


def _header_wanted() -> bool:
    ctx = click.get_current_context(silent=True)
    return ctx is None or not ctx.meta.get(NO_HEADER, False)


def print_table(records: Iterable[dict[str, Any]], columns: Sequence[Column], *,
                long: bool = False, title: str | None = None) -> None:
    """Records as a table; without its header line (and title) under ``-H``."""
    records = list(records)
    header = _header_wanted()
    # -L columns that are empty in every row only take room from the ones that say something
    shown = [c for c in columns
             if not c.long or (long and any(c.cell(r, long) for r in records))]
    table = Table(title=title if header else None, show_header=header, show_edge=False,
                  box=None, pad_edge=False, header_style="bold")
    for column in shown:
        table.add_column(column.header, justify=column.justify,  # type: ignore[arg-type]
                         overflow="fold")
    for record in records:
        table.add_row(*(Text(c.cell(record, long)) for c in shown))
    console().print(table)


def print_list(records: list[dict[str, Any]], columns: Sequence[Column], *,
               as_json: bool, long: bool = False, title: str | None = None) -> None:
    """The one way lists are printed: all records as JSON, or a table."""
    if as_json:
        print_json(records)
    else:
        print_table(records, columns, long=long, title=title)


def print_record(record: dict[str, Any], *, title: str | None = None,
                 labels: dict[str, Getter] | None = None) -> None:
    """One object as a two-column field/value table; ``labels`` adds computed rows."""
    table = Table(title=title, show_header=False, show_edge=False, box=None, pad_edge=False)
    table.add_column("field", style="bold", no_wrap=True)
    table.add_column("value", overflow="fold")
    for key, value in record.items():
        table.add_row(Text(key), Text(format_value(value)))
    for key, getter in (labels or {}).items():
        table.add_row(Text(key), Text(format_value(getter(record))))
    console().print(table)


def success(message: str) -> None:
    """A one-line confirmation of what a command did."""
    click.echo(message)


def show_or_say(record: Any, as_json: bool, message: str) -> None:
    """What a command changed: the record as JSON, or a one-line confirmation."""
    if as_json:
        print_json(record)
    else:
        success(message)


def note(message: str) -> None:
    """Progress and hints that are not the command's result: stderr."""
    click.echo(message, err=True)
