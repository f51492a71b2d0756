"""One decorator for every API view: authorization, body validation, JSON answers,
and the OpenAPI description, so the documentation cannot drift from the code."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from flask import Blueprint, Response, g, jsonify, request
from pydantic import BaseModel
from werkzeug.exceptions import RequestEntityTooLarge

from scitq_bench.exceptions import Forbidden, InvalidInput, TooLarge
from scitq_bench.server import auth
from scitq_bench.server.context import server_context
from scitq_bench.server.limits import may_hold_a_problem, payload_problem
from scitq_bench.server.schemas import parse_body

API_PREFIX = "/api/v1"
PUBLIC, WORKER, ADMIN, ENROLL = "public", "worker", "admin", "enroll"
BENCH, ORGANIZE = "bench", "organize"  # benchmark API: accounts' roles (and admin)
METRICS = "metrics"  # the Prometheus exposition: admin or a metrics token


@dataclass(frozen=True)
class QueryParam:
    name: str
    description: str
    type: str = "string"


@dataclass
class Operation:
    path: str
    method: str
    summary: str
    access: str
    body: type[BaseModel] | None = None
    query: tuple[QueryParam, ...] = ()
    raw_body: bool = False
    tags: tuple[str, ...] = field(default_factory=tuple)
    rule: str = ""  # the Flask rule, whose converters type the path parameters


OPERATIONS: list[Operation] = []


def endpoint(
    blueprint: Blueprint,
    rule: str,
    method: str,
    *,
    summary: str,
    access: str = ADMIN,
    body: type[BaseModel] | None = None,
    query: tuple[QueryParam, ...] = (),
    raw_body: bool = False,
    documented_body: type[BaseModel] | None = None,
    prefix: str = API_PREFIX,
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register ``fn`` as a view. ``access``: public, worker (admin or worker token),
    admin, enroll (admin or enrollment token: registering a worker, nothing else), bench
    (admin, organizer or participant), organize (admin or organizer), metrics (admin or
    a metrics token, which reaches nothing else). Benchmark
    ownership is checked by the views. Worker ownership is checked by the view itself
    with ``g.principal.require_worker(id)``, and store paths by ``server.file_access``.
    ``documented_body`` documents a body that the view parses itself. ``prefix``: where
    the view's blueprint is mounted (the probes and metrics sit at the root, where
    load balancers and Prometheus look for them)."""

    def decorator(fn: Callable[..., Any]) -> Callable[..., Any]:
        def view(**kwargs: Any) -> Any:
            if access != PUBLIC:
                g.principal = server_context().authenticate(request.headers.get("Authorization"))
                _authorize(g.principal, access)
            if body is not None:
                kwargs["body"] = parse_body(body, json_body())
            result = fn(**kwargs)
            if isinstance(result, Response):
                return result
            if isinstance(result, tuple):
                payload, status = result
                return jsonify(payload), status
            return jsonify(result)

        view.__name__ = fn.__name__
        blueprint.add_url_rule(rule, endpoint=fn.__name__, view_func=view, methods=[method])
        OPERATIONS.append(
            Operation(
                path=_openapi_path(prefix + rule),
                method=method.lower(),
                summary=summary,
                access=access,
                body=body or documented_body,
                query=query,
                raw_body=raw_body,
                tags=(blueprint.name,),
                rule=rule,
            )
        )
        return fn

    return decorator


def _authorize(principal: auth.Principal, access: str) -> None:
    if access == ADMIN:
        principal.require_admin()
    elif access == ENROLL and principal.role not in (auth.ADMIN, auth.ENROLL):
        raise Forbidden("registering a worker needs an admin or enrollment token")
    elif access == WORKER and principal.role not in (auth.ADMIN, auth.WORKER):
        raise Forbidden(f"a {principal.role} token does not reach the worker API")
    elif access == BENCH and principal.role not in auth.BENCH_ROLES:
        raise Forbidden(f"a {principal.role} token does not reach the benchmark API")
    elif access == ORGANIZE and not principal.is_organizer:
        raise Forbidden("this needs an organizer or admin token")
    elif access == METRICS and principal.role not in (auth.ADMIN, auth.METRICS):
        raise Forbidden("the metrics need an admin or metrics token")


# A JSON body is read whole: under 64 MiB holds tens of thousands of tasks in one call, and
# keeps one request from taking the server's memory (files stream, unbounded here).
MAX_JSON_BODY = 64 << 20


def json_body() -> Any:
    """The request's JSON object, checked for what no column could take (text with
    NUL, NaN or infinity, integers past 64 bits) wherever it sits, free-form fields
    included, by a walk when a scan of its bytes finds a suspect: the one place the API
    reads a JSON body. It is held in memory, so its
    size is bounded (413 beyond ``MAX_JSON_BODY``, declared or streamed)."""
    request.max_content_length = MAX_JSON_BODY
    try:
        raw = request.get_data(cache=True)
    except RequestEntityTooLarge:  # declared too large
        raw = None
    if raw is None or len(raw) >= MAX_JSON_BODY:  # a stream is cut at the bound
        raise TooLarge(f"request body is larger than {MAX_JSON_BODY:,} bytes, the most a "
                       "JSON body may hold; send fewer items per call")
    if not raw:
        raise InvalidInput("request body is empty; a JSON object is expected")
    data = request.get_json(silent=True)
    if data is None:
        raise InvalidInput("request body is not valid JSON")
    if not isinstance(data, dict):
        raise InvalidInput("request body must be a JSON object")
    problem = payload_problem(data) if may_hold_a_problem(raw) else None
    if problem is not None:
        field, message = problem
        raise InvalidInput(f"{field}: {message}", details=[f"{field}: {message}"], field=field)
    return data


def _openapi_path(rule: str) -> str:
    return re.sub(r"<(?:[a-z]+:)?([a-z_]+)>", r"{\1}", rule)
