"""``flavor list|update`` and ``quota list|set``: the catalog of machines recruitment
hires from, and the limits per provider and region."""

from __future__ import annotations

from typing import Any

import click

from scitq_bench.cli.common import json_option, pass_client
from scitq_bench.cli.output import Column, print_json, print_list, success
from scitq_bench.client import Client

FLAVOR_COLUMNS = [
    Column("provider", "provider"),
    Column("region", "region"),
    Column("flavor", "flavor"),
    Column("cpu", "cpu", justify="right"),
    Column("ram", "ram_gb", justify="right"),
    Column("disk", "disk_gb", justify="right"),
    Column("gpu", lambda o: o.get("gpu_count") or None, justify="right"),
    Column("gpumodel", "gpu_model"),
    Column("gpumem", lambda o: o.get("gpu_mem_gb") or None, justify="right"),
    Column("tags", "tags"),
    Column("cost", "cost", justify="right"),
    Column("eviction", "eviction", justify="right"),
]

QUOTA_COLUMNS = [
    Column("provider", "provider"),
    Column("region", "region"),
    Column("cpus", lambda q: _used(q["cpus_used"], q.get("max_cpus")), justify="right"),
    Column("instances", lambda q: _used(q["instances_used"], q.get("max_instances")),
           justify="right"),
    Column("preferred", lambda q: "yes" if q.get("preferred") else None),
]


def _used(used: int, limit: int | None) -> str:
    return f"{used}/{'-' if limit is None else limit}"


class Limit(click.ParamType):
    """A quota limit: a whole number, 0 or more, or ``none`` for no limit."""

    name = "N|none"

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> Any:
        if value is None or isinstance(value, int):
            return value
        text = str(value).strip().lower()
        if text in ("none", "unlimited"):
            return None
        if text.isascii() and text.isdigit():
            return int(text)
        self.fail(f"{value!r} is not a whole number (0 or more) nor 'none'", param, ctx)


@click.group()
def flavor() -> None:
    """The catalog of machines (flavors, by region) that recruitment hires from."""


@flavor.command("list", short_help="List offers that may be hired now, cheapest first.")
@click.option("--min-cpu", type=click.IntRange(min=0), help="At least this many cpus.")
@click.option("--min-ram", type=click.FloatRange(min=0), help="At least this much memory (GB).")
@click.option("--min-disk", type=click.FloatRange(min=0), help="At least this much disk (GB).")
@click.option("--max-eviction", type=click.FloatRange(min=0),
              help="At most this eviction rate (% per hour) [default: 5, unless "
                   "--protofilters mention eviction].")
@click.option("--limit", type=click.IntRange(min=0), default=10, show_default=True,
              help="At most this many offers.")
@click.option("--protofilters", metavar="FILTERS",
              help="Filters separated by ':', e.g. 'cpu>=8:ram>=32:region~eu%' (quote them: "
                   "> and < are the shell's).")
@click.option("-P", "--provider", help="Only this provider (auto: any).")
@click.option("-r", "--region", help="Only this region (auto: any).")
@json_option
@pass_client
def list_flavors(client: Client, min_cpu: int | None, min_ram: float | None,
                 min_disk: float | None, max_eviction: float | None, limit: int,
                 protofilters: str | None, provider: str | None, region: str | None,
                 as_json: bool) -> None:
    """List the offers (a flavor in a region) that may be hired now, as recruitment
    would choose them: cheapest first, then preferred regions; offers beyond a quota or
    kept out after a capacity failure are not listed. Metal machines and an eviction
    rate above 5% are left out unless the protofilters mention tags or eviction."""
    offers = client.flavor_list(
        protofilters=protofilters, provider=provider, region=region, min_cpu=min_cpu,
        min_ram=min_ram, min_disk=min_disk, max_eviction=max_eviction, limit=limit)
    print_list(offers, FLAVOR_COLUMNS, as_json=as_json)


@flavor.command("update")
@click.option("-P", "--provider", help="Only this provider [default: every provider with "
                                       "an updater].")
@json_option
@pass_client
def update_flavors(client: Client, provider: str | None, as_json: bool) -> None:
    """Refresh the catalog from the providers (`local`: this machine, measured again)."""
    result = client.flavor_update(provider)
    if as_json:
        print_json(result)
    else:
        for name, counts in result["updated"].items():
            details = ", ".join(f"{k.replace('_', ' ')}: {v}" for k, v in counts.items())
            success(f"{name} updated" + (f" ({details})" if details else ""))
    if result["errors"]:
        problems = "; ".join(f"{name}: {message}" for name, message in result["errors"].items())
        raise click.ClickException(f"update failed for {problems}")


@click.group()
def quota() -> None:
    """What recruitment may run at once per provider and region."""


@quota.command("list")
@json_option
@pass_client
def list_quotas(client: Client, as_json: bool) -> None:
    """List quotas: cpus and instances used by live recruited workers / the limit."""
    print_list(client.quota_list(), QUOTA_COLUMNS, as_json=as_json)


@quota.command("set")
@click.argument("provider")
@click.argument("region")
@click.option("--max-cpus", type=Limit(), help="At most this many cpus of live recruited "
                                                "workers ('none': no limit).")
@click.option("--max-instances", type=Limit(), help="At most this many live recruited "
                                                     "workers ('none': no limit).")
@click.option("--preferred/--not-preferred", default=None,
              help="Offers of a preferred region come first among those of the same cost.")
@json_option
@pass_client
def set_quota(client: Client, provider: str, region: str, max_cpus: Any, max_instances: Any,
              preferred: bool | None, as_json: bool) -> None:
    """Create or change the quota of PROVIDER in REGION; what is not given is kept."""
    source = click.get_current_context()
    fields: dict[str, Any] = {}
    for name, value in (("max_cpus", max_cpus), ("max_instances", max_instances),
                        ("preferred", preferred)):
        if source.get_parameter_source(name) == click.core.ParameterSource.COMMANDLINE:
            fields[name] = value
    result = client.quota_set(provider, region, **fields)
    if as_json:
        print_json(result)
    else:
        success(f"quota of {provider} in {region}: cpus {_used(result['cpus_used'], result['max_cpus'])}"
                f", instances {_used(result['instances_used'], result['max_instances'])}"
                f"{', preferred' if result['preferred'] else ''}")
