"""Declaring a workflow, without a server: keys, paths under the base, gathers,
defaults, and what would be sent."""

from __future__ import annotations

import pytest

from scitq_bench.workflow import Workflow, WorkflowError
from scitq_bench.workflow.locations import as_folder, check_base, resolve
from scitq_bench.workflow.model import OutputURI
from scitq_bench.workflow.naming import batch_name, path_segment, step_of_batch
from scitq_bench.workflow.recruitment import recruiter_fields
from scitq_bench.workflow.submission import _groups, payload


def qc(**options: object) -> Workflow:
    return Workflow("qc", base="s3://lab/qc", **options)  # type: ignore[arg-type]


# -- keys --------------------------------------------------------------------------------


def test_the_key_is_the_key_else_the_name_else_a_hash_of_the_declaration() -> None:
    wf = qc()
    assert wf.step("fastp", name="fastp:s1", key="s1", command="true").key == "s1"
    named = wf.step("fastp", name="fastp:s2", command="true")
    assert (named.key, named.name) == ("fastp:s2", "fastp:s2")
    first = wf.step("fastp", command="echo 1", inputs="raw/s3.fq")
    again = qc().step("fastp", command="echo 1", inputs="raw/s3.fq")
    other = qc().step("fastp", command="echo 2", inputs="raw/s3.fq")
    elsewhere = qc().step("trim", command="echo 1", inputs="raw/s3.fq")
    assert first.key.startswith("h-") and first.key == again.key  # the same script: the same key
    assert len({first.key, other.key, elsewhere.key}) == 3
    assert first.name == first.key


def test_a_key_declared_twice_in_a_step_is_refused_and_leaves_nothing() -> None:
    wf = qc()
    wf.step("fastp", name="s1", command="true")
    with pytest.raises(WorkflowError, match="key 's1' is declared twice"):
        wf.step("fastp", name="s1", command="false")
    wf.step("other", name="s1", command="true")  # keys are per step
    with pytest.raises(WorkflowError, match="relative"):
        Workflow("nobase").step("x", command="true", inputs="rel/path")
    assert [len(s.tasks) for s in wf.steps.values()] == [1, 1]


def test_names_that_cannot_be_batches_are_refused() -> None:
    with pytest.raises(WorkflowError, match="workflow name"):
        Workflow("bad/name")
    with pytest.raises(WorkflowError, match="no '.'"):
        qc().step("a.b", command="true")
    assert batch_name("qc", "fastp") == "qc.fastp"
    assert step_of_batch("qc", "qc.fastp") == "fastp"
    assert step_of_batch("qc", "qc2.fastp") is None and step_of_batch("qc", "qc.a.b") is None


def test_a_key_becomes_one_folder_name_and_two_keys_never_share_one() -> None:
    assert path_segment("sample_1.fq") == "sample_1.fq"
    odd, other = path_segment("fastp:s1"), path_segment("fastp/s1")
    assert odd.startswith("fastp_s1-") and other.startswith("fastp_s1-") and odd != other
    assert "/" not in path_segment("../../etc") and not path_segment("..").startswith(".")


# -- URIs under the base ---------------------------------------------------------------------


def test_paths_resolve_under_the_base_and_uris_are_kept() -> None:
    base = check_base("s3://lab/qc")
    assert base == "s3://lab/qc/"
    assert check_base("/data/qc") == "file:///data/qc/"
    assert resolve("raw/s1.fq.gz", base) == "s3://lab/qc/raw/s1.fq.gz"
    assert resolve("./raw/ref.tar|untar", base) == "s3://lab/qc/raw/ref.tar|untar"
    assert resolve("azure://acct/c/x", base) == "azure://acct/c/x"
    assert resolve("/abs/x", None) == "file:///abs/x"
    assert as_folder("s3://b/out|untar") == "s3://b/out/|untar"
    with pytest.raises(WorkflowError, match="must be a URI"):
        check_base("relative/base")
    with pytest.raises(WorkflowError, match="'x' is relative"):
        resolve("x", None, "input")


def test_outputs_default_under_the_base_and_chain_into_inputs() -> None:
    wf = qc()
    fastp = wf.step("fastp", name="s 1", command="fastp", inputs=["raw/s1.fq"])
    assert isinstance(fastp.output, OutputURI)
    assert fastp.output.startswith("s3://lab/qc/fastp/s_1-") and fastp.output.endswith("/")
    given = wf.step("fastp", name="s2", command="fastp", output="elsewhere/s2")
    assert given.output == "s3://lab/qc/elsewhere/s2/"
    human = wf.step("human", name="s1", command="bowtie", inputs=fastp.output)
    assert human.inputs == (fastp.output,) and human.depends == (fastp,)
    seqtk = wf.step("seqtk", name="s1", command="seqtk", inputs=human)  # a task: its output
    assert seqtk.inputs == (human.output,) and seqtk.depends == (human,)
    plain = wf.step("plain", name="p", command="x", inputs=f"{fastp.output}reads.fq")
    assert plain.depends == ()  # an f-string is a plain path: no link
    assert Workflow("nobase").step("s", command="true").output is None


# -- gather ------------------------------------------------------------------------------------


def test_gather_takes_the_step_as_declared_so_far() -> None:
    wf = qc()
    firsts = [wf.step("fastp", name=f"s{i}", command="fastp") for i in range(3)]
    early = firsts[0].gather()
    wf.step("fastp", name="s3", command="fastp")
    tasks, outputs = wf.steps["fastp"].gather(), wf.gather("fastp", "output")
    assert len(early) == 3 and len(tasks) == 4
    assert list(tasks) == wf.steps["fastp"].tasks
    assert list(outputs) == [t.output for t in wf.steps["fastp"].tasks]
    stats = wf.step("stats", name="all", command="multiqc", inputs=outputs)
    assert len(stats.inputs) == 4 and stats.depends == tuple(wf.steps["fastp"].tasks)
    waits = wf.step("after", name="w", command="true", depends=early)
    assert waits.depends == tuple(firsts)
    by_step = wf.step("after2", name="w", command="true", depends=wf.steps["fastp"])
    assert len(by_step.depends) == 4
    with pytest.raises(WorkflowError, match="only 'output'"):
        wf.steps["fastp"].gather("command")
    with pytest.raises(WorkflowError, match="no output to gather"):
        list(Workflow("nobase").step("s", command="true").gather("output"))
    with pytest.raises(WorkflowError, match="depends takes"):
        wf.step("bad", command="true", depends=[42])


# -- defaults ------------------------------------------------------------------------------------


def test_task_options_inherit_from_the_workflow_and_step_options_must_agree() -> None:
    wf = qc(container="alpine:3", retry=2, shell=True, run_timeout=60, flavor="local",
            concurrency=4, rounds=3, max_step_workers=5, max_workflow_workers=10)
    inherits = wf.step("a", name="1", command="true")
    overrides = wf.step("a", name="2", command="true", container="busybox", retry=0)
    assert (inherits.options.container, inherits.options.retry) == ("alpine:3", 2)
    assert (overrides.options.container, overrides.options.retry) == ("busybox", 0)
    assert overrides.options.shell is True and overrides.options.run_timeout == 60
    body = payload(inherits)
    assert body["retry"] == 2 and body["shell"] is True and body["key"] == "1"
    assert body["batch"] == "qc.a" and "cpu" not in body  # unset: the server's default
    assert payload(inherits, debug=True)["retry"] == 0
    wf.step("b", name="1", command="true", concurrency=2, max_workers=1)
    wf.step("b", name="2", command="true", concurrency=2)  # repeating is fine
    with pytest.raises(WorkflowError, match="concurrency=3 differs from 2"):
        wf.step("b", name="3", command="true", concurrency=3)
    assert [t.key for t in wf.steps["b"].tasks] == ["1", "2"]
    fields = recruiter_fields(wf.staffing(wf.steps["a"]), wf.name, wf.max_workflow_workers)
    assert fields == {"flavor": "local", "provider": "auto", "region": "auto",
                      "concurrency": 4, "tasks_per_worker": 12, "maximum_workers": 5,
                      "workflow": "qc", "workflow_maximum_workers": 10}
    step_b = recruiter_fields(wf.staffing(wf.steps["b"]), wf.name, wf.max_workflow_workers)
    assert step_b is not None
    assert (step_b["concurrency"], step_b["tasks_per_worker"], step_b["maximum_workers"]) == \
        (2, 6, 1)
    debug = recruiter_fields(wf.staffing(wf.steps["a"]), wf.name, 10, debug=True)
    assert debug is not None
    assert (debug["concurrency"], debug["maximum_workers"], debug["tasks_per_worker"]) == \
        (1, 1, 1)
    assert recruiter_fields(qc().staffing(qc().step("x", command="t").step), "qc", None) is None


def test_tasks_are_sent_in_runs_none_needing_another_of_its_own() -> None:
    wf = qc()
    a = wf.step("s", name="a", command="true")
    b = wf.step("s", name="b", command="true")
    c = wf.step("s", name="c", command="true", depends=a)
    d = wf.step("s", name="d", command="true")
    assert [[t.key for t in g] for g in _groups([a, b, c, d])] == [["a", "b"], ["c", "d"]]
    with pytest.raises(WorkflowError, match="needs s/a, not sent yet"):
        payload(c)
    a.id = 7
    assert payload(c)["requires"] == [7]
