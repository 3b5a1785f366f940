"""Chat conversations on disk: one append-only JSON-lines file per conversation.

``PERSONA_HOME/conversations/<persona_id>/<conversation_id>.jsonl`` holds a header line, then one
line per finished turn (its messages, the tool calls and results it made, status, tier, model,
the episodic chunk it wrote), and lines for compaction and undo. Each line is written with one
``write`` on an ``O_APPEND`` file and fsynced, so a killed process loses at most the turn in
flight; a torn last line is skipped on read. Files are 0600, folders 0700. Every text is
redacted before it is written: a transcript is a log too.

Only the standard library and pydantic-free dicts here; persona-core's ``Conversation`` is
imported only when a file is loaded back (:meth:`ConversationStore.load`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from persona_runtime.paths import ensure_private_dir
from persona_runtime.secrets import redact

if TYPE_CHECKING:
    from persona.schema.conversation import Conversation

__all__ = [
    "ConversationNotFound", "ConversationRecorder", "ConversationStore", "ConversationSummary", "StoredTurn",
    "redact_json",
]

FORMAT = 1
MIN_PREFIX = 4
PREVIEW_CHARS = 60


class ConversationNotFound(LookupError):
    """No conversation matches an id (or a prefix matches more than one). One line."""


@dataclass(frozen=True)
class StoredTurn:
    """One turn as the file holds it: ``messages`` are what the conversation sends as history
    (the user message and the reply); ``tools`` the tool calls and results in between."""

    turn_id: str
    index: int
    status: str
    messages: list[dict[str, Any]]
    tools: list[dict[str, Any]] = field(default_factory=list)
    tier: str | None = None
    model: str | None = None
    chunk_id: str | None = None
    timestamp: str = ""


@dataclass(frozen=True)
class ConversationSummary:
    id: str
    persona_id: str
    started: str
    updated: str
    turns: int
    last_message: str
    path: Path

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id, "persona_id": self.persona_id, "started": self.started, "updated": self.updated,
            "turns": self.turns, "last_message": self.last_message,
        }


@dataclass
class LoadedFile:
    """A file read back: its header, the turns still in force, and the last compaction."""

    header: dict[str, Any]
    turns: list[StoredTurn]
    summary: str = ""
    compacted_up_to: int = 0


def redact_json(value: Any) -> Any:
    """``value`` with every string redacted (tool arguments are nested dicts)."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, list):
        return [redact_json(v) for v in value]
    if isinstance(value, dict):
        return {k: redact_json(v) for k, v in value.items()}
    return value


def message_text(message: dict[str, Any]) -> str:
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(str(part.get("text", "")) for part in content if isinstance(part, dict))
    return ""


def preview(text: str, limit: int = PREVIEW_CHARS) -> str:
    """One line, at most ``limit`` characters, redacted."""
    flat = " ".join(redact(text).split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


class ConversationStore:
    """Conversation files under ``root`` (``DataPaths.conversations``)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def path_for(self, persona_id: str, conversation_id: str) -> Path:
        if not _safe_name(persona_id) or not _safe_name(conversation_id):
            raise ValueError(f"not a conversation id: {conversation_id!r}")
        return self.root / persona_id / f"{conversation_id}.jsonl"

    # -- writing ---------------------------------------------------------------------------

    def append(self, persona_id: str, conversation_id: str, line: dict[str, Any]) -> None:
        """Append one line (a header first, if the file is new); flushed and fsynced."""
        path = self.path_for(persona_id, conversation_id)
        ensure_private_dir(path.parent)
        data = b""
        if not path.exists():
            header = {"type": "header", "format": FORMAT, "id": conversation_id, "persona_id": persona_id,
                      "started": line.get("timestamp") or _now()}
            data = _encode(header)
        data += _encode(line)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, data)  # one write: a line is whole or torn at the end, never interleaved
            os.fsync(fd)
        finally:
            os.close(fd)

    def record_turn(self, persona_id: str, conversation_id: str, turn: StoredTurn) -> None:
        self.append(persona_id, conversation_id, {
            "type": "turn", "turn_id": turn.turn_id, "index": turn.index, "status": turn.status,
            "tier": turn.tier, "model": turn.model, "chunk_id": turn.chunk_id, "timestamp": turn.timestamp or _now(),
            "messages": redact_json(turn.messages), "tools": redact_json(turn.tools),
        })

    def record_compaction(self, persona_id: str, conversation_id: str, summary: str, up_to: int) -> None:
        self.append(persona_id, conversation_id,
                    {"type": "compaction", "summary": redact(summary), "up_to": up_to, "timestamp": _now()})

    def record_undo(self, persona_id: str, conversation_id: str, turn_id: str) -> None:
        self.append(persona_id, conversation_id, {"type": "undo", "turn_id": turn_id, "timestamp": _now()})

    # -- reading ---------------------------------------------------------------------------

    def read(self, path: Path, *, include_undone: bool = False) -> LoadedFile:
        """The file's turns still in force (undone ones dropped unless ``include_undone``); a torn
        or foreign line is skipped."""
        header: dict[str, Any] = {}
        turns: list[StoredTurn] = []
        summary, up_to = "", 0
        for line in _lines(path):
            kind = line.get("type")
            if kind == "header":
                header = line
            elif kind == "turn":
                try:
                    turns.append(StoredTurn(
                        turn_id=str(line["turn_id"]), index=int(line.get("index", 0)), status=str(line.get("status", "ok")),
                        messages=list(line.get("messages") or []), tools=list(line.get("tools") or []),
                        tier=line.get("tier"), model=line.get("model"), chunk_id=line.get("chunk_id"),
                        timestamp=str(line.get("timestamp", "")),
                    ))
                except (KeyError, TypeError, ValueError):
                    continue
            elif kind == "undo" and not include_undone:
                turns = [t for t in turns if t.turn_id != line.get("turn_id")]
            elif kind == "compaction":
                summary, up_to = str(line.get("summary", "")), int(line.get("up_to", 0) or 0)
        kept = sum(len(t.messages) for t in turns)
        return LoadedFile(header=header, turns=turns, summary=summary, compacted_up_to=min(up_to, kept))

    def load(self, persona_id: str, conversation_id: str) -> Conversation:
        """The conversation rebuilt as persona-core's ``Conversation`` (history, compaction)."""
        from persona.schema.conversation import Conversation, ConversationMessage

        loaded = self.read(self.path_for(persona_id, conversation_id))
        messages = [ConversationMessage.model_validate(m) for t in loaded.turns for m in t.messages]
        return Conversation(
            conversation_id=conversation_id, persona_id=persona_id, messages=messages,
            compacted_summary=loaded.summary, compacted_up_to=loaded.compacted_up_to,
        )

    def summaries(self, persona_id: str) -> list[ConversationSummary]:
        """This persona's conversations, the most recently active first."""
        folder = self.root / persona_id
        if not _safe_name(persona_id) or not folder.is_dir():
            return []
        found = []
        for path in folder.glob("*.jsonl"):
            loaded = self.read(path)
            if not loaded.header:
                continue
            last = loaded.turns[-1] if loaded.turns else None
            last_text = message_text(last.messages[-1]) if last and last.messages else ""
            found.append(ConversationSummary(
                id=path.stem, persona_id=persona_id, started=str(loaded.header.get("started", "")),
                updated=last.timestamp if last else str(loaded.header.get("started", "")),
                turns=len(loaded.turns), last_message=preview(last_text), path=path,
            ))
        found.sort(key=lambda s: (s.updated, s.id), reverse=True)
        return found

    def find(self, persona_id: str, prefix: str) -> str:
        """The id of the conversation whose id is ``prefix`` or starts with it (4+ characters;
        the ``chat-`` in front may be left out)."""
        prefix = prefix.strip()
        if not prefix or not _safe_name(prefix):
            raise ConversationNotFound(f"not a conversation id: {prefix!r}")
        ids = [s.stem for s in (self.root / persona_id).glob("*.jsonl")] if (self.root / persona_id).is_dir() else []
        if prefix in ids:
            return prefix
        if len(prefix) < MIN_PREFIX:
            raise ConversationNotFound(f"no conversation {prefix!r} (give at least {MIN_PREFIX} characters of the id)")
        matches = sorted(i for i in ids if i.startswith(prefix) or i.removeprefix("chat-").startswith(prefix))
        if not matches:
            raise ConversationNotFound(f"no conversation with {persona_id} matches {prefix!r} (persona chat … --list shows them)")
        if len(matches) > 1:
            raise ConversationNotFound(f"conversation id {prefix!r} is ambiguous: {len(matches)} match; give more of it")
        return matches[0]

    def latest(self, persona_id: str) -> str | None:
        summaries = self.summaries(persona_id)
        return summaries[0].id if summaries else None

    def find_turn(self, turn_id: str) -> tuple[str, str, StoredTurn] | None:
        """(persona id, conversation id, turn) for a turn id, searching every file; None if unknown."""
        if not self.root.is_dir():
            return None
        for path in self.root.glob("*/*.jsonl"):
            for turn in self.read(path).turns:
                if turn.turn_id == turn_id:
                    return path.parent.name, path.stem, turn
        return None


class ConversationRecorder:
    """An EventBus subscriber: each ``TurnFinished`` with content becomes a line in its
    conversation's file (and a compaction line first, when the turn compacted history)."""

    def __init__(self, store: ConversationStore) -> None:
        self.store = store

    def __call__(self, event: Any) -> None:
        try:
            self._record(event)
        except (ValueError, TypeError) as exc:  # as a write fault: the bus reports it, the turn goes on
            raise OSError(f"conversation file: {redact(str(exc))[:200]}") from None

    def _record(self, event: Any) -> None:
        log = getattr(event, "log", None)
        if log is None or log.kind == "agent":
            return
        pid, cid = log.persona_id, log.conversation_id
        if log.kind == "undo" and log.undoes:
            self.store.record_undo(pid, cid, log.undoes)
            return
        content = getattr(event, "content", None)
        if content is None:
            return
        if content.summary is not None:
            self.store.record_compaction(pid, cid, content.summary, content.compacted_up_to)
        self.store.record_turn(pid, cid, StoredTurn(
            turn_id=log.turn_id, index=log.turn_index, status=log.status,
            messages=[m.model_dump(mode="json") for m in content.messages],
            tools=[m.model_dump(mode="json") for m in content.tool_messages],
            tier=log.tier, model=log.model, chunk_id=content.chunk_id, timestamp=log.timestamp.isoformat(),
        ))


# -- helpers -----------------------------------------------------------------------------------


def _safe_name(name: str) -> bool:
    return bool(name) and len(name) <= 128 and not any(c in name for c in "/\\\0") and not name.startswith(".")


def _now() -> str:
    return datetime.now(UTC).isoformat()


def _encode(line: dict[str, Any]) -> bytes:
    return (json.dumps(line, ensure_ascii=False, separators=(",", ":")) + "\n").encode("utf-8")


def _lines(path: Path) -> Iterator[dict[str, Any]]:
    try:
        raw = path.read_bytes()
    except OSError:
        return
    for chunk in raw.split(b"\n"):
        if not chunk.strip():
            continue
        try:
            line = json.loads(chunk)
        except ValueError:
            continue  # a torn last line (killed mid-write): the turn in flight is lost, nothing else
        if isinstance(line, dict):
            yield line
