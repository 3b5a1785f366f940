"""Loading a persona file: every way it can be wrong is one line that says what and where."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import TYPE_CHECKING

from persona_runtime.errors import PersonaFileError

if TYPE_CHECKING:
    from persona.schema.persona import Persona

__all__ = ["MAX_PERSONA_BYTES", "MAX_PERSONA_ID", "check_persona_id", "load_persona"]

MAX_PERSONA_BYTES = 1024 * 1024
#: persona ids name files (history, audit log, memory collections): letters, digits, ``_ . -``
#: and spaces, not starting with a dot or a space; never a path.
MAX_PERSONA_ID = 64
_PERSONA_ID = re.compile(r"[^\W_][\w .-]*", re.UNICODE)


def check_persona_id(persona_id: str) -> str | None:
    """Why ``persona_id`` cannot name a file (None when it can). Personas are shared files, so
    an id like ``../../tmp/x`` must never become a path."""
    if len(persona_id) > MAX_PERSONA_ID:
        return f"is {len(persona_id)} characters long; the limit is {MAX_PERSONA_ID}"
    if not _PERSONA_ID.fullmatch(persona_id) or ".." in persona_id or persona_id != persona_id.strip():
        return "may use only letters, digits, '_', '.', '-' and spaces, starting with a letter or digit"
    return None


def load_persona(path: str | os.PathLike[str]) -> Persona:
    """Read and validate a persona YAML; every failure is a one-line :class:`PersonaFileError`.
    A persona without ``persona_id`` takes the file's name (``kai.yaml`` -> ``kai``)."""
    import yaml

    path = Path(path)

    if not path.exists():
        raise PersonaFileError(f"persona file not found: {path}", path=path)
    if path.is_dir():
        raise PersonaFileError(f"{path} is a directory, not a persona YAML file", path=path)
    try:
        size = path.stat().st_size
        if size > MAX_PERSONA_BYTES:
            raise PersonaFileError(f"{path} is too large for a persona file ({size // 1024} KiB; the limit is 1 MiB)", path=path)
        raw = path.read_bytes()
    except PermissionError:
        raise PersonaFileError(f"cannot read {path}: permission denied", path=path) from None
    except OSError as exc:
        raise PersonaFileError(f"cannot read {path}: {exc.strerror or exc}", path=path) from None
    if b"\x00" in raw:
        raise PersonaFileError(f"{path} is a binary file, not a persona YAML file", path=path)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise PersonaFileError(f"{path} is not UTF-8 text", path=path) from None
    if not text.strip():
        raise PersonaFileError(f"{path} is empty; a persona needs at least schema_version and identity", path=path)
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or "could not parse"
        raise PersonaFileError(f"{path}: invalid YAML{where}: {problem}", path=path) from None
    if not isinstance(data, dict):
        raise PersonaFileError(f"{path}: the top level must be a mapping (key: value), not {type(data).__name__}", path=path)
    version = data.get("schema_version", "1.0")
    if str(version) != "1.0":
        raise PersonaFileError(f"{path}: schema_version {version!r} is not supported (this version reads 1.0)", path=path)
    data = dict(data)
    if data.get("persona_id") is None:
        data["persona_id"] = path.stem
    if isinstance(data["persona_id"], str) and (why := check_persona_id(data["persona_id"])):
        shown = data["persona_id"][:40] + ("…" if len(data["persona_id"]) > 40 else "")
        raise PersonaFileError(f"{path}: persona_id {shown!r} {why}", path=path)
    from pydantic import ValidationError

    from persona.schema.persona import Persona

    try:
        return Persona.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "(top level)"
        more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
        message = "unknown field" if first["type"] == "extra_forbidden" else first["msg"]
        raise PersonaFileError(f"{path}: {where}: {message}{more}", path=path) from None
