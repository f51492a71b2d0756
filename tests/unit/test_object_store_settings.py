"""``store_url`` and the ``storage:`` mapping of the server's settings: checked at load,
named in every refusal, exclusive with the local directories, and the credentials
never shown (not even in the settings' repr)."""

from __future__ import annotations

from pathlib import Path

import pytest

from scitq_bench.exceptions import InvalidInput
from scitq_bench.server.restore_files import settings_elsewhere
from scitq_bench.settings import ServerSettings

SECRET = "wJalrXUtnFEMI-K7MDENG-bPxRfiCYEXAMPLEKEY"


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("STORE_URL", "STORE_DIR", "LOG_DIR"):
        monkeypatch.delenv(f"SCITQ_BENCH_{name}", raising=False)


@pytest.mark.parametrize(("given", "kept"), [
    ("s3://my-bucket/scitq/prod", "s3://my-bucket/scitq/prod/"),
    ("s3://my-bucket", "s3://my-bucket/"),
    ("azure://account/container/scitq/", "azure://account/container/scitq/"),
    ("azure://account/container", "azure://account/container/"),
    ("file:///mnt/shared/scitq", "file:///mnt/shared/scitq/"),
])
def test_a_store_url_is_kept_as_a_folder(tmp_path: Path, monkeypatch, given: str,
                                         kept: str) -> None:
    assert ServerSettings.from_env(tmp_path).store_url is None
    (tmp_path / "settings.yaml").write_text(f"store_url: {given}\n")
    assert ServerSettings.from_env(tmp_path).store_url == kept
    monkeypatch.setenv("SCITQ_BENCH_STORE_URL", "s3://from-the-environment/x")
    assert ServerSettings.from_env(tmp_path).store_url == "s3://from-the-environment/x/"


@pytest.mark.parametrize(("given", "message"), [
    ("http://example.org/x", "store_url must be an s3, azure or file URI .*got 'http://"),
    ("ftp://host/x", "store_url must be an s3, azure or file URI"),
    ("/var/lib/scitq", "store_url must be an s3, azure or file URI .*got '/var/lib/scitq'"),
    ("s3://Bad_Bucket/x", "'Bad_Bucket' is not a valid S3 bucket name"),
    ("s3:///x", "has no bucket"),
    ("azure://account", "names no container"),
    ("file://relative/x", "must hold an absolute path"),
    ("file:///", "names the file system's root"),
    ("s3://bucket/a/../b", "may not contain '.', '..'"),
    ("s3://bucket/x?X-Amz-Signature=abc", "takes no query or fragment, got 's3://bucket/x'"),
    ("s3://key:secret@bucket/x", "carries credentials: put them in settings.yaml's storage"),
])
def test_a_bad_store_url_is_refused_at_load(tmp_path: Path, monkeypatch, given: str,
                                            message: str) -> None:
    monkeypatch.setenv("SCITQ_BENCH_STORE_URL", given)
    with pytest.raises(InvalidInput, match=message) as refused:
        ServerSettings.from_env(tmp_path)
    assert "secret" not in str(refused.value) and "abc" not in str(refused.value)


@pytest.mark.parametrize("local", ["store_dir", "log_dir"])
def test_a_store_url_and_a_local_directory_are_refused_together(tmp_path: Path, monkeypatch,
                                                                local: str) -> None:
    (tmp_path / "settings.yaml").write_text(f"store_url: s3://bucket/p\n{local}: /srv/x\n")
    with pytest.raises(InvalidInput, match=f"store_url and {local} are both set: with "
                       f"store_url the logs and files live in s3://bucket/p/; unset {local}"):
        ServerSettings.from_env(tmp_path)
    (tmp_path / "settings.yaml").write_text("store_url: s3://bucket/p\n")
    monkeypatch.setenv(f"SCITQ_BENCH_{local.upper()}", "/srv/x")
    with pytest.raises(InvalidInput, match=f"SCITQ_BENCH_{local.upper()}"):
        ServerSettings.from_env(tmp_path)


def test_the_storage_mapping_configures_the_store_and_stays_private(tmp_path: Path) -> None:
    (tmp_path / "settings.yaml").write_text(
        "store_url: s3://lab-bucket/scitq\n"
        "storage:\n"
        "  s3:\n"
        "    lab-bucket: {endpoint_url: 'https://minio.lab:9000', access_key_id: AKIDLAB,\n"
        f"                 secret_access_key: {SECRET}}}\n")
    settings = ServerSettings.from_env(tmp_path)
    assert settings.storage.settings_for("s3", "lab-bucket") == {
        "endpoint_url": "https://minio.lab:9000", "access_key_id": "AKIDLAB",
        "secret_access_key": SECRET}
    assert SECRET not in repr(settings) and "s3://lab-bucket/scitq/" in repr(settings)
    assert ServerSettings.from_env(tmp_path / "elsewhere").storage.sections == {}


def test_a_bad_storage_mapping_is_named(tmp_path: Path) -> None:
    (tmp_path / "settings.yaml").write_text(
        f"storage:\n  s3:\n    b: {{secret_key: {SECRET}}}\n")
    with pytest.raises(InvalidInput, match=r"settings\.yaml: s3\.b: unknown setting "
                                           "'secret_key'") as refused:
        ServerSettings.from_env(tmp_path)
    assert SECRET not in str(refused.value)
    (tmp_path / "settings.yaml").write_text("storage: [s3]\n")
    with pytest.raises(InvalidInput, match="must hold a mapping"):
        ServerSettings.from_env(tmp_path)


def test_a_restored_settings_file_naming_another_store_is_set_aside(tmp_path: Path) -> None:
    target = ServerSettings(data_dir=tmp_path, database_url="sqlite://",
                            store_url="s3://bucket/prod/")
    assert settings_elsewhere("store_url: s3://bucket/prod\n", target) == []
    assert settings_elsewhere("store_url: s3://bucket/staging\n", target) == ["store_url"]
    assert settings_elsewhere("lease_seconds: 5\n", target) == ["store_url"]  # local there
    local = ServerSettings(data_dir=tmp_path, database_url="sqlite://")
    assert settings_elsewhere("store_url: s3://bucket/prod\n", local) == ["store_url"]
    assert settings_elsewhere("lease_seconds: 5\n", local) == []
