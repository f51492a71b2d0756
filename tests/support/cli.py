"""Helpers for tests of the CLI through click's test runner (the ``run`` fixture is an
``Invoke``): a command that succeeded, failed cleanly, or printed JSON."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from click.testing import Result

Invoke = Callable[..., Result]


def ok(result: Result) -> Result:
    assert result.exit_code == 0, (result.output, result.exception)
    return result


def fails(result: Result, *fragments: str, code: int = 1) -> str:
    """The command failed cleanly: exit code, one Error line naming ``fragments``."""
    assert result.exit_code == code, (result.output, result.exception)
    assert "Traceback" not in result.output
    assert isinstance(result.exception, SystemExit), result.exc_info
    assert "Error:" in result.stderr
    for fragment in fragments:
        assert fragment in result.stderr
    return result.stderr


def as_json(result: Result) -> Any:
    return json.loads(ok(result).stdout)
