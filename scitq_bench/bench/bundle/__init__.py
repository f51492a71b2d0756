"""Codabench competition bundles: read one, check it, and stage its parts as zips.

A bundle is a zip file or a folder holding ``competition.yaml`` (at its top, or inside
its single top folder). Everything ``load_bundle`` produces lies under the staging
folder it is given::

    staging/bundle/     the bundle's files (extracted from the zip, or copied from the folder)
    staging/files/      the normalized zips (programs, data, starting kits, solutions) and the logo

Safety, checked before anything is written, is that of ``scitq_bench.bench.archives``
(no entry outside the archive, no link or device, no encrypted entry, limits on entries
and bytes enforced on the headers and again on the bytes actually read); a folder bundle
holds no symbolic link anywhere. The bundle itself and the zips inside it have one
``ArchiveLimits`` budget each.

The modules, one job each: ``model`` (the specs returned and ``BundleError``),
``fields`` (the YAML and each value checked, a refusal naming its field), ``staging``
(the bundle's files and the normalized zips), ``leaderboards`` and ``loader``
(``competition.yaml`` read section by section into a ``BundleSpec``).
"""

from __future__ import annotations

from scitq_bench.bench.bundle.loader import load_bundle
from scitq_bench.bench.bundle.model import (
    BundleError,
    BundleSpec,
    ColumnSpec,
    LeaderboardSpec,
    PageSpec,
    PhaseSpec,
    Program,
    SolutionSpec,
    TaskSpec,
)

__all__ = [
    "BundleError",
    "BundleSpec",
    "ColumnSpec",
    "LeaderboardSpec",
    "PageSpec",
    "PhaseSpec",
    "Program",
    "SolutionSpec",
    "TaskSpec",
    "load_bundle",
]
