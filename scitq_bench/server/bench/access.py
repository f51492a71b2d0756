"""Who may see and do what with benchmarks.

Admins: everything. Organizers: what they own, plus what participants may see.
Participants: public benchmarks, their own submissions, non-hidden leaderboards.
Something a token may not see is answered as not found, so private benchmarks and
other people's submissions do not even show they exist.
"""

from __future__ import annotations

from sqlalchemy import ColumnElement, select, true
from sqlalchemy.orm import Session

from scitq_bench.exceptions import Forbidden, NotFound
from scitq_bench.server.auth import ADMIN, ORGANIZER, Principal
from scitq_bench.server.bench.models import Benchmark, Phase, Submission


def manages(principal: Principal, benchmark: Benchmark) -> bool:
    if principal.role == ADMIN:
        return True
    return principal.role == ORGANIZER and benchmark.owner_id is not None \
        and benchmark.owner_id == principal.account_id


def visible_benchmark(session: Session, principal: Principal, benchmark_id: int) -> Benchmark:
    benchmark = session.get(Benchmark, benchmark_id)
    if benchmark is None or (benchmark.visibility != "public" and not manages(principal, benchmark)):
        raise NotFound(f"benchmark {benchmark_id} not found",
                       details={"benchmark_id": benchmark_id})
    return benchmark


def managed_benchmark(session: Session, principal: Principal, benchmark_id: int) -> Benchmark:
    return require_manager(principal, visible_benchmark(session, principal, benchmark_id))


def require_manager(principal: Principal, benchmark: Benchmark) -> Benchmark:
    """An organizer's action on a benchmark already found visible."""
    if not manages(principal, benchmark):
        raise Forbidden(f"only the organizers of benchmark {benchmark.id} may do this")
    return benchmark


def visible_phase(session: Session, principal: Principal, phase_id: int) -> tuple[Phase, Benchmark]:
    phase = session.get(Phase, phase_id)
    if phase is None:
        raise NotFound(f"phase {phase_id} not found", details={"phase_id": phase_id})
    try:
        benchmark = visible_benchmark(session, principal, phase.benchmark_id)
    except NotFound:
        raise NotFound(f"phase {phase_id} not found", details={"phase_id": phase_id}) from None
    return phase, benchmark


def visible_submission(session: Session, principal: Principal,
                       submission_id: int) -> tuple[Submission, Benchmark, Phase]:
    """The submission if it is the principal's own, or the principal manages its
    benchmark."""
    submission = session.get(Submission, submission_id)
    benchmark = session.get(Benchmark, submission.benchmark_id) if submission else None
    if submission is None or benchmark is None or not (
            manages(principal, benchmark) or owns(principal, submission)):
        raise NotFound(f"submission {submission_id} not found",
                       details={"submission_id": submission_id})
    phase = session.get(Phase, submission.phase_id)
    assert phase is not None
    return submission, benchmark, phase


def owns(principal: Principal, submission: Submission) -> bool:
    return principal.account_id is not None and submission.owner_id == principal.account_id


def visible_benchmarks(principal: Principal) -> ColumnElement[bool]:
    """The SQL condition of ``visible_benchmark`` for lists: public ones, and those the
    principal manages."""
    if principal.role == ADMIN:
        return true()
    public = Benchmark.visibility == "public"
    if principal.role == ORGANIZER and principal.account_id is not None:
        return public | (Benchmark.owner_id == principal.account_id)
    return public


def visible_submissions(principal: Principal) -> ColumnElement[bool]:
    """The SQL condition of ``visible_submission`` for lists: admins see every
    submission, organizers their own and those of the benchmarks they own, participants
    only their own."""
    if principal.role == ADMIN:
        return true()
    mine = Submission.owner_id == principal.account_id
    if principal.role == ORGANIZER:
        owned = select(Benchmark.id).where(Benchmark.owner_id == principal.account_id)
        return mine | Submission.benchmark_id.in_(owned)
    return mine
