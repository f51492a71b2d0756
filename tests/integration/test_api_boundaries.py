"""Boundary values for every input of every operation in ``/api/v1/openapi.json``:
ids past 64 bits, negative and zero ids, NUL characters, numbers out of range, NaN,
values of the wrong kind. Where the fuzz samples, this sweep is exhaustive over the
inputs the document declares, deterministic, and follows every new route: none of
these may ever answer a server error (on PostgreSQL above all, which refuses NUL and
overflowing integers that SQLite lets through)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import quote

from tests.conftest import SUMMARY_PROPERTY
from tests.support.api import EXCLUDED

HUGE = 10**20  # past 64 bits
ID_VALUES = ("99999999999999999999", str(2**64), str(2**63), "-1", "0", "1")
TEXT_VALUES = ("\x00", "a\x00b", "x" * 5000)
QUERY_VALUES = ("\x00", str(HUGE), str(-HUGE), "nan", "inf", "-1", "", "x" * 5000)
BODY_VALUES: tuple[Any, ...] = ("\x00", "a\x00b", HUGE, -HUGE, 2**63, 1.5, True, [], {},
                                ["\x00"], [HUGE], {"\x00": 1}, None)
RAW_BODIES = ('{"x": NaN}', '{"x": Infinity}', "[]", '"\\u0000"', "{", "")


def operations(document: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, methods in document["paths"].items():
        for method, operation in methods.items():
            if (method.upper(), path) not in EXCLUDED:
                yield method.upper(), path, operation


def body_properties(document: dict[str, Any], operation: dict[str, Any]) -> list[str]:
    """The top-level fields of the operation's JSON body, if it has one."""
    content = (operation.get("requestBody") or {}).get("content", {})
    schema = content.get("application/json", {}).get("schema", {})
    if "$ref" in schema:
        schema = document["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    return sorted(schema.get("properties", {}))


def fill(path: str, operation: dict[str, Any], chosen: dict[str, str]) -> str:
    """``path`` with each parameter set: ``chosen`` ones as given, others harmless."""
    for parameter in operation.get("parameters", []):
        if parameter["in"] != "path":
            continue
        name = parameter["name"]
        harmless = "1" if parameter["schema"].get("type") == "integer" else "stdout"
        path = path.replace("{" + name + "}", quote(chosen.get(name, harmless), safe="/"))
    return path


def cases(document: dict[str, Any]) -> Iterator[tuple[str, str, str, Any]]:
    """(method, URL, what is tried, JSON body or raw text)."""
    for method, path, operation in operations(document):
        parameters = operation.get("parameters", [])
        body_props = body_properties(document, operation)
        has_body = "requestBody" in operation
        base_body: Any = {} if has_body else None
        for parameter in parameters:
            name, where = parameter["name"], parameter["in"]
            integer = parameter["schema"].get("type") == "integer"
            if where == "path":
                for value in ID_VALUES if integer else TEXT_VALUES:
                    yield (method, fill(path, operation, {name: value}),
                           f"path {name}={value[:20]!r}", base_body)
            elif where == "query":
                for value in QUERY_VALUES:
                    url = f"{fill(path, operation, {})}?{quote(name)}={quote(value)}"
                    yield method, url, f"query {name}={value[:20]!r}", base_body
        url = fill(path, operation, {})
        for name in body_props:
            for value in BODY_VALUES:
                yield method, url, f"body {name}={value!r:.30}", {name: value}
        if has_body:
            for raw in RAW_BODIES:
                yield method, url, f"raw body {raw!r}", raw


def test_no_boundary_value_makes_a_server_error(
        fuzzed_app: tuple[Any, str], record_property: Callable[[str, object], None]) -> None:
    app, token = fuzzed_app
    client = app.test_client()
    headers = {"Authorization": f"Bearer {token}"}
    document = client.get("/api/v1/openapi.json").json
    failures, tried = [], 0
    for method, url, what, body in cases(document):
        data = body if isinstance(body, str) else None if body is None else json.dumps(body)
        answer = client.open(url, method=method, data=data, headers=headers,
                             content_type="application/json" if data is not None else None)
        tried += 1
        if answer.status_code >= 500:
            failures.append(f"{method} {url[:120]} ({what}) -> {answer.status_code}")
    record_property(SUMMARY_PROPERTY, f"{tried} boundary requests, server errors "
                                      f"{len(failures)}")
    assert tried > 1000, tried  # the sweep covers the document, not a part of it
    assert failures == [], "\n".join(failures)
