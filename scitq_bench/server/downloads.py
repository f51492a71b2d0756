"""Downloads named after files that users chose: the name goes into Content-Disposition
encoded per RFC 6266, so quotes, control characters or any script in a stored name
can neither break the header nor be refused by the HTTP layer."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote

from flask import Response, send_file


def attachment(name: str) -> str:
    """The Content-Disposition value offering ``name``: a plain ASCII ``filename`` with
    every doubtful character replaced, and the exact name in ``filename*``."""
    fallback = "".join(c if " " <= c <= "~" and c not in '"\\%' else "_" for c in name)
    exact = quote(name.encode("utf-8", "replace"), safe="")
    return f"attachment; filename=\"{fallback or 'download'}\"; filename*=UTF-8''{exact}"


def send_attachment(path: Path, name: str, mimetype: str = "application/octet-stream") -> Response:
    """``path`` streamed as a download called ``name``."""
    response = send_file(path, mimetype=mimetype)
    response.headers["Content-Disposition"] = attachment(name)
    return response
