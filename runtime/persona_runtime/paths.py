"""Where persona keeps its data.

``PERSONA_HOME`` wins; otherwise the platform's user data directory (via
platformdirs). Nothing is ever written into the current directory by default.
Directories are created 0700 and data files 0600: turn logs, memory and run
records are private to the person running the app.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["DataPaths", "data_home", "ensure_private_dir"]

APP_NAME = "persona"


def data_home(env: dict[str, str] | None = None) -> Path:
    """The data directory, without creating it."""
    source = os.environ if env is None else env
    override = source.get("PERSONA_HOME", "").strip()
    if override:
        return Path(override).expanduser()
    import platformdirs  # deferred: only paid by commands that touch data

    return Path(platformdirs.user_data_dir(APP_NAME, appauthor=False))


def ensure_private_dir(path: Path) -> Path:
    """Create ``path`` (and parents) with mode 0700; tighten it if it already exists."""
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        if path.stat().st_mode & 0o077:
            path.chmod(0o700)
    except OSError:
        pass  # not ours to change (e.g. a shared mount); writes still go through
    return path


class DataPaths:
    """The layout under the data directory. Creating a ``DataPaths`` writes nothing."""

    def __init__(self, root: Path | None = None) -> None:
        self.root = root if root is not None else data_home()

    @property
    def logs(self) -> Path:
        """Turn logs (JSONL, rotated by size)."""
        return self.root / "logs"

    @property
    def turn_log(self) -> Path:
        return self.logs / "turns.jsonl"

    def memory(self, embedder_key: str) -> Path:
        """Chroma store; keyed by embedder so vectors of different models never mix."""
        return self.root / "memory" / embedder_key

    @property
    def audit(self) -> Path:
        return self.root / "audit"

    @property
    def runs(self) -> Path:
        """Agent run records (one JSON file per run)."""
        return self.root / "runs"

    @property
    def history(self) -> Path:
        """Per-persona REPL input history."""
        return self.root / "history"

    @property
    def core_log(self) -> Path:
        """persona-core's own log output (loguru), kept off the terminal."""
        return self.logs / "persona-core.log"

    @property
    def workspace(self) -> Path:
        """Sandbox root for the file tools."""
        return self.root / "workspace"

    def ensure(self, *dirs: Path) -> None:
        ensure_private_dir(self.root)
        for d in dirs:
            ensure_private_dir(d)
