"""An httpx transport that reports a failed or broken-off POST (streamable HTTP's requests).

When a server dies in the middle of a call, the SDK's streamable-HTTP client logs the broken
response stream at debug level and leaves the request waiting for an answer that cannot come.
This transport sees the fault first and tells the connection, which fails the calls in flight.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx

__all__ = ["watched_transport"]

OnFault = Callable[[Exception], None]


def watched_transport(on_fault: OnFault, *, trust_env: bool = True) -> httpx.AsyncBaseTransport:
    return _WatchedTransport(httpx.AsyncHTTPTransport(trust_env=trust_env), on_fault)


class _WatchedTransport(httpx.AsyncBaseTransport):
    def __init__(self, inner: httpx.AsyncBaseTransport, on_fault: OnFault) -> None:
        self._inner = inner
        self._on_fault = on_fault

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        watched = request.method == "POST"  # the GET stream is long-lived and reconnects on its own
        try:
            response = await self._inner.handle_async_request(request)
        except Exception as exc:
            if watched:
                self._on_fault(exc)
            raise
        if watched:
            response.stream = _WatchedStream(response.stream, self._on_fault)  # type: ignore[arg-type]
        return response

    async def aclose(self) -> None:
        await self._inner.aclose()


class _WatchedStream(httpx.AsyncByteStream):
    def __init__(self, inner: Any, on_fault: OnFault) -> None:
        self._inner = inner
        self._on_fault = on_fault

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._inner:
                yield chunk
        except Exception as exc:
            self._on_fault(exc)
            raise

    async def aclose(self) -> None:
        await self._inner.aclose()
