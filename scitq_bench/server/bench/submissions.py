"""Submitting to a phase, re-running, cancelling, and choosing what goes on the
leaderboard. Every refusal says why: phase closed (with its dates), quota reached
(with when it resets), too big (with the limit), wrong kind for the phase, an archive
that is unsafe to unpack (naming the entry at fault)."""

from __future__ import annotations

import io
import uuid
import zipfile
from datetime import datetime, timedelta
from pathlib import Path
from typing import IO

import yaml
from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

from scitq_bench.bench.archives import ArchiveError, ArchiveLimits, check_zip
from scitq_bench.container_options import validate_image
from scitq_bench.exceptions import Conflict, Forbidden, InvalidInput, TooLarge
from scitq_bench.server.auth import ADMIN, PARTICIPANT, Principal
from scitq_bench.server.bench import runs
from scitq_bench.server.bench.access import (
    manages,
    owns,
    require_manager,
    visible_phase,
    visible_submission,
    visible_submissions,
)
from scitq_bench.server.bench.boards import sync_entries
from scitq_bench.server.bench.models import (
    Attempt,
    Benchmark,
    Leaderboard,
    Phase,
    Submission,
)
from scitq_bench.server.db import Database
from scitq_bench.server.queue import tasks as queue
from scitq_bench.server.queue.models import utcnow
from scitq_bench.server.serialize import iso
from scitq_bench.server.storage import FileStorage
from scitq_bench.settings import SUBMISSION_LIMITS
from scitq_bench.states import AttemptStatus, SubmissionStatus

KINDS = ("result", "code", "image")
DEFAULT_MAX_MB = 500.0
METADATA_NAMES = ("metadata.yaml", "metadata.yml", "metadata")
ADD_RULES = ("Add", "Add_And_Delete", "Add_And_Delete_Multiple")


def size_limit(phase: Phase) -> int:
    return int((phase.max_submission_mb or DEFAULT_MAX_MB) * (1 << 20))


def phase_state(phase: Phase, now: datetime) -> str:
    """upcoming, open or closed (the end is exclusive)."""
    if now < phase.start:
        return "upcoming"
    if phase.end is not None and now >= phase.end:
        return "closed"
    return "open"


def check_phase_open(phase: Phase, now: datetime) -> None:
    state = phase_state(phase, now)
    if state == "upcoming":
        raise Conflict(f"phase {phase.name!r} is not open yet: it opens at "
                       f"{phase.start:%Y-%m-%d %H:%M} UTC")
    if state == "closed":
        raise Conflict(f"phase {phase.name!r} is closed: it ended at {phase.end:%Y-%m-%d %H:%M} UTC")


def check_quota(session: Session, phase: Phase, owner_id: int | None, now: datetime) -> None:
    """Quotas count every submission but cancelled ones, per participant; the daily
    one per UTC day."""
    mine = select(func.count()).select_from(Submission).where(
        Submission.phase_id == phase.id, Submission.owner_id == owner_id,
        Submission.status != SubmissionStatus.CANCELLED.value)
    if phase.max_submissions is not None:
        used = session.scalar(mine) or 0
        if used >= phase.max_submissions:
            raise Conflict(f"quota reached: {used} of {phase.max_submissions} submissions "
                           f"allowed on phase {phase.name!r}")
    if phase.max_submissions_per_day is not None:
        day = datetime(now.year, now.month, now.day)
        used = session.scalar(mine.where(Submission.created_at >= day)) or 0
        if used >= phase.max_submissions_per_day:
            resets = day + timedelta(days=1)
            raise Conflict(
                f"daily quota reached: {used} of {phase.max_submissions_per_day} submissions "
                f"today on phase {phase.name!r}; it resets at {resets:%Y-%m-%d %H:%M} UTC",
                details={"resets_at": iso(resets)})


def submit(db: Database, files: FileStorage, principal: Principal, phase_id: int, *,
           kind: str, body: IO[bytes] | None = None, declared_size: int | None = None,
           image: str | None = None, command: str | None = None,
           name: str | None = None, key: str | None = None,
           limits: ArchiveLimits = SUBMISSION_LIMITS) -> int:
    """Check and store the submission, check every rule, then create it with its first
    attempt in one transaction; returns its id. Nothing is left behind on a refusal (a
    ``key`` the owner used already on the phase breaks its unique index: refused too).
    ``limits``: what its zip may unpack to."""
    if kind not in KINDS:
        raise InvalidInput(f"kind: {kind!r} is not one of {', '.join(KINDS)}", field="kind")
    with db.read() as session:
        phase = _phase_for_submission(session, principal, phase_id, kind, image, body)
        limit = size_limit(phase)
    if declared_size is not None and declared_size > limit:
        raise TooLarge(f"submission of {declared_size} bytes is over this phase's limit of "
                       f"{limit} bytes")
    stored = None
    try:
        size = None
        if body is not None:
            stored, size, found = _store_checked(files, body, limit, limits, kind)
            command = command or found
        with db.write() as session:
            current = session.get(Phase, phase_id)
            assert current is not None
            if principal.role == PARTICIPANT:
                now = utcnow()
                check_phase_open(current, now)
                check_quota(session, current, principal.account_id, now)
            submission = Submission(
                benchmark_id=current.benchmark_id, phase_id=current.id,
                owner_id=principal.account_id, kind=kind, name=name, file=stored,
                size_bytes=size, image=image, command=command, key=key,
                status=SubmissionStatus.SUBMITTED.value,
            )
            session.add(submission)
            session.flush()
            runs.start_attempt(db, session, submission)
            return submission.id
    except BaseException:
        if stored is not None:
            files.discard(stored)
        raise


def _phase_for_submission(session: Session, principal: Principal, phase_id: int, kind: str,
                          image: str | None, body: IO[bytes] | None) -> Phase:
    phase, benchmark = visible_phase(session, principal, phase_id)
    if principal.role not in (ADMIN, PARTICIPANT) and not manages(principal, benchmark):
        raise Forbidden("only participants, the benchmark's organizers and admins submit")
    if phase.accepts_only_result_submissions and kind != "result":
        raise InvalidInput(f"phase {phase.name!r} accepts only result submissions, not {kind}",
                           field="kind")
    if kind == "image":
        if not image:
            raise InvalidInput("image: an image submission names its image", field="image")
        validate_image(image, field="image")
        if body is not None:
            raise InvalidInput("an image submission has no file", field="file")
    elif body is None:
        raise InvalidInput(f"a {kind} submission needs its zip file in the body", field="file")
    return phase


class _Capped(io.RawIOBase):
    """Reads through to ``body`` and refuses as soon as more than ``limit`` bytes came:
    a body without (or lying about) its length is cut off, not stored."""

    def __init__(self, body: IO[bytes], limit: int) -> None:
        self.body, self.limit, self.seen = body, limit, 0

    def read(self, size: int = -1) -> bytes:
        data = self.body.read(size)
        self.seen += len(data)
        if self.seen > self.limit:
            raise TooLarge(f"submission is over this phase's limit of {self.limit} bytes")
        return data


def _store_checked(files: FileStorage, body: IO[bytes], limit: int, limits: ArchiveLimits,
                   kind: str) -> tuple[str, int, str | None]:
    """Store the upload, its zip checked as a worker would unpack it before it takes
    its place: a refused upload leaves nothing in the store. Returns the store path,
    the size and the command of a code submission's metadata."""
    commands: list[str | None] = []

    def check(path: Path) -> None:
        try:
            check_zip(path, "submission", limits)
        except ArchiveError as exc:
            raise ArchiveError(str(exc), field="file") from None
        commands.append(_metadata_command(path, kind))

    stored = f"submissions/{uuid.uuid4().hex}/submission.zip"
    # typeshed's IO is nominal: a RawIOBase is no IO[bytes], though write only reads it
    size = files.write(stored, _Capped(body, limit), check=check)  # type: ignore[arg-type]
    return stored, size, commands[0]


def _metadata_command(path: Path, kind: str) -> str | None:
    """A code submission's own command (its metadata file), used when the task has no
    ingestion program."""
    if kind != "code":
        return None
    try:
        with zipfile.ZipFile(path) as archive:
            names = {n.rstrip("/"): n for n in archive.namelist()}
            for candidate in METADATA_NAMES:
                if candidate in names:
                    info = archive.getinfo(names[candidate])
                    if info.file_size > 1 << 20:
                        raise InvalidInput(f"{candidate}: over 1 MB")
                    data = yaml.safe_load(archive.read(info)) or {}
                    command = data.get("command") if isinstance(data, dict) else None
                    return str(command) if command else None
    except zipfile.BadZipFile:
        raise InvalidInput("the submission is not a zip file") from None
    except yaml.YAMLError as exc:
        raise InvalidInput(f"the submission's metadata is not valid YAML: {exc}") from None
    return None



# -- after submission -------------------------------------------------------------------


def listing(principal: Principal, *, benchmark_id: int | None = None,
            phase_id: int | None = None, status: str | None = None) -> Select:
    """The submissions ``principal`` may see, newest first, filtered in the database
    (callers count, slice or limit it)."""
    query = select(Submission).where(visible_submissions(principal)) \
        .order_by(Submission.id.desc())
    if benchmark_id is not None:
        query = query.where(Submission.benchmark_id == benchmark_id)
    if phase_id is not None:
        query = query.where(Submission.phase_id == phase_id)
    if status:
        query = query.where(Submission.status == status)
    return query


def rerun_as(db: Database, session: Session, principal: Principal,
             submission_id: int) -> Submission:
    """A re-run asked by ``principal``: only the benchmark's organizers (and admins)."""
    submission, benchmark, _ = visible_submission(session, principal, submission_id)
    require_manager(principal, benchmark)
    rerun(db, session, submission)
    return submission


def rerun(db: Database, session: Session, submission: Submission) -> Attempt:
    """A new attempt; earlier ones stay (and keep the leaderboard's scores until the
    new one finishes)."""
    latest = _latest_attempt(session, submission.id)
    if latest is not None and latest.status == AttemptStatus.RUNNING:
        raise Conflict(f"submission {submission.id} is still running (attempt "
                       f"{latest.number}); cancel it first")
    return runs.start_attempt(db, session, submission)


def cancel(session: Session, submission: Submission) -> Attempt:
    latest = _latest_attempt(session, submission.id)
    if latest is None or latest.status != AttemptStatus.RUNNING:
        raise Conflict(f"submission {submission.id} is not running")
    runs.cancel_attempt(session, latest)
    session.flush()
    runs.refresh_attempt(session, latest.id)
    return latest


def delete_attempt(session: Session, submission: Submission, number: int) -> None:
    """Delete a re-run (never the original attempt, never a running one)."""
    if number == 1:
        raise Conflict("the original attempt (1) is never deleted; delete the submission")
    attempt = session.scalars(select(Attempt).where(
        Attempt.submission_id == submission.id, Attempt.number == number)).first()
    if attempt is None:
        raise InvalidInput(f"submission {submission.id} has no attempt {number}")
    if attempt.status == AttemptStatus.RUNNING:
        raise Conflict(f"attempt {number} is running; cancel it first")
    for task_id in reversed(runs.detach_tasks(session, attempt.id)):
        queue.delete_task(session, task_id)
    session.delete(attempt)
    session.flush()
    runs.refresh_submission(session, submission.id)


def delete_submission(session: Session, submission: Submission) -> None:
    for attempt in session.scalars(select(Attempt).where(Attempt.submission_id == submission.id)):
        for task_id in reversed(runs.detach_tasks(session, attempt.id)):
            queue.delete_task(session, task_id)
    session.delete(submission)


def _latest_attempt(session: Session, submission_id: int) -> Attempt | None:
    return session.scalars(select(Attempt).where(Attempt.submission_id == submission_id)
                           .order_by(Attempt.number.desc()).limit(1)).first()


def set_on_leaderboard(session: Session, principal: Principal, submission: Submission,
                       benchmark: Benchmark, wanted: bool) -> None:
    """The participant's choice, for leaderboards whose rule lets them choose (Add,
    Add_And_Delete, Add_And_Delete_Multiple); the strictest such rule applies."""
    if not (owns(principal, submission) or manages(principal, benchmark)):
        raise Forbidden("only its owner chooses where a submission appears")
    rules = set(session.scalars(select(Leaderboard.submission_rule).where(
        Leaderboard.benchmark_id == benchmark.id)))
    chosen = [rule for rule in ADD_RULES if rule in rules]
    if not chosen:
        raise Conflict("this benchmark's leaderboards choose submissions themselves "
                       f"({', '.join(sorted(rules))}); nothing to add or remove")
    rule = chosen[0]
    if wanted == submission.on_leaderboard:
        return
    if not wanted:
        if rule == "Add":
            raise Conflict("the rule Add does not allow removing a submission from the "
                           "leaderboard")
        submission.on_leaderboard = False
        sync_entries(session, submission)
        return
    if submission.scores is None:
        raise Conflict(f"submission {submission.id} has no scores yet")
    if rule != "Add_And_Delete_Multiple":
        other = session.scalars(select(Submission.id).where(
            Submission.phase_id == submission.phase_id, Submission.owner_id == submission.owner_id,
            Submission.on_leaderboard.is_(True), Submission.id != submission.id)).first()
        if other is not None:
            more = "" if rule == "Add" else f"; remove submission {other} first"
            raise Conflict(f"submission {other} is already on the leaderboard and the rule "
                           f"{rule} allows one{more}")
    submission.on_leaderboard = True
    sync_entries(session, submission)
