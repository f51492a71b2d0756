"""Settings, built once from the environment and optional files; no hidden globals.

Environment variables (stable, users rely on them):
``SCITQ_BENCH_DATA_DIR``, ``SCITQ_BENCH_DATABASE_URL``, ``SCITQ_BENCH_SERVER``,
``SCITQ_BENCH_TOKEN``, ``SCITQ_BENCH_LEASE_SECONDS``, ``SCITQ_BENCH_CONFIG``,
``SCITQ_BENCH_PUBLIC_URL``, ``SCITQ_BENCH_DATABASE_BUSY_TIMEOUT``,
``SCITQ_BENCH_DATABASE_POOL_SIZE``, ``SCITQ_BENCH_DATABASE_PREPARE`` (``0`` behind
a transaction pooler), ``SCITQ_BENCH_DIRECT_DATABASE_URL``,
``SCITQ_BENCH_REAPER_INTERVAL``,
``SCITQ_BENCH_RETRY_SECONDS``, ``SCITQ_BENCH_LOG_FORMAT`` (``text`` or ``json``),
``SCITQ_BENCH_STORE_DIR`` (where the ``server://`` files live; default
``<data_dir>/store``), ``SCITQ_BENCH_LOG_DIR`` (where execution logs live; default
``<data_dir>/logs``): absolute paths (``~`` allowed), a relative one is refused, so
that every process and replica sharing one directory names it alike.
``SCITQ_BENCH_STORE_URL``: the object store holding both instead (``s3://bucket/prefix``,
``azure://account/container/prefix`` or ``file:///shared/mount/prefix``), whose
endpoints and credentials, when the SDK's own configuration does not give them, go in
settings.yaml's ``storage:`` mapping (as in the storage settings file).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from scitq_bench.bench.archives import ArchiveLimits
from scitq_bench.exceptions import InvalidInput
from scitq_bench.storage.config import StorageConfig
from scitq_bench.storage.locations import parse_location, redact

DEFAULT_PORT = 5000
LOG_FORMATS = ("text", "json")  # the server's own logs: lines of text, or JSON lines
STORE_SCHEMES = ("s3", "azure", "file")  # where store_url may put the logs and files
# What a participant's submission zip may unpack to: as much as a bundle (2 GiB), four
# times the default upload limit (500 MB), which the worker unpacks in seconds; 10,000
# entries; no entry over 1 MiB compressed more than 200:1 (text compresses 3 to 10
# times, a file of zeros about 1000 times: the signature of a zip bomb).
SUBMISSION_LIMITS = ArchiveLimits(max_bytes=2 << 30, max_files=10_000,
                                  max_file_bytes=2 << 30, max_ratio=200)


def default_data_dir() -> Path:
    return Path(os.environ.get("SCITQ_BENCH_DATA_DIR") or Path.home() / ".scitq_bench")


def client_config_path() -> Path:
    """Where ``server init`` writes the CLI's server URL and token (mode 0600)."""
    explicit = os.environ.get("SCITQ_BENCH_CONFIG")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config"
    return Path(base) / "scitq_bench" / "client.json"


@dataclass(frozen=True)
class ServerSettings:
    """Everything the server process needs; passed explicitly to the app factory."""

    data_dir: Path
    database_url: str
    lease_seconds: float = 30.0
    # seconds between two passes of the lease reaper: a dead worker's work is queued
    # again within lease_seconds + reaper_interval
    reaper_interval: float = 1.0
    run_reaper: bool = True
    claim_max_wait: float = 30.0
    # seconds a request may wait for a busy database before it is answered 503
    # (Retry-After); SQLite has one writer at a time
    database_busy_timeout: float = 10.0
    # PostgreSQL connections one server process holds at most (its requests share
    # them; one waits at most database_busy_timeout for one, then gets a 503)
    database_pool_size: int = 20
    # worker-protocol calls (claims, reports, heartbeats) one server process runs at
    # once; more wait their turn, those that hand out work first (server/turns.py).
    # At most database_pool_size: the rest of the pool stays free for other calls
    worker_transactions: int = 8
    # PostgreSQL prepares the statements each connection repeats (the workers' hot
    # path); off behind pgbouncer in transaction mode
    database_prepare: bool = True
    # PostgreSQL reached directly, not through a transaction pooler such as pgbouncer:
    # the wake-up listener and the leader's advisory lock need sessions of their own
    # (default: database_url)
    direct_database_url: str | None = None
    # the URL workers reach this server at (recruited machines are given it)
    public_url: str | None = None
    # ``recruitment:`` in settings.yaml: providers' configuration (credentials included:
    # keep the file private), timeouts, caps; see docs/recruitment.md
    recruitment: dict[str, Any] = field(default_factory=dict)
    run_recruiter: bool = True
    # ``submission_archive:`` in settings.yaml: what a submission zip may unpack to
    submission_limits: ArchiveLimits = SUBMISSION_LIMITS
    # ``log_dir`` / ``store_dir`` as set; None: under data_dir. Read them through the
    # properties.
    log_root: Path | None = None
    store_root: Path | None = None
    # how the server's processes write their own logs: "text" lines or "json" lines
    log_format: str = "text"
    # the object store holding the logs and files instead of log_dir and store_dir, as a
    # folder URI ("s3://bucket/prefix/"); None: the local directories
    store_url: str | None = None
    # ``storage:`` in settings.yaml: the object store's endpoint and credentials (kept
    # out of repr: never in a log line)
    storage: StorageConfig = field(default_factory=StorageConfig, repr=False)
    # the priorities a benchmark's organizer may give its batches (docs/benchmarks.md)
    bench_priority_min: int = 0
    bench_priority_max: int = 10

    @property
    def log_dir(self) -> Path:
        """Where execution logs live: shared by every process and replica."""
        return self.log_root or self.data_dir / "logs"

    @property
    def store_dir(self) -> Path:
        """Where ``server://`` files live: shared by every process and replica."""
        return self.store_root or self.data_dir / "store"

    @property
    def session_database_url(self) -> str:
        """Where sessions that outlive a transaction connect (LISTEN, advisory locks)."""
        return self.direct_database_url or self.database_url

    @classmethod
    def from_env(cls, data_dir: Path | str | None = None, **overrides: Any) -> ServerSettings:
        """Environment first (``SCITQ_BENCH_<NAME>``), then ``<data_dir>/settings.yaml``
        (``name``), then defaults."""
        root = Path(data_dir) if data_dir else default_data_dir()
        file_values = _read_settings_file(root / "settings.yaml")

        def setting(name: str, default: Any = None) -> Any:
            return os.environ.get(f"SCITQ_BENCH_{name.upper()}") or file_values.get(name, default)

        recruitment = file_values.get("recruitment") or {}
        if not isinstance(recruitment, dict):
            raise InvalidInput(f"{root / 'settings.yaml'}: recruitment must be a mapping")
        values: dict[str, Any] = {
            "data_dir": root,
            "database_url": setting("database_url") or f"sqlite:///{root / 'scitq_bench.db'}",
            "lease_seconds": _positive_float("lease_seconds", setting("lease_seconds", 30)),
            "reaper_interval": _positive_float("reaper_interval", setting("reaper_interval", 1)),
            "database_busy_timeout": _positive_float("database_busy_timeout",
                                                     setting("database_busy_timeout", 10)),
            "database_pool_size": _positive_int("database_pool_size",
                                                setting("database_pool_size", 20)),
            "worker_transactions": _positive_int("worker_transactions",
                                                 setting("worker_transactions", 8)),
            "database_prepare": _boolean("database_prepare", setting("database_prepare", True)),
            "direct_database_url": setting("direct_database_url"),
            "public_url": setting("public_url"),
            "recruitment": recruitment,
            "submission_limits": _archive_limits(
                "submission_archive", file_values.get("submission_archive"), SUBMISSION_LIMITS),
            "log_root": _directory("log_dir", setting("log_dir")),
            "store_root": _directory("store_dir", setting("store_dir")),
            "log_format": _choice("log_format", setting("log_format", "text"), LOG_FORMATS),
            "store_url": normal_store_url(setting("store_url")),
            "storage": StorageConfig.from_mapping(file_values.get("storage") or {},
                                                  root / "settings.yaml"),
            "bench_priority_min": _integer("bench_priority_min",
                                           setting("bench_priority_min", 0)),
            "bench_priority_max": _integer("bench_priority_max",
                                           setting("bench_priority_max", 10)),
        }
        values.update(overrides)
        if values["store_url"] and (values["log_root"] or values["store_root"]):
            both = "store_dir" if values["store_root"] else "log_dir"
            raise InvalidInput(
                f"settings store_url and {both} are both set: with store_url the logs and "
                f"files live in {values['store_url']}; unset {both} (SCITQ_BENCH_{both.upper()} "
                "or settings.yaml)")
        if values["bench_priority_min"] > values["bench_priority_max"]:
            raise InvalidInput(
                f"settings bench_priority_min ({values['bench_priority_min']}) is above "
                f"bench_priority_max ({values['bench_priority_max']})")
        return cls(**values)


def _integer(name: str, value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        raise InvalidInput(f"setting {name} must be a whole number, got {value!r}") from None


def _positive_float(name: str, value: Any) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise InvalidInput(f"setting {name} must be a number, got {value!r}") from None
    if number <= 0:
        raise InvalidInput(f"setting {name} must be positive, got {value!r}")
    return number


def _boolean(name: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise InvalidInput(f"setting {name} must be true or false (1/0, yes/no), got {value!r}")


def _choice(name: str, value: Any, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise InvalidInput(f"setting {name} must be one of {', '.join(choices)}, got {value!r}")
    return str(value)


def _directory(name: str, value: Any) -> Path | None:
    """An absolute directory (``~`` expanded); None when not set. A relative one is
    refused: the processes sharing a store may not share a working directory."""
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise InvalidInput(f"setting {name} must be a directory path, got {value!r}")
    path = Path(value).expanduser()
    if not path.is_absolute():
        raise InvalidInput(f"setting {name} must be an absolute path, got {value!r}")
    return path


def normal_store_url(value: Any) -> str | None:
    """The object store's URI checked, as a folder ("s3://bucket/prefix/"); None when
    not set."""
    if value is None or value == "":
        return None
    text = str(value).strip()
    scheme = text.split("://", 1)[0].lower() if "://" in text else ""
    if scheme not in STORE_SCHEMES:
        raise InvalidInput(f"setting store_url must be an {', '.join(STORE_SCHEMES[:-1])} or "
                           f"{STORE_SCHEMES[-1]} URI (s3://bucket/prefix, "
                           f"azure://account/container/prefix, file:///absolute/path), "
                           f"got {redact(text)!r}", field="store_url")
    parts = urlsplit(text)
    if parts.username is not None or parts.password is not None:
        raise InvalidInput(f"setting store_url {redact(text)!r} carries credentials: put them "
                           "in settings.yaml's storage: mapping or the SDK's own configuration "
                           "(environment, instance role), never in the URL", field="store_url")
    if parts.query or parts.fragment or text.endswith(("?", "#")):
        raise InvalidInput(f"setting store_url takes no query or fragment, got {redact(text)!r}"
                           " (credentials go in settings.yaml's storage: mapping)",
                           field="store_url")
    location = parse_location(text, "setting store_url")
    if location.scheme == "file" and not location.key.strip("/"):
        raise InvalidInput(f"setting store_url {text!r} names the file system's root: name "
                           "a folder for the logs and files", field="store_url")
    return location.as_folder().uri()


def _positive_int(name: str, value: Any) -> int:
    number = _positive_float(name, value)
    if number != int(number):
        raise InvalidInput(f"setting {name} must be a whole number, got {value!r}")
    return int(number)


def _archive_limits(name: str, value: Any, default: ArchiveLimits) -> ArchiveLimits:
    """``default`` with the keys ``value`` (a mapping from settings.yaml) gives."""
    if value is None:
        return default
    if not isinstance(value, dict):
        raise InvalidInput(f"setting {name} must be a mapping of limits, got {value!r}")
    known = {"max_bytes", "max_files", "max_file_bytes", "max_ratio"}
    for key in value:
        if key not in known:
            raise InvalidInput(f"setting {name}.{key}: unknown; use {', '.join(sorted(known))}")
    try:
        return replace(default, **value)
    except InvalidInput as exc:
        raise InvalidInput(f"setting {name}.{exc}") from None


def _read_settings_file(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {}
    data = yaml.safe_load(path.read_text()) or {}
    if not isinstance(data, dict):
        raise InvalidInput(f"{path} must hold a mapping of settings")
    return data


@dataclass(frozen=True)
class ClientSettings:
    server: str
    token: str | None
    # seconds to keep trying a server that cannot be reached or answers "busy";
    # None: the caller's default
    retry_seconds: float | None = None


def load_client_settings(server: str | None = None, token: str | None = None,
                         retry_seconds: float | None = None) -> ClientSettings:
    """Arguments first, then environment, then the config file ``server init`` wrote
    (not read when the arguments give everything)."""
    stored: dict[str, Any] = {}
    path = client_config_path()
    if not (server and token and retry_seconds is not None) and path.exists():
        try:
            stored = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise InvalidInput(f"client config {path} is not valid JSON: {exc}") from None
    url = (
        server
        or os.environ.get("SCITQ_BENCH_SERVER")
        or stored.get("server")
        or f"http://127.0.0.1:{DEFAULT_PORT}"
    )
    if retry_seconds is None:
        retry_seconds = _retry_seconds(os.environ.get("SCITQ_BENCH_RETRY_SECONDS"),
                                       stored.get("retry_seconds"))
    return ClientSettings(
        server=server_url(url),
        token=token or os.environ.get("SCITQ_BENCH_TOKEN") or stored.get("token"),
        retry_seconds=retry_seconds,
    )


def server_url(value: str) -> str:
    """The server's URL from what people type: scitq users give a host (``-s HOST``,
    port 5000 implied) or ``HOST:PORT``; a URL with a scheme is kept as it is."""
    text = value.strip().rstrip("/")
    if "://" in text:
        return text
    host, slash, path = text.partition("/")
    if host.startswith("["):  # an IPv6 address: [::1] or [::1]:8080
        address, _, rest = host.partition("]")
        name, port = address + "]", rest[1:] if rest.startswith(":") else ""
        bad = bool(rest) and not rest.startswith(":")
    else:
        name, _, port = host.partition(":")
        bad = ":" in port
    if not name or bad or (port and not (port.isascii() and port.isdigit())):
        raise InvalidInput(f"server {value!r} is not a URL, a HOST nor a HOST:PORT",
                           field="server")
    return f"http://{name}:{port or DEFAULT_PORT}{slash}{path}"


def _retry_seconds(*candidates: Any) -> float | None:
    """The first value given (environment, then config file), checked: 0 or more."""
    for value in candidates:
        if value is None or value == "":
            continue
        try:
            number = float(value)
        except (TypeError, ValueError):
            number = -1.0
        if number < 0 or number != number:
            raise InvalidInput(f"retry_seconds (SCITQ_BENCH_RETRY_SECONDS) must be a number of "
                               f"seconds, 0 or more; got {value!r}", field="retry_seconds")
        return number
    return None


def write_client_config(server: str, token: str) -> Path:
    """Store the URL and token readable by the owner only (0600)."""
    path = client_config_path()
    write_private(path, json.dumps({"server": server, "token": token}))
    return path


def write_private(path: Path, text: str) -> None:
    """Write a secret readable by the owner only (0600, also when the file existed)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    os.chmod(path, 0o600)
