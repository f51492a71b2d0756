"""API tokens: random, shown once, stored as SHA-256 (they carry enough entropy that a
slow hash adds nothing). Roles: admin (everything), enroll (may only register
workers), worker (only its own worker record and executions), metrics (only the
Prometheus exposition); and for benchmarks,
participant (submit, see its own submissions) and organizer (also import benchmarks
and manage the ones it owns). Benchmark roles never reach the queue's own API."""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import bindparam, delete, select
from sqlalchemy.orm import Session

from scitq_bench.exceptions import Forbidden, Unauthorized
from scitq_bench.server.queue.models import ApiToken

ADMIN, ENROLL, WORKER = "admin", "enroll", "worker"
METRICS = "metrics"  # reads /metrics and nothing else: what a Prometheus server holds
PARTICIPANT, ORGANIZER = "participant", "organizer"
BENCH_ROLES = (ADMIN, ORGANIZER, PARTICIPANT)


@dataclass(frozen=True)
class Principal:
    role: str
    worker_id: int | None = None
    account_id: int | None = None

    @property
    def is_organizer(self) -> bool:
        """Admins organize everything; organizers what they own (checked per object)."""
        return self.role in (ADMIN, ORGANIZER)

    @property
    def is_admin(self) -> bool:
        return self.role == ADMIN

    def require_admin(self) -> None:
        if not self.is_admin:
            raise Forbidden("this needs an admin token")

    def require_worker(self, worker_id: int) -> None:
        """Admins may act for any worker; a worker token only for itself."""
        if self.is_admin:
            return
        if self.role != WORKER or self.worker_id != worker_id:
            raise Forbidden(f"this token may not act for worker {worker_id}")


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def issue_token(
    session: Session, role: str, *, worker_id: int | None = None, name: str | None = None,
    account_id: int | None = None,
) -> str:
    """Create a token and return it; only its hash is kept."""
    token = f"sqb_{secrets.token_urlsafe(32)}"
    session.add(ApiToken(token_hash=hash_token(token), role=role, worker_id=worker_id,
                         name=name, account_id=account_id))
    session.flush()
    return token


MACHINE_PREFIX = "machine:"  # name of the enrollment token minted for a hired machine


def issue_machine_token(session: Session, worker_name: str) -> str:
    """An enrollment token for one machine being deployed: its worker registers with it,
    then has a token of its own, and this one is revoked."""
    return issue_token(session, ENROLL, name=f"{MACHINE_PREFIX}{worker_name}")


def revoke_machine_token(session: Session, worker_name: str) -> None:
    session.execute(delete(ApiToken).where(ApiToken.role == ENROLL,
                                           ApiToken.name == f"{MACHINE_PREFIX}{worker_name}"))


def revoke_worker_tokens(session: Session, worker_id: int) -> None:
    session.execute(delete(ApiToken).where(ApiToken.worker_id == worker_id))


def authenticate(session: Session, header: str | None) -> Principal:
    principal = principal_for_hash(session, bearer_hash(header))
    if principal is None:
        raise Unauthorized("invalid token")
    return principal


def bearer_hash(header: str | None) -> str:
    """The hash of the token an ``Authorization`` header carries."""
    if not header or not header.startswith("Bearer "):
        raise Unauthorized("missing bearer token (Authorization: Bearer <token>)")
    return hash_token(header.removeprefix("Bearer ").strip())


_BY_HASHES = select(ApiToken.__table__.c.token_hash, ApiToken.__table__.c.role,
                    ApiToken.__table__.c.worker_id, ApiToken.__table__.c.account_id).where(
    ApiToken.__table__.c.token_hash.in_(bindparam("hashes", expanding=True)))


def principals_for_hashes(session: Session, hashes: Iterable[str]) -> dict[str, Principal]:
    """Who holds each token of ``hashes`` still on record (revoked ones are absent),
    in one query."""
    rows = session.connection().execute(_BY_HASHES, {"hashes": sorted(set(hashes))})
    return {row.token_hash: Principal(role=row.role, worker_id=row.worker_id,
                                      account_id=row.account_id) for row in rows}


def principal_for_hash(session: Session, token_hash: str) -> Principal | None:
    """Who holds the token with this hash; None once it is revoked (or never was)."""
    return principals_for_hashes(session, [token_hash]).get(token_hash)
