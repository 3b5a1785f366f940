"""Which faults of chromadb's HTTP client mean "server unreachable", and its missing timeouts.

chromadb's ``FastAPI`` client opens its httpx session with ``timeout=None``: a server that
accepts the connection and never answers would hang a turn forever. :func:`set_timeouts` puts
a connect and a read timeout on the session of a client once it is made. Imported only when
memory is on a server.
"""

from __future__ import annotations

from typing import Any

import httpx

__all__ = ["is_unreachable", "set_timeouts"]


def set_timeouts(client: Any, timeout: httpx.Timeout) -> None:
    """Bound every request of ``client`` (chromadb's HTTP client; its admin client shares the session)."""
    session = getattr(getattr(client, "_server", None), "_session", None)
    if not isinstance(session, httpx.Client):
        raise RuntimeError("this chromadb version has no httpx session to bound; memory on a server needs chromadb 1.5")
    session.timeout = timeout


_UNREACHABLE_WORDS = ("could not connect to a chroma server", "service unavailable", "bad gateway", "gateway timeout")


def is_unreachable(exc: BaseException) -> bool:
    """True when ``exc`` (or what caused it) says the server could not be reached or answered
    a gateway error: memory then waits for it (queued writes), rather than being broken."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, httpx.TransportError | ConnectionRefusedError | TimeoutError):
            return True
        if isinstance(current, httpx.HTTPStatusError) and current.response.status_code in (502, 503, 504):
            return True
        text = str(current).lower()
        if any(word in text for word in _UNREACHABLE_WORDS):
            return True
        current = current.__cause__ or current.__context__
    return False
