"""/api/v1/files: the store behind server:// URIs (inputs, resources, outputs)."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, request, send_file

from scitq_bench.server.api.registry import ANY, QueryParam, endpoint
from scitq_bench.server.context import server_context

bp = Blueprint("files", __name__)


@endpoint(bp, "/files", "GET", access=ANY, summary="List stored files under ?prefix=",
          query=(QueryParam("prefix", "path prefix"),))
def list_files() -> Any:
    return {"files": server_context().files.list(request.args.get("prefix", ""))}


@endpoint(bp, "/files/<path:path>", "GET", access=ANY, summary="Download a stored file")
def get_file(path: str) -> Any:
    return send_file(server_context().files.open(path), mimetype="application/octet-stream")


@endpoint(bp, "/files/<path:path>", "PUT", access=ANY, raw_body=True,
          summary="Upload a file (replaced atomically)")
def put_file(path: str) -> Any:
    size = server_context().files.write(path, request.stream)
    return {"path": path.strip("/"), "size": size}, 201
