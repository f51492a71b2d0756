from __future__ import annotations

from pathlib import Path

import pytest

from scitq_bench.exceptions import InvalidInput
from scitq_bench.storage.config import StorageConfig
from scitq_bench.storage.locations import Location, parse_location, redact


@pytest.mark.parametrize("text,expected", [
    ("s3://bucket/a/b.txt", Location("s3", "bucket", "a/b.txt")),
    ("s3://bucket/a/", Location("s3", "bucket", "a/")),
    ("s3://bucket", Location("s3", "bucket", "")),
    ("azure://acct/cont/a/b", Location("azure", "acct/cont", "a/b")),
    ("azure://acct/cont", Location("azure", "acct/cont", "")),
    ("ftp://host:2121/pub/x", Location("ftp", "host:2121", "pub/x")),
    ("file:///tmp/x/", Location("file", "", "tmp/x/")),
    ("server://bench/ref", Location("server", "", "bench/ref")),
    ("https://h/x.tgz?sig=abc", Location("https", "h", "x.tgz", "sig=abc")),
])
def test_parse_and_write_back(text: str, expected: Location) -> None:
    location = parse_location(text)
    assert location == expected
    assert parse_location(location.uri()) == location


def test_folder_children_and_names() -> None:
    folder = parse_location("s3://bucket/out/")
    assert folder.is_folder and not parse_location("s3://bucket/out").is_folder
    assert folder.child("a/b.txt").uri() == "s3://bucket/out/a/b.txt"
    assert parse_location("s3://bucket/out").as_folder() == folder
    assert parse_location("azure://a/c/x/y.bin").name == "y.bin"


def test_redacted_forms_hold_no_secret() -> None:
    assert parse_location("https://h/x?X-Amz-Signature=s3cr3t").redacted() == "https://h/x"
    assert redact("ftp://u:pw@host/x?token=t") == "ftp://host/x"


@pytest.mark.parametrize("text,fragment", [
    ("s3://bucket/a//b", "empty path part"),
    ("s3://bucket/a/../b", "'..'"),
    ("file:///a/./b", "'.'"),
    ("ftp://:pw@host/x", "carries credentials"),
    ("https://user@host/x", "carries credentials"),
    ("s3://bucket/x?versionId=3", "may not hold a query"),
    ("file:///tmp/sample#1", "percent-encode"),
])
def test_refused(text: str, fragment: str) -> None:
    with pytest.raises(InvalidInput, match=fragment):
        parse_location(text)


def test_settings_per_store_over_defaults() -> None:
    config = StorageConfig.from_mapping({
        "s3": {"*": {"region": "gra", "endpoint_url": "https://s3.example"},
               "lab": {"endpoint_url": "https://minio.lab"}},
        "ftp": {"host:21": {"user": "u"}},
        "transfer": {"concurrency": 3},
    })
    assert config.settings_for("s3", "lab") == {"region": "gra", "endpoint_url": "https://minio.lab"}
    assert config.settings_for("s3", "other")["endpoint_url"] == "https://s3.example"
    assert config.settings_for("ftps", "host:21") == {"user": "u"}
    assert config.transfer.concurrency == 3 and config.transfer.chunk_mb == 16


@pytest.mark.parametrize("data,fragment", [
    ({"gcs": {}}, "unknown section 'gcs'"),
    ({"s3": {"b": {"secret": "x"}}}, "unknown setting 'secret'"),
    ({"transfer": {"concurrency": 0}}, "whole number"),
    ([], "must hold a mapping"),
])
def test_bad_settings_are_named(data: object, fragment: str) -> None:
    with pytest.raises(InvalidInput, match=fragment):
        StorageConfig.from_mapping(data)


def test_settings_file_must_be_private(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "storage.yaml"
    path.write_text("s3: {'*': {region: gra}}\n")
    path.chmod(0o644)
    monkeypatch.setenv("SCITQ_BENCH_STORAGE_CONFIG", str(path))
    with pytest.raises(InvalidInput, match="chmod 600"):
        StorageConfig.load()
    path.chmod(0o600)
    assert StorageConfig.load().settings_for("s3", "b") == {"region": "gra"}
    monkeypatch.setenv("SCITQ_BENCH_STORAGE_CONFIG", str(tmp_path / "missing.yaml"))
    with pytest.raises(InvalidInput, match="does not exist"):
        StorageConfig.load()
