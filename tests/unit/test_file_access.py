"""The path rules of worker grants: a read grant covers a file or a folder and what lies
under it, a write grant only what lies under the output folder, and no path can be
written so as to match a grant and land elsewhere."""

from __future__ import annotations

import pytest

from scitq_bench.exceptions import InvalidInput
from scitq_bench.server.file_access import Access, Grants, store_path

GRANTS = Grants(reads=frozenset({"data/set", "ref/genome.fa"}),
                writes=frozenset({"runs/7/scoring"}))


@pytest.mark.parametrize(("path", "allowed"), [
    ("data/set", True),  # the folder itself: what the worker lists
    ("data/set/x.txt", True),
    ("data/set/sub/y.txt", True),
    ("ref/genome.fa", True),
    ("data/settings.txt", False),  # a sibling sharing the prefix, not under the folder
    ("data", False),
    ("", False),  # the whole store
    ("ref/genome.fa.fai", False),
    ("runs/7/scoring/scores.json", False),  # outputs are written, not read
])
def test_reads(path: str, allowed: bool) -> None:
    assert GRANTS.allows(path, Access.READ) is allowed


@pytest.mark.parametrize(("path", "allowed"), [
    ("runs/7/scoring/scores.json", True),
    ("runs/7/scoring/sub/detail.html", True),
    ("runs/7/scoring", False),  # the folder itself is not a file to write
    ("runs/7/scoring-x/scores.json", False),
    ("runs/7/prediction/out.txt", False),
    ("data/set/x.txt", False),  # inputs are read, never written
])
def test_writes(path: str, allowed: bool) -> None:
    assert GRANTS.allows(path, Access.WRITE) is allowed


def test_a_grant_of_the_whole_store_covers_everything() -> None:
    everything = Grants(reads=frozenset({""}), writes=frozenset({""}))
    assert everything.allows("", Access.READ) and everything.allows("a/b", Access.WRITE)
    assert not everything.allows("", Access.WRITE)


@pytest.mark.parametrize("raw", ["runs/7/scoring/../../../x", "a/./b", "a//b", "..", "a/\x00"])
def test_paths_that_could_walk_out_of_a_grant_are_refused(raw: str) -> None:
    with pytest.raises(InvalidInput, match="invalid store path"):
        store_path(raw)


def test_store_paths_lose_their_outer_slashes() -> None:
    assert store_path("/data/set/") == "data/set"
    assert store_path("") == ""
