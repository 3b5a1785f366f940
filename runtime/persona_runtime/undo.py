"""``/undo``: take the last exchange back, from the conversation, its file and memory.

Nothing is rewritten: the conversation file gets an ``undo`` line naming the turn (reading it
back drops that turn), the TurnLog gets a ``kind="undo"`` record (so `logs` still shows the turn
happened, and that it was taken back), and the episodic chunk the turn wrote is deleted, so
it is not recalled later.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from persona_runtime.conversations import ConversationStore, StoredTurn, preview
from persona_runtime.events import TurnUndone
from persona_runtime.secrets import redact
from persona_runtime.turnlog.record import TurnLog

if TYPE_CHECKING:
    from persona.schema.conversation import Conversation

__all__ = ["NothingToUndo", "undo_last_turn"]


class NothingToUndo(LookupError):
    """The conversation has no stored turn left to take back."""


def undo_last_turn(store: ConversationStore, conversation: Conversation, *, memory: Any, events: Any) -> tuple[StoredTurn, str | None]:
    """Undo the conversation's last stored turn; returns it and a one-line memory problem (or None). ``events``: the loop's EventBus (the
    TurnLog and the conversation file are written by its subscribers)."""
    persona_id, conversation_id = conversation.persona_id, conversation.conversation_id
    path = store.path_for(persona_id, conversation_id)
    turns = store.read(path).turns if path.exists() else []
    if not turns:
        raise NothingToUndo("nothing to undo in this conversation")
    last = turns[-1]
    keep = max(0, len(conversation.messages) - len(last.messages))
    del conversation.messages[keep:]
    # Keep the compaction bookkeeping inside the (now shorter) history, as /retry does.
    conversation.compacted_up_to = min(conversation.compacted_up_to, keep)
    problem = None
    if last.chunk_id and memory is not None:
        try:
            # remove_documents, not delete: a store's delete(persona_id) drops every chunk it has.
            memory.stores["episodic"].remove_documents(persona_id, [last.chunk_id])
        except Exception as exc:  # noqa: BLE001 - the exchange is undone all the same; say so
            problem = f"the memory this turn wrote could not be deleted ({redact(str(exc))[:120]})"
    user_text = next((m.get("content") for m in last.messages if m.get("role") == "user"), "")
    log = TurnLog(
        kind="undo", conversation_id=conversation_id, turn_index=last.index, persona_id=persona_id,
        status="ok", undoes=last.turn_id, preview=preview(user_text if isinstance(user_text, str) else ""),
    )
    events.publish(TurnUndone(turn_id=last.turn_id, log=log, memory_problem=problem))
    return last, problem
