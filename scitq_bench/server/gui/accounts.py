"""The accounts page (admins): participant and organizer accounts with their tokens,
created, given a new token, revoked and deleted through the accounts service the
``/api/v1/accounts`` routes use. A new token is shown once, in the answer to the form
that made it: it is never stored, flashed (the flash lives in the session cookie) nor
logged, and reloading the list does not show it again."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from flask import request, url_for
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from scitq_bench.exceptions import ScitqBenchError
from scitq_bench.server.bench import accounts as service
from scitq_bench.server.bench.schemas import AccountCreate, TokenRequest
from scitq_bench.server.context import server_context
from scitq_bench.server.gui.model_forms import filled, validate
from scitq_bench.server.gui.web import done, failed, page, reading, render, writing
from scitq_bench.server.queue.models import ApiToken

FIELDS = ("name", "role", "email")
ROLE_CHOICES = [(role, role) for role in service.ROLES]


@page("/accounts")
def accounts() -> Any:
    return _page({"role": service.ROLES[0]}, {})


def _page(form: Any, errors: dict[str, str], status: int = 200) -> Any:
    with reading() as session:
        rows = account_rows(session)
    return render("accounts/list.html", status=status, accounts=rows, form=form,
                  errors=errors, role_choices=ROLE_CHOICES)


def account_rows(session: Session) -> list[dict[str, Any]]:
    """Every account with how many tokens it holds and when the newest was made (when a
    token is used is not recorded)."""
    tokens: dict[int | None, tuple[int, datetime | None]] = {
        account_id: (count, newest) for account_id, count, newest in session.execute(
            select(ApiToken.account_id, func.count(), func.max(ApiToken.created_at))
            .where(ApiToken.account_id.is_not(None)).group_by(ApiToken.account_id))}
    return [{**row, "tokens": tokens.get(row["id"], (0, None))[0],
             "newest_token": tokens.get(row["id"], (0, None))[1]}
            for row in service.list_accounts(session)]


@page("/accounts", methods=("POST",))
def account_create() -> Any:
    errors: dict[str, str] = {}
    body = validate(AccountCreate, filled(request.form, FIELDS), errors)
    if body is None:
        return _page(request.form, errors, status=400)
    try:
        with writing() as session:
            account, token = service.create_account(session, body.name, body.role, body.email)
            answer = service.account_dict(account)
    except ScitqBenchError as exc:
        errors["name"] = str(exc)
        return _page(request.form, errors, status=400)
    return _token_page(answer, token, created=True)


@page("/accounts/<id:account_id>/tokens", methods=("POST",))
def account_token(account_id: int) -> Any:
    body = TokenRequest(revoke_others=request.form.get("revoke_others") == "1")
    try:
        answer = service.commit_new_token(server_context(), account_id, body.revoke_others)
    except ScitqBenchError as exc:
        return failed(exc, url_for("gui.accounts"))
    return _token_page(answer["account"], answer["token"], created=False,
                       revoked=body.revoke_others)


def _token_page(account: dict[str, Any], token: str, *, created: bool,
                revoked: bool = False) -> Any:
    """The one answer that holds the token (``Cache-Control: no-store``, as every page)."""
    return render("accounts/token.html", status=201, account=account, token=token,
                  created=created, revoked=revoked)


@page("/accounts/<id:account_id>/revoke", methods=("POST",))
def account_revoke(account_id: int) -> Any:
    try:
        name, count = service.commit_revoke_tokens(server_context(), account_id)
    except ScitqBenchError as exc:
        return failed(exc, url_for("gui.accounts"))
    return done(f"{count} token(s) of {name} revoked: its programs and browser sessions "
                "are refused from now on.", url_for("gui.accounts"))


@page("/accounts/<id:account_id>/delete", methods=("POST",))
def account_delete(account_id: int) -> Any:
    try:
        with reading() as session:
            name = service.find_account(session, str(account_id)).name
        service.commit_delete(server_context(), account_id)
    except ScitqBenchError as exc:
        return failed(exc, url_for("gui.accounts"))
    return done(f"Account {name} deleted with its tokens; its submissions stay, ownerless.",
                url_for("gui.accounts"))


__all__ = ["accounts"]
