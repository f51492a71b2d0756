"""``provider`` and ``cost``: where recruited machines come from, and what each cost."""

from __future__ import annotations

import click

from scitq_bench.cli.common import json_option, pass_client
from scitq_bench.cli.output import Column, print_list, success, when
from scitq_bench.client import Client


@click.group()
def provider() -> None:
    """Providers this server recruits from."""


@provider.command("list")
@json_option
@pass_client
def list_providers(client: Client, as_json: bool) -> None:
    columns = [Column("name", "name"), Column("settings", lambda p: ", ".join(p["settings"]))]
    print_list(client.provider_list(), columns, as_json=as_json)


@provider.command("check")
@click.argument("name")
@pass_client
def check_provider(client: Client, name: str) -> None:
    """Check a provider's credentials with a cheap authenticated call."""
    success(f"{name}: {client.provider_check(name)['check']}")


@provider.command("reconcile")
@pass_client
def reconcile_providers(client: Client) -> None:
    """Delete the instances tagged as ours that no live worker knows, and list them."""
    orphans = client.provider_reconcile()
    success(f"{len(orphans)} orphan instance(s) deleted" + "".join(
        f"\n  {orphan}" for orphan in orphans))


@click.command("cost")
@json_option
@pass_client
def cost(client: Client, as_json: bool) -> None:
    """What each recruited worker cost so far."""
    columns = [Column("worker", "worker_id", justify="right"), Column("name", "name"),
               Column("per hour", "cost_per_hour", justify="right"),
               Column("cost", "cost", justify="right"),
               Column("released", lambda c: when(c.get("released_at")))]
    print_list(client.cost_list(), columns, as_json=as_json)
