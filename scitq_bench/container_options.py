"""Container options of a task: an allow-list of ``docker run`` options, parsed once.

Shared by the server (which refuses bad options when a task is created) and the worker
(which turns the parsed options into its container engine's settings). Nothing here
imports Flask or the database.

Allowed (``--opt value`` and ``--opt=value`` alike; short options also as ``-eVALUE``):

| option | value |
| --- | --- |
| ``--gpus`` | a count (1 or more) or ``all`` |
| ``--shm-size`` | bytes, with an optional ``b``/``k``/``m``/``g`` suffix (powers of 1024) |
| ``-e``, ``--env`` | ``KEY=VALUE`` (repeatable) |
| ``--network`` | a network name, only when the task may use the network |
| ``-w``, ``--workdir`` | an absolute path in the container |
| ``--entrypoint`` | a command line, split like a shell would (``""`` clears the image's) |
| ``--pids-limit`` | 1 or more |

Everything that would reach the host (mounts, devices, host namespaces, capabilities,
another user) is refused with the reason, and so is anything not in the list.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from scitq_bench.exceptions import InvalidInput

GPU_ALL = -1
"""``gpu`` of a task (and ``ContainerOptions.gpus``) meaning every GPU of the worker."""

RESERVED_ENV = frozenset({"SCITQ_BENCH_TOKEN"})
MAX_IMAGE_LENGTH = 500

_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_SIZE = re.compile(r"^(\d+)([kmg]?)b?$", re.IGNORECASE)
_SIZE_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3}
_NETWORK_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_IMAGE = re.compile(r"^[A-Za-z0-9._/:@-]+$")


@dataclass(frozen=True)
class ContainerOptions:
    """What the task's container options ask for; ``None`` (or empty) when not given."""

    gpus: int | None = None  # GPU_ALL (-1) for all, else a count >= 1
    shm_size: int | None = None  # bytes
    env: dict[str, str] = field(default_factory=dict)
    network: str | None = None
    workdir: str | None = None
    entrypoint: list[str] | None = None  # [] clears the image's entrypoint
    pids_limit: int | None = None


# -- refused options, each with why -----------------------------------------------------

_HOST_PATHS = ("host paths are never mounted into task containers; use inputs (-i), "
               "resources (-r) and the output (-o) instead")
_NAMESPACE = "it would share a namespace of the host with the container"
_ISOLATION = "it weakens the container's isolation from the host"

_FORBIDDEN: dict[str, str] = {
    "--privileged": "it gives the container every capability and the host's devices",
    "--volume": _HOST_PATHS,
    "--mount": _HOST_PATHS,
    "--volumes-from": "it mounts the volumes of another container",
    "--pid": _NAMESPACE,
    "--ipc": _NAMESPACE,
    "--uts": _NAMESPACE,
    "--userns": _NAMESPACE,
    "--cgroupns": _NAMESPACE,
    "--device": "host devices are not exposed to tasks; ask for GPUs with the task's gpu "
                "field (--gpu) or --gpus",
    "--cap-add": _ISOLATION,
    "--security-opt": _ISOLATION,
    "--user": "the worker chooses the user tasks run as",
}

_SHORT = {"-e": "--env", "-w": "--workdir", "-v": "--volume", "-u": "--user"}
_ALIASES = {"--net": "--network"}

ALLOWED_HELP = ("--gpus N|all, --shm-size SIZE, -e/--env KEY=VALUE, --network NAME, "
                "-w/--workdir /PATH, --entrypoint CMD, --pids-limit N")


def _label(name: str, given: str) -> str:
    """The option as the user wrote it, with its long name when they used another."""
    return given if given == name else f"{given} ({name})"


# -- values -------------------------------------------------------------------------------

def _is_count(value: str) -> bool:
    return value.isascii() and value.isdigit()


def _gpus(value: str) -> int:
    if value.strip().lower() == "all":
        return GPU_ALL
    if _is_count(value) and int(value) >= 1:
        return int(value)
    if "device=" in value or "count=" in value or "capabilities=" in value:
        raise ValueError(f"only a count or 'all' is accepted, not {value!r} "
                         "(the worker chooses which GPUs a task gets)")
    raise ValueError(f"expected a count of 1 or more or 'all', got {value!r}")


def parse_size(value: str) -> int:
    """Docker's size syntax: ``64m``, ``1g``, ``512k``, ``100`` (bytes), case-insensitive."""
    match = _SIZE.match(value.strip())
    if not match or int(match.group(1)) == 0:
        raise ValueError(f"expected a size like 64m or 1g (b, k, m, g suffixes), got {value!r}")
    return int(match.group(1)) * _SIZE_UNITS[match.group(2).lower()]


def _positive_int(value: str) -> int:
    if not _is_count(value) or int(value) < 1:
        raise ValueError(f"expected an integer of 1 or more, got {value!r}")
    return int(value)


def _workdir(value: str) -> str:
    if not value.startswith("/") or "\0" in value:
        raise ValueError(f"expected an absolute path, got {value!r}")
    return value


def _entrypoint(value: str) -> list[str]:
    try:
        return shlex.split(value)
    except ValueError as exc:
        raise ValueError(f"cannot split {value!r}: {exc}") from None


# -- the parser ---------------------------------------------------------------------------

@dataclass
class _Parsed:
    values: dict[str, Any] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)


_SINGLE: dict[str, tuple[str, Callable[[str], Any]]] = {
    "--gpus": ("gpus", _gpus),
    "--shm-size": ("shm_size", parse_size),
    "--workdir": ("workdir", _workdir),
    "--entrypoint": ("entrypoint", _entrypoint),
    "--pids-limit": ("pids_limit", _positive_int),
}


def parse_container_options(text: str | None, *, network_allowed: bool) -> ContainerOptions:
    """Parse a task's container options against the allow-list; raise ``InvalidInput``
    naming the offending option (and why) for anything else."""
    if text is None or not text.strip():
        return ContainerOptions()
    try:
        tokens = shlex.split(text)
    except ValueError as exc:
        raise InvalidInput(f"cannot split container options {text!r}: {exc}") from None
    parsed = _Parsed()
    index = 0
    while index < len(tokens):
        token = tokens[index]
        index += 1
        given, name, value = _split_token(token)
        if name in _FORBIDDEN:
            raise InvalidInput(
                f"container option {_label(name, given)} is not allowed: {_FORBIDDEN[name]}"
            )
        if name not in _SINGLE and name not in ("--env", "--network"):
            raise InvalidInput(f"unsupported container option {given}; allowed: {ALLOWED_HELP}")
        if value is None:
            if index >= len(tokens):
                raise InvalidInput(f"container option {_label(name, given)} needs a value")
            value = tokens[index]
            index += 1
        _apply(parsed, name, _label(name, given), value, network_allowed)
    return ContainerOptions(env=parsed.env, **parsed.values)


def _split_token(token: str) -> tuple[str, str, str | None]:
    """``(as given, long name, attached value or None)`` for one option token."""
    if token.startswith("--") and len(token) > 2:
        given, sep, value = token.partition("=")
        name = _ALIASES.get(given, given)
        return given, name, value if sep else None
    if token.startswith("-") and len(token) >= 2 and token[1] != "-":
        given, rest = token[:2], token[2:]
        name = _SHORT.get(given, given)
        if not rest:
            return given, name, None
        return given, name, rest[1:] if rest.startswith("=") else rest
    raise InvalidInput(
        f"unexpected argument {token!r} in container options: only options are accepted "
        f"({ALLOWED_HELP}); the image goes in the container field and the command in the "
        "task's command"
    )


def _apply(parsed: _Parsed, name: str, label: str, value: str, network_allowed: bool) -> None:
    if name == "--env":
        key, sep, env_value = value.partition("=")
        if not sep:
            raise InvalidInput(
                f"container option {label} {value!r}: give KEY=VALUE (a bare KEY would copy "
                "the worker's own environment into the task)"
            )
        if not _ENV_NAME.match(key):
            raise InvalidInput(f"container option {label}: {key!r} is not a valid "
                               "environment variable name")
        if key in RESERVED_ENV:
            raise InvalidInput(f"container option {label}: {key} is reserved (the worker's "
                               "credentials are never passed to tasks)")
        parsed.env[key] = env_value
        return
    if name == "--network":
        parsed.values["network"] = _network(label, value, network_allowed, parsed)
        return
    attribute, convert = _SINGLE[name]
    if attribute in parsed.values:
        raise InvalidInput(f"container option {label} is given more than once")
    try:
        parsed.values[attribute] = convert(value)
    except ValueError as exc:
        raise InvalidInput(f"container option {label}: {exc}") from None


def _network(label: str, value: str, network_allowed: bool, parsed: _Parsed) -> str:
    if "network" in parsed.values:
        raise InvalidInput(f"container option {label} is given more than once")
    lowered = value.lower()
    if lowered == "host" or lowered.startswith("container:"):
        raise InvalidInput(
            f"container option {label} {value} is not allowed: it would share the "
            f"{'host' if lowered == 'host' else 'other container'}'s network stack"
        )
    if not _NETWORK_NAME.match(value):
        raise InvalidInput(f"container option {label}: {value!r} is not a valid network name")
    if value == "none":  # asks for less than the default: always fine
        return value
    if not network_allowed:
        raise InvalidInput(
            f"container option {label} needs network access, which this task does not have: "
            "set `network: true` on the task or its batch (launch --network, "
            "task update --network, or batch network NAME on)"
        )
    return value


def validate_image(reference: str, field: str = "container") -> str:
    """A sanity check of a container image reference (``[registry/]name[:tag][@digest]``);
    returns it, or raises ``InvalidInput`` naming ``field``."""
    problem = None
    if not isinstance(reference, str) or not reference:
        problem = "an image reference is required (e.g. alpine:3.20)"
    elif len(reference) > MAX_IMAGE_LENGTH:
        problem = f"an image reference is at most {MAX_IMAGE_LENGTH} characters"
    elif any(c.isspace() for c in reference):
        problem = f"image reference {reference!r} contains whitespace"
    elif reference.startswith("-"):
        problem = f"image reference {reference!r} starts with '-' (it would read as an option)"
    elif not _IMAGE.match(reference):
        problem = (f"image reference {reference!r} has characters other than letters, digits "
                   "and . _ / : @ -")
    if problem:
        raise InvalidInput(f"{field}: {problem}", field=field)
    return reference
