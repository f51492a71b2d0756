"""Hostile submission zips through the real API on both databases: each is refused with
400 naming the entry at fault, and leaves no submission row, no stored file and no
folder or half-written upload behind. The server's limits are set low here, so the bombs stay small."""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any

import pytest

from scitq_bench.settings import ServerSettings
from tests.support.api import account, import_bundle, submit
from tests.support.archives import (
    MIB,
    SMALL_LIMITS,
    lie_about_size,
    set_method,
    zip_bomb,
    zip_of,
    zip_with_symlink,
)
from tests.support.bundles import make_bundle, make_submission

LIMITS = SMALL_LIMITS

HOSTILE: dict[str, tuple[bytes, str]] = {
    "dot-dot": (zip_of({"../evil.txt": b"1"}),
                "submission: entry '../evil.txt' goes outside the archive ('..')"),
    "absolute": (zip_of({"/tmp/evil.txt": b"1"}),
                 "submission: entry '/tmp/evil.txt' has an absolute path"),
    "symlink": (zip_with_symlink("link", "/etc/passwd"),
                "submission: entry 'link' is a symbolic link"),
    "bomb": (zip_bomb("zeros.bin", 2 * MIB),
             "submission: entry 'zeros.bin' is compressed more than 200:1 ("),
    "too big": (zip_of({f"f{i}": b"\1" * (3 * MIB // 2) for i in range(3)}, zipfile.ZIP_STORED),
                f"submission: too big ({9 * MIB // 2} bytes uncompressed; at most {4 * MIB} "
                "allowed)"),
    "lying bomb": (lie_about_size(zip_bomb("zeros.bin", 5 * MIB), "zeros.bin", 10),
                   "submission: 'zeros.bin' holds more than the 10 bytes its header says"),
    "many files": (zip_of({f"f{i}.txt": b"1" for i in range(11)}),
                   "submission: too many files (11 entries; at most 10 allowed)"),
    "odd method": (set_method(zip_of({"prediction.txt": b"1"}), "prediction.txt", 99),
                   "submission: entry 'prediction.txt' uses an unsupported compression "
                   "method (99)"),
}


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> ServerSettings:
    return ServerSettings(
        data_dir=tmp_path / "data", database_url=database_url, lease_seconds=30.0,
        reaper_interval=0.2, run_reaper=False, claim_max_wait=5.0, submission_limits=LIMITS,
    )


def files_under(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*")) if folder.exists() else []


def test_hostile_submissions_are_refused_and_leave_no_trace(api: Any, settings: ServerSettings,
                                                            tmp_path: Path) -> None:
    bench = import_bundle(api, make_bundle(tmp_path / "bundle"))
    assert bench.status_code == 201, bench.json
    phase = bench.json["phases"][0]["id"]
    alice = account(api, "alice")
    for case, (data, message) in HOSTILE.items():
        path = tmp_path / f"{case}.zip"
        path.write_bytes(data)
        answer = submit(api, phase, alice, path)
        assert answer.status_code == 400, (case, answer.json)
        assert answer.json["message"].startswith(message), (case, answer.json["message"])
    assert api.get("/submissions").json == []
    assert files_under(settings.store_dir / "submissions") == []
    good = submit(api, phase, alice, make_submission(tmp_path / "good", "result", 42))
    assert good.status_code == 201, good.json
    stored = files_under(settings.store_dir / "submissions")  # its folder and its zip
    assert len(stored) == 2 and "submission.zip" in stored, stored


def test_a_zip_is_checked_even_when_the_command_is_given(api: Any, tmp_path: Path) -> None:
    bench = import_bundle(api, make_bundle(tmp_path / "bundle", kind="code")).json
    path = tmp_path / "evil.zip"
    path.write_bytes(zip_of({"../run.sh": b"echo 1"}))
    answer = submit(api, bench["phases"][0]["id"], account(api, "alice"), path,
                    "?kind=code&command=sh%20run.sh")
    assert answer.status_code == 400
    assert answer.json["message"] == (
        "submission: entry '../run.sh' goes outside the archive ('..')")
