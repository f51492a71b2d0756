"""Storage URIs: what they name and how they are written back.

``s3://bucket/key``, ``azure://account/container/path``, ``ftp(s)://host[:port]/path``,
``file:///absolute/path``, ``server://path/in/store``, ``http(s)://host/path``. A
trailing "/" names a folder. Credentials never ride in a URI (they would be stored
with the task, shown in the GUI and written in logs): a user name or password in one
is refused, with where to put them instead.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from urllib.parse import unquote, urlsplit, urlunsplit

from scitq_bench.exceptions import InvalidInput

OBJECT_SCHEMES = ("s3", "azure", "ftp", "ftps")
SCHEMES = ("file", "http", "https", "server", *OBJECT_SCHEMES)
READ_ONLY = ("http", "https")
MANIFEST = ".scitq-bench-manifest.json"  # written last in an uploaded folder


@dataclass(frozen=True)
class Location:
    """A parsed storage URI. ``root`` is what one store serves (a bucket, an account's
    container, an FTP host, "" for a file system or the server's store); ``key`` the
    path inside it, without a leading "/" (a folder's key ends with "/")."""

    scheme: str
    root: str
    key: str
    query: str = ""  # http(s) only: a signed URL's parameters

    @property
    def is_folder(self) -> bool:
        return self.key == "" or self.key.endswith("/")

    @property
    def name(self) -> str:
        """The last part of the key: a file's name, or a folder's."""
        return self.key.rstrip("/").rsplit("/", 1)[-1]

    def child(self, relative: str) -> Location:
        """The location ``relative`` (a "/"-separated path) under this folder."""
        base = self.key if self.is_folder else self.key + "/"
        return replace(self, key=base + relative.lstrip("/"))

    def as_folder(self) -> Location:
        return self if self.is_folder else replace(self, key=self.key + "/")

    def uri(self) -> str:
        """The URI text (with an http(s) query, which may hold a signature)."""
        if self.scheme == "file":
            return "file:///" + self.key
        if self.scheme == "server":
            return "server://" + self.key
        return urlunsplit((self.scheme, self.root, "/" + self.key, self.query, ""))

    def redacted(self) -> str:
        """The URI fit for messages and logs: no query (a signed URL's secret)."""
        return replace(self, query="").uri()

    def __str__(self) -> str:
        return self.redacted()


def parse_location(text: str, field: str = "uri") -> Location:
    """Parse a storage URI; errors name ``field`` and what is wrong."""
    if not isinstance(text, str) or not text.strip():
        raise InvalidInput(f"{field}: empty URI")
    text = text.strip()
    parts = urlsplit(text)
    scheme = parts.scheme.lower()
    if scheme not in SCHEMES:
        raise InvalidInput(
            f"{field}: unsupported URI scheme {parts.scheme or '(none)'!r} in {text!r}; "
            f"use one of {', '.join(s + '://' for s in SCHEMES)}")
    if parts.username is not None or parts.password is not None:
        raise InvalidInput(
            f"{field}: {scheme}:// URI {redact(text)!r} carries credentials; give them to "
            "the worker instead (its storage settings file, the SDK's own configuration, "
            "or ~/.netrc for FTP), never in a URI", field=field)
    if scheme not in ("http", "https") and (parts.query or parts.fragment):
        raise InvalidInput(f"{field}: {scheme}:// URI {redact(text)!r} may not hold a query or "
                           "a fragment ('?', '#'); percent-encode them in names (%3F, %23)",
                           field=field)
    path = unquote(parts.path)
    if scheme == "file":
        if parts.netloc not in ("", "localhost") or not path.startswith("/"):
            raise InvalidInput(f"{field}: file URI {text!r} must hold an absolute path")
        return Location("file", "", _clean_key(path.lstrip("/"), text, field))
    if scheme == "server":
        key = _clean_key((parts.netloc + path).lstrip("/"), text, field)
        if not key.strip("/") and not text.endswith("/"):
            raise InvalidInput(f"{field}: server URI {text!r} has no path")
        return Location("server", "", key)
    if not parts.netloc:
        raise InvalidInput(f"{field}: URI {text!r} has no "
                           f"{'bucket' if scheme == 's3' else 'account' if scheme == 'azure' else 'host'}")
    if scheme in ("http", "https"):
        return Location(scheme, parts.netloc, path.lstrip("/"), parts.query)
    key = _clean_key(path.lstrip("/"), text, field)
    if scheme == "azure":
        container, _, blob = key.partition("/")
        if not container:
            raise InvalidInput(f"{field}: azure URI {text!r} names no container "
                               "(azure://account/container/path)")
        return Location("azure", f"{parts.netloc}/{container}", blob)
    if scheme == "s3" and not _valid_bucket(parts.netloc):
        raise InvalidInput(f"{field}: {parts.netloc!r} is not a valid S3 bucket name in {text!r}")
    return Location(scheme, parts.netloc, key)


def _clean_key(key: str, text: str, field: str) -> str:
    parts = key.split("/")
    if any(part in (".", "..") for part in parts) or "\x00" in key:
        raise InvalidInput(f"{field}: URI {text!r} may not contain '.', '..' or NUL parts")
    if any(part == "" for part in parts[:-1]):
        raise InvalidInput(f"{field}: URI {text!r} has an empty path part ('//')")
    return key


def _valid_bucket(name: str) -> bool:
    return 3 <= len(name) <= 63 and all(c.islower() or c.isdigit() or c in "-." for c in name)


def redact(text: str) -> str:
    """Any URI fit for messages and logs: no user:password, no query (signed URLs)."""
    parts = urlsplit(text)
    netloc = parts.netloc.rsplit("@", 1)[-1]
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))
