"""A gunicorn configuration file applied over ``server run``'s own settings
(``server run --gunicorn-config FILE``).

The file is read the way ``gunicorn -c FILE`` reads it: it runs as a Python module and
those of its names that are gunicorn settings count, each checked by gunicorn's own
validation. Its settings replace ``server run``'s, except ``bind`` and ``workers``:
the command line owns those (``--host``, ``--port``, ``--processes``), so that the
address the supervisor announces and the SQLite single-process rule hold; a file that
sets them gets a warning, and its values are ignored.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import logging
from pathlib import Path
from typing import Any

from scitq_bench.exceptions import InvalidInput

log = logging.getLogger(__name__)

COMMAND_LINE_OWNS = ("bind", "workers")


def read(path: Path) -> dict[str, Any]:
    """The gunicorn settings ``path`` sets, by name; InvalidInput when the file fails
    to run or sets a value gunicorn refuses."""
    from gunicorn.config import Config

    if not path.is_file():
        raise InvalidInput(f"gunicorn config {path}: no such file")
    # any name, as gunicorn: a file without .py is still Python
    loader = importlib.machinery.SourceFileLoader("__config__", str(path))
    spec = importlib.util.spec_from_file_location("__config__", path, loader=loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    try:
        loader.exec_module(module)
    except Exception as exc:  # anything the file raises: reported, as gunicorn does
        raise InvalidInput(f"gunicorn config {path}: {type(exc).__name__}: {exc}") from None
    checker = Config()
    found: dict[str, Any] = {}
    for name, value in vars(module).items():
        if name not in checker.settings:  # its imports, its helpers: not settings
            continue
        try:
            checker.set(name, value)
        except Exception as exc:  # gunicorn's validators raise TypeError, ValueError...
            raise InvalidInput(f"gunicorn config {path}: {name}: {exc}") from None
        found[name] = value
    return found


def apply(defaults: dict[str, Any], path: Path) -> dict[str, Any]:
    """``defaults`` with the settings of ``path`` over them, but for those the command
    line owns."""
    settings = read(path)
    ignored = [name for name in COMMAND_LINE_OWNS if name in settings]
    if ignored:
        log.warning("%s sets %s: ignored, server run's --host, --port and --processes "
                    "decide (%s, %s process(es))", path, " and ".join(ignored),
                    ", ".join(defaults["bind"]), defaults["workers"])
    return {**defaults, **{name: value for name, value in settings.items()
                           if name not in COMMAND_LINE_OWNS}}
