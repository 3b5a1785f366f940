"""Entries of the persona YAML that the person forgot for good ("pinned out").

The YAML's self facts, worldview claims and episodic entries are indexed again whenever
the persona is loaded and its content (or this list) changed, so forgetting one only lasts
until then. Pinning it out records it here, by the SHA-256 of its text (not its id: the
registry numbers entries by position, and a reordered YAML renumbers them), and
:meth:`persona_runtime.memory.PersonaMemory.load` removes pinned-out entries after every
indexing. One JSON file per persona beside the store, 0600.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Pin", "PinList", "text_hash"]


def text_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass(frozen=True, slots=True)
class Pin:
    store: str
    hash: str
    #: The entry's first line, so `memory pins` can say what it was.
    preview: str


class PinList:
    """``pinned-<persona>.json`` under the memory store's folder."""

    def __init__(self, root: Path, persona_id: str) -> None:
        self.path = root / f"pinned-{persona_id}.json"

    def read(self) -> list[Pin]:
        try:
            raw = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return []
        except (OSError, ValueError) as exc:
            raise ValueError(f"the pin list {self.path} cannot be read ({exc}); fix or remove it") from None
        pins = []
        for item in raw if isinstance(raw, list) else []:
            if isinstance(item, dict) and isinstance(item.get("hash"), str):
                pins.append(Pin(str(item.get("store", "")), item["hash"], str(item.get("preview", ""))))
        return pins

    def hashes(self) -> set[str]:
        return {p.hash for p in self.read()}

    def write(self, pins: list[Pin]) -> None:
        from persona_runtime.paths import write_private_json

        write_private_json(self.path, [{"store": p.store, "hash": p.hash, "preview": p.preview} for p in pins])

    def add(self, new: list[Pin]) -> None:
        pins = self.read()
        known = {p.hash for p in pins}
        for pin in new:
            if pin.hash not in known:
                pins.append(pin)
                known.add(pin.hash)
        self.write(pins)

    def remove(self, prefixes: list[str]) -> list[Pin]:
        """Drop the pins whose hash starts with any of ``prefixes``; returns those dropped."""
        pins = self.read()
        gone = [p for p in pins if any(p.hash.startswith(x) for x in prefixes)]
        if gone:
            self.write([p for p in pins if p not in gone])
        return gone
