"""The layering rules: the import contracts hold, and docs/architecture.md lists each of
them by name (so the picture and the contracts cannot drift apart)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parents[2]


def _contract_names() -> list[str]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return [c["name"] for c in config["tool"]["importlinter"]["contracts"]]


def _documented_names() -> list[str]:
    text = (ROOT / "docs" / "architecture.md").read_text()
    section = text.split("## Packages and the imports they may make", 1)[1].split("\n## ", 1)[0]
    return [re.sub(r"\s*\(.*", "", line[2:]).strip()
            for line in section.splitlines() if line.startswith("- ")]


def test_the_architecture_lists_every_contract_by_name() -> None:
    assert _documented_names() == _contract_names()


def test_the_import_contracts_hold() -> None:
    lint = Path(sys.executable).with_name("lint-imports")
    result = subprocess.run([str(lint), "--config", str(ROOT / "pyproject.toml")], cwd=ROOT,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert f"Contracts: {len(_contract_names())} kept, 0 broken." in result.stdout
