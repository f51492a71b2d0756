"""Data URIs for inputs, resources and outputs, validated when a task is created.

Forms: ``file:///abs/path``, ``http(s)://host/path``, ``server://path/in/store``,
``s3://bucket/key``, ``azure://account/container/path``, ``ftp(s)://host/path`` (see
``scitq_bench.storage.locations``), each optionally followed by actions: ``|untar``,
``|gunzip``, ``|unzip``, ``|mv:subdir``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from scitq_bench.exceptions import InvalidInput
from scitq_bench.storage.locations import SCHEMES, parse_location

__all__ = ["ACTIONS", "SCHEMES", "DataURI", "parse_uri"]

ACTIONS = ("untar", "gunzip", "unzip", "mv")
_SUBDIR = re.compile(r"^[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*$")


@dataclass(frozen=True)
class DataURI:
    scheme: str
    location: str  # the URI without actions
    actions: tuple[tuple[str, str | None], ...]  # (action, argument)

    @property
    def path(self) -> str:
        """Path part: local path for file://, store path for server://, the key
        (without its leading "/") for the other schemes."""
        place = parse_location(self.location)
        if self.scheme == "file":
            return "/" + place.key
        return place.key.strip("/") if self.scheme == "server" else place.key


def parse_uri(text: str, *, field: str = "uri", allow_actions: bool = True) -> DataURI:
    """Parse and validate; errors name the field and the offending part."""
    if not isinstance(text, str) or not text.strip():
        raise InvalidInput(f"{field}: empty URI")
    location, *raw_actions = text.strip().split("|")
    parsed = parse_location(location, field)
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
