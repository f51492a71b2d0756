"""``files list|copy|sync|delete|cat``: files wherever they live, with one set of
commands for file://, server://, s3://, azure://, ftp(s):// and (to read) http(s)://.

Credentials come from each SDK's own configuration or the storage settings file
(``scitq_bench.storage.config``), server:// from the usual --server and --token. A
failure prints one line naming the URI; the storage layer leaves nothing half-written.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from typing import Any

import click
from rich.table import Table
from rich.text import Text

from scitq_bench.cli.common import cli_state, json_option, long_option
from scitq_bench.cli.output import console, format_value, print_json, success, when
from scitq_bench.client.files import Files, Plan
from scitq_bench.storage.base import Progress, StorageError, no_progress
from scitq_bench.storage.copying import Moved


class FilesGroup(click.Group):
    """Reports a store's refusal or failure as one line naming the URI."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except StorageError as exc:
            raise click.ClickException(str(exc)) from None


@click.group(cls=FilesGroup)
def files() -> None:
    """Files across stores: list, copy, sync, delete, cat. URIs: file:///path,
    server://path, s3://bucket/key, azure://account/container/path,
    ftp(s)://host[:port]/path, http(s)://host/path (read only). A trailing "/" names
    a folder."""


quiet_option = click.option("-q", "--quiet", is_flag=True,
                            help="No progress bar and no summary line.")


@contextmanager
def _opened(*uris: str) -> Iterator[Files]:
    """``Files`` for these URIs: a server client only when one of them is server://
    (so the others never read the client config)."""
    server = any(uri.strip().lower().startswith("server:") for uri in uris)
    with Files(cli_state().client() if server else None) as opened:
        yield opened


@contextmanager
def _bar(plan: Plan, quiet: bool) -> Iterator[Progress]:
    """A transient progress bar over the plan's bytes, on a terminal only."""
    if quiet or not plan.transfers or not _isatty():
        yield no_progress
        return
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )
    from rich.progress import Progress as Bar

    label = f"{len(plan.transfers)} file(s)"
    with Bar(TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
             TransferSpeedColumn(), TimeRemainingColumn(), console=console(),
             transient=True) as bar:
        task = bar.add_task(label, total=plan.total)
        yield lambda count: bar.advance(task, count)  # negative after a retry


def _isatty() -> bool:
    try:
        return sys.stdout.isatty()
    except (AttributeError, ValueError):
        return False


@files.command("list")
@click.argument("uri")
@click.option("-H", "--no-header", is_flag=True, help="No header line (for scripts).")
@long_option
@json_option
def list_files(uri: str, no_header: bool, long: bool, as_json: bool) -> None:
    """List a file, or a folder's files at any depth: size in bytes, modification
    time (UTC) and path relative to the folder (-L: also the version)."""
    with _opened(uri) as opened:
        rows = opened.list(uri)
    if as_json:
        print_json(rows)
        return
    table = Table(show_header=not no_header, show_edge=False, box=None, pad_edge=False,
                  header_style="bold")
    table.add_column("size", justify="right")
    table.add_column("modified")
    if long:
        table.add_column("version", overflow="fold")
    table.add_column("path", overflow="fold")
    for row in rows:
        cells = [format_value(row["size"]), when(row["modified"])]
        if long:
            cells.append(format_value(row["version"]))
        table.add_row(*(Text(cell) for cell in [*cells, row["path"]]))
    console().print(table)


@files.command("copy")
@click.argument("source")
@click.argument("destination")
@quiet_option
@json_option
def copy_files(source: str, destination: str, quiet: bool, as_json: bool) -> None:
    """Copy SOURCE to DESTINATION. A file goes into DESTINATION when it ends with "/"
    or is a folder, else becomes it. A folder goes into DESTINATION: with a trailing
    "/" its contents, without it the folder itself (as rsync does)."""
    with _opened(source, destination) as opened:
        plan = opened.plan_copy(source, destination)
        with _bar(plan, quiet or as_json) as progress:
            moved = opened.run(plan, progress)
    _report(moved, plan, as_json, quiet, "copied")


@files.command("sync")
@click.argument("source")
@click.argument("destination")
@click.option("--delete", is_flag=True,
              help="Also delete the files of DESTINATION that SOURCE does not have.")
@click.option("-n", "--dry-run", is_flag=True, help="Say what would change; change nothing.")
@quiet_option
@json_option
def sync_files(source: str, destination: str, delete: bool, dry_run: bool, quiet: bool,
               as_json: bool) -> None:
    """Copy only the files of SOURCE that differ at DESTINATION (as copy places them).
    A file is left as it is when its size matches and its SHA-256 does where both
    stores record one, else when the copy there is not older, else on size alone."""
    with _opened(source, destination) as opened:
        plan = opened.plan_sync(source, destination, delete=delete)
        if dry_run:
            _show_plan(plan, as_json)
            return
        with _bar(plan, quiet or as_json) as progress:
            moved = opened.run(plan, progress)
    _report(moved, plan, as_json, quiet, "copied")


@files.command("delete")
@click.argument("uri")
@click.option("-r", "--recursive", is_flag=True, help="Delete a folder and all its files.")
@click.option("-y", "--yes", is_flag=True, help="Do not ask for confirmation.")
@json_option
def delete_files(uri: str, recursive: bool, yes: bool, as_json: bool) -> None:
    """Delete a file, or with -r a folder with all its files (asking first unless -y)."""
    with _opened(uri) as opened:
        if recursive and not yes and opened.is_folder(uri):
            count = len(opened.list(uri))
            click.confirm(f"Delete {uri} and its {count} file(s)?", abort=True, err=True)
        deleted = opened.delete(uri, recursive=recursive)
    if as_json:
        print_json({"deleted": deleted})
    else:
        success(f"deleted {uri}" + (f" ({len(deleted)} file(s))" if recursive else ""))


@files.command("cat")
@click.argument("uri")
def cat_file(uri: str) -> None:
    """Write a file's bytes to stdout."""
    out = sys.stdout.buffer
    with _opened(uri) as opened:
        for chunk in opened.cat(uri):
            out.write(chunk)
    out.flush()


def _report(moved: Moved, plan: Plan, as_json: bool, quiet: bool, verb: str) -> None:
    if as_json:
        print_json(asdict(moved))
        return
    if quiet:
        return
    parts = [f"{verb} {len(moved.copied)} file(s) ({human(moved.size)}) to "
             f"{plan.destination}"]
    if plan.kind == "sync":
        parts.append(f"{len(moved.skipped)} already there")
        deleted = getattr(moved, "deleted", [])
        if deleted:
            parts.append(f"{len(deleted)} deleted")
    success(", ".join(parts))


def _show_plan(plan: Plan, as_json: bool) -> None:
    deleted = [key[len(plan.base.key):] for key in plan.stale]
    if as_json:
        print_json({"copy": [plan.shown(t.relative) for t in plan.transfers],
                    "skip": [plan.shown(relative) for relative in plan.skipped],
                    "delete": [plan.shown(relative) for relative in deleted],
                    "size": plan.size})
        return
    for transfer in plan.transfers:
        click.echo(f"copy {plan.shown(transfer.relative)}")
    for relative in deleted:
        click.echo(f"delete {plan.shown(relative)}")
    size = "unknown size" if plan.size is None else human(plan.size)
    success(f"would copy {len(plan.transfers)} file(s) ({size}) to {plan.destination}, "
            f"leave {len(plan.skipped)}, delete {len(deleted)}")


def human(size: int) -> str:
    """Bytes as people read them (1 KiB = 1024 bytes)."""
    value = float(size)
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{size} bytes" if unit == "bytes" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError(size)
