"""The clock and brakes of a deploy job, without a database or Ansible: the playbook's
own waits cut to the time left, and a job's control telling why it must stop."""

from __future__ import annotations

import time

import pytest

from scitq_bench.recruiters.deploy import DeployError, timing_vars
from scitq_bench.server.recruit.jobs import JobControl, JobStopped


def test_the_playbook_waits_derive_from_the_time_left() -> None:
    assert timing_vars(None, {}) == {}
    assert timing_vars(8.7, {}) == {"playbook_timeout": 8, "connect_timeout": 8,
                                    "ansible_ssh_timeout": 8}
    assert timing_vars(120, {"connect_timeout": 600}) == {
        "playbook_timeout": 120, "connect_timeout": 120, "ansible_ssh_timeout": 10}
    assert timing_vars(120, {"connect_timeout": 30, "ansible_ssh_timeout": "5"}) == {
        "playbook_timeout": 120, "connect_timeout": 30, "ansible_ssh_timeout": 5}
    with pytest.raises(DeployError, match="connect_timeout must be a whole number"):
        timing_vars(120, {"connect_timeout": "soon"})


def test_a_control_stops_on_its_clock_naming_the_step() -> None:
    control = JobControl(7, 0.3, lambda job_id: None)
    control.step = "Wait for SSH"
    assert control.reason() is None and not control.should_stop()
    started = time.monotonic()
    with pytest.raises(JobStopped) as stopped:
        control.wait(5)  # cut to the time left
    assert time.monotonic() - started < 2
    assert str(stopped.value) == "timed out after 0 s in step 'Wait for SSH'"


def test_a_control_stops_at_once_on_a_cancel_and_says_who() -> None:
    asked: list[int] = []

    def cancelled_by(job_id: int) -> str | None:
        asked.append(job_id)
        return "alice" if len(asked) > 1 else None

    control = JobControl(7, 60, cancelled_by)
    control.step = "wait for the instance to run"
    assert control.cancelled() is None and asked == [7]
    assert control.cancelled() is None and asked == [7]  # not asked again within a second
    control.event.set()  # this process's cancel: asked at once
    started = time.monotonic()
    with pytest.raises(JobStopped, match="cancelled by alice in step 'wait for the instance"):
        control.wait(30)
    assert time.monotonic() - started < 1


def test_a_playbook_failing_in_the_second_its_waits_were_cut_by_ran_out_of_time() -> None:
    """``timing_vars`` gives the playbook's waits whole seconds, so a wait can run out
    up to a second before the run's deadline: such a failure is the deadline's."""
    from scitq_bench.recruiters.deploy import _Brake

    near, far = _Brake("marker", 0.5, None), _Brake("marker", 30, None)
    assert near.ran_out("failed") == "timeout"
    assert near.ran_out("successful") == "successful"
    assert far.ran_out("failed") == "failed"
    assert _Brake("marker", None, None).ran_out("failed") == "failed"
