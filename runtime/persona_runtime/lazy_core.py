"""persona-core's ``persona.backends`` package, with its ``__init__`` run on first use.

``persona/backends/__init__.py`` imports every provider backend, and with them the OpenAI and
Anthropic SDKs and httpx: ~1 s of start-up and ~40 MiB resident, measured. A chat on the
bundled local model needs only two of its submodules (``types``, ``errors``), and Python runs a
package's ``__init__`` before any submodule. So a meta-path finder hands out the package with
its ``__init__`` deferred: importing ``persona.backends.types`` works at once, and the first
read of a name the ``__init__`` defines (``from persona.backends import load_backend``) runs it,
exactly once, whichever thread asks. Nothing changes for code that uses the package.
"""

from __future__ import annotations

import sys
import threading
from typing import Any

__all__ = ["DEFERRED_PACKAGES", "install"]

DEFERRED_PACKAGES = frozenset({"persona.backends"})


class _DeferredInitLoader:
    """Wraps the package's own loader: ``exec_module`` only plants a module ``__getattr__``."""

    def __init__(self, loader: Any) -> None:
        self._loader = loader
        self._lock = threading.RLock()
        self._state = "deferred"  # -> "running" -> "done"

    def create_module(self, spec: Any) -> Any:
        return self._loader.create_module(spec)

    def exec_module(self, module: Any) -> None:
        def __getattr__(name: str) -> Any:
            return self._first_use(module, name)

        module.__getattr__ = __getattr__

    def _first_use(self, module: Any, name: str) -> Any:
        if name.startswith("__") and name.endswith("__") and name != "__all__":
            raise AttributeError(name)  # dunder probes (copy, pickle, inspect) need no SDKs
        with self._lock:
            if self._state == "deferred":
                self._state = "running"
                try:
                    self._loader.exec_module(module)
                except BaseException:
                    self._state = "deferred"  # the next use retries and raises the real error
                    raise
                self._state = "done"
                module.__dict__.pop("__getattr__", None)
            # "running" here means this thread is inside the __init__ (a circular import): the
            # name is simply not defined yet, as it would not be with an ordinary import.
        try:
            return module.__dict__[name]
        except KeyError:
            raise AttributeError(f"module {module.__name__!r} has no attribute {name!r}") from None


class _DeferringFinder:
    def find_spec(self, name: str, path: Any = None, target: Any = None) -> Any:
        if name not in DEFERRED_PACKAGES:
            return None
        for finder in sys.meta_path:
            if isinstance(finder, _DeferringFinder):
                continue
            find = getattr(finder, "find_spec", None)
            spec = find(name, path, target) if find is not None else None
            if spec is not None:
                if spec.loader is not None and hasattr(spec.loader, "exec_module"):
                    spec.loader = _DeferredInitLoader(spec.loader)
                return spec
        return None


def install() -> None:
    """Idempotent. Only packages not imported yet are deferred."""
    if not any(isinstance(finder, _DeferringFinder) for finder in sys.meta_path):
        sys.meta_path.insert(0, _DeferringFinder())
