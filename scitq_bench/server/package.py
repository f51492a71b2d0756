"""The worker package at this server's exact version, for machines being deployed.

Recruited machines install the worker from the server itself (no package index
needed, no version drift): ``recruitment.package`` names a wheel or sdist to serve;
otherwise, when the server runs from a source tree, a wheel is built from it once per
version (``pip wheel``) and kept in the data directory.
"""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import scitq_bench
from scitq_bench.exceptions import NotFound, ScitqBenchError
from scitq_bench.settings import ServerSettings

_lock = threading.Lock()


def source_root() -> Path | None:
    root = Path(scitq_bench.__file__).resolve().parent.parent
    return root if (root / "pyproject.toml").is_file() else None


def package_file(settings: ServerSettings) -> Path:
    configured = (settings.recruitment or {}).get("package")
    if configured:
        path = Path(configured)
        if not path.is_file():
            raise NotFound(f"recruitment.package: {path} does not exist")
        return path
    root = source_root()
    if root is None:
        raise NotFound("no worker package to serve: set recruitment.package to a wheel of "
                       f"scitq_bench {scitq_bench.__version__}")
    target = settings.data_dir / "package" / scitq_bench.__version__
    with _lock:
        built = sorted(target.glob("scitq_bench-*.whl"))
        if built:
            return built[-1]
        target.mkdir(parents=True, exist_ok=True)
        result = subprocess.run(
            [sys.executable, "-m", "pip", "wheel", "--no-deps",
             "-q", "-w", str(target), str(root)], capture_output=True, text=True, timeout=600)
        built = sorted(target.glob("scitq_bench-*.whl"))
        if result.returncode != 0 or not built:
            raise ScitqBenchError(f"building the worker package failed: "
                                  f"{(result.stderr or result.stdout)[-500:]}")
        return built[-1]
