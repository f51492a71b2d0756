"""The values the deployment templates are filled with, checked before anything is
rendered.

Every value lands in a file another program parses: systemd (which expands ``%``
specifiers and ``$`` variables on its command lines and splits them at spaces), nginx
(``;``, braces, quotes, ``$``), YAML, Python and the environment file (quotes, ``$``,
read by systemd and by shells). Rather than escape each value for each format, a value
is refused unless it is made of characters that mean nothing special to any of them:
paths, names, host names, ports and plain URLs never need more, and a refusal naming
the setting is clearer than an escaped value someone later edits by hand.

A database URL may hold a password; ``strip_password`` takes it out, and ``Values``
refuses one that still holds it: nothing secret is ever written into a generated file.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlencode, urlsplit

from scitq_bench.exceptions import InvalidInput
from scitq_bench.server.serving import DEFAULT_MAX_LONG_POLLS  # no Flask: imported lazily there
from scitq_bench.settings import DEFAULT_PORT

DEFAULT_USER = "scitq-bench"
# a worker of its own: its tasks must not read the server's data (its database, its keys)
DEFAULT_WORKER_USER = "scitq-bench-worker"
# bundles upload up to 4 GiB (server/bench/importer.py MAX_BUNDLE_UPLOAD); submissions
# 500 MB by default; task outputs stream without a bound of their own
DEFAULT_MAX_BODY_SIZE = "4g"

SAFE_PATH = re.compile(r"/[A-Za-z0-9._+@/-]*")
# systemd's strict rule for User= and Group= (useradd's own is stricter still)
USER_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_-]{0,30}")
HOST_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
HOST_NAME = re.compile(rf"{HOST_LABEL}(?:\.{HOST_LABEL})*\.?")
WORKER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}")
NGINX_SIZE = re.compile(r"[0-9]{1,12}[kKmMgG]?")
PROMETHEUS_DURATION = re.compile(r"[1-9][0-9]{0,5}(?:ms|s|m|h)")
URL_TEXT = re.compile(r"[A-Za-z0-9._~:/\[\]-]+")
URL_PATH = re.compile(r"[A-Za-z0-9._~/-]*")
DATABASE_SCHEME = re.compile(r"(?:postgresql|postgres|sqlite)(?:\+[a-z0-9_]+)?")
DATABASE_URL_TEXT = re.compile(r"[A-Za-z0-9._~:/?&=+@%,\[\]-]+")
PRIVATE_ROOTS = ("/home", "/root", "/run/user")  # what ProtectHome=yes hides


@dataclass(frozen=True)
class Values:
    """Everything a template may use; each kind of file uses some. Checked when made."""

    executable: str = ""  # the scitq-bench command the units run; the units need it
    user: str = DEFAULT_USER
    group: str = DEFAULT_USER
    data_dir: str = "/var/lib/scitq-bench"
    log_dir: str | None = None  # None: <data_dir>/logs
    store_dir: str | None = None  # None: <data_dir>/store
    env_file: str = "/etc/scitq-bench/scitq-bench.env"
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    processes: int | None = None  # None: `server run` decides; gunicorn.conf.py: one per CPU
    max_long_polls: int = DEFAULT_MAX_LONG_POLLS
    gunicorn_config: str | None = None
    public_url: str | None = None  # None: left to the server (its listening URL)
    upstreams: tuple[str, ...] = (f"127.0.0.1:{DEFAULT_PORT}",)
    certificate: str | None = None  # None: Let's Encrypt's path for the public host
    certificate_key: str | None = None
    max_body_size: str = DEFAULT_MAX_BODY_SIZE
    metrics_allow: tuple[str, ...] = ("127.0.0.1", "::1")
    nginx_log_dir: str = "/var/log/nginx"
    http_port: int = 80  # nginx redirects it to HTTPS (at the public URL's port)
    database_url: str | None = None  # never with its password
    metrics_token_file: str = "/etc/prometheus/scitq-bench.token"
    scrape_interval: str = "30s"
    server_url: str = f"http://127.0.0.1:{DEFAULT_PORT}"  # what a worker connects to
    concurrency: int = 1
    work_dir: str = "/var/lib/scitq-bench-worker"
    worker_name: str | None = None  # None: the machine's host name
    engine_group: str | None = None  # a group that may use the container engine's socket
    stop_timeout: int = 30

    def __post_init__(self) -> None:
        if self.executable:
            absolute_path("executable", self.executable)
        for name in ("user", "group"):
            user_name(name, getattr(self, name))
        if self.engine_group is not None:
            user_name("engine group", self.engine_group)
        for name in ("data_dir", "env_file", "nginx_log_dir", "metrics_token_file", "work_dir"):
            absolute_path(name, getattr(self, name))
        for name in ("log_dir", "store_dir", "gunicorn_config", "certificate",
                     "certificate_key"):
            if getattr(self, name) is not None:
                absolute_path(name, getattr(self, name))
        host_name("host", self.host)
        port("port", self.port)
        port("HTTP port", self.http_port)
        for name in ("max_long_polls", "concurrency", "stop_timeout"):
            at_least(name, getattr(self, name), 1)
        if self.processes is not None:
            at_least("processes", self.processes, 1)
        if self.public_url is not None:
            web_url("public URL", self.public_url)
        web_url("server URL", self.server_url)
        if not self.upstreams:
            raise InvalidInput("at least one upstream (host:port) is needed")
        for upstream in self.upstreams:
            host_port("upstream", upstream)
        for allowed in self.metrics_allow:
            network("metrics allow", allowed)
        pattern("max body size", self.max_body_size, NGINX_SIZE, "a size such as 500m or 4g")
        pattern("scrape interval", self.scrape_interval, PROMETHEUS_DURATION,
                "a duration such as 15s or 1m")
        if self.database_url is not None:
            database_url(self.database_url)
        if self.worker_name is not None:
            pattern("worker name", self.worker_name, WORKER_NAME,
                    "letters, digits, '.', '_' and '-'")

    @property
    def public_host(self) -> str:
        return urlsplit(self.public_url or "").hostname or ""

    @property
    def public_port(self) -> int:
        parts = urlsplit(self.public_url or "")
        return parts.port or (443 if parts.scheme == "https" else 80)

    @property
    def writable_dirs(self) -> list[str]:
        """What the server's units may write: the data dir, and the log and file
        stores where they are elsewhere."""
        found = [self.data_dir]
        for extra in (self.log_dir, self.store_dir):
            if extra is not None and extra not in found:
                found.append(extra)
        return found


def strip_password(url: str) -> tuple[str, bool]:
    """``url`` without its password (in ``user:password@`` or a ``password=`` query
    parameter), and whether there was one."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if parts.password is not None:
        userinfo, _, hostinfo = parts.netloc.rpartition("@")
        netloc = f"{userinfo.partition(':')[0]}@{hostinfo}"
    query = parse_qsl(parts.query, keep_blank_values=True)
    kept = [(key, value) for key, value in query if key.lower() != "password"]
    if netloc == parts.netloc and len(kept) == len(query):
        return url, False
    rebuilt = f"{parts.scheme}://{netloc}{parts.path}" + (f"?{urlencode(kept)}" if kept else "")
    return rebuilt, bool(parts.password) or len(kept) != len(query)


def private_paths(values: Values) -> list[str]:
    """The paths a unit needs that ``ProtectHome=yes`` hides from it."""
    candidates = [values.executable, *values.writable_dirs, values.work_dir]
    return [path for path in candidates
            if path and any(path == root or path.startswith(root + "/")
                            for root in PRIVATE_ROOTS)]


# -- the checks --------------------------------------------------------------------------


def pattern(name: str, value: object, regex: re.Pattern[str], expected: str) -> str:
    if not isinstance(value, str) or not regex.fullmatch(value):
        raise InvalidInput(f"{name}: {value!r} is not {expected}")
    return value


def absolute_path(name: str, value: str) -> str:
    """An absolute path of plain characters: no space, quote, '$', '%', ';' or newline."""
    if not isinstance(value, str) or not value.startswith("/"):
        raise InvalidInput(f"{name}: {value!r} is not an absolute path")
    return pattern(name, value, SAFE_PATH,
                   "a path of letters, digits and . _ + @ / - only (no space, newline, "
                   "quote, '$', '%' or ';': systemd, nginx or the shell would read them)")


def user_name(name: str, value: str) -> str:
    return pattern(name, value, USER_NAME,
                   "a user or group name systemd accepts (a letter or '_', then letters, "
                   "digits, '_' or '-'; 31 characters at most)")


def host_name(name: str, value: str) -> str:
    """A host name, an IPv4 address or an IPv6 address (bare, as --host takes it)."""
    try:
        ipaddress.ip_address(value)
        return value
    except ValueError:
        return pattern(name, value, HOST_NAME, "a host name or an IP address")


def port(name: str, value: int) -> int:
    if not isinstance(value, int) or not 1 <= value <= 65535:
        raise InvalidInput(f"{name}: {value!r} is not a port (1 to 65535)")
    return value


def at_least(name: str, value: int, low: int) -> int:
    if not isinstance(value, int) or value < low:
        raise InvalidInput(f"{name}: {value!r} is not a whole number of at least {low}")
    return value


def host_port(name: str, value: str) -> str:
    """``host:port`` or ``[IPv6]:port``."""
    host, colon, number = value.rpartition(":")
    if not colon or not number.isdigit():
        raise InvalidInput(f"{name}: {value!r} is not host:port")
    if host.startswith("[") and host.endswith("]"):
        try:
            ipaddress.IPv6Address(host[1:-1])
        except ValueError:
            raise InvalidInput(f"{name}: {value!r}: {host} is not an IPv6 address") from None
    elif ":" in host:
        raise InvalidInput(f"{name}: {value!r}: an IPv6 address goes in brackets, "
                           "[address]:port")
    else:
        host_name(name, host)
    port(name, int(number))
    return value


def network(name: str, value: str) -> str:
    try:
        ipaddress.ip_network(value, strict=False)
    except ValueError:
        raise InvalidInput(f"{name}: {value!r} is not an address or a network "
                           "(10.0.0.0/8)") from None
    return value


def web_url(name: str, value: str) -> str:
    """An http(s) URL without credentials, query or fragment: what a worker or a
    browser is given."""
    if not isinstance(value, str) or not URL_TEXT.fullmatch(value):
        raise InvalidInput(f"{name}: {value!r} is not a plain http:// or https:// URL")
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https"):
        raise InvalidInput(f"{name}: {value!r} is not an http:// or https:// URL")
    if not parts.hostname:
        raise InvalidInput(f"{name}: {value!r} names no host")
    try:
        parts.port  # noqa: B018 (the property checks the port)
    except ValueError:
        raise InvalidInput(f"{name}: {value!r} has no valid port") from None
    host_name(name, parts.hostname)
    if not URL_PATH.fullmatch(parts.path):
        raise InvalidInput(f"{name}: {value!r} has an unusual path")
    return value


def database_url(value: str) -> str:
    """A PostgreSQL or SQLite SQLAlchemy URL, already without its password."""
    parts = urlsplit(value)
    if not DATABASE_SCHEME.fullmatch(parts.scheme):
        raise InvalidInput(f"database URL: {parts.scheme!r} is not a PostgreSQL or SQLite "
                           "URL (postgresql+psycopg2://user@host/name)")
    if strip_password(value)[1]:
        raise InvalidInput("database URL: it holds a password, which must never be written "
                           "into a generated file (put it in PGPASSWORD)")
    if not DATABASE_URL_TEXT.fullmatch(value):
        raise InvalidInput("database URL: it holds characters the environment file would "
                           "misread (space, quote, '$', backslash or newline)")
    return value
