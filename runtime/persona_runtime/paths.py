"""Where persona keeps its data.

``PERSONA_HOME`` wins; otherwise the platform's user data directory (via
platformdirs). Nothing is ever written into the current directory by default.
Directories are created 0700 and data files 0600: turn logs, memory and run
records are private to the person running the app.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

__all__ = [
    "DataPaths", "data_dir_from_env", "data_home", "ensure_private_dir", "platform_data_dir", "prepare_data_dir",
    "tighten_private", "write_private_json", "write_private_npz",
]

APP_NAME = "persona"


def data_home(env: Mapping[str, str] | None = None) -> Path:
    """The data directory (``PERSONA_HOME``, else the platform's), without creating it."""
    override = data_dir_from_env(env)
    return override if override is not None else platform_data_dir()


def data_dir_from_env(env: Mapping[str, str] | None = None) -> Path | None:
    """``PERSONA_HOME``, or None when unset (the platform's user data directory).

    Parsed here, not in :mod:`persona_runtime.settings` (which uses it), so that `persona logs
    tail` finds the log without importing the settings."""
    override = (os.environ if env is None else env).get("PERSONA_HOME", "").strip()
    return Path(override).expanduser() if override else None


def platform_data_dir() -> Path:
    """The platform's user data directory for persona (Linux: ~/.local/share/persona)."""
    import platformdirs  # deferred: only paid by commands that touch data

    return Path(platformdirs.user_data_dir(APP_NAME, appauthor=False))


def ensure_private_dir(path: Path, *, tighten_existing: bool = True) -> Path:
    """Create ``path`` (and parents) with mode 0700. An existing directory is tightened only
    when ``tighten_existing`` and it is a real directory of ours (not a symlink, owned by us):
    the app changes no permission it did not create (``PERSONA_HOME=/tmp`` keeps its 1777)."""
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    if tighten_existing:
        _tighten(path)
    return path


def write_private_json(path: Path, data: object) -> None:
    """Write ``data`` as JSON to ``path`` (0600), whole or not at all: a crash leaves the old file."""
    import json

    _write_whole(path, "w", lambda handle: json.dump(data, handle, ensure_ascii=False, indent=1))


def write_private_npz(path: Path, meta: object, arrays: Mapping[str, object]) -> None:
    """``meta`` (as JSON) and float32 ``arrays`` in one ``.npz`` at ``path`` (0600), whole or not at all."""
    import json

    from persona_runtime.shared_imports import import_numpy

    np = import_numpy()
    vectors = {k: np.asarray(v, dtype=np.float32) for k, v in arrays.items()}
    _write_whole(path, "wb", lambda handle: np.savez(handle, meta=np.array(json.dumps(meta)), **vectors))


def _write_whole(path: Path, mode: str, write: Callable[[Any], object]) -> None:
    """Write through a 0600 temporary file renamed over ``path``; a failure (a full disk) leaves
    the old file and no temporary one."""
    tmp = path.with_suffix(".tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, mode, **({"encoding": "utf-8"} if "b" not in mode else {})) as handle:
            write(handle)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _tighten(path: Path) -> None:
    try:
        st = path.lstat()  # never through a symlink
        if stat.S_ISDIR(st.st_mode) or stat.S_ISREG(st.st_mode):
            if st.st_uid == os.getuid() and st.st_mode & 0o077:
                path.chmod(stat.S_IMODE(st.st_mode) & 0o700)
    except OSError:
        pass  # not ours to change (e.g. a shared mount); writes still go through


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

    def server_memory(self, server_key: str) -> Path:
        """What is kept here about memory on a server (the indexing markers), per server."""
        return self.root / "memory" / f"server-{server_key}"

    def memory_queue(self, server_key: str) -> Path:
        """Memory writes waiting for the server (one JSONL per persona), per server."""
        return self.root / "memory-queue" / server_key

    @property
    def audit(self) -> Path:
        return self.root / "audit"

    @property
    def runs(self) -> Path:
        """Agent run records (one JSON file per run)."""
        return self.root / "runs"

    @property
    def conversations(self) -> Path:
        """Chat conversations: ``<persona_id>/<conversation_id>.jsonl``, append-only (created on first use)."""
        return self.root / "conversations"

    @property
    def prompt_cache(self) -> Path:
        """What local models read of each persona's system message (created on first use)."""
        return self.root / "cache" / "prompt"

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
        # The root may be a directory the person already had (PERSONA_HOME=/tmp, ~/data):
        # created private if new, otherwise left as it is. Our folders inside it are tightened.
        ensure_private_dir(self.root, tighten_existing=False)
        for d in dirs:
            ensure_private_dir(d)


def prepare_data_dir(paths: DataPaths | None = None) -> DataPaths:
    """Create the data directory's folders (private) and prove it is writable.

    Also makes everything this process creates from now on private (see :func:`_private_umask`).
    An unwritable directory is a one-line :class:`~persona_runtime.errors.DataDirError`."""
    paths = paths if paths is not None else DataPaths()
    _private_umask()
    try:
        paths.ensure(paths.logs, paths.runs, paths.history, paths.audit, paths.workspace)
        probe = paths.logs / ".write-test"
        probe.write_text("")
        probe.unlink()
        if paths.turn_log.exists() and not paths.turn_log.is_file():
            from persona_runtime.errors import DataDirError

            raise DataDirError(f"the turn log {paths.turn_log} is not a file; move it aside and start again")
    except OSError as exc:
        from persona_runtime.errors import DataDirError

        raise DataDirError(
            f"the data directory {paths.root} is not writable ({exc.strerror or exc}); set PERSONA_HOME to a writable directory"
        ) from None
    return paths


def _private_umask() -> None:
    """Everything this process creates is private (files 0600, directories 0700).

    Our own writes already ask for those modes, but Chroma (its sqlite file and vector
    segments, created lazily as memory grows), persona-core's audit log and loguru's
    rotated files are created by code we do not control, with the default umask (0644).
    Adding 077 to the umask covers them all, whenever they are created."""
    os.umask(os.umask(0o077) | 0o077)


def tighten_private(root: Path) -> None:
    """Drop group/other bits under ``root``: data written by an older version, before the umask.
    Symlinks are never followed (a ``root`` that is one is left alone), and only files and
    directories we own are changed."""
    try:
        if stat.S_ISLNK(root.lstat().st_mode) or not root.is_dir():
            return
    except OSError:
        return
    for path in (root, *root.rglob("*")):  # rglob does not descend into symlinked directories
        _tighten(path)
