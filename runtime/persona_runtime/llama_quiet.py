"""Silence llama.cpp without touching the process's stdout and stderr.

llama-cpp-python, built with ``verbose=False``, quiets a model load in two ways, both harmful in
an app that is doing other things at the same time:

* it points file descriptors 1 and 2 at /dev/null for the length of the load (``dup2``), for
  the whole process: whatever another thread writes meanwhile (the REPL's prompt, a notice on
  stderr) is lost;
* llama.cpp's log lines go to a Python callback that drops them, and every call takes the GIL:
  with another thread running Python (memory loading, imports), each of the load's log lines
  waits for it, and the load took 0.8 s instead of 0.2 s (measured).

:func:`quiet_llama_cpp` gives llama.cpp a log callback that is a C function doing nothing, and
makes llama-cpp-python's redirection a no-op. Called before a model is opened; idempotent.
"""

from __future__ import annotations

import ctypes
import threading
from typing import Any

__all__ = ["quiet_llama_cpp"]

_lock = threading.Lock()
_callback: Any = None  # kept alive: llama.cpp holds the pointer


class _KeepStreams:
    """Stands in for llama-cpp-python's ``suppress_stdout_stderr``: leaves fds 1 and 2 alone."""

    def __init__(self, disable: bool = True) -> None:
        pass

    def __enter__(self) -> _KeepStreams:
        return self

    def __exit__(self, *exc: object) -> None:
        return None


def quiet_llama_cpp() -> None:
    global _callback
    with _lock:
        if _callback is not None:
            return
        import llama_cpp
        import llama_cpp._internals
        import llama_cpp.llama
        import llama_cpp.llama_chat_format

        for module in (llama_cpp.llama, llama_cpp._internals, llama_cpp.llama_chat_format):
            if hasattr(module, "suppress_stdout_stderr"):
                module.suppress_stdout_stderr = _KeepStreams
        # libc's getpid as a ggml_log_callback(level, text, user_data): it ignores its arguments
        # (passed in registers, the caller cleans up), has no effect and needs no GIL.
        try:
            _callback = ctypes.cast(ctypes.CDLL(None).getpid, llama_cpp.llama_log_callback)
        except (OSError, AttributeError):  # no C library to borrow from: keep the Python callback
            _callback = False
            return
        llama_cpp.llama_log_set(_callback, ctypes.c_void_p(0))
