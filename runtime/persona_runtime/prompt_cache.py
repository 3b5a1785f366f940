"""What a local model has read of a persona's system message, kept on disk between launches.

Every chat with a persona starts with the same system message, and on two CPU cores the bundled
model reads it at ~175 tokens/s: a ~350-token persona is ~2 s before the first reply of every
launch. llama.cpp can hand out what it has read (its KV cache) and take it back, so the first
launch saves it and later ones load it in milliseconds (like llama.cpp's own ``--prompt-cache``).

One file per (model file, exact token sequence) in ``<data dir>/cache/prompt``: a header, the
tokens, then llama.cpp's state bytes. A file is used only when its tokens equal the ones asked
for, its model and llama.cpp version match and its state bytes hash to what was written: llama.cpp
would take altered bytes of the right size and answer from a garbled cache. Anything else (torn,
foreign, stale, altered) is ignored and replaced. The folder is private and kept under ``MAX_BYTES`` (oldest files go first).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import struct
from array import array
from dataclasses import dataclass
from pathlib import Path

__all__ = ["MAX_BYTES", "PromptCache", "model_identity"]

MAGIC = b"PERSONA-KV2\n"
MAX_BYTES = 256 * 1024 * 1024  # ~30 personas' system messages on the bundled model
_HEADER = struct.Struct("<32sI32s")  # identity digest, token count, the state's sha256


def model_identity(path: Path) -> bytes:
    """What a cache file must have been made with: this model file (path, size, mtime) and this
    llama.cpp build. Anything else and the bytes would not be a valid state for it."""
    from importlib.metadata import version

    st = path.stat()
    text = f"{path.resolve()}\0{st.st_size}\0{st.st_mtime_ns}\0llama-cpp-python {version('llama-cpp-python')}"
    return hashlib.sha256(text.encode()).digest()


@dataclass(frozen=True)
class PromptCache:
    """``directory`` is created (private) on the first save."""

    directory: Path
    max_bytes: int = MAX_BYTES

    def _file(self, identity: bytes, tokens: list[int]) -> Path:
        digest = hashlib.sha256(identity + array("i", tokens).tobytes()).hexdigest()[:32]
        return self.directory / f"{digest}.kv"

    def load(self, identity: bytes, tokens: list[int]) -> memoryview | None:
        """The state saved for exactly these tokens on this model, or None. Read into one
        writable buffer that llama.cpp reads in place: a state is ~17 MB for Astrid, and each
        copy of it was part of the session's peak memory."""
        path = self._file(identity, tokens)
        try:
            with path.open("rb") as handle:
                data = bytearray(os.fstat(handle.fileno()).st_size)
                if handle.readinto(data) != len(data):
                    return None
            os.utime(path)  # recently used: trimmed last
        except OSError:
            return None
        head = len(MAGIC) + _HEADER.size
        if len(data) < head or not data.startswith(MAGIC):
            return None
        saved_identity, count, digest = _HEADER.unpack_from(data, len(MAGIC))
        body = head + 4 * count
        if saved_identity != identity or count != len(tokens) or len(data) <= body:
            return None
        saved = array("i")
        saved.frombytes(data[head:body])
        if saved.tolist() != tokens:
            return None
        state = memoryview(data)[body:]
        return state if hashlib.sha256(state).digest() == digest else None

    def save(self, identity: bytes, tokens: list[int], state: bytes | memoryview) -> None:
        """Write atomically (a reader never sees half a file); a full disk or a read-only data
        directory only means the next launch reads the prompt again."""
        from persona_runtime.paths import ensure_private_dir

        target = self._file(identity, tokens)
        partial = target.with_name(f".{target.name}.{os.getpid()}")
        try:
            ensure_private_dir(self.directory)
            fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as out:
                header = _HEADER.pack(identity, len(tokens), hashlib.sha256(state).digest())
                out.write(MAGIC + header + array("i", tokens).tobytes())
                out.write(state)
            os.replace(partial, target)
        except OSError:
            with contextlib.suppress(OSError):
                partial.unlink()
            return
        self._trim(keep=target)

    def _trim(self, keep: Path) -> None:
        try:
            files = [(path, path.stat()) for path in self.directory.glob("*.kv")]
        except OSError:
            return
        total = sum(st.st_size for _, st in files)
        for path, st in sorted(files, key=lambda f: f[1].st_mtime_ns):
            size = st.st_size
            if total <= self.max_bytes:
                break
            if path != keep:
                path.unlink(missing_ok=True)
                total -= size
