"""Submissions as the API and the GUI handle them, on the rules of
``bench.submissions`` and ``bench.access``: submitting and re-running (then the
claimers woken: new tasks wait in the queue), cancelling, deleting, choosing what a
leaderboard shows, and what the lists and pages show. Reads take the caller's session;
a change with something to do after its commit (claimers to wake, files to remove)
opens its own transaction."""

from __future__ import annotations

import tempfile
import zipfile
from collections.abc import Callable
from typing import IO, TYPE_CHECKING, Any, TypeVar

import yaml
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from scitq_bench.exceptions import Conflict, InvalidInput, TooLarge
from scitq_bench.server.auth import Principal
from scitq_bench.server.bench import outputs, submissions
from scitq_bench.server.bench.access import require_manager, visible_phase, visible_submission
from scitq_bench.server.bench.boards import phase_tasks
from scitq_bench.server.bench.models import Account, Benchmark, Phase, Submission
from scitq_bench.server.bench.serialize import benchmark_dict, queued_among, submission_dict
from scitq_bench.server.notify import WORK
from scitq_bench.server.schemas import control_character
from scitq_bench.server.storage import FileStorage
from scitq_bench.states import SubmissionStatus

if TYPE_CHECKING:
    from scitq_bench.server.context import ServerContext

R = TypeVar("R")
Found = tuple[Submission, Benchmark, Phase]  # a submission its reader may see, and where
AUTO = "auto"  # the kind detected from the archive, as Codabench does
METADATA_FILES = ("metadata", "metadata.yaml", "metadata.yml")
SPOOL_IN_MEMORY = 8 << 20
KEY_MAX = 255  # Submission.key's column


# -- submitting and running again -------------------------------------------------------


def check_key(key: str) -> str:
    """A submission key: 1 to 255 characters, none of them a control character (it
    names an entry in files, tables and logs)."""
    if not 1 <= len(key) <= KEY_MAX:
        raise InvalidInput(f"key: {len(key)} characters; a key has 1 to {KEY_MAX}",
                           field="key")
    bad = control_character(key)
    if bad is not None:
        raise InvalidInput(f"key: {key!r} holds a control character ({bad!r})", field="key")
    return key


def keyed(session: Session, principal: Principal, phase_id: int, key: str) -> int | None:
    """The id of the submission ``principal`` made to the phase under ``key``, if any
    (the phase checked visible first, so an unknown phase answers 404)."""
    visible_phase(session, principal, phase_id)
    owner = Submission.owner_id == principal.account_id if principal.account_id is not None \
        else Submission.owner_id.is_(None)
    return session.scalar(select(Submission.id).where(
        Submission.phase_id == phase_id, owner, Submission.key == key))


def submit_keyed(ctx: ServerContext, principal: Principal, phase_id: int, key: str | None,
                 *, kind: str, body: IO[bytes] | None = None, **options: Any) -> tuple[int, bool]:
    """``submit`` under the submitter's ``key``: (id, whether it existed). A key this
    owner already used on the phase returns that submission whatever the upload holds
    (the key names the entry): nothing is stored, created or counted against quotas.
    Two concurrent submits of one key: the unique index refuses the second one's row
    (its transaction rolls back and its stored zip is discarded) and it answers the
    first one's submission."""
    if key is None:
        return submit(ctx, principal, phase_id, kind=kind, body=body, **options), False
    check_key(key)
    with ctx.db.read() as session:
        found = keyed(session, principal, phase_id, key)
    if found is not None:
        _drain(body)
        return found, True
    try:
        return submit(ctx, principal, phase_id, kind=kind, body=body, key=key,
                      **options), False
    except (IntegrityError, Conflict):
        # created meanwhile under this key (a quota just reached by that one included)
        with ctx.db.read() as session:
            found = keyed(session, principal, phase_id, key)
        if found is None:
            raise
        return found, True


def _drain(body: IO[bytes] | None) -> None:
    """Read an upload that will not be stored, so the connection stays usable."""
    if body is not None:
        while body.read(1 << 20):
            pass


def submit(ctx: ServerContext, principal: Principal, phase_id: int, *, kind: str,
           body: IO[bytes] | None = None, declared_size: int | None = None,
           image: str | None = None, command: str | None = None,
           name: str | None = None, key: str | None = None) -> int:
    """``submissions.submit`` with this server's stores and limits, then the claimers
    woken for its first attempt's tasks; returns its id. Kind ``auto``: an image
    submission when it names an image and has no file, else code or result as the
    archive says (``detect_kind``); the submission records what was detected."""
    note = None
    spool: IO[bytes] | None = None
    try:
        if kind == AUTO and body is None:
            kind = "image" if image else "result"  # no archive: the kind's checks say why
        elif kind == AUTO and body is not None:
            with ctx.db.read() as session:
                phase, _ = visible_phase(session, principal, phase_id)
                limit = submissions.size_limit(phase)
            if declared_size is not None and declared_size > limit:
                raise TooLarge(f"submission of {declared_size} bytes is over this phase's "
                               f"limit of {limit} bytes")
            spool = _spooled(body, limit)
            kind, note = detect_kind(spool)
            spool.seek(0)
            body = spool
        submission_id = submissions.submit(
            ctx.db, ctx.files, principal, phase_id, kind=kind,
            body=body,
            declared_size=declared_size, image=image, command=command, name=name,
            key=key, limits=ctx.settings.submission_limits)
    except InvalidInput as exc:
        if note is None or exc.field != "kind":
            raise
        raise InvalidInput(f"{exc} ({note}; submit it with kind result to have it scored "
                           "as results)", field="kind") from None
    finally:
        if spool is not None:
            spool.close()
    if note is not None:
        with ctx.db.write() as session:
            found = session.get(Submission, submission_id)
            if found is not None:
                found.kind_note = note
    ctx.notifier.notify(WORK)
    return submission_id


def _spooled(body: IO[bytes], limit: int) -> IO[bytes]:
    """The upload in a temporary file (memory while small) to look into before it is
    stored; refused once over the phase's limit, as storing it would."""
    spool = tempfile.SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY)  # noqa: SIM115
    try:
        copied = 0
        while chunk := body.read(1 << 20):
            copied += len(chunk)
            if copied > limit:
                raise TooLarge(f"submission is over this phase's limit of {limit} bytes")
            spool.write(chunk)
        spool.seek(0)
    except BaseException:
        spool.close()
        raise
    return spool


def detect_kind(archive: IO[bytes]) -> tuple[str, str]:
    """(kind, what says so) as Codabench decides: a zip holding a metadata file
    (``metadata`` or ``metadata.yaml``) with a command, at its top or in its single top
    folder, is code; anything else is results."""
    try:
        with zipfile.ZipFile(archive) as found:
            command, where = _metadata_command(found)
    except zipfile.BadZipFile:
        raise InvalidInput("the submission is not a zip file", field="file") from None
    if command:
        return "code", f"detected: code (metadata with a command{where})"
    if where is not None:
        return "result", f"detected: results (metadata{where} has no command)"
    return "result", "detected: results (no metadata file)"


def _metadata_command(archive: zipfile.ZipFile) -> tuple[str | None, str | None]:
    """The metadata's command and where its file is ('' at the top, ' in FOLDER/');
    (None, None) without one. A metadata that is not valid YAML is refused, naming it."""
    names = {n.rstrip("/"): info for n, info in
             ((i.filename, i) for i in archive.infolist()) if not n.startswith("__MACOSX")}
    tops = {n.split("/", 1)[0] for n in names}
    prefixes = [""] + [f"{top}/" for top in tops if len(tops) == 1]
    for prefix in prefixes:
        for candidate in METADATA_FILES:
            info = names.get(prefix + candidate)
            if info is None or info.is_dir():
                continue
            if info.file_size > 1 << 20:
                raise InvalidInput(f"{info.filename}: over 1 MB", field="file")
            try:
                data = yaml.safe_load(archive.read(info)) or {}
            except yaml.YAMLError as exc:
                raise InvalidInput(f"{info.filename}: not valid YAML: {exc}",
                                   field="file") from None
            command = data.get("command") if isinstance(data, dict) else None
            where = f" in {prefix}" if prefix else ""
            return (str(command) if command else None), where
    return None, None


def rerun(ctx: ServerContext, principal: Principal, submission_id: int,
          describe: Callable[[Session, Submission], R]) -> R:
    """A new attempt (organizers only), ``describe``d before the commit, then the
    claimers woken."""
    with ctx.db.write() as session:
        submission = submissions.rerun_as(ctx.db, session, principal, submission_id)
        answer = describe(session, submission)
    ctx.notifier.notify(WORK)
    return answer


def rerun_phase(ctx: ServerContext, principal: Principal, phase_id: int) -> list[int]:
    """A new attempt of every submission of the phase not running now (organizers
    only), then the claimers woken; returns their ids."""
    with ctx.db.write() as session:
        phase, benchmark = visible_phase(session, principal, phase_id)
        require_manager(principal, benchmark)
        started = []
        for submission in session.scalars(select(Submission).where(
                Submission.phase_id == phase.id,
                Submission.status != SubmissionStatus.RUNNING.value)):
            submissions.rerun(ctx.db, session, submission)
            started.append(submission.id)
    ctx.notifier.notify(WORK)
    return started


# -- other changes ----------------------------------------------------------------------


def cancel(session: Session, principal: Principal, submission_id: int) -> Found:
    """Cancel a running submission (its owner or its organizers)."""
    found = visible_submission(session, principal, submission_id)
    submissions.cancel(session, found[0])
    return found


def delete_attempt(session: Session, principal: Principal, submission_id: int,
                   number: int) -> Found:
    """Delete a re-run (organizers only; never the original attempt)."""
    found = visible_submission(session, principal, submission_id)
    require_manager(principal, found[1])
    submissions.delete_attempt(session, found[0], number)
    return found


def set_on_leaderboard(session: Session, principal: Principal, submission_id: int,
                       wanted: bool) -> Found:
    """Put a submission on its leaderboards or take it off, where their rule lets its
    owner choose."""
    found = visible_submission(session, principal, submission_id)
    submissions.set_on_leaderboard(session, principal, found[0], found[1], wanted)
    return found


def commit_delete(ctx: ServerContext, principal: Principal, submission_id: int) -> None:
    """Delete a submission with all its attempts (organizers only); its file goes once
    the rows are gone."""
    with ctx.db.write() as session:
        submission, benchmark, _ = visible_submission(session, principal, submission_id)
        require_manager(principal, benchmark)
        stored = submission.file
        submissions.delete_submission(session, submission)
    if stored:
        ctx.files.discard(stored)


# -- what the lists and pages show ------------------------------------------------------


def describe(session: Session, principal: Principal, found: Found) -> dict[str, Any]:
    """A submission with its attempts, runs and scores (``submission_dict``)."""
    return submission_dict(session, principal, *found)


def get(session: Session, principal: Principal, submission_id: int) -> dict[str, Any]:
    return describe(session, principal, visible_submission(session, principal, submission_id))


def list_brief(session: Session, principal: Principal, *, benchmark_id: int | None = None,
               phase_id: int | None = None, status: str | None = None,
               limit: int | None = None, key: str | None = None) -> list[dict[str, Any]]:
    """The submissions ``principal`` may see, newest first, in brief; ``key``: only
    those submitted under it (a malformed key is refused, as submitting it is)."""
    query = submissions.listing(principal, benchmark_id=benchmark_id, phase_id=phase_id,
                                status=status)
    if key:
        query = query.where(Submission.key == check_key(key))
    query = query.limit(limit)
    found = list(session.scalars(query))
    queued = queued_among(session, [s.id for s in found])
    return [submission_dict(session, principal, s, None, None, brief=True, queued=queued)
            for s in found]


def count_rows(session: Session, principal: Principal, *, benchmark_id: int | None = None,
               phase_id: int | None = None, status: str | None = None) -> int:
    """How many ``rows`` lists with the same filters (without a page)."""
    query = submissions.listing(principal, benchmark_id=benchmark_id, phase_id=phase_id,
                                status=status)
    return session.scalar(select(func.count()).select_from(
        query.order_by(None).subquery())) or 0


def rows(session: Session, principal: Principal, *, benchmark_id: int | None = None,
         phase_id: int | None = None, status: str | None = None, offset: int = 0,
         limit: int = 50) -> list[dict[str, Any]]:
    """One page of the submissions ``principal`` may see, newest first, with their
    benchmark, phase and owner names (three small queries for the page, not one per
    row)."""
    query = submissions.listing(principal, benchmark_id=benchmark_id, phase_id=phase_id,
                                status=status)
    found = list(session.scalars(query.offset(offset).limit(limit)))

    def names(model: Any, column: Any, ids: set[int]) -> dict[int, str]:
        if not ids:
            return {}
        return dict(session.execute(select(model.id, column).where(model.id.in_(ids))).all())

    benches = names(Benchmark, Benchmark.title, {s.benchmark_id for s in found})
    phases = names(Phase, Phase.name, {s.phase_id for s in found})
    owners = names(Account, Account.name, {s.owner_id for s in found if s.owner_id})
    queued = queued_among(session, [s.id for s in found])
    return [{"id": s.id, "benchmark_id": s.benchmark_id, "benchmark": benches.get(s.benchmark_id),
             "phase": phases.get(s.phase_id), "owner": owners.get(s.owner_id or -1),
             "name": s.name, "kind": s.kind,
             "status": "queued" if s.id in queued else s.status, "attempts": s.attempts,
             "created_at": s.created_at} for s in found]


def page_facts(session: Session, files: FileStorage, principal: Principal,
               submission_id: int) -> dict[str, Any]:
    """What a submission's page shows, as plain values: the submission
    (``submission_dict``), its benchmark (``benchmark_dict``), its phase, the phase's
    task names, what the phase hides from this reader, the latest attempt and the
    files each of its steps wrote, and whether this reader may choose where it shows."""
    found, benchmark, phase = visible_submission(session, principal, submission_id)
    info = submission_dict(session, principal, found, benchmark, phase)
    bench = benchmark_dict(session, principal, benchmark)
    task_names = [t.name for t in phase_tasks(session, phase.id)]
    hides = outputs.hidden_outputs(phase, bench["manage"])
    latest = info["attempts_detail"][-1] if info["attempts_detail"] else None
    written = {} if latest is None else {
        (run["position"], step): outputs.output_files(files, outputs.find_step(
            session, principal, found.id, attempt=latest["number"], run=run["position"],
            step=step))
        for run in latest["runs"] for step in outputs.STEPS
        if run[f"{step}_task"] is not None and not hides[step]}
    may_choose = (bench["manage"] or found.owner_id == principal.account_id) and any(
        b["submission_rule"] in submissions.ADD_RULES for b in bench["leaderboards"])
    return {"sub": info, "bench": bench, "phase": {"id": phase.id, "name": phase.name},
            "task_names": task_names, "hides": hides, "latest": latest, "files": written,
            "may_choose": may_choose}
