"""The status vocabularies: stored strings, the request bodies' subsets of them, and
the sets derived from them."""

from __future__ import annotations

from enum import Enum
from typing import Any, get_args

import pytest

from scitq_bench import states
from scitq_bench.server.schemas import ExecutionEvent, TaskUpdate, WorkerUpdate
from scitq_bench.states import (
    FINAL_JOB_VALUES,
    LIVE_JOB_VALUES,
    AttemptStatus,
    ExecutionStatus,
    JobStatus,
    ReportedExecutionStatus,
    RequestedTaskStatus,
    RequestedWorkerStatus,
    RunStatus,
    SubmissionStatus,
    TaskStatus,
    WorkerStatus,
)

VOCABULARIES = [value for value in vars(states).values()
                if isinstance(value, type) and issubclass(value, Enum) and value.__module__ ==
                states.__name__]


@pytest.mark.parametrize("vocabulary", VOCABULARIES, ids=lambda v: v.__name__)
def test_members_are_the_stored_strings(vocabulary: type[Enum]) -> None:
    """Members compare equal to, and hash as, the strings in the columns."""
    for member in vocabulary:
        assert isinstance(member, str)
        assert member == member.value and hash(member) == hash(member.value)
        assert member.value == member.value.lower() and len(member.value) <= 16  # String(16)


@pytest.mark.parametrize(("literal", "vocabulary", "values"), [
    (ReportedExecutionStatus, ExecutionStatus,
     {"accepted", "running", "succeeded", "failed", "refused", "timeout", "cancelled"}),
    (RequestedTaskStatus, TaskStatus, {"paused", "pending"}),
    (RequestedWorkerStatus, WorkerStatus, {"running", "paused"}),
])
def test_request_literals_are_subsets_of_their_vocabulary(
        literal: Any, vocabulary: type[Enum], values: set[str]) -> None:
    assert set(get_args(literal)) == values
    assert values <= {s.value for s in vocabulary}


@pytest.mark.parametrize(("model", "field", "literal"), [
    (ExecutionEvent, "status", ReportedExecutionStatus),
    (TaskUpdate, "status", RequestedTaskStatus),
    (WorkerUpdate, "status", RequestedWorkerStatus),
])
def test_request_bodies_list_the_plain_values(model: Any, field: str, literal: Any) -> None:
    """The OpenAPI schema of a status field is an enum of the plain strings."""
    schema = model.model_json_schema()["properties"][field]
    enums = [schema] if "enum" in schema else [s for s in schema["anyOf"] if "enum" in s]
    assert [(s["enum"], s["type"]) for s in enums] == [(list(get_args(literal)), "string")]


def test_job_sets_split_the_vocabulary() -> None:
    assert set(LIVE_JOB_VALUES) | FINAL_JOB_VALUES == {s.value for s in JobStatus}
    assert not set(LIVE_JOB_VALUES) & FINAL_JOB_VALUES
    assert LIVE_JOB_VALUES == ("pending", "running")


def test_benchmark_vocabularies() -> None:
    """A submission shows its newest attempt's status: every attempt status is one."""
    assert {s.value for s in AttemptStatus} <= {s.value for s in SubmissionStatus}
    assert [s.value for s in SubmissionStatus] == [
        "submitted", "running", "finished", "failed", "cancelled"]
    assert {s.value for s in RunStatus} == {s.value for s in AttemptStatus}
