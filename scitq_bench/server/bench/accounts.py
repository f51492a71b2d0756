"""Accounts of participants and organizers, and their tokens (shown once)."""

from __future__ import annotations

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from scitq_bench.exceptions import Conflict, InvalidInput, NotFound
from scitq_bench.server.auth import ORGANIZER, PARTICIPANT, Principal, issue_token
from scitq_bench.server.bench.models import Account
from scitq_bench.server.models import ApiToken
from scitq_bench.server.serialize import iso

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


def account_dict(account: Account) -> dict[str, object]:
    return {"id": account.id, "name": account.name, "role": account.role,
            "email": account.email, "created_at": iso(account.created_at)}
