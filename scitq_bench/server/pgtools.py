"""The machine's PostgreSQL client programs (``pg_dump``, ``pg_restore``) and how to
name a database to them: a PostgreSQL backup is PostgreSQL's own dump format, which
only these programs write and read.

A program is looked for on PATH first, then in ``/usr/lib/postgresql/*/bin``, newest
version first (where Debian and Ubuntu install each major version side by side).
``pg_dump`` cannot dump a server newer than itself, nor ``pg_restore`` read an archive
from a newer ``pg_dump``: the first program found that is new enough is used, and when
none is, the error names both versions.

The database is named in libpq's terms, exactly as SQLAlchemy's driver hands them to
libpq (host, port, user, database name and the URL's query options), as one conninfo
string without the password, which goes in the child's environment only
(``PGPASSWORD``): a command line is readable by every user of the machine.
"""

from __future__ import annotations

import glob
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.engine import make_url

from scitq_bench.exceptions import ScitqBenchError

PACKAGED = "/usr/lib/postgresql/*/bin"
VERSION = re.compile(r"\(PostgreSQL\)\s+(\d+(?:\.\d+)*)")


def major(version: str) -> tuple[int, ...]:
    """The major version of ``16.4`` is (16,); of ``9.6.24``, (9, 6): before 10 it had
    two parts."""
    numbers = tuple(int(n) for n in re.findall(r"\d+", version)[:2])
    return numbers[:1] if numbers and numbers[0] >= 10 else numbers


@dataclass(frozen=True)
class Program:
    """A client program found on this machine, and the version it reports."""

    path: str
    version: str

    @property
    def name(self) -> str:
        return Path(self.path).name


@dataclass(frozen=True)
class Target:
    """A database in libpq's terms: the conninfo to pass as ``--dbname`` and the
    environment the child runs with (``PGPASSWORD`` when the URL holds one)."""

    conninfo: str
    env: dict[str, str]
    label: str  # the URL without its password, for messages


def candidates(name: str) -> list[str]:
    """``name`` on PATH, then in every packaged version's directory, newest first."""
    packaged = sorted(glob.glob(os.path.join(PACKAGED, name)),
                      key=lambda path: major(Path(path).parent.parent.name), reverse=True)
    found = [shutil.which(name), *packaged]
    return list(dict.fromkeys(path for path in found if path))


def probe(path: str) -> Program | None:
    """The program at ``path`` with its version; None when it does not run."""
    try:
        result = subprocess.run([path, "--version"], capture_output=True, text=True,
                                timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    match = VERSION.search(result.stdout)
    return Program(path, match.group(1)) if result.returncode == 0 and match else None


def find_program(name: str, at_least: str, needed_for: str) -> Program:
    """The first ``name`` found whose major version is ``at_least``'s or newer.
    ``needed_for`` says whose version that is, for the error (``the PostgreSQL
    server``)."""
    too_old: list[Program] = []
    for path in candidates(name):
        program = probe(path)
        if program is None:
            continue
        if major(program.version) >= major(at_least):
            return program
        too_old.append(program)
    wanted = ".".join(str(n) for n in major(at_least))
    if not too_old:
        raise ScitqBenchError(f"{name} not found on PATH nor in {PACKAGED}: install the "
                              f"PostgreSQL client programs, version {wanted} or newer")
    newest = max(too_old, key=lambda program: major(program.version))
    raise ScitqBenchError(
        f"{name} {newest.version} ({newest.path}) is older than {needed_for} ({at_least}): "
        f"install the PostgreSQL {wanted} client programs and put them first on PATH")


def libpq_target(url: str) -> Target:
    """``url`` (a SQLAlchemy PostgreSQL URL) as its driver would give it to libpq."""
    parsed = make_url(url)
    _args, params = parsed.get_dialect()().create_connect_args(parsed)
    env = dict(os.environ)
    password = params.pop("password", None)
    if password is not None:
        env["PGPASSWORD"] = str(password)
    conninfo = " ".join(f"{key}={_quoted(str(value))}" for key, value in sorted(params.items()))
    return Target(conninfo, env, parsed.render_as_string(hide_password=True))


def _quoted(value: str) -> str:
    """A conninfo value: in single quotes, with quotes and backslashes escaped."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def run_program(program: Program, arguments: list[str], target: Target, what: str) -> None:
    """Run ``program`` with an argument list (no shell); a failure raises with the
    program's last words."""
    result = subprocess.run([program.path, *arguments], env=target.env, capture_output=True,
                            text=True, check=False)
    if result.returncode != 0:
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        reason = " / ".join(lines[-3:]) or f"exit status {result.returncode}"
        raise ScitqBenchError(f"{what} failed ({program.name} {program.version}, "
                              f"{target.label}): {reason}")
