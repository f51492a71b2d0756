"""Small Codabench competition bundles and submissions, written for tests.

The programs are POSIX ``sh`` and ``awk`` only, so they also run in a busybox image:

- the reference data of task ``i`` is ``answer.txt`` holding a number (``references[i]``,
  by default ``42 + 10 * i``); with ingestion, the input data of task ``i`` is
  ``input.txt`` holding the same number;
- a result submission is ``prediction.txt`` holding a number;
- a code submission is ``run.sh``: the ingestion program runs ``sh run.sh INPUT_DIR``
  and what it prints is the prediction (``DEFAULT_CODE`` prints the input's number, so
  it scores perfectly);
- the scoring program (``score.sh IN OUT``) takes the first number in the files of
  ``IN/res`` and of ``IN/ref`` and writes ``OUT/scores.json``:
  ``{"score": 100 - |p - r|, "error": |p - r|, "prediction": p}``; with no prediction it
  writes nothing and exits 1 (the reason on stderr).

The default leaderboard has the columns ``score`` (index 0, desc), ``error`` (index 1,
asc, precision 3) and ``prediction`` (index 2, hidden): every key the scoring program
writes is a column, as a real worker insists.
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

Files = Mapping[str, "str | bytes"]

SCORE_SH = """\
#!/bin/sh
# Score the prediction against the reference: the first number in the files of
# IN/res and of IN/ref. Writes OUT/scores.json; exits 1 when a number is missing.
in=${1:-/app/input}
out=${2:-/app/output}
first_number() {
    cat "$1"/* 2>/dev/null | awk '{
        for (i = 1; i <= NF; i++) if ($i ~ /^-?[0-9]+([.][0-9]+)?$/) { print $i; exit }
    }'
}
pred=$(first_number "$in/res")
ref=$(first_number "$in/ref")
if [ -z "$pred" ]; then echo "no prediction in $in/res" >&2; exit 1; fi
if [ -z "$ref" ]; then echo "no reference in $in/ref" >&2; exit 1; fi
mkdir -p "$out"
awk -v p="$pred" -v r="$ref" 'BEGIN {
    d = p - r; if (d < 0) d = -d
    printf "{\\"score\\": %.6g, \\"error\\": %.6g, \\"prediction\\": %.6g}\\n", 100 - d, d, p
}' > "$out/scores.json"
echo "scored prediction $pred against reference $ref"
"""

INGEST_SH = """\
#!/bin/sh
# Run the participant's run.sh on the input data; what it prints is the prediction.
data=${1:-/app/input_data}
out=${2:-/app/output}
code=${3:-/app/ingested_program}
if [ ! -f "$code/run.sh" ]; then echo "no run.sh in the submission" >&2; exit 1; fi
mkdir -p "$out"
sh "$code/run.sh" "$data" > "$out/prediction.txt" || exit $?
echo "predicted $(cat "$out/prediction.txt")"
"""

SCORING_COMMAND = "sh /app/program/score.sh /app/input /app/output"
INGESTION_COMMAND = "sh /app/program/ingest.sh /app/input_data /app/output /app/ingested_program"
DEFAULT_CODE = "awk 'NF { print $1; exit }' \"$1/input.txt\"\n"
DEFAULT_COLUMNS: tuple[dict[str, Any], ...] = (
    {"title": "Score", "key": "score", "index": 0, "sorting": "desc"},
    {"title": "Error", "key": "error", "index": 1, "sorting": "asc", "precision": 3},
    {"title": "Prediction", "key": "prediction", "index": 2, "sorting": "desc",
     "hidden": True},
)
LOGO = b"\x89PNG\r\n\x1a\n" + b"\x00" * 16  # the PNG signature: enough for a file check


def reference(task: int) -> int:
    """The default reference number of a task."""
    return 42 + 10 * task


def _bytes(content: str | bytes) -> bytes:
    return content.encode() if isinstance(content, str) else content


def zip_bytes(files: Files) -> bytes:
    """A zip (in memory) of ``files`` (path -> content); ``*.sh`` files are executable."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, content in files.items():
            info = zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = (0o100755 if name.endswith(".sh") else 0o100644) << 16
            zf.writestr(info, _bytes(content))
    return buffer.getvalue()


def write_zip(path: Path, files: Files) -> Path:
    """Write ``files`` (path -> content) as the zip ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(zip_bytes(files))
    return path


def write_tree(folder: Path, files: Files) -> Path:
    """Write ``files`` (path -> content) under ``folder``."""
    for name, content in files.items():
        target = folder / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(_bytes(content))
        if name.endswith(".sh"):
            target.chmod(0o755)
    return folder


def _add(files: dict[str, bytes], name: str, content: Files, zipped: bool,
         folder: str | None = None) -> str:
    """Add a program or data set to the bundle's files, as ``name.zip`` or ``name/``;
    return the path to give in competition.yaml."""
    if folder:
        content = {f"{folder}/{key}": value for key, value in content.items()}
    if zipped:
        files[f"{name}.zip"] = zip_bytes(content)
        return f"{name}.zip"
    for key, value in content.items():
        files[f"{name}/{key}"] = _bytes(value)
    return f"{name}/"


def _per_item(extra: Mapping | Sequence[Mapping] | None, position: int) -> Mapping:
    if extra is None:
        return {}
    if isinstance(extra, Mapping):
        return extra
    return extra[position] if position < len(extra) else {}


def submission_files(kind: str = "result",
                     content: str | float | Files | None = None) -> dict[str, bytes]:
    """The files of a submission: ``prediction.txt`` (result) or ``run.sh`` (code), or
    ``content`` itself when it is a mapping of files."""
    if isinstance(content, Mapping):
        return {name: _bytes(value) for name, value in content.items()}
    if kind == "result":
        text = "42" if content is None else str(content)
        return {"prediction.txt": (text if text.endswith("\n") else text + "\n").encode()}
    if kind == "code":
        return {"run.sh": _bytes(DEFAULT_CODE if content is None else str(content))}
    raise ValueError(f"unknown submission kind {kind!r} (result or code)")


def make_submission(root: Path, kind: str = "result",
                    content: str | float | Files | None = None,
                    name: str = "submission.zip") -> Path:
    """Write a submission zip under ``root`` and return its path.

    ``kind='result'``: ``prediction.txt`` holding ``content`` (default 42).
    ``kind='code'``: ``run.sh`` holding ``content`` (default ``DEFAULT_CODE``).
    A mapping ``content`` gives the zip's files as they are."""
    return write_zip(Path(root) / name, submission_files(kind, content))


def make_bundle(
    root: Path,
    *,
    kind: str = "result",
    zipped: bool = True,
    tasks: int = 1,
    phases: int = 1,
    columns: Sequence[Mapping[str, Any]] | None = None,
    leaderboard_extra: Mapping[str, Any] | None = None,
    phase_extra: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None = None,
    task_extra: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None = None,
    scoring_command: str | None = None,
    ingestion: bool = False,
    ingestion_command: str | None = None,
    references: Sequence[float] | None = None,
    programs_zipped: bool = True,
    data_zipped: bool = True,
    metadata_name: str = "metadata.yaml",
    program_folder: str | None = None,
    top_folder: str | None = None,
    leaderboard_key: str = "leaderboards",
    solution: bool = False,
    docker_image: str | None = None,
    title: str = "Test competition",
    extra: Mapping[str, Any] | None = None,
    edit: Callable[[dict[str, Any]], None] | None = None,
    extra_files: Files | None = None,
    raw_yaml: str | None = None,
    name: str = "bundle",
) -> Path:
    """Write a valid version 2 bundle under ``root``; return ``root/NAME.zip`` (``zipped``)
    or the folder ``root/NAME``.

    - ``kind``: ``'result'`` (phases accept only result submissions) or ``'code'``
      (implies ``ingestion``: each task gets the ingestion program and input data).
    - ``tasks``, ``phases``: how many; every phase has every task. Phase ``i`` starts
      on 1 January ``2020 + i`` and ends when the next one starts; the last one has no
      end, so it is open now.
    - ``columns`` (default ``DEFAULT_COLUMNS``), ``leaderboard_extra`` (merged into the
      leaderboard), ``leaderboard_key`` (``'leaderboards'`` or ``'leaderboard'``).
    - ``phase_extra``, ``task_extra``: merged into every phase/task (a mapping) or into
      the one at the same position (a list of mappings).
    - ``scoring_command``, ``ingestion_command``: the ``command`` of the programs'
      metadata (defaults ``SCORING_COMMAND``, ``INGESTION_COMMAND``).
    - ``references``: the reference number of each task (default ``reference(i)``).
    - ``programs_zipped``, ``data_zipped``: programs/data as zips or as folders;
      ``metadata_name``: ``'metadata.yaml'`` or ``'metadata'``; ``program_folder``:
      put each program's files inside this single folder.
    - ``top_folder``: put the whole bundle inside this single folder.
    - ``solution``: add a solution (a perfect submission) for every task.
    - ``extra``: top-level keys of competition.yaml (a ``None`` value removes the key);
      ``edit``: a function that changes the competition.yaml mapping last;
      ``extra_files``: more files (path -> content) in the bundle, replacing any;
      ``raw_yaml``: competition.yaml's text as is (the mapping is then unused).
    """
    if kind not in ("result", "code"):
        raise ValueError(f"unknown bundle kind {kind!r} (result or code)")
    ingestion = ingestion or kind == "code"
    refs = list(references) if references is not None else [reference(i) for i in range(tasks)]
    if len(refs) < tasks:
        raise ValueError("one reference per task is needed")
    files: dict[str, bytes] = {
        "logo.png": LOGO,
        "pages/overview.md": b"# Overview\n\nGuess the number.\n",
        "pages/terms.md": b"# Terms\n\nBe nice.\n",
    }
    scoring = _add(files, "scoring_program", {
        "score.sh": SCORE_SH,
        metadata_name: yaml.safe_dump({"command": scoring_command or SCORING_COMMAND}),
    }, programs_zipped, program_folder)
    ingestion_path = None
    if ingestion:
        ingestion_path = _add(files, "ingestion_program", {
            "ingest.sh": INGEST_SH,
            metadata_name: yaml.safe_dump({"command": ingestion_command or INGESTION_COMMAND}),
        }, programs_zipped, program_folder)
    task_items = []
    for i in range(tasks):
        number = f"{refs[i]}\n"
        task: dict[str, Any] = {
            "index": i,
            "name": f"Task {i}",
            "description": f"Guess {refs[i]}",
            "scoring_program": scoring,
            "reference_data": _add(files, f"task{i}/reference_data",
                                   {"answer.txt": number}, data_zipped),
        }
        if ingestion_path:
            task["ingestion_program"] = ingestion_path
            task["input_data"] = _add(files, f"task{i}/input_data",
                                      {"input.txt": number}, data_zipped)
        task.update(_per_item(task_extra, i))
        task_items.append(task)
    phase_items = []
    for i in range(phases):
        phase: dict[str, Any] = {
            "index": i,
            "name": f"Phase {i}",
            "description": f"Phase number {i}",
            "start": datetime(2020 + i, 1, 1),
            "tasks": list(range(tasks)),
        }
        if i < phases - 1:
            phase["end"] = datetime(2021 + i, 1, 1)
        if kind == "result":
            phase["accepts_only_result_submissions"] = True
        phase.update(_per_item(phase_extra, i))
        phase_items.append(phase)
    leaderboard: dict[str, Any] = {
        "title": "Results",
        "key": "main",
        "columns": [dict(column) for column in (columns or DEFAULT_COLUMNS)],
    }
    leaderboard.update(leaderboard_extra or {})
    doc: dict[str, Any] = {
        "version": 2,
        "title": title,
        "description": "A competition written by the tests",
        "image": "logo.png",
        "terms": "pages/terms.md",
        "pages": [{"title": "Overview", "file": "pages/overview.md"}],
        "tasks": task_items,
        "phases": phase_items,
        leaderboard_key: [leaderboard],
    }
    if docker_image:
        doc["docker_image"] = docker_image
    if solution:
        perfect = submission_files("code" if ingestion else "result",
                                   None if ingestion else str(refs[0]))
        doc["solutions"] = [{"index": 0, "path": _add(files, "solution", perfect, data_zipped),
                             "tasks": list(range(tasks))}]
    for key, value in (extra or {}).items():
        if value is None:
            doc.pop(key, None)
        else:
            doc[key] = value
    if edit is not None:
        edit(doc)
    files["competition.yaml"] = (raw_yaml if raw_yaml is not None else
                                 yaml.safe_dump(doc, sort_keys=False)).encode()
    for key, value in (extra_files or {}).items():
        files[key] = _bytes(value)
    if top_folder:
        files = {f"{top_folder}/{key}": value for key, value in files.items()}
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    if zipped:
        return write_zip(root / f"{name}.zip", files)
    return write_tree(root / name, files)
