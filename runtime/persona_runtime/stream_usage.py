"""Usage in the stream from OpenAI-compatible servers, and servers that reject asking for it.

persona-core's openai backend asks every streamed request for usage
(``stream_options: {"include_usage": true}``). Most servers honour it; some ignore it (and
send no usage: the engine then counts the tokens itself and marks them estimated); a few
strict ones reject the unknown field with a 400. For those, :func:`guard_stream_options`
wraps the backend's OpenAI client so such a request is sent again, once, without the
option, and the server's base URL is remembered (:class:`StreamOptionsMemory`, one per
tier registry, so one per session): its later requests leave the option out from the
start. None of this is a failure the person sees.
"""

from __future__ import annotations

import threading
from typing import Any

__all__ = ["StreamOptionsMemory", "guard_stream_options", "rejects_stream_options"]

OPTION = "stream_options"
#: What a 400/422 says when the server rejects the option (or an unknown field in general).
_REJECTION_HINTS = (
    "stream_options",
    "include_usage",
    "unknown field",
    "unrecognized",
    "unrecognised",
    "extra inputs are not permitted",
    "extra fields not permitted",
    "additional properties",
    "unexpected keyword",
)


class StreamOptionsMemory:
    """The servers (by base URL) that rejected ``stream_options`` in this session."""

    def __init__(self) -> None:
        self._rejected: set[str] = set()
        self._lock = threading.Lock()

    def rejected(self, key: str) -> bool:
        with self._lock:
            return key in self._rejected

    def remember(self, key: str) -> None:
        with self._lock:
            self._rejected.add(key)


def rejects_stream_options(exc: BaseException) -> bool:
    """A 400 or 422 whose message names the option, or an unknown field."""
    if getattr(exc, "status_code", None) not in (400, 422):
        return False
    text = f"{exc} {getattr(exc, 'body', '') or ''}".lower()
    return any(hint in text for hint in _REJECTION_HINTS)


def guard_stream_options(backend: Any, key: str, memory: StreamOptionsMemory) -> bool:
    """Wrap ``backend``'s OpenAI client (persona-core keeps it in ``_openai``); False when the
    backend has none (anthropic, a local model, a test double)."""
    client = getattr(backend, "_openai", None)
    if client is None or not type(client).__module__.startswith("openai"):
        return False  # no client, or already wrapped
    backend._openai = _Client(client, _Completions(client.chat.completions, key, memory))
    return True


class _Completions:
    """``client.chat.completions`` with a ``create`` that drops the option where it is rejected."""

    def __init__(self, inner: Any, key: str, memory: StreamOptionsMemory) -> None:
        self._inner, self._key, self._memory = inner, key, memory

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    async def create(self, **kwargs: Any) -> Any:
        if OPTION not in kwargs:
            return await self._inner.create(**kwargs)
        without = {k: v for k, v in kwargs.items() if k != OPTION}
        if self._memory.rejected(self._key):
            return await self._inner.create(**without)
        try:
            return await self._inner.create(**kwargs)
        except Exception as exc:
            if not rejects_stream_options(exc):
                raise
        # Rejected before anything was streamed: ask once more without it. If that fails
        # too, the option was not the problem: its error is the one that counts.
        result = await self._inner.create(**without)
        self._memory.remember(self._key)
        return result


class _Chat:
    def __init__(self, inner: Any, completions: _Completions) -> None:
        self._inner, self.completions = inner, completions

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


class _Client:
    """The SDK client, but for ``chat.completions.create``; everything else (``close``,
    ``with_options``, ...) is the client's own."""

    def __init__(self, inner: Any, completions: _Completions) -> None:
        self._inner = inner
        self.chat = _Chat(inner.chat, completions)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)
