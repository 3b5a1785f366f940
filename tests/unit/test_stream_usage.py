"""Asking for usage in the stream (``stream_options``) without breaking servers that reject it:
one retry without the option, remembered per base URL for the session (in-process doubles;
the real openai client against a scripted server is in tests/integration/test_usage_estimates.py)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from persona_runtime.stream_usage import StreamOptionsMemory, guard_stream_options, rejects_stream_options


class StatusError(Exception):
    def __init__(self, status_code: int, message: str) -> None:
        super().__init__(message)
        self.status_code = status_code


class FakeCompletions:
    """Fails the first ``failures`` calls that carry ``stream_options`` with ``error``."""

    def __init__(self, error: Exception | None = None, failures: int = 1, retry_error: Exception | None = None) -> None:
        self.calls: list[dict[str, Any]] = []
        self.error, self.failures, self.retry_error = error, failures, retry_error

    async def create(self, **kwargs: Any) -> str:
        self.calls.append(kwargs)
        if "stream_options" in kwargs and self.error is not None and self.failures > 0:
            self.failures -= 1
            raise self.error
        if "stream_options" not in kwargs and self.retry_error is not None:
            raise self.retry_error
        return "stream"


def openai_backend(completions: FakeCompletions) -> Any:
    """A backend whose ``_openai`` looks like the SDK's client (its class's module is openai's)."""
    client_type = type("AsyncOpenAI", (), {"__module__": "openai._client", "close": lambda self: "closed"})
    client = client_type()
    client.chat = type("Chat", (), {})()
    client.chat.completions = completions
    return type("Backend", (), {"_openai": client})()


REQUEST = {"model": "m", "messages": [], "stream": True, "stream_options": {"include_usage": True}}


def create(backend: Any, **kwargs: Any) -> Any:
    return asyncio.run(backend._openai.chat.completions.create(**kwargs))


@pytest.mark.parametrize(
    ("status", "message", "rejects"),
    [
        (400, "Unrecognized request argument supplied: stream_options", True),
        (400, "1 validation error: stream_options.include_usage: Extra inputs are not permitted", True),
        (422, "unknown field `stream_options`", True),
        (400, "model 'x' not found", False),
        (500, "stream_options broke the server", False),
        (429, "rate limited", False),
    ],
)
def test_which_errors_are_a_rejected_option(status: int, message: str, rejects: bool) -> None:
    assert rejects_stream_options(StatusError(status, message)) is rejects


def test_a_rejected_option_is_retried_once_without_and_remembered_for_that_url() -> None:
    memory = StreamOptionsMemory()
    completions = FakeCompletions(StatusError(400, "Unrecognized request argument supplied: stream_options"))
    backend = openai_backend(completions)
    assert guard_stream_options(backend, "http://127.0.0.1:1/v1", memory)
    assert create(backend, **REQUEST) == "stream"
    assert ["stream_options" in c for c in completions.calls] == [True, False]
    assert memory.rejected("http://127.0.0.1:1/v1") and not memory.rejected("http://127.0.0.1:2/v1")
    assert create(backend, **REQUEST) == "stream"  # remembered: sent without it at once
    assert ["stream_options" in c for c in completions.calls] == [True, False, False]
    assert backend._openai.close() == "closed"  # everything else is the client's own
    assert not guard_stream_options(backend, "again", memory)  # never wrapped twice


def test_other_errors_are_not_retried_and_a_failed_retry_is_not_remembered() -> None:
    memory = StreamOptionsMemory()
    other = FakeCompletions(StatusError(400, "model 'x' not found"))
    backend = openai_backend(other)
    guard_stream_options(backend, "u", memory)
    with pytest.raises(StatusError, match="not found"):
        create(backend, **REQUEST)
    assert len(other.calls) == 1 and not memory.rejected("u")

    both = FakeCompletions(StatusError(400, "unknown field stream_options"), retry_error=StatusError(400, "bad messages"))
    backend = openai_backend(both)
    guard_stream_options(backend, "u", memory)
    with pytest.raises(StatusError, match="bad messages"):  # the retry's own error counts
        create(backend, **REQUEST)
    assert len(both.calls) == 2 and not memory.rejected("u")


def test_requests_without_the_option_and_other_backends_are_untouched() -> None:
    memory = StreamOptionsMemory()
    completions = FakeCompletions(StatusError(400, "stream_options"))
    backend = openai_backend(completions)
    guard_stream_options(backend, "u", memory)
    plain = {"model": "m", "messages": []}
    assert create(backend, **plain) == "stream" and completions.calls == [plain]
    assert not guard_stream_options(type("Local", (), {})(), "u", memory)
    assert not guard_stream_options(type("Anthropic", (), {"_openai": None})(), "u", memory)
