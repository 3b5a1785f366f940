"""A memory store that cannot be used never ends a session, and is never overwritten silently.

* Before Chroma opens a store, :func:`set_aside_if_broken` checks its database file. One that
  is empty or not a SQLite database (Chroma would quietly start a new one on top of it) is
  moved aside, whole folder, and the notice says where it went.
* When the store still cannot be opened or written, the chat goes on without memory and
  :func:`describe_fault` names the file and the fix in one line.
"""

from __future__ import annotations

import errno
from datetime import UTC, datetime
from pathlib import Path

__all__ = ["DATABASE_FILE", "describe_fault", "memory_notice", "set_aside_if_broken"]

DATABASE_FILE = "chroma.sqlite3"
_SQLITE_HEADER = b"SQLite format 3\x00"
_DISK_FULL_WORDS = ("database or disk is full", "no space left", "error in compaction")


def set_aside_if_broken(store: Path) -> str | None:
    """Move ``store`` aside when its database is empty or not SQLite; the notice, or None."""
    database = store / DATABASE_FILE
    try:
        if not database.is_file():
            return None
        with database.open("rb") as handle:
            head = handle.read(len(_SQLITE_HEADER))
    except OSError:
        return None  # unreadable: opening it reports that, with the file's name
    if head == _SQLITE_HEADER:
        return None
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    aside = store.with_name(f"{store.name}.broken-{stamp}")
    what = "empty" if not head else "not a SQLite database"
    try:
        store.rename(aside)
    except OSError as exc:
        return f"the memory store {database} is {what} and could not be moved aside ({exc.strerror or exc}); memory may be empty"
    return f"the memory store {database} was {what}; it was moved to {aside} and memory starts afresh"


def describe_fault(exc: BaseException, store: Path) -> str:
    """One line: what went wrong with the store, which file, and what to do."""
    database = store / DATABASE_FILE
    text = " ".join(str(exc).split()).lower()
    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC or any(w in text for w in _DISK_FULL_WORDS):
        return f"the disk holding {database} is full; free some space (memory is off until then)"
    if isinstance(exc, PermissionError):
        return f"cannot open {database}: permission denied; check the folder's owner and mode"
    detail = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
    return f"cannot use the memory store {database} ({type(exc).__name__}: {detail}); move {store} aside to start a fresh one"


def memory_notice(what: str, memory: object, exc: BaseException) -> str:
    """``memory <what>: <the fault>`` for a turn or run that goes on without memory."""
    from persona_runtime.secrets import redact

    store = getattr(memory, "root", None)
    server = getattr(memory, "server", None)
    if server is not None:  # MemoryServerDown says which server and what happens now
        detail = " ".join(str(exc).split()) if type(exc).__name__ == "MemoryServerDown" else f"{type(exc).__name__}: {exc}"
        return f"memory {what}: {redact(detail, server.secrets)}"
    detail = describe_fault(exc, store) if store is not None else f"{type(exc).__name__}: {exc}"
    return f"memory {what}: {redact(detail)}"
