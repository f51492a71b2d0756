"""Writing a rendered file: whole or not at all, never over an existing one unless asked."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from scitq_bench.exceptions import InvalidInput

PRIVATE_MODE = 0o600  # the settings file: it holds (or will hold) the secrets
PUBLIC_MODE = 0o644


def write(path: Path, text: str, *, private: bool, force: bool = False) -> Path:
    """Write ``text`` to ``path`` through a temporary file in the same folder, so that
    a reader never sees half a unit; refuse an existing file unless ``force``. A private
    file is created readable by its owner only, never briefly by others."""
    path = path.absolute()
    if path.is_dir():
        raise InvalidInput(f"{path} is a directory")
    if not path.parent.is_dir():
        raise InvalidInput(f"{path.parent} does not exist")
    if not force and (path.exists() or path.is_symlink()):
        raise InvalidInput(f"{path} exists: pass --force to replace it")
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    temporary = Path(name)  # mkstemp made it 0600
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        temporary.chmod(PRIVATE_MODE if private else PUBLIC_MODE)
        if force:
            os.replace(temporary, path)
        else:
            os.link(temporary, path)  # fails if the file appeared meanwhile
    except FileExistsError:
        raise InvalidInput(f"{path} exists: pass --force to replace it") from None
    finally:
        temporary.unlink(missing_ok=True)
    return path
