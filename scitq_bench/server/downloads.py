"""Downloads named after files that users chose: the name goes into Content-Disposition
encoded per RFC 6266, so quotes, control characters or any script in a stored name
can neither break the header nor be refused by the HTTP layer.

Stored files stream from whatever store holds them, answering range and conditional
requests (``Range``, ``If-None-Match``, ``If-Modified-Since``) as ``send_file`` does
for a local file."""

from __future__ import annotations

from pathlib import Path, PurePosixPath
from urllib.parse import quote

from flask import Response, request, send_file
from werkzeug.exceptions import RequestedRangeNotSatisfiable
from werkzeug.wsgi import wrap_file

from scitq_bench.server.storage import StoredFile

OCTET_STREAM = "application/octet-stream"


def attachment(name: str) -> str:
    """The Content-Disposition value offering ``name`` as a download."""
    return disposition(name, "attachment")


def disposition(name: str, kind: str) -> str:
    """The Content-Disposition value of ``kind`` (attachment or inline) naming
    ``name``: a plain ASCII ``filename`` with every doubtful character replaced, and the
    exact name in ``filename*``."""
    fallback = "".join(c if " " <= c <= "~" and c not in '"\\%' else "_" for c in name)
    exact = quote(name.encode("utf-8", "replace"), safe="")
    return f"{kind}; filename=\"{fallback or 'download'}\"; filename*=UTF-8''{exact}"


def send_attachment(path: Path, name: str, mimetype: str = OCTET_STREAM) -> Response:
    """The local file at ``path`` (not a stored one) streamed as a download called
    ``name``."""
    response = send_file(path, mimetype=mimetype)
    response.headers["Content-Disposition"] = attachment(name)
    return response


def send_stored(stored: StoredFile, *, name: str | None = None,
                mimetype: str = OCTET_STREAM) -> Response:
    """``stored`` streamed: a download called ``name`` when given, else shown inline
    under its own name; the response closes it once sent."""
    response = Response(wrap_file(request.environ, stored.stream), mimetype=mimetype,
                        direct_passthrough=True)
    response.content_length = stored.size
    response.last_modified = stored.modified  # type: ignore[assignment]
    response.cache_control.no_cache = True
    response.set_etag(stored.etag)
    response.headers["Content-Disposition"] = (
        attachment(name) if name is not None
        else disposition(PurePosixPath(stored.path).name, "inline"))
    try:
        response.make_conditional(request.environ, accept_ranges=True,
                                  complete_length=stored.size)  # changes it in place
    except RequestedRangeNotSatisfiable:
        stored.close()
        raise
    return response
