"""/api/v1/files: the store behind server:// URIs (inputs, resources, outputs).

Admins reach all of it; a worker token only the paths its live executions name
(``server.file_access``), and never deletes; no other token reaches it."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, g, request

from scitq_bench.server import file_access
from scitq_bench.server.api.registry import ADMIN, WORKER, QueryParam, endpoint
from scitq_bench.server.context import server_context
from scitq_bench.server.downloads import send_stored
from scitq_bench.server.file_access import Access

bp = Blueprint("files", __name__)


def _allowed(path: str, access: Access, field: str = "path") -> str:
    """The clean store path, once the token was found allowed to reach it."""
    with server_context().db.read() as session:
        return file_access.require(session, g.principal, path, access, field)


@endpoint(bp, "/files", "GET", access=WORKER, summary="List stored files under ?prefix=",
          query=(QueryParam("prefix", "path prefix"),))
def list_files() -> Any:
    prefix = _allowed(request.args.get("prefix", ""), Access.READ, "prefix")
    return {"files": server_context().files.list(prefix)}


@endpoint(bp, "/files/<path:path>", "GET", access=WORKER, summary="Download a stored file")
def get_file(path: str) -> Any:
    clean = _allowed(path, Access.READ)
    return send_stored(server_context().files.open(clean))


@endpoint(bp, "/files/<path:path>", "PUT", access=WORKER, raw_body=True,
          summary="Upload a file (replaced atomically)")
def put_file(path: str) -> Any:
    clean = _allowed(path, Access.WRITE)
    size = server_context().files.write(clean, request.stream)
    return {"path": clean, "size": size}, 201


@endpoint(bp, "/files/<path:path>", "DELETE", access=ADMIN, summary="Delete a stored file")
def delete_file(path: str) -> Any:
    clean = file_access.store_path(path)
    server_context().files.delete(clean)
    return {"deleted": clean}
