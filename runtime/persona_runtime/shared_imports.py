"""What a session's loader threads all import, imported first on one; numpy with OpenBLAS on one thread.

MiniLM's matrices are small (a handful of short texts at a time), so a second BLAS thread gains
little (12 texts: 0.39 s against 0.51 s alone), but OpenBLAS's threads spin while they wait, and
so do llama.cpp's. Side by side on two cores they starve each other: a first launch, indexing the
persona while the local model reads the system message, took 10.6 s to its first reply byte,
against 6.4 s with one BLAS thread (measured).

OpenBLAS reads ``OPENBLAS_NUM_THREADS`` once, when numpy loads it; the variable is set only for
that moment (a value the person set wins), so child processes (MCP servers, tools) do not inherit it.
"""

from __future__ import annotations

import os
import sys
import threading
from types import ModuleType

__all__ = ["BLAS_THREADS_VAR", "import_numpy", "warm_shared_imports"]

BLAS_THREADS_VAR = "OPENBLAS_NUM_THREADS"
_lock = threading.Lock()


def import_numpy() -> ModuleType:
    """``numpy``; if this is its first import, OpenBLAS runs on one thread."""
    if (numpy := sys.modules.get("numpy")) is not None:
        return numpy
    with _lock:
        ours = BLAS_THREADS_VAR not in os.environ
        if ours:
            os.environ[BLAS_THREADS_VAR] = "1"
        try:
            import numpy
        finally:
            if ours:
                os.environ.pop(BLAS_THREADS_VAR, None)
    return numpy


def warm_shared_imports() -> None:
    """Import, on one thread, what the model load, the embedder and memory all import: numpy and
    persona-core's pydantic models imported from several threads at once trip over
    half-initialised modules (seen: numpy)."""
    import_numpy()
    import persona.backends.errors  # noqa: F401 - pydantic, persona-core's base modules
    import persona.backends.types  # noqa: F401
