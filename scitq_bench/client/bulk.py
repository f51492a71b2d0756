"""Bulk evaluation: many entries submitted to one phase, each under its own key, then
followed until scored, their scores written to a CSV or JSON file as they land.

The server is the source of truth: a key already submitted by this account to the
phase is never submitted again, so an interrupted run started again resumes where it
stopped, with no local state besides the scores file. That file is rewritten whole
(a temporary file renamed over it) each time results arrive, so it is always complete
and readable, even after a kill.
"""

from __future__ import annotations

import csv
import io
import json
import os
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from scitq_bench.exceptions import InvalidInput, ScitqBenchError
from scitq_bench.states import FINAL_SUBMISSION_VALUES

if TYPE_CHECKING:
    from scitq_bench.client.bench import BenchClientMixin

PathLike = str | os.PathLike[str]
LIST_LIMIT = 1_000_000  # every submission of the phase in one listing
FIXED_COLUMNS = ("key", "submission_id", "status")
KEY_MAX = 255


@dataclass(frozen=True)
class Entry:
    """One thing to evaluate: a zip or folder (``path``), or an image with its command."""

    key: str
    path: Path | None = None
    image: str | None = None
    command: str | None = None


EntryItem = PathLike | Entry | tuple[str, PathLike] | tuple[str, str, str | None]
Entries = PathLike | Iterable[EntryItem]


def entry_key(path: Path) -> str:
    """An entry's key from its file or folder name: ``model-a.zip`` is ``model-a``."""
    return path.name[:-4] if path.name.lower().endswith(".zip") else path.name


def folder_entries(folder: Path) -> list[Entry]:
    """Each zip file and sub-folder of ``folder`` (hidden ones aside), by name."""
    if not folder.exists():
        raise FileNotFoundError(f"{folder}: no such folder")
    if not folder.is_dir():
        raise InvalidInput(f"{folder}: not a folder (give a folder of entries or a list)")
    found = [Entry(entry_key(p), p) for p in sorted(folder.iterdir())
             if not p.name.startswith(".")
             and (p.is_dir() or (p.is_file() and p.name.lower().endswith(".zip")))]
    if not found:
        raise InvalidInput(f"{folder}: no entries (zip files or sub-folders) in it")
    return found


def list_entries(list_file: Path) -> list[Entry]:
    """Entries from a list file, one a line (blank lines and ``#`` comments aside),
    fields separated by tabs: ``PATH`` (keyed by its name), ``KEY<TAB>PATH``, or
    ``KEY<TAB>IMAGE<TAB>COMMAND`` for an image submission (COMMAND may be empty).
    Relative paths are read from the list file's folder."""
    if not list_file.is_file():
        raise FileNotFoundError(f"{list_file}: no such file")
    entries = []
    for number, line in enumerate(list_file.read_text().splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        fields = [f.strip() for f in line.split("\t")]
        where = f"{list_file}:{number}"
        if len(fields) == 1:
            path = list_file.parent / fields[0]
            entries.append(Entry(entry_key(path), path))
        elif len(fields) == 2 and fields[0] and fields[1]:
            entries.append(Entry(fields[0], list_file.parent / fields[1]))
        elif len(fields) == 3 and fields[0] and fields[1]:
            entries.append(Entry(fields[0], image=fields[1], command=fields[2] or None))
        else:
            raise InvalidInput(f"{where}: expected PATH, KEY<TAB>PATH or "
                               f"KEY<TAB>IMAGE<TAB>COMMAND, got {line!r}")
    if not entries:
        raise InvalidInput(f"{list_file}: no entries in it")
    return checked(entries, str(list_file))


def as_entries(entries: Entries) -> list[Entry]:
    """``entries`` as ``Entry`` objects: a folder, or paths, (key, path) pairs and
    (key, image, command) triples; every path checked and every key unique."""
    if isinstance(entries, (str, os.PathLike)):
        return checked(folder_entries(Path(entries)), str(entries))
    found = []
    for item in entries:
        if isinstance(item, Entry):
            found.append(item)
        elif isinstance(item, (str, os.PathLike)):
            found.append(Entry(entry_key(Path(item)), Path(item)))
        elif isinstance(item, tuple) and len(item) == 2:
            found.append(Entry(str(item[0]), Path(item[1])))
        elif isinstance(item, tuple) and len(item) == 3:
            found.append(Entry(str(item[0]), image=str(item[1]),
                               command=None if item[2] is None else str(item[2])))
        else:
            raise InvalidInput(f"entry {item!r}: expected a path, (key, path) or "
                               "(key, image, command)")
    if not found:
        raise InvalidInput("no entries to evaluate")
    return checked(found, "entries")


def checked(entries: list[Entry], source: str) -> list[Entry]:
    """Refuse duplicate or malformed keys and missing paths before anything is sent."""
    seen: set[str] = set()
    for entry in entries:
        if not 1 <= len(entry.key) <= KEY_MAX or any(ord(c) < 32 for c in entry.key):
            raise InvalidInput(f"{source}: key {entry.key!r}: 1 to {KEY_MAX} characters, "
                               "no control characters")
        if entry.key in seen:
            raise InvalidInput(f"{source}: key {entry.key!r} appears twice")
        seen.add(entry.key)
        if entry.path is not None and not entry.path.exists():
            raise FileNotFoundError(f"{source}: entry {entry.key!r}: {entry.path}: "
                                    "no such file or folder")
    return entries


# -- scores as rows ---------------------------------------------------------------------


def score_columns(benchmark: dict[str, Any] | None, phase_id: int) -> list[str]:
    """The score columns the phase's leaderboards announce, in their order:
    ``<leaderboard>.<column>``, or ``<leaderboard>.<task position>.<column>`` when the
    phase has several tasks (as a submission's ``scores`` nest them)."""
    if benchmark is None:
        return []
    phase = next((p for p in benchmark.get("phases") or [] if p["id"] == phase_id), None)
    tasks = len(phase.get("tasks") or []) if phase else 1
    names = []
    for board in benchmark.get("leaderboards") or []:
        columns = sorted(board.get("columns") or [], key=lambda c: c.get("index", 0))
        for position in range(max(tasks, 1)):
            prefix = board["key"] if tasks <= 1 else f"{board['key']}.{position}"
            names += [f"{prefix}.{c['key']}" for c in columns]
    return names


def flat_scores(scores: dict[str, Any] | None) -> dict[str, Any]:
    """A submission's scores ``{board: {task position: {column: value}}}`` as
    ``{"board.column": value}`` (one task) or ``{"board.position.column": value}``."""
    flat: dict[str, Any] = {}
    for board, per_task in (scores or {}).items():
        per_task = per_task or {}
        for position, values in per_task.items():
            prefix = board if len(per_task) == 1 else f"{board}.{position}"
            for column, value in (values or {}).items():
                flat[f"{prefix}.{column}"] = value
    return flat


def write_scores(path: Path, rows: list[dict[str, Any]], columns: list[str]) -> None:
    """Rewrite the scores file whole: a temporary file beside it renamed over it, so a
    reader (or a kill) never sees half of it. CSV or JSON by its extension."""
    if path.suffix.lower() == ".json":
        text = json.dumps(rows, indent=1) + "\n"
    else:
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=[*FIXED_COLUMNS, *columns],
                                extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        text = buffer.getvalue()
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.",
                                         suffix=".tmp")
    try:
        with os.fdopen(handle, "w", newline="") as sink:
            sink.write(text)
            sink.flush()
            os.fsync(sink.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def scores_format(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".json"):
        raise InvalidInput(f"{path}: the scores file ends in .csv or .json")
    return suffix[1:]


# -- the evaluation ---------------------------------------------------------------------


@dataclass
class Summary:
    """What a bulk evaluation did: entries submitted now, found already submitted,
    scored (finished), failed (failed or cancelled), still running, re-run."""

    total: int = 0
    submitted: int = 0
    existing: int = 0
    scored: int = 0
    failed: int = 0
    running: int = 0
    rerun: int = 0

    def line(self) -> str:
        text = (f"{self.submitted} submitted, {self.existing} already there, "
                f"{self.scored} scored, {self.failed} failed")
        if self.running:
            text += f", {self.running} still running"
        if self.rerun:
            text += f" ({self.rerun} re-run)"
        return text


@dataclass
class BulkEvaluation:
    """Submit every entry to ``phase_id`` under its key (``concurrency`` uploads at
    once), then, with ``wait``, poll until all have ended, writing ``scores_path``
    whenever something changed. ``retry_failed``: a failed submission is run again
    once (a new attempt; organizers of the benchmark only, so off by default).
    ``progress``: a progress bar on stderr."""

    client: BenchClientMixin
    phase_id: int
    entries: Entries
    scores_path: PathLike | None = None
    kind: str = "auto"
    retry_failed: bool = False
    concurrency: int = 4
    wait: bool = True
    interval: float = 2.0
    timeout: float | None = None
    progress: bool = False
    on_change: Callable[[Summary], None] | None = None
    summary: Summary = field(init=False, default_factory=Summary)
    # each entry's submission as last read, by key
    _found: dict[str, dict[str, Any]] = field(init=False, default_factory=dict)
    _columns: list[str] = field(init=False, default_factory=list)
    _lock: threading.Lock = field(init=False, default_factory=threading.Lock)
    _waiting: bool = field(init=False, default=False)  # submitted: progress counts ends

    def run(self) -> list[dict[str, Any]]:
        """Submit, wait (unless ``wait`` is off), and return one row per entry:
        key, submission_id, status, then the flattened scores."""
        entries = as_entries(self.entries)
        path = Path(self.scores_path) if self.scores_path is not None else None
        if path is not None:
            scores_format(path)
        self.summary = Summary(total=len(entries))
        with self._display() as show:
            self._submit_all(entries, show)
            self._columns = score_columns(self._benchmark(), self.phase_id)
            self._save(entries, path)
            self._waiting = True
            show()
            if self.wait:
                self._wait_all(entries, path, show)
        self._count(entries)
        return self.rows(entries)

    def rows(self, entries: list[Entry]) -> list[dict[str, Any]]:
        rows = []
        for entry in entries:
            found = self._found.get(entry.key) or {}
            rows.append({"key": entry.key, "submission_id": found.get("id"),
                         "status": found.get("status"),
                         **flat_scores(found.get("scores"))})
        return rows

    # -- submitting --------------------------------------------------------------------

    def _mine(self) -> dict[str, dict[str, Any]]:
        """This account's submissions to the phase that have a key, by key (an
        organizer's listing holds everyone's)."""
        me = self.client.me()
        owner = (me.get("account") or {}).get("name")
        listed = self.client.submission_list(phase=self.phase_id, limit=LIST_LIMIT)
        return {s["key"]: s for s in listed if s.get("key") and s.get("owner") == owner}

    def _submit_all(self, entries: list[Entry], show: Callable[[], None]) -> None:
        already = self._mine()
        missing = []
        for entry in entries:
            if entry.key in already:
                self._found[entry.key] = already[entry.key]
                self.summary.existing += 1
            else:
                missing.append(entry)
        show()
        if not missing:
            return
        self._submit_one(missing[0])  # an unknown phase or a refusal stops here, alone
        show()
        with ThreadPoolExecutor(max_workers=max(1, self.concurrency)) as pool:
            for _ in pool.map(self._submit_one, missing[1:]):
                show()

    def _submit_one(self, entry: Entry) -> None:
        try:
            if entry.path is not None:
                answer = self.client.submission_submit(self.phase_id, entry.path,
                                                       kind=self.kind, key=entry.key)
            else:
                answer = self.client.submission_submit(self.phase_id, kind="image",
                                                       image=entry.image,
                                                       command=entry.command, key=entry.key)
        except ScitqBenchError as exc:  # the same error, naming the entry refused
            raise type(exc)(f"entry {entry.key!r}: {exc}", exc.details,
                            field=exc.field) from None
        with self._lock:
            self._found[entry.key] = answer
            if answer.get("existing"):
                self.summary.existing += 1
            else:
                self.summary.submitted += 1

    def _benchmark(self) -> dict[str, Any] | None:
        """The benchmark of the phase (for its leaderboards' columns), from any of
        the submissions."""
        ids = [s["benchmark_id"] for s in self._found.values() if s.get("benchmark_id")]
        return self.client.bench_get(int(ids[0])) if ids else None

    # -- waiting -----------------------------------------------------------------------

    def _wait_all(self, entries: list[Entry], path: Path | None,
                  show: Callable[[], None]) -> None:
        """Poll the phase's running submissions (one listing a round); a submission
        that left it is read once, whole, for its final status and scores."""
        deadline = None if self.timeout is None else time.monotonic() + self.timeout
        changed = self._retry(entries)
        while True:
            pending = {e.key: self._found[e.key]["id"] for e in entries
                       if self._found[e.key]["status"] not in FINAL_SUBMISSION_VALUES}
            if pending:
                running = {s["id"]: s for s in self.client.submission_list(
                    phase=self.phase_id, status="running", limit=LIST_LIMIT)}
                for key, submission_id in pending.items():
                    listed = running.get(submission_id)
                    if listed is not None:
                        if listed["status"] != self._found[key]["status"]:
                            self._found[key] = listed
                            changed = True
                        continue
                    self._found[key] = self.client.submission_get(submission_id)
                    changed = True
                changed = self._retry(entries) or changed
            if changed:
                self._save(entries, path)
                show()
                changed = False
            if not pending:
                return
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(f"{len(pending)} submission(s) of phase {self.phase_id} "
                                   f"still running after {self.timeout:g}s")
            time.sleep(self.interval)

    def _retry(self, entries: list[Entry]) -> bool:
        """Run failed submissions again, once: only those on their first attempt, so a
        resumed evaluation does not re-run them twice."""
        if not self.retry_failed:
            return False
        again = False
        for entry in entries:
            found = self._found[entry.key]
            if found["status"] == "failed" and (found.get("attempts") or 1) < 2:
                self._found[entry.key] = self.client.submission_rerun(found["id"])
                self.summary.rerun += 1
                again = True
        return again

    # -- reporting ---------------------------------------------------------------------

    def _count(self, entries: list[Entry]) -> None:
        statuses = [(self._found.get(e.key) or {}).get("status") for e in entries]
        self.summary.scored = statuses.count("finished")
        self.summary.failed = statuses.count("failed") + statuses.count("cancelled")
        self.summary.running = len(statuses) - self.summary.scored - self.summary.failed

    def _save(self, entries: list[Entry], path: Path | None) -> None:
        self._count(entries)
        if path is None:
            return
        rows = self.rows(entries)
        extra = [k for row in rows for k in row if k not in FIXED_COLUMNS
                 and k not in self._columns]
        write_scores(path, rows, self._columns + list(dict.fromkeys(extra)))

    @contextmanager
    def _display(self) -> Iterator[Callable[[], None]]:
        """A function that shows where the evaluation stands: a rich progress bar on
        stderr when ``progress``, and ``on_change`` when given."""
        if not self.progress:
            yield self._changed
            return
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

        bar = Progress(TextColumn("{task.description}"), BarColumn(bar_width=20),
                       MofNCompleteColumn(), TextColumn("{task.fields[counts]}"),
                       console=Console(stderr=True), transient=False)
        task = bar.add_task("submitting", total=self.summary.total, counts="")

        def show() -> None:
            done = self.summary
            if self._waiting:
                bar.update(task, description="scoring", completed=done.scored + done.failed,
                           counts=f"{done.scored} scored, {done.failed} failed, "
                           f"{done.running} running")
            else:
                with self._lock:
                    known = len(self._found)
                bar.update(task, completed=known,
                           counts=f"{done.submitted} new, {done.existing} already there")
            self._changed()

        with bar:
            yield show

    def _changed(self) -> None:
        if self.on_change is not None:
            self.on_change(self.summary)
