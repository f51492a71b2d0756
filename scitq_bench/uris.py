"""Data URIs for inputs, resources and outputs, validated when a task is created.

Forms: ``file:///abs/path``, ``http(s)://host/path``, ``server://path/in/store``, each
optionally followed by actions: ``|untar``, ``|gunzip``, ``|unzip``, ``|mv:subdir``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urlparse

from scitq_bench.exceptions import InvalidInput

SCHEMES = ("file", "http", "https", "server")
ACTIONS = ("untar", "gunzip", "unzip", "mv")
_SUBDIR = re.compile(r"^[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*$")


@dataclass(frozen=True)
class DataURI:
    scheme: str
    location: str  # the URI without actions
    actions: tuple[tuple[str, str | None], ...]  # (action, argument)

    @property
    def path(self) -> str:
        """Path part: local path for file://, store path for server://."""
        parsed = urlparse(self.location)
        if self.scheme == "server":
            return (parsed.netloc + parsed.path).strip("/")
        return parsed.path


def parse_uri(text: str, *, field: str = "uri", allow_actions: bool = True) -> DataURI:
    """Parse and validate; errors name the field and the offending part."""
    if not isinstance(text, str) or not text.strip():
        raise InvalidInput(f"{field}: empty URI")
    location, *raw_actions = text.strip().split("|")
    parsed = urlparse(location)
    if parsed.scheme not in SCHEMES:
        raise InvalidInput(
            f"{field}: unsupported URI scheme {parsed.scheme or '(none)'!r} in {text!r}; "
            f"use one of {', '.join(s + '://' for s in SCHEMES)}"
        )
    if parsed.scheme in ("http", "https") and not parsed.netloc:
        raise InvalidInput(f"{field}: URI {text!r} has no host")
    if parsed.scheme == "file" and (
        parsed.netloc not in ("", "localhost") or not parsed.path.startswith("/")
    ):
        raise InvalidInput(f"{field}: file URI {text!r} must hold an absolute path")
    if parsed.scheme == "server":
        store_path = (parsed.netloc + parsed.path).strip("/")
        if not store_path and not text.endswith("/"):
            raise InvalidInput(f"{field}: server URI {text!r} has no path")
        if ".." in store_path.split("/"):
            raise InvalidInput(f"{field}: server URI {text!r} may not contain '..'")
    if raw_actions and not allow_actions:
        raise InvalidInput(f"{field}: actions ('|...') are not allowed here: {text!r}")
    actions = tuple(_parse_action(a, field, text) for a in raw_actions)
    return DataURI(scheme=parsed.scheme, location=location, actions=actions)


def _parse_action(raw: str, field: str, text: str) -> tuple[str, str | None]:
    name, _, argument = raw.partition(":")
    if name not in ACTIONS:
        raise InvalidInput(
            f"{field}: unknown action {name!r} in {text!r}; known actions: {', '.join(ACTIONS)}"
        )
    if name == "mv":
        if not argument or not _SUBDIR.match(argument) or ".." in argument.split("/"):
            raise InvalidInput(f"{field}: action 'mv' needs a relative directory, got {raw!r}")
        return name, argument
    if argument:
        raise InvalidInput(f"{field}: action {name!r} takes no argument, got {raw!r}")
    return name, None
