"""The container options allow-list: every allowed option, every refused one by name."""

from __future__ import annotations

import pytest

from scitq_bench.container_options import (
    GPU_ALL,
    ContainerOptions,
    parse_container_options,
    parse_size,
    validate_image,
)
from scitq_bench.exceptions import InvalidInput


def parse(text: str | None, network_allowed: bool = False) -> ContainerOptions:
    return parse_container_options(text, network_allowed=network_allowed)


def refused(text: str, *fragments: str, network_allowed: bool = False) -> str:
    with pytest.raises(InvalidInput) as caught:
        parse(text, network_allowed)
    message = str(caught.value)
    for fragment in fragments:
        assert fragment in message, message
    return message


def test_nothing_given_is_all_defaults() -> None:
    for text in (None, "", "   "):
        assert parse(text) == ContainerOptions()
    empty = parse(None)
    assert (empty.gpus, empty.shm_size, empty.env, empty.network, empty.workdir,
            empty.entrypoint, empty.pids_limit) == (None, None, {}, None, None, None, None)


def test_every_allowed_option_in_both_forms() -> None:
    spaced = parse("--gpus 2 --shm-size 64m -e A=1 --env B=two --network mynet "
                   "-w /work --entrypoint '/bin/sh -c' --pids-limit 50", network_allowed=True)
    joined = parse("--gpus=2 --shm-size=64m -e=A=1 --env=B=two --network=mynet "
                   "--workdir=/work --entrypoint='/bin/sh -c' --pids-limit=50",
                   network_allowed=True)
    expected = ContainerOptions(gpus=2, shm_size=64 * 1024**2, env={"A": "1", "B": "two"},
                                network="mynet", workdir="/work",
                                entrypoint=["/bin/sh", "-c"], pids_limit=50)
    assert spaced == expected
    assert joined == expected
    assert parse("-eA=1 -w/work").env == {"A": "1"}


@pytest.mark.parametrize(("text", "gpus"), [
    ("--gpus all", GPU_ALL), ("--gpus=all", GPU_ALL), ("--gpus ALL", GPU_ALL),
    ("--gpus 1", 1), ("--gpus=4", 4),
])
def test_gpus(text: str, gpus: int) -> None:
    assert parse(text).gpus == gpus


@pytest.mark.parametrize("text", [
    "--gpus device=0", "--gpus '\"device=0,1\"'", "--gpus count=2", "--gpus 0", "--gpus -1",
    "--gpus two",
])
def test_gpus_refuses_device_selection_and_nonsense(text: str) -> None:
    message = refused(text, "--gpus")
    if "device" in text or "count" in text:
        assert "count or 'all'" in message


@pytest.mark.parametrize(("size", "expected"), [
    ("100", 100), ("100b", 100), ("512k", 512 * 1024), ("512K", 512 * 1024),
    ("64m", 64 * 1024**2), ("64M", 64 * 1024**2), ("64mb", 64 * 1024**2),
    ("2g", 2 * 1024**3), ("2G", 2 * 1024**3), ("2gb", 2 * 1024**3),
])
def test_shm_size(size: str, expected: int) -> None:
    assert parse_size(size) == expected
    assert parse(f"--shm-size {size}").shm_size == expected


@pytest.mark.parametrize("size", ["", "0", "64x", "1.5g", "-1", "g", "64 m", "1t"])
def test_shm_size_refuses_bad_sizes(size: str) -> None:
    refused(f"--shm-size '{size}'", "--shm-size")


def test_env() -> None:
    assert parse("-e A=1 -e B= -e C=x=y --env 'D=with space'").env == {
        "A": "1", "B": "", "C": "x=y", "D": "with space"}
    assert parse("-e A=1 -e A=2").env == {"A": "2"}  # the last one wins, as docker does
    refused("-e KEY", "-e", "KEY=VALUE")
    refused("--env KEY", "--env", "KEY=VALUE")
    refused("-e 1A=x", "-e", "'1A'", "not a valid environment variable name")
    refused("-e A-B=x", "not a valid environment variable name")
    refused("-e =x", "not a valid environment variable name")
    refused("-e SCITQ_BENCH_TOKEN=abc", "-e", "SCITQ_BENCH_TOKEN", "reserved")
    refused("--env=SCITQ_BENCH_TOKEN=abc", "SCITQ_BENCH_TOKEN", "reserved")


def test_network_only_when_allowed() -> None:
    assert parse("--network mynet", network_allowed=True).network == "mynet"
    assert parse("--net=bridge", network_allowed=True).network == "bridge"
    message = refused("--network mynet", "--network", "network: true", "task or its batch")
    assert "not allowed" not in message
    refused("--network=bridge", "--network", "network: true")
    # asking for no network is always fine
    assert parse("--network none").network == "none"


@pytest.mark.parametrize("text", ["--network host", "--network=host", "--net host",
                                  "--network container:other", "--network=HOST"])
@pytest.mark.parametrize("allowed", [False, True])
def test_host_and_container_networks_are_always_refused(text: str, allowed: bool) -> None:
    refused(text, "--net", "is not allowed", "network stack", network_allowed=allowed)


def test_network_name_must_be_sane() -> None:
    refused("--network 'a b'", "--network", "not a valid network name", network_allowed=True)


def test_workdir_entrypoint_pids_limit() -> None:
    assert parse("-w /a/b").workdir == "/a/b"
    assert parse("--workdir=/").workdir == "/"
    refused("-w relative", "-w", "absolute path")
    refused("--workdir ''", "--workdir", "absolute path")
    assert parse("--entrypoint /bin/true").entrypoint == ["/bin/true"]
    assert parse("--entrypoint 'python -u'").entrypoint == ["python", "-u"]
    assert parse("--entrypoint ''").entrypoint == []  # clears the image's entrypoint
    refused("--entrypoint '\"unclosed'", "--entrypoint")
    assert parse("--pids-limit 1").pids_limit == 1
    for bad in ("0", "-1", "x", "1.5"):
        refused(f"--pids-limit={bad}", "--pids-limit")


@pytest.mark.parametrize(("text", "named"), [
    ("--privileged", "--privileged"),
    ("--privileged=true", "--privileged"),
    ("-v /:/host", "-v (--volume)"),
    ("--volume /etc:/etc", "--volume"),
    ("--volume=/etc:/etc", "--volume"),
    ("--mount type=bind,src=/,dst=/h", "--mount"),
    ("--volumes-from other", "--volumes-from"),
    ("--pid host", "--pid"),
    ("--ipc=host", "--ipc"),
    ("--uts host", "--uts"),
    ("--userns host", "--userns"),
    ("--cgroupns host", "--cgroupns"),
    ("--device /dev/sda", "--device"),
    ("--cap-add SYS_ADMIN", "--cap-add"),
    ("--security-opt seccomp=unconfined", "--security-opt"),
    ("--user root", "--user"),
    ("-u 0", "-u (--user)"),
    ("--network host", "--network"),
])
def test_forbidden_options_are_named_with_why(text: str, named: str) -> None:
    message = refused(text, f"container option {named}", "is not allowed: ",
                      network_allowed=True)
    assert len(message.split("is not allowed: ", 1)[1]) > 10  # a reason follows


def test_forbidden_after_allowed_options_still_refused() -> None:
    refused("--gpus 1 -e A=1 --privileged", "--privileged", "is not allowed")


@pytest.mark.parametrize(("text", "named"), [
    ("--rm", "--rm"), ("--foo bar", "--foo"), ("--foo=bar", "--foo"), ("-it", "-i"),
    ("-p 80:80", "-p"), ("--memory 1g", "--memory"), ("--cap-drop ALL", "--cap-drop"),
])
def test_anything_else_is_unsupported(text: str, named: str) -> None:
    message = refused(text, f"unsupported container option {named}; allowed: ")
    for allowed in ("--gpus", "--shm-size", "--env", "--network", "--workdir",
                    "--entrypoint", "--pids-limit"):
        assert allowed in message


def test_positional_words_and_bad_quoting_are_refused() -> None:
    refused("alpine", "'alpine'", "only options are accepted")
    refused("--gpus 1 extra", "'extra'")
    refused("--", "'--'")
    refused("-e 'A=1", "cannot split container options")


def test_missing_values_and_repeats() -> None:
    refused("--gpus", "--gpus", "needs a value")
    refused("-e", "-e (--env) needs a value")
    refused("--gpus 1 --gpus 2", "--gpus", "more than once")
    refused("--network a --network b", "--network", "more than once", network_allowed=True)


def test_options_are_immutable_values() -> None:
    options = parse("--gpus 1")
    with pytest.raises(AttributeError):
        options.gpus = 2  # type: ignore[misc]


@pytest.mark.parametrize("image", [
    "alpine", "alpine:3.20", "docker.io/library/alpine:3.20", "localhost:5000/a/b:tag",
    "ghcr.io/org/img@sha256:" + "a" * 64, "my-image_1.2",
])
def test_valid_images(image: str) -> None:
    assert validate_image(image) == image


@pytest.mark.parametrize(("image", "fragment"), [
    ("", "required"), ("al pine", "whitespace"), ("alpine\n", "whitespace"),
    ("-alpine", "starts with '-'"), ("alpine;rm", "characters"), ("a$b", "characters"),
    ("x" * 501, "500"),
])
def test_invalid_images_name_the_container_field(image: str, fragment: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        validate_image(image)
    assert str(caught.value).startswith("container: ")
    assert fragment in str(caught.value)
