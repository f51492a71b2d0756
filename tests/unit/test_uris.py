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
        ("gs://bucket/x", "unsupported URI scheme 'gs'"),
        ("ftp://user:secret@host/x", "carries credentials"),
        ("s3://Not_A_Bucket/x", "not a valid S3 bucket name"),
        ("azure://account", "names no container"),
        ("s3:///key", "has no bucket"),
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


@pytest.mark.parametrize("text,scheme,path", [
    ("s3://bucket-1/data/x.tgz|untar", "s3", "data/x.tgz"),
    ("s3://bucket-1/folder/", "s3", "folder/"),
    ("azure://acct/container/ref/", "azure", "ref/"),
    ("ftp://ftp.example.org:2121/pub/x", "ftp", "pub/x"),
    ("ftps://ftp.example.org/pub/x|gunzip", "ftps", "pub/x"),
])
def test_object_store_uris(text: str, scheme: str, path: str) -> None:
    uri = parse_uri(text)
    assert (uri.scheme, uri.path) == (scheme, path)


def test_credentials_are_never_kept_in_a_uri() -> None:
    """A password in a URI would be stored with the task and shown to every reader:
    refused, and the error itself does not repeat it."""
    with pytest.raises(InvalidInput) as raised:
        parse_uri("ftp://alice:hunter2@ftp.example.org/x", field="inputs[0]")
    assert "hunter2" not in str(raised.value)
    assert "inputs[0]" in str(raised.value)
