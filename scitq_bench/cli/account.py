"""``account``: participant and organizer accounts (admin).

Accounts are named or numbered on the command line (the API takes ids: names are
looked up in the account list, which only admins may read).
"""

from __future__ import annotations

from typing import Any

import click

from scitq_bench.cli.common import json_option, pass_client
from scitq_bench.cli.output import Column, note, print_json, print_list, show_or_say, when
from scitq_bench.client import Client
from scitq_bench.exceptions import NotFound


def account_id_of(client: Client, value: str) -> int:
    """An account given by id or by exact name."""
    if value.isdigit():
        return int(value)
    for account in client.account_list():
        if account["name"] == value:
            return int(account["id"])
    raise NotFound(f"no account {value!r}")


def _print_token(answer: dict[str, Any], done: str) -> None:
    """The token alone on stdout (so ``TOKEN=$(...)`` works); the rest on stderr."""
    account = answer["account"]
    note(f"account {account['name']!r} ({account['role']}, id {account['id']}) {done}.")
    note("Warning: this token is not shown again; keep it now.")
    click.echo(answer["token"])


ACCOUNT_COLUMNS = [
    Column("id", "id", justify="right"),
    Column("name", "name"),
    Column("role", "role"),
    Column("email", "email"),
    Column("created", lambda a: when(a.get("created_at"))),
]


@click.group()
def account() -> None:
    """Participant and organizer accounts (admin)."""


@account.command("create")
@click.argument("name")
@click.option("--role", type=click.Choice(["participant", "organizer"]), default="participant",
              show_default=True, help="Participants submit; organizers also import and "
              "manage their own benchmarks.")
@click.option("--email", help="A contact address.")
@json_option
@pass_client
def create_account(client: Client, name: str, role: str, email: str | None,
                   as_json: bool) -> None:
    """Create an account and print its token, once."""
    answer = client.account_create(name, role=role, email=email)
    if as_json:
        note("Warning: this token is not shown again; keep it now.")
        print_json(answer)
    else:
        _print_token(answer, "created")


@account.command("list")
@json_option
@pass_client
def list_accounts(client: Client, as_json: bool) -> None:
    """List accounts."""
    print_list(client.account_list(), ACCOUNT_COLUMNS, as_json=as_json)


@account.command("token")
@click.argument("name_or_id")
@click.option("--revoke-others", is_flag=True, help="Invalidate the account's other tokens.")
@json_option
@pass_client
def account_token(client: Client, name_or_id: str, revoke_others: bool, as_json: bool) -> None:
    """Give an account a new token (printed once)."""
    answer = client.account_token(account_id_of(client, name_or_id), revoke_others)
    if as_json:
        note("Warning: this token is not shown again; keep it now.")
        print_json(answer)
    else:
        done = "has a new token" + (" (its other tokens are revoked)" if revoke_others else "")
        _print_token(answer, done)


@account.command("delete")
@click.argument("name_or_id")
@json_option
@pass_client
def delete_account(client: Client, name_or_id: str, as_json: bool) -> None:
    """Delete an account and its tokens (its submissions stay, without owner)."""
    answer = client.account_delete(account_id_of(client, name_or_id))
    show_or_say(answer, as_json, f"account {name_or_id} deleted")
