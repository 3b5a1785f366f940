"""The turn log: one JSON line per turn (or agent step) in ``<data>/logs/turns.jsonl``.

Split by job:

- :mod:`.record`: the ``TurnLog`` record (pydantic models) and ``new_id``.
- :mod:`.files`: where the live file and its rotated siblings are; ``PERSONA_LOG_KEEP``.
- :mod:`.writer`: ``JSONLTurnLogWriter`` (flock, rotation, pruning), ``MemoryTurnLogWriter``.
- :mod:`.query`: filters, ``tail`` (backwards from the end) and ``iter_records`` (forwards).
- :mod:`.follow`: ``follow``, live, across rotation.
- :mod:`.stats`: ``stats`` and ``percentile``.
- :mod:`.index`, :mod:`.index_cells`, :mod:`.index_query`: an SQLite index beside the log
  (``turns.index.sqlite``) that ``logs stats`` and filtered ``logs list`` answer from; derived
  from the JSONL, synced by the readers, and never trusted over it.

The readers import only the standard library, so ``persona logs tail`` never pays for
pydantic; the writer never imports the readers. Names are re-exported lazily (PEP 562),
so importing one module does not load the others. ``follow`` and ``stats`` are not
re-exported: as package attributes they name the submodules (``turnlog.follow.follow``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from persona_runtime._lazy import lazy_exports

_RECORD = "persona_runtime.turnlog.record"
_FILES = "persona_runtime.turnlog.files"
_WRITER = "persona_runtime.turnlog.writer"
_QUERY = "persona_runtime.turnlog.query"
_STATS = "persona_runtime.turnlog.stats"

_EXPORTS = {
    "SCHEMA_VERSION": _RECORD,
    "AttemptRecord": _RECORD,
    "ToolCallRecord": _RECORD,
    "TurnLog": _RECORD,
    "new_id": _RECORD,
    "DEFAULT_KEEP": _FILES,
    "DEFAULT_MAX_BYTES": _FILES,
    "keep_from_env": _FILES,
    "log_files": _FILES,
    "rotated_files": _FILES,
    "JSONLTurnLogWriter": _WRITER,
    "MemoryTurnLogWriter": _WRITER,
    "TurnLogWriter": _WRITER,
    "LogFilter": _QUERY,
    "ReadCounter": _QUERY,
    "TailResult": _QUERY,
    "is_fallback": _QUERY,
    "iter_records": _QUERY,
    "parse_since": _QUERY,
    "parse_timestamp": _QUERY,
    "tail": _QUERY,
    "StatsRow": _STATS,
    "percentile": _STATS,
}

__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())

if TYPE_CHECKING:
    from persona_runtime.turnlog.files import DEFAULT_KEEP, DEFAULT_MAX_BYTES, keep_from_env, log_files, rotated_files
    from persona_runtime.turnlog.query import (
        LogFilter,
        ReadCounter,
        TailResult,
        is_fallback,
        iter_records,
        parse_since,
        parse_timestamp,
        tail,
    )
    from persona_runtime.turnlog.record import SCHEMA_VERSION, AttemptRecord, ToolCallRecord, TurnLog, new_id
    from persona_runtime.turnlog.stats import StatsRow, percentile
    from persona_runtime.turnlog.writer import JSONLTurnLogWriter, MemoryTurnLogWriter, TurnLogWriter
