"""Where the files shipped beside the package are: the Ansible playbooks, the
deployment templates.

A source tree has them next to the package; a wheel installs them under
``<prefix>/share/scitq_bench`` (``[tool.setuptools.data-files]`` in pyproject.toml).
"""

from __future__ import annotations

import sys
from pathlib import Path


def shared_dir(name: str) -> Path:
    """``name`` next to the package (a source tree), else where the wheel installs it
    (``<prefix>/share/scitq_bench/<name>``); the first when neither exists, so that
    the error names the source tree's path."""
    beside = Path(__file__).resolve().parents[1] / name
    installed = Path(sys.prefix) / "share" / "scitq_bench" / name
    return beside if beside.is_dir() or not installed.is_dir() else installed
