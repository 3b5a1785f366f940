"""A persona's standing memory: its own facts and views, always in view while they are few.

A persona's self facts and worldview change only when the person edits them (or the YAML), not
from one message to the next. While they are few (:data:`STANDING_MAX_ENTRIES` entries,
:data:`STANDING_MAX_CHARS` characters), all of them go in the system message instead of being
recalled by similarity for each message: the persona always knows its own facts ("I answer in
bokmål" is not dropped because a message is about deposits), and the system message is the
part a model reads once per conversation (and, for the bundled model, once per machine: the
prompt cache). On the bundled model that takes ~160 tokens (~1 s) off every message's reading.
A persona with more is recalled per message as before.

What goes in is read from the store each turn (what the person corrected counts at once). A
snapshot beside the store lets the next launch read the same system message into the local
model before memory has loaded; it is only a prediction: a wrong one costs a re-read, never a
wrong prompt.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from persona.schema.persona import Persona

__all__ = [
    "STANDING_MAX_CHARS", "STANDING_MAX_ENTRIES", "Standing", "predict_standing", "read_snapshot", "snapshot_path",
    "standing_from_chunks", "standing_from_persona", "strip_kind", "view_line", "write_snapshot",
]

STANDING_MAX_ENTRIES = 24  # self facts and views together
STANDING_MAX_CHARS = 2400  # ~600 tokens of Norwegian or English text


@dataclass(frozen=True, slots=True)
class Standing:
    """The lines the system message shows: facts, and views with their epistemic status."""

    facts: tuple[str, ...] = ()
    views: tuple[str, ...] = ()

    def to_json(self) -> dict[str, list[str]]:
        return {"facts": list(self.facts), "views": list(self.views)}


def strip_kind(text: str) -> str:
    """Chunks are stored as ``"self_fact: ..."`` / ``"worldview: ..."``; show just the content."""
    head, sep, rest = text.partition(": ")
    return rest if sep and head in ("self_fact", "worldview") else text


def view_line(claim: str, epistemic: object) -> str:
    return f"{claim} ({epistemic or 'belief'})"


def _fitting(facts: list[str], views: list[str]) -> Standing | None:
    facts = [f.strip() for f in facts if f.strip()]
    views = [v.strip() for v in views if v.strip()]
    if len(facts) + len(views) > STANDING_MAX_ENTRIES or sum(map(len, facts + views)) > STANDING_MAX_CHARS:
        return None
    return Standing(tuple(facts), tuple(views))


def standing_from_chunks(self_facts: Sequence[Any], worldview: Sequence[Any]) -> Standing | None:
    """The standing memory of the stores' current entries (in id order, so the system message is
    the same from launch to launch), or None when they are too many to stand."""
    facts = [strip_kind(c.text) for c in sorted(self_facts, key=lambda c: c.id)]
    views = [view_line(strip_kind(c.text), c.metadata.get("epistemic")) for c in sorted(worldview, key=lambda c: c.id)]
    return _fitting(facts, views)


def standing_from_persona(persona: Persona) -> Standing | None:
    """What the store will hold once the persona YAML is indexed: the first launch's prediction."""
    facts = [f.fact for f in persona.self_facts]
    views = [view_line(c.claim, getattr(c.epistemic, "value", c.epistemic)) for c in persona.worldview]
    return _fitting(facts, views)


def snapshot_path(folder: Path, persona_id: str) -> Path:
    return folder / f"standing-{persona_id}.json"


def read_snapshot(path: Path) -> tuple[bool, Standing | None]:
    """(whether a usable snapshot is there, the standing it recorded: None for "too many")."""
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        if raw is None:
            return True, None
        return True, Standing(tuple(str(f) for f in raw["facts"]), tuple(str(v) for v in raw["views"]))
    except (OSError, ValueError, TypeError, KeyError):
        return False, None


def predict_standing(folder: Path | None, persona: Persona) -> Standing | None:
    """The standing memory the first turn will most likely find, without opening the store: the
    snapshot the last turn left in ``folder``, else what the persona YAML defines."""
    if folder is not None:
        usable, standing = read_snapshot(snapshot_path(folder, persona.persona_id or "persona"))
        if usable:
            return standing
    return standing_from_persona(persona)


def write_snapshot(path: Path, standing: Standing | None) -> None:
    """Record ``standing`` for the next launch, unless it is already what the file says."""
    from persona_runtime.paths import write_private_json

    if read_snapshot(path) == (True, standing):
        return
    try:
        write_private_json(path, standing.to_json() if standing is not None else None)
    except OSError:
        pass  # only a prediction: the next launch reads the system message again
