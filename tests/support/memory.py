"""A small persona and its memory on a real embedded Chroma in a temp dir (hash embedder: fast)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

PERSONA_YAML = """\
schema_version: "1.0"
persona_id: tess
identity:
  name: Tess
  role: Sailing instructor
  background: Teaches dinghy sailing on the Oslofjord.
self_facts:
  - fact: I have sailed for twenty years.
  - fact: I prefer short answers.
worldview:
  - claim: Life jackets save lives.
    epistemic: fact
"""


def write_persona(folder: Path, text: str = PERSONA_YAML) -> Path:
    path = folder / "tess.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def open_memory(folder: Path, persona_path: Path | None = None):  # noqa: ANN201 - PersonaMemory (lazy import)
    """A loaded PersonaMemory for the persona, stored under ``folder``."""
    from persona.stores.embedder import HashEmbedder

    from persona_runtime.memory import PersonaMemory
    from persona_runtime.persona_file import load_persona

    persona = load_persona(persona_path or write_persona(folder))
    memory = PersonaMemory.open(persona, root=folder / "store", embedder=HashEmbedder(), audit_root=folder / "audit")
    memory.load()
    return memory


class Memories:
    """The stores a test opens, closed at its teardown (the ``memories`` fixture): an open store
    holds ~17 descriptors (SQLite, HNSW files, chromadb's runtime) for the rest of the run."""

    def __init__(self) -> None:
        self._opened: list[Any] = []

    def open(self, folder: Path, persona_path: Path | None = None):  # noqa: ANN201 - PersonaMemory
        """:func:`open_memory`, closed at teardown."""
        return self.keep(open_memory(folder, persona_path))

    def keep(self, memory: Any) -> Any:
        """Close ``memory`` (a PersonaMemory, a MemoryAdmin, a Chroma backend) at teardown; returns it."""
        self._opened.append(memory)
        return memory

    def close(self) -> None:
        while self._opened:
            self._opened.pop().close()
