"""The legacy ``$name`` placeholders of program commands, as Codabench's compute worker
replaces them.

A program's ``metadata.yaml`` command may name its folders by placeholder rather than
by path (``python3 $program/score.py $input $output``). ``substitute`` turns them into
the container paths of the step that runs the command:

| placeholder | ingestion step | scoring step |
| --- | --- | --- |
| ``$input`` | ``/app/input_data`` | ``/app/input`` |
| ``$output`` | ``/app/output`` | ``/app/output`` |
| ``$program`` | ``/app/program`` | ``/app/program`` |
| ``$ingestion_program`` | ``/app/program`` | ``/app/program`` |
| ``$hidden`` | ``/app/input/ref`` | ``/app/input/ref`` |
| ``$shared`` | ``/app/shared`` | ``/app/shared`` |
| ``$submission_program`` | ``/app/ingested_program`` | ``/app/ingested_program`` |
| ``$tmp`` | ``/app/output`` | ``/app/output`` |
| ``$predictions`` | ``/app/output`` | ``/app/input/res`` |

Only whole names are replaced: a name followed by a letter, a digit or ``_`` is left
alone, so ``$inputs``, ``$input_data`` and ``$programs_dir`` stay as they are (the
shell, if any, sees them unchanged). The ``${name}`` form is not a placeholder and is
left alone too. Nothing is quoted: the paths hold no character a shell treats specially.
"""

from __future__ import annotations

import re

STEPS = ("ingestion", "scoring")

_COMMON = {
    "output": "/app/output",
    "program": "/app/program",
    "ingestion_program": "/app/program",
    "hidden": "/app/input/ref",
    "shared": "/app/shared",
    "submission_program": "/app/ingested_program",
    "tmp": "/app/output",
}
REPLACEMENTS: dict[str, dict[str, str]] = {
    "ingestion": {**_COMMON, "input": "/app/input_data", "predictions": "/app/output"},
    "scoring": {**_COMMON, "input": "/app/input", "predictions": "/app/input/res"},
}

# Longest names first, so that no name is cut short by one it begins with.
_PLACEHOLDER = re.compile(
    r"\$(" + "|".join(sorted(REPLACEMENTS["scoring"], key=len, reverse=True)) + r")\b"
)


def substitute(command: str, step: str) -> str:
    """``command`` with its placeholders replaced by the paths of ``step``
    (``'ingestion'`` or ``'scoring'``)."""
    if step not in REPLACEMENTS:
        raise ValueError(f"unknown step {step!r} (one of {', '.join(STEPS)})")
    paths = REPLACEMENTS[step]
    return _PLACEHOLDER.sub(lambda match: paths[match.group(1)], command)
