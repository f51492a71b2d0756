"""``server backup`` and ``server restore``: the server's whole state in one archive
file, and back. Run where the server runs (its data directory and database).

They add themselves to the ``server`` group, which imports this module last. Server
modules are imported inside the commands so that client commands never load Flask or
SQLAlchemy.
"""

from __future__ import annotations

from pathlib import Path

import click

from scitq_bench.cli.server import data_dir_option, database_errors, server
from scitq_bench.settings import ServerSettings


@click.command("backup", short_help="Write the database, logs and stored files to one file.")
@data_dir_option
@click.option("-o", "--output", required=True, metavar="FILE",
              type=click.Path(dir_okay=False, path_type=Path),
              help="The archive to write (a .tar.gz, mode 0600; replaced if it exists). "
                   "Keep it off the server's disks.")
def backup(data_dir: Path | None, output: Path) -> None:
    """Back up a server, running or not: the database first (one consistent instant),
    then the execution logs, the file store and the data directory's settings and
    keys, into one archive written under a temporary name and renamed when complete."""
    from scitq_bench.server.backup import create_backup

    settings = ServerSettings.from_env(data_dir)
    with database_errors():
        summary = create_backup(settings, output)
    click.echo(summary.line())


@click.command("restore", short_help="Restore a backup into a fresh data dir and database.")
@click.argument("archive", metavar="FILE",
                type=click.Path(exists=True, dir_okay=False, path_type=Path))
@data_dir_option
def restore(archive: Path, data_dir: Path | None) -> None:
    """Restore FILE (written by `server backup`) into the data directory and the
    database the settings name, as `server init` would use them. Both must be fresh:
    no database file or an empty PostgreSQL database, empty log and store
    directories. The schema is then migrated to this version's."""
    from scitq_bench.server.restore import restore_backup

    settings = ServerSettings.from_env(data_dir)
    with database_errors():
        summary, notes = restore_backup(settings, archive)
    click.echo(summary.line())
    for note in notes:
        click.echo(f"Note: {note}")


server.add_command(backup)
server.add_command(restore)
