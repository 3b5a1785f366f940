"""A small persona and its memory on a real embedded Chroma in a temp dir (hash embedder: fast)."""

from __future__ import annotations

from pathlib import Path

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
