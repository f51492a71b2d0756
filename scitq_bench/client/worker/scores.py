"""Reading the scores a run leaves in its output: ``scores.json`` (a flat JSON object of
key -> number) or, when there is none, ``scores.txt`` (``key: value`` lines; blank
lines and ``#`` comments ignored).

The file was written by the task, so nothing in it is trusted: it is opened without
following symbolic links (neither the output folder nor the file may be one), only a
regular file of at most ``MAX_BYTES`` is read, and every key and value is checked.
Problems raise ``ScoresRefused`` with a reason for machines and a message for people.

When the leaderboard columns are known (``allowed``), the file is read as Codabench reads
it, so that its bundles score unchanged: keys that are not columns are ignored whatever
they hold (objects, lists, text), a column's boolean counts 1 or 0 and a numeric string
its number; anything else in a column fails. Without columns (any key taken), the file
must be a flat object of numbers.
"""

from __future__ import annotations

import errno
import json
import math
import os
import re
import stat
from collections.abc import Sequence
from pathlib import Path
from typing import Any

JSON_NAME, TEXT_NAME = "scores.json", "scores.txt"
MAX_BYTES = 1 << 20
MAX_KEYS = 1000  # what the server takes
KEY_PATTERN = re.compile(r"^[A-Za-z0-9_.:-]{1,100}$")  # the server's pattern for keys

MISSING, INVALID = "scores_missing", "scores_invalid"
NOT_NUMERIC = "score_not_numeric"
UNKNOWN_KEY = "score_unknown_key"  # no longer raised: keys that are not columns are ignored


class ScoresRefused(Exception):
    """The run's scores cannot be taken; ``reason`` says why, for machines."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def read_scores(output: Path, allowed: Sequence[str] | None = None) -> dict[str, float]:
    """The scores in ``output``, as floats. ``allowed``: the leaderboard columns (other
    keys are ignored); any key (matching ``KEY_PATTERN``) when empty or None."""
    try:
        directory = os.open(output, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        raise ScoresRefused(MISSING, f"no {JSON_NAME} or {TEXT_NAME} in the output "
                            f"(the output folder cannot be read: {exc.strerror})") from None
    try:
        for name, parse in ((JSON_NAME, _parse_json), (TEXT_NAME, _parse_text)):
            data = _read(directory, name)
            if data is not None:
                return _checked(parse(_decode(data, name), name), allowed, name)
    finally:
        os.close(directory)
    raise ScoresRefused(MISSING, f"no {JSON_NAME} or {TEXT_NAME} in the output")


def _read(directory: int, name: str) -> bytes | None:
    """The file's bytes, None when it does not exist. O_NONBLOCK: a FIFO planted there
    must not block the worker (it is refused below as not a regular file)."""
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    try:
        fd = os.open(name, flags, dir_fd=directory)
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise ScoresRefused(INVALID, f"{name} is a symbolic link; it is not followed") from None
        raise ScoresRefused(INVALID, f"{name} cannot be opened: {exc.strerror}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise ScoresRefused(INVALID, f"{name} is not a regular file")
        if info.st_size > MAX_BYTES:
            raise ScoresRefused(INVALID, f"{name} is larger than {MAX_BYTES} bytes")
        chunks, size = [], 0
        while True:
            chunk = os.read(fd, MAX_BYTES + 1 - size)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
            if size > MAX_BYTES:  # it grew after the fstat
                raise ScoresRefused(INVALID, f"{name} is larger than {MAX_BYTES} bytes")
        return b"".join(chunks)
    except OSError as exc:
        raise ScoresRefused(INVALID, f"{name} cannot be read: {exc.strerror}") from None
    finally:
        os.close(fd)


def _decode(data: bytes, name: str) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ScoresRefused(INVALID, f"{name} is not UTF-8 text (byte {exc.start})") from None


def _parse_json(text: str, name: str) -> list[tuple[str, Any, str]]:
    """(key, value, where) in file order, values as JSON gave them (checked later)."""
    try:
        document = json.loads(text, object_pairs_hook=_pairs)
    except (ValueError, RecursionError) as exc:
        raise ScoresRefused(INVALID, f"{name} is not valid JSON: {exc}") from None
    if not isinstance(document, _Pairs):
        raise ScoresRefused(INVALID, f"{name} must hold a flat JSON object of key -> number, "
                            f"not {_kind(document)}")
    return [(key, value, name) for key, value in document]


class _Pairs(list[tuple[str, Any]]):
    """A JSON object as its list of pairs (keeps duplicates, tells objects from arrays)."""


def _pairs(pairs: list[tuple[str, Any]]) -> _Pairs:
    return _Pairs(pairs)


def _kind(value: Any) -> str:
    if isinstance(value, _Pairs):
        return "an object"
    if isinstance(value, list):
        return "an array"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, str):
        return "a string"
    return "a number"


def _parse_text(text: str, name: str) -> list[tuple[str, Any, str]]:
    """``key: value`` lines; the value follows the last colon (keys may hold colons)."""
    found: list[tuple[str, Any, str]] = []
    lines: dict[str, int] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, colon, value = line.rpartition(":")
        key = key.strip()
        if not colon or not key:
            raise ScoresRefused(INVALID, f"{name}, line {number}: expected 'key: value', "
                                f"got {_clip(line)!r}")
        if key in lines:
            where = f"{name}, line {number}"
            found.append((key, _Duplicate(f"{where}: key {_clip(key)!r} already given on "
                                          f"line {lines[key]}"), where))
            continue
        lines[key] = number
        found.append((key, _TextValue(value.strip()), f"{name}, line {number}"))
    return found


class _TextValue(str):
    """A value read from scores.txt: still text, to be parsed as a number."""


class _Duplicate(str):
    """A scores.txt key given again: refused only when the key is taken."""


def _checked(entries: list[tuple[str, Any, str]], allowed: Sequence[str] | None,
             name: str) -> dict[str, float]:
    columns = set(allowed or ())
    if columns:
        entries = [entry for entry in entries if entry[0] in columns]
    if len(entries) > MAX_KEYS:
        raise ScoresRefused(INVALID, f"{name} holds {len(entries)} scores; at most "
                            f"{MAX_KEYS} are taken")
    scores: dict[str, float] = {}
    for key, value, where in entries:
        if isinstance(value, _Duplicate):
            raise ScoresRefused(INVALID, str(value))
        if key in scores:
            raise ScoresRefused(INVALID, f"{where}: key {key!r} appears more than once")
        if not KEY_PATTERN.match(key):
            raise ScoresRefused(INVALID, f"{where}: {_clip(key)!r} is not a valid score key "
                                "(1 to 100 letters, digits, '_', '.', ':' or '-')")
        if not columns and isinstance(value, (_Pairs, list)):
            raise ScoresRefused(INVALID, f"{name} must be a flat object: key {key!r} "
                                f"holds {_kind(value)}")
        scores[key] = _column_value(key, value, where) if columns else _number(key, value, where)
    return scores


def _column_value(key: str, value: Any, where: str) -> float:
    """A leaderboard column's value as Codabench takes it: a boolean is 1 or 0, text
    holding a number is that number (``true``/``false`` in scores.txt are booleans)."""
    if isinstance(value, bool):
        return 1.0 if value else 0.0
    if isinstance(value, _TextValue) and value.lower() in ("true", "false"):
        return 1.0 if value.lower() == "true" else 0.0
    if isinstance(value, str) and not isinstance(value, _TextValue):
        text = value.strip()
        if not _looks_numeric(text):
            raise ScoresRefused(NOT_NUMERIC, f"{where}: score {key!r} is not a number: "
                                f"got the string {_clip(value)!r}")
        return _number(key, _TextValue(text), where)
    if isinstance(value, (_Pairs, list)) or value is None:
        raise ScoresRefused(NOT_NUMERIC, f"{where}: score {key!r} is not a number: "
                            f"got {_kind(value)}")
    return _number(key, value, where)


def _number(key: str, value: Any, where: str) -> float:
    if isinstance(value, _TextValue):
        try:
            number = float(value) if _looks_numeric(value) else None
        except ValueError:
            number = None
        if number is None:
            raise ScoresRefused(NOT_NUMERIC, f"{where}: score {key!r} is not a number: "
                                f"{_clip(value)!r}")
    elif isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ScoresRefused(NOT_NUMERIC, f"{where}: score {key!r} is {_kind(value)}, "
                            "not a number")
    else:
        try:
            number = float(value)
        except OverflowError:
            number = math.inf
    if not math.isfinite(number):
        raise ScoresRefused(NOT_NUMERIC, f"{where}: score {key!r} is not a finite number")
    return number


_NUMBER = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$|^[+-]?(nan|inf|infinity)$",
                     re.IGNORECASE)


def _looks_numeric(text: str) -> bool:
    """Plain decimal notation (``float`` alone would also take '1_000' or full-width
    digits); nan/inf pass here to be refused as not finite."""
    return bool(_NUMBER.match(text))


def _clip(text: str, length: int = 80) -> str:
    return text if len(text) <= length else text[:length] + "..."
