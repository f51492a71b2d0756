"""Building the recruitment machinery from the server's settings.

``recruitment:`` in ``settings.yaml``::

    recruitment:
      identity: my-lab            # the value of the owner tag on our instances
      interval: 5                 # seconds between passes
      idle_timeout: 600           # a recruited worker that never worked
      idle_after_work: 120        # one that worked and has nothing left
      deploy_timeout: 900         # the watchdog of a deploy
      exclusion: 1800             # an offer refused for capacity stays out this long
      catalog_interval: 21600     # seconds between refreshes of the providers' catalogs
      reconcile_interval: 600     # seconds between searches for orphan instances
      max_workers: 20             # recruited workers at once (all batches)
      max_cost_per_hour: 15.0     # their summed price
      ssh_key: /path/to/key       # for Ansible on hired machines
      package: /path/to/wheel     # the worker package to install (default: served)
      ansible_vars:               # playbook variables for every deploy and destroy
        extra_roles: [my_site_role]
      providers:                  # each provider's own configuration
        aws: {regions: [eu-west-3], image_id: ami-..., ...}

The ``local`` provider (worker processes on this machine) is always available.

Where processes that serve the API run apart from the background leader (see
``server/background.py``), theirs is built with ``dispatch``: their job runner runs
nothing and wakes the leader instead; the leader's is built with ``leading``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from scitq_bench.recruiters.providers.base import Provider, build_provider
from scitq_bench.server import auth
from scitq_bench.server.db import Database
from scitq_bench.server.notify import JOBS, Notifier
from scitq_bench.server.recruit.engine import Engine, RecruitSettings, reconcile
from scitq_bench.server.recruit.jobs import JobRunner, JobSettings
from scitq_bench.server.recruit.updaters import ProviderUpdater, refresh_all
from scitq_bench.settings import ServerSettings

log = logging.getLogger("scitq_bench.recruit")

# An app's recruitment sits in its ``extensions[EXTENSION]``; views find it there
# (``server.web.current_recruitment``) and hand it to the services that need it.
EXTENSION = "scitq_bench_recruit"


@dataclass
class Recruitment:
    engine: Engine
    runner: JobRunner
    settings: RecruitSettings
    providers_config: dict[str, Any]

    def configured_providers(self) -> list[str]:
        return sorted({"local", *self.providers_config})

    def provider(self, name: str) -> Provider:
        """The provider ``name`` as the jobs use it (built once)."""
        return self.runner.providers(name)


NOT_RUNNING = ("recruitment is not running on this server (it needs public_url, or the "
               "server started by `server run`)")


def recruit_settings(config: dict[str, Any]) -> RecruitSettings:
    def number(key: str, default: float | None) -> float | None:
        value = config.get(key, default)
        return None if value is None else float(value)

    return RecruitSettings(
        interval=number("interval", 5.0) or 5.0,
        idle_timeout=number("idle_timeout", 600.0) or 0.0,
        idle_after_work=number("idle_after_work", 120.0) or 0.0,
        max_workers=None if config.get("max_workers") is None else int(config["max_workers"]),
        max_cost_per_hour=number("max_cost_per_hour", None),
        providers=frozenset({"local", *(config.get("providers") or {})}),
    )


def build(settings: ServerSettings, db: Database, server_url: str, *,
          dispatch: Notifier | None = None,
          leading: Callable[[], bool] | None = None) -> Recruitment:
    """The recruitment machinery. ``dispatch``: jobs run in the leader's process, not
    here: queuing or cancelling one notifies ``JOBS`` (every process, on PostgreSQL;
    the leader's pass picks them up within a second anyway), and the engine is never
    started here. ``leading``: built for the leader, whose jobs stop where they stand
    once it says this process no longer leads."""
    config = dict(settings.recruitment or {})
    identity = str(config.get("identity") or "scitq-bench")
    providers_config: dict[str, Any] = dict(config.get("providers") or {})
    cache: dict[str, Provider] = {}
    lock = threading.Lock()

    def machine_token(name: str) -> str:
        """An enrollment token for one hired machine (the worker then gets its own)."""
        with db.write() as session:
            return auth.issue_machine_token(session, name)

    def provider(name: str) -> Provider:
        with lock:
            if name not in cache:
                own = dict(providers_config.get(name) or {})
                if name == "local":
                    own.setdefault("server_url", server_url)
                    own.setdefault("token", machine_token("local"))
                    own.setdefault("work_root", str(settings.data_dir / "local-workers"))
                    own.setdefault("containers", True)  # when an engine answers
                cache[name] = build_provider(name, own, identity)
            return cache[name]

    jobs = JobSettings(
        deploy_timeout=float(config.get("deploy_timeout", 900)),
        exclusion=float(config.get("exclusion", 1800)),
        ssh_key=Path(config["ssh_key"]) if config.get("ssh_key") else None,
        package_path=Path(config["package"]) if config.get("package") else None,
        ansible_vars=dict(config.get("ansible_vars") or {}),
    )
    wake = None if dispatch is None else (lambda: dispatch.notify(JOBS))
    runner = JobRunner(db=db, providers=provider, server_url=server_url,
                       enroll_token=machine_token, settings=jobs, dispatch=wake,
                       leading=leading)
    recruit = recruit_settings(config)

    def refresh_catalogs() -> None:
        """Each configured cloud provider's offers: fetched, then stored."""
        updated, _ = refresh_all(db, {name: ProviderUpdater(name, provider(name))
                                      for name in providers_config})
        for name, counts in updated.items():
            log.info("catalog of %s: %s", name, counts)

    def find_orphans() -> list[str]:
        return reconcile(db, provider, sorted({"local", *providers_config}))

    engine = Engine(db, runner, recruit, refresh_catalogs=refresh_catalogs,
                    catalog_interval=float(config.get("catalog_interval", 6 * 3600)),
                    reconcile=find_orphans,
                    reconcile_interval=float(config.get("reconcile_interval", 600)))
    return Recruitment(engine=engine, runner=runner, settings=recruit,
                       providers_config=providers_config)
