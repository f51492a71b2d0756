"""The object-store servers the storage tests use answer their real clients: boto3 on
moto's S3 server, azure-storage-blob on Azurite, ftplib on the FTP and FTPS servers."""

from __future__ import annotations

import ftplib
import io
import ssl

import boto3
import pytest
from azure.storage.blob import BlobServiceClient

from tests.support.objectstores import AzureContainer, FtpSite, storage_config_for


def test_moto_stores_and_returns_an_object(s3_bucket: str) -> None:
    client = boto3.client("s3")  # the fixture's environment: endpoint and test keys
    client.put_object(Bucket=s3_bucket, Key="a/b.txt", Body=b"payload")
    assert client.get_object(Bucket=s3_bucket, Key="a/b.txt")["Body"].read() == b"payload"
    names = [item["Name"] for item in client.list_buckets()["Buckets"]]
    assert s3_bucket in names


def test_each_test_gets_a_fresh_bucket(s3_bucket: str) -> None:
    listing = boto3.client("s3").list_objects_v2(Bucket=s3_bucket)
    assert listing["KeyCount"] == 0


def test_azurite_stores_and_returns_a_blob(azure_container: AzureContainer) -> None:
    assert azure_container.account == "devstoreaccount1"
    service = BlobServiceClient.from_connection_string(azure_container.connection_string)
    blob = service.get_blob_client(azure_container.container, "dir/blob.bin")
    blob.upload_blob(b"\x00\x01azure")
    assert blob.download_blob().readall() == b"\x00\x01azure"
    names = [item.name for item in
             service.get_container_client(azure_container.container).list_blobs()]
    assert names == ["dir/blob.bin"]
    service.close()


def _round_trip(client: ftplib.FTP, site: FtpSite) -> None:
    client.login(site.user, site.password)
    client.cwd(site.base)
    client.storbinary("STOR data.bin", io.BytesIO(b"ftp bytes"))
    received = io.BytesIO()
    client.retrbinary("RETR data.bin", received.write)
    client.quit()
    assert received.getvalue() == b"ftp bytes"
    assert (site.folder / "data.bin").read_bytes() == b"ftp bytes"


def test_ftp_logs_in_stores_and_returns_a_file(ftp_site: FtpSite) -> None:
    assert ftp_site.folder == ftp_site.root / ftp_site.base and ftp_site.folder.is_dir()
    assert ftp_site.uri("x/y") == f"ftp://{ftp_site.host}:{ftp_site.port}/{ftp_site.base}/x/y"
    client = ftplib.FTP()
    client.connect(ftp_site.host, ftp_site.port, timeout=10)
    _round_trip(client, ftp_site)


def test_ftp_refuses_a_wrong_password(ftp_site: FtpSite) -> None:
    client = ftplib.FTP()
    client.connect(ftp_site.host, ftp_site.port, timeout=10)
    with pytest.raises(ftplib.error_perm, match="530"):
        client.login(ftp_site.user, ftp_site.password + "x")
    client.close()


def test_ftps_speaks_verified_tls(ftps_site: FtpSite) -> None:
    assert ftps_site.cafile is not None and ftps_site.uri().startswith("ftps://")
    context = ssl.create_default_context(cafile=str(ftps_site.cafile))
    client = ftplib.FTP_TLS(context=context)
    client.connect(ftps_site.host, ftps_site.port, timeout=10)
    client.auth()
    client.prot_p()
    assert isinstance(client.sock, ssl.SSLSocket)
    _round_trip(client, ftps_site)


def test_ftps_refuses_a_client_that_stays_in_clear(ftps_site: FtpSite) -> None:
    client = ftplib.FTP()
    client.connect(ftps_site.host, ftps_site.port, timeout=10)
    with pytest.raises(ftplib.error_perm, match="SSL/TLS required"):
        client.login(ftps_site.user, ftps_site.password)
    client.close()


def test_storage_config_reaches_each_site(azure_container: AzureContainer,
                                          ftp_site: FtpSite) -> None:
    config = storage_config_for(azure_container, ftp_site, transfer={"chunk_mb": 8})
    azure = config.settings_for("azure", f"{azure_container.account}/{azure_container.container}")
    assert azure == {"connection_string": azure_container.connection_string}
    ftp = config.settings_for("ftps", f"{ftp_site.host}:{ftp_site.port}")
    assert ftp == {"user": ftp_site.user, "password": ftp_site.password}
    assert config.transfer.chunk_mb == 8
