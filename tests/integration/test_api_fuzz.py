"""Schemathesis over the whole API, as described by its own ``/api/v1/openapi.json``:
valid and invalid paths, queries and bodies, with the admin token and with none, on a
fresh database of each backend. Whatever comes in, the answer is never a server error.

The app runs in-process (WSGI, no network); examples are derived from a fixed seed
(``derandomize``), so a run is repeatable, and bounded, so it stays short."""

from __future__ import annotations

from typing import Any

import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup

from tests.support.api import EXCLUDED

# examples per operation and generation mode; without a token every call stops at the
# same 401, so a few examples show that nothing breaks before authentication
EXAMPLES = {"admin": 20, "none": 4}
MODES = (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)


def _fuzz(operation: Any, mode: GenerationMode, headers: dict[str, str], examples: int,
          failures: list[str]) -> None:
    """Run ``examples`` cases of ``operation``; every server error goes into ``failures``
    (all of them, so one run shows them all) with the call that caused it."""

    @settings(max_examples=examples, derandomize=True, deadline=None, database=None,
              phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
    @given(case=operation.as_strategy(generation_mode=mode))
    def run(case: Any) -> None:
        response = case.call(headers=headers)
        try:
            case.validate_response(response, checks=[not_a_server_error], headers=headers)
        except (AssertionError, FailureGroup):  # kept; the run goes on
            failures.append(f"{operation.label} -> {response.status_code}: "
                            f"{case.as_curl_command(headers=headers)[:400]}")

    try:
        run()
    except Unsatisfiable:
        assert mode is GenerationMode.NEGATIVE  # an operation without inputs: none invalid


def test_no_input_makes_a_server_error(fuzzed_app: tuple[Any, str]) -> None:
    app, token = fuzzed_app
    schema = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", app)
    tokens = {"admin": {"Authorization": f"Bearer {token}"}, "none": {}}
    failures: list[str] = []
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) > 50  # the document lists the API, not a part of it
    for operation in operations:
        if (operation.method.upper(), operation.path) in EXCLUDED:
            continue
        for who, headers in tokens.items():
            for mode in MODES:
                _fuzz(operation, mode, headers, EXAMPLES[who], failures)
    assert failures == [], "\n".join(failures)
