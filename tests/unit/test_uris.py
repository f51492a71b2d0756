from __future__ import annotations

import pytest

from scitq_bench.exceptions import InvalidInput
from scitq_bench.uris import parse_uri


def test_valid_uris_and_actions() -> None:
    uri = parse_uri("http://example.org/data.tgz|untar|mv:sub/dir")
    assert uri.scheme == "http"
    assert uri.actions == (("untar", None), ("mv", "sub/dir"))
    assert parse_uri("server://bench/ref/").path == "bench/ref"
    assert parse_uri("file:///tmp/x").path == "/tmp/x"


@pytest.mark.parametrize(
    "text,fragment",
    [
        ("ftp://host/x", "unsupported URI scheme 'ftp'"),
        ("/tmp/x", "unsupported URI scheme '(none)'"),
        ("file://relative/x", "absolute path"),
        ("http:///nohost", "has no host"),
        ("server://a/../b", "'..'"),
        ("file:///x|explode", "unknown action 'explode'"),
        ("file:///x|mv:../up", "relative directory"),
        ("file:///x|untar:arg", "takes no argument"),
        ("", "empty URI"),
    ],
)
def test_invalid_uris_are_named(text: str, fragment: str) -> None:
    with pytest.raises(InvalidInput) as raised:
        parse_uri(text, field="inputs[0]")
    assert fragment in str(raised.value)


def test_actions_refused_on_outputs() -> None:
    with pytest.raises(InvalidInput, match="not allowed"):
        parse_uri("file:///out|untar", field="output", allow_actions=False)
