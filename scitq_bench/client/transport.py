"""What the client's method groups (``BenchClientMixin``, ``RecruitClientMixin``) need
from ``Client``: its one transport, typed once."""

from __future__ import annotations

from typing import IO, TYPE_CHECKING, Any

if TYPE_CHECKING:
    import requests


class Transport:
    """The transport of ``Client`` (``client/api.py``), which the mixins build on."""

    timeout: float

    def request(self, method: str, path: str, *, json: Any = None,
                params: dict[str, Any] | None = None, data: bytes | IO[bytes] | None = None,
                stream: bool = False, timeout: float | None = None,
                retry_for: float | None = None) -> requests.Response:
        raise NotImplementedError

    def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        raise NotImplementedError
