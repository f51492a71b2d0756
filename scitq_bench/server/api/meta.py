"""Health and the OpenAPI document (public), and the worker package (enrollment)."""

from __future__ import annotations

import re
from typing import Any

from flask import Blueprint

from scitq_bench import __version__
from scitq_bench.server.api.registry import ENROLL, OPERATIONS, PUBLIC, Operation, endpoint
from scitq_bench.server.context import server_context
from scitq_bench.server.downloads import send_attachment
from scitq_bench.server.limits import ID_MAX
from scitq_bench.server.package import package_file

bp = Blueprint("meta", __name__)


@endpoint(bp, "/health", "GET", access=PUBLIC, summary="Liveness check")
def health() -> Any:
    return {"status": "ok", "version": __version__}


@endpoint(bp, "/openapi.json", "GET", access=PUBLIC, summary="This API's OpenAPI document")
def openapi() -> Any:
    return openapi_document()


def openapi_document() -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    schemas: dict[str, Any] = {}
    for operation in OPERATIONS:
        paths.setdefault(operation.path, {})[operation.method] = _operation(operation, schemas)
    return {
        "openapi": "3.1.0",
        "info": {"title": "scitq_bench API", "version": __version__},
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"bearer": []}],
    }


def _operation(operation: Operation, schemas: dict[str, Any]) -> dict[str, Any]:
    parameters = [
        {"name": name, "in": "path", "required": True, "schema": _path_schema(converter)}
        for converter, name in _path_variables(operation.rule)
    ] + [
        {"name": q.name, "in": "query", "required": False, "description": q.description,
         "schema": {"type": q.type}}
        for q in operation.query
    ]
    spec: dict[str, Any] = {
        "summary": operation.summary,
        "tags": list(operation.tags),
        "parameters": parameters,
        "description": f"Access: {operation.access}.",
        "x-access": operation.access,  # the same, machine-readable
        "responses": {
            "200": {"description": "success"},
            "400": {"description": "invalid input (the message names the field)"},
            "401": {"description": "missing or invalid token"},
            "403": {"description": "token not allowed to do this"},
            "404": {"description": "unknown id"},
            "409": {"description": "not allowed in the object's current state"},
        },
    }
    if operation.access == PUBLIC:
        spec["security"] = []
    if operation.body is not None:
        schema = operation.body.model_json_schema(ref_template="#/components/schemas/{model}")
        for name, definition in schema.pop("$defs", {}).items():
            schemas[name] = definition
        schemas[operation.body.__name__] = schema
        spec["requestBody"] = {
            "required": True,
            "content": {"application/json": {
                "schema": {"$ref": f"#/components/schemas/{operation.body.__name__}"}}},
        }
    elif operation.raw_body:
        spec["requestBody"] = {"required": True, "content": {
            "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}}
    return spec


def _path_variables(rule: str) -> list[tuple[str, str]]:
    """(converter, name) of each variable of a Flask rule, in order."""
    return re.findall(r"<(?:([a-z]+):)?([a-z_]+)>", rule)


def _path_schema(converter: str) -> dict[str, Any]:
    if converter == "id":
        return {"type": "integer", "minimum": 0, "maximum": ID_MAX}
    return {"type": "string"}


@endpoint(bp, "/package", "GET", access=ENROLL,
          summary="The worker package (a wheel) at this server's exact version")
def package() -> Any:
    path = package_file(server_context().settings)
    return send_attachment(path, path.name)
