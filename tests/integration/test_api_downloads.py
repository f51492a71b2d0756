"""Stored files download as streams that answer range and conditional requests, as
they did when served from a local path."""

from __future__ import annotations

BODY = bytes(range(256)) * 400  # 102,400 bytes: more than one 64 KiB read


def test_a_download_answers_ranges_and_conditions(api) -> None:
    assert api.put("/files/out/data.bin", data=BODY).status_code == 201
    whole = api.get("/files/out/data.bin")
    assert whole.status_code == 200 and whole.data == BODY
    assert whole.headers["Content-Length"] == str(len(BODY))
    assert whole.headers["Accept-Ranges"] == "bytes"
    assert whole.headers["Content-Disposition"].startswith('inline; filename="data.bin"')
    part = api.get("/files/out/data.bin", headers={"Range": "bytes=65530-65545"})
    assert part.status_code == 206 and part.data == BODY[65530:65546]
    assert part.headers["Content-Range"] == f"bytes 65530-65545/{len(BODY)}"
    tail = api.get("/files/out/data.bin", headers={"Range": "bytes=-10"})
    assert tail.status_code == 206 and tail.data == BODY[-10:]
    assert api.get("/files/out/data.bin",
                   headers={"Range": f"bytes={len(BODY)}-"}).status_code == 416
    etag, modified = whole.headers["ETag"], whole.headers["Last-Modified"]
    assert api.get("/files/out/data.bin", headers={"If-None-Match": etag}).status_code == 304
    assert api.get("/files/out/data.bin",
                   headers={"If-Modified-Since": modified}).status_code == 304
    assert api.put("/files/out/data.bin", data=b"replaced").status_code == 201
    fresh = api.get("/files/out/data.bin", headers={"If-None-Match": etag})
    assert fresh.status_code == 200 and fresh.data == b"replaced"


def test_a_missing_download_names_its_path(api) -> None:
    missing = api.get("/files/out/none.bin")
    assert missing.status_code == 404
    assert missing.json["message"] == "no file at server://out/none.bin"
