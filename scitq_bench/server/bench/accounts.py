"""Accounts of participants and organizers, and their tokens (shown once), as the API
and the GUI handle them. A change that revokes tokens opens its own transaction: the
token cache is dropped once it committed, so the revoked tokens stop at once."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from scitq_bench.exceptions import Conflict, InvalidInput, NotFound
from scitq_bench.server.auth import ORGANIZER, PARTICIPANT, Principal, issue_token
from scitq_bench.server.bench.models import Account
from scitq_bench.server.queue.models import ApiToken
from scitq_bench.server.serialize import iso

if TYPE_CHECKING:
    from scitq_bench.server.context import ServerContext

ROLES = (PARTICIPANT, ORGANIZER)


def display_name(session: Session, principal: Principal) -> str:
    """Who holds the token, for people to read: the account's name, else its role."""
    if principal.account_id is None:
        return principal.role
    account = session.get(Account, principal.account_id)
    return account.name if account is not None else principal.role


def create_account(session: Session, name: str, role: str,
                   email: str | None = None) -> tuple[Account, str]:
    if role not in ROLES:
        raise InvalidInput(f"role: {role!r} is not one of {', '.join(ROLES)}")
    account = Account(name=name, role=role, email=email)
    try:
        with session.begin_nested():
            session.add(account)
    except IntegrityError:
        raise Conflict(f"an account named {name!r} exists already") from None
    return account, issue_token(session, role, account_id=account.id, name=name)


def find_account(session: Session, name_or_id: str) -> Account:
    query = select(Account).where(Account.name == name_or_id)
    if name_or_id.isdigit():
        query = select(Account).where(Account.id == int(name_or_id))
    account = session.scalars(query).first()
    if account is None:
        raise NotFound(f"no account {name_or_id!r}")
    return account


def new_token(session: Session, account: Account, revoke_others: bool = False) -> str:
    if revoke_others:
        session.execute(delete(ApiToken).where(ApiToken.account_id == account.id))
    return issue_token(session, account.role, account_id=account.id, name=account.name)


def list_accounts(session: Session) -> list[dict[str, Any]]:
    return [account_dict(a) for a in session.scalars(select(Account).order_by(Account.id))]


def who_is(session: Session, principal: Principal) -> dict[str, Any]:
    """The token's role and account (None for a token of no account: admin, worker)."""
    account = session.get(Account, principal.account_id) if principal.account_id else None
    return {"role": principal.role, "account": account_dict(account) if account else None}


def commit_new_token(ctx: ServerContext, account_id: int,
                     revoke_others: bool = False) -> dict[str, Any]:
    """A new token for the account (shown once), optionally revoking its others."""
    with ctx.db.write() as session:
        account = find_account(session, str(account_id))
        token = new_token(session, account, revoke_others)
    ctx.forget_tokens()
    return {"account": account_dict(account), "token": token}


def commit_revoke_tokens(ctx: ServerContext, account_id: int) -> tuple[str, int]:
    """Every token of the account goes (it keeps its submissions; a new token may be
    minted later); returns its name and how many tokens were revoked."""
    with ctx.db.write() as session:
        account = find_account(session, str(account_id))
        name = account.name
        revoked = session.execute(delete(ApiToken).where(ApiToken.account_id == account.id))
    ctx.forget_tokens()
    return name, int(revoked.rowcount or 0)  # type: ignore[attr-defined]


def commit_delete(ctx: ServerContext, account_id: int) -> None:
    """Delete an account and its tokens; its submissions stay, ownerless."""
    with ctx.db.write() as session:
        session.delete(find_account(session, str(account_id)))
    ctx.forget_tokens()


def account_dict(account: Account) -> dict[str, object]:
    return {"id": account.id, "name": account.name, "role": account.role,
            "email": account.email, "created_at": iso(account.created_at)}
