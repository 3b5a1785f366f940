"""Where the turn log lives on disk: one live file plus rotated siblings.

The writer renames a full ``turns.jsonl`` to ``turns-<UTC stamp>.jsonl`` and starts a new
one; readers span the rotated files oldest first, then the live file. Both sides take the
naming from here, so they cannot drift apart. Standard library only: the readers import it.
"""

from __future__ import annotations

import os
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

__all__ = [
    "DEFAULT_KEEP",
    "DEFAULT_MAX_BYTES",
    "keep_from_env",
    "log_files",
    "open_if_exists",
    "rotated_files",
    "rotated_name",
]

#: A live file is rotated once it reaches this size.
DEFAULT_MAX_BYTES = 64 * 1024 * 1024
#: Rotated files kept by default (``PERSONA_LOG_KEEP``): about 700 MiB with 64 MiB files.
DEFAULT_KEEP = 10


def keep_from_env() -> int:
    """How many rotated files to keep: ``PERSONA_LOG_KEEP`` (parsed in :mod:`persona_runtime.settings`)."""
    from persona_runtime.settings import log_keep_from_env

    return log_keep_from_env()


def rotated_name(path: Path) -> Path:
    """The name ``path`` gets when rotated now; the UTC stamp (to the microsecond) sorts by age."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    return path.with_name(f"{path.stem}-{stamp}{path.suffix}")


def _rotated_pattern(path: Path) -> re.Pattern[str]:
    return re.compile(rf"^{re.escape(path.stem)}-\d{{8}}T\d{{12}}Z{re.escape(path.suffix)}$")


def rotated_files(path: Path) -> list[Path]:
    """Rotated siblings of ``path``, oldest first (the UTC stamp sorts by name)."""
    path = Path(path)
    pattern = _rotated_pattern(path)
    try:
        names = [name for name in os.listdir(path.parent) if pattern.match(name)]
    except FileNotFoundError:
        return []
    return [path.parent / name for name in sorted(names)]


def log_files(path: Path) -> list[Path]:
    """Rotated files oldest to newest, then the live file (when it exists)."""
    path = Path(path)
    live = path.exists()  # before listing: a rotation in between then shows up in the list
    files = rotated_files(path)
    if live and path.exists():
        files.append(path)
    return files


def open_if_exists(path: Path) -> IO[bytes] | None:
    """``path`` opened for binary reading, or None when it is gone (rotated files get pruned)."""
    try:
        return open(path, "rb")
    except FileNotFoundError:
        return None
