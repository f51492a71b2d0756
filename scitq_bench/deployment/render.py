"""Finding the deployment templates and filling them in.

The templates live in ``templates/`` beside the package (a source tree) or under
``<prefix>/share/scitq_bench/templates`` (a wheel). They are Jinja2 templates rendered
with ``StrictUndefined``: a name a template uses that no value defines is an error,
never an empty string in a unit file. Grafana's dashboard is shipped as it is: its own
``{{label}}`` legends are not Jinja's.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import scitq_bench
from scitq_bench.deployment.values import Values
from scitq_bench.exceptions import InvalidInput, ScitqBenchError
from scitq_bench.server.serving import SHORT_CALL_ROOM, bind_address
from scitq_bench.shared_files import shared_dir

if TYPE_CHECKING:
    import jinja2

# the server unit's LimitNOFILE at least: one API process holds its long polls, its
# short calls, its database connections and its files
MIN_OPEN_FILES = 65536


@dataclass(frozen=True)
class Kind:
    """One kind of file: its template, and how it is written."""

    template: str  # its path under templates/
    private: bool = False  # holds secrets once filled in: written with mode 0600
    jinja: bool = True
    unit: bool = False  # a systemd unit: runs the scitq-bench executable
    extra: Mapping[str, Any] = field(default_factory=dict)


KINDS: dict[str, Kind] = {
    "systemd-server": Kind("systemd/scitq-bench-server.service", unit=True),
    "systemd-scheduler": Kind("systemd/scitq-bench-scheduler.service", unit=True),
    "systemd-target": Kind("systemd/scitq-bench.target"),
    "systemd-worker": Kind("systemd/scitq-bench-worker.service", unit=True),
    "gunicorn": Kind("gunicorn.conf.py"),
    "nginx": Kind("nginx/scitq-bench.conf"),
    "env-server": Kind("scitq-bench.env", private=True, extra={"role": "server"}),
    "env-worker": Kind("scitq-bench.env", private=True, extra={"role": "worker"}),
    "prometheus": Kind("prometheus/scitq-bench.yml"),
    "grafana": Kind("grafana/scitq-bench.json", jinja=False),
}


def templates_dir() -> Path:
    return shared_dir("templates")


def render(kind: str, values: Values) -> str:
    """The file of ``kind`` filled with ``values``."""
    spec = KINDS[kind]
    path = templates_dir() / spec.template
    if not path.is_file():
        raise ScitqBenchError(f"template {spec.template} not found in {templates_dir()}: "
                              "is the installation complete?")
    if not spec.jinja:
        return path.read_text()
    if spec.unit and not values.executable:
        raise InvalidInput("a systemd unit needs the path of the scitq-bench executable "
                           "(--executable)")
    _check(kind, values)
    template = _environment().get_template(spec.template)
    return template.render(**context(values), **spec.extra)


def context(values: Values) -> dict[str, Any]:
    """The names templates see: the values, and what follows from them."""
    host = values.public_host
    letsencrypt = f"/etc/letsencrypt/live/{host}"
    return {
        **dataclasses.asdict(values),
        "version": scitq_bench.__version__,
        "bind": bind_address(values.host, values.port),
        "server_name": host,
        "https_port": values.public_port,
        "certificate": values.certificate or f"{letsencrypt}/fullchain.pem",
        "certificate_key": values.certificate_key or f"{letsencrypt}/privkey.pem",
        "writable_dirs": values.writable_dirs,
        "open_files": max(MIN_OPEN_FILES, 2 * (values.max_long_polls + SHORT_CALL_ROOM)),
    }


def _check(kind: str, values: Values) -> None:
    """What one kind of file asks of the values beyond their own checks."""
    if kind == "nginx" and not (values.public_url or "").startswith("https://"):
        raise InvalidInput(f"public URL: {values.public_url!r}: the nginx site serves HTTPS; "
                           "give an https:// URL")


def _environment() -> jinja2.Environment:
    import jinja2

    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(templates_dir()), undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True, trim_blocks=True, lstrip_blocks=True, autoescape=False)
