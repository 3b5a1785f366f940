"""PromptBuilder + RetrievedContext: the prompt for one turn, and a token-budget reducer.

The system message holds what stays the same for a whole conversation: the persona's
identity and constraints (never dropped), its standing memory (all its self facts and views,
while they are few: :mod:`persona_runtime.standing`), the skill index, any activated skill and
the footer. What memory recalled for *this* message (earlier conversations; self facts and
views tagged with their epistemic status when there are too many to stand) goes in front of
the person's message, in the last user message, clearly labelled. So from one turn to the
next the prompt only grows at the end: a model server's prompt cache, or llama.cpp's KV cache
for the bundled model, reuses everything up to the previous turn instead of re-reading the
whole history because the system message changed. When the prompt exceeds the budget, whole memory sections are
dropped in this order: episodic, then worldview, then self facts; then the oldest history
messages one by one. Identity, constraints, the skill index and the current message stay.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from persona_runtime.standing import Standing, strip_kind, view_line

if TYPE_CHECKING:
    from persona.schema.conversation import ConversationMessage
    from persona.schema.persona import Persona

__all__ = [
    "MESSAGE_OVERHEAD", "BuiltPrompt", "PromptBuilder", "RetrievedContext", "count_tokens", "fit_recall", "recall_opening",
]

FOOTER = "Stay in character. Cite sources when using tool results."
# Frames what memory recalled for this message, in front of it, so it is not read as the person's words.
RECALLED_HEADER = "[Recalled from your memory for this message; the person did not write this part.]"
MESSAGE_HEADER = "[The person's message:]"
FACTS_TITLE = "Relevant facts about yourself:"
EPISODIC_TITLE = "From earlier conversations:"
INTERRUPTED_NOTE = " [reply interrupted by the user]"
_LANGUAGES = {
    "nb": "Norwegian Bokmål", "nn": "Norwegian Nynorsk", "no": "Norwegian", "sv": "Swedish",
    "da": "Danish", "de": "German", "fr": "French", "es": "Spanish", "it": "Italian",
    "nl": "Dutch", "fi": "Finnish", "pl": "Polish", "pt": "Portuguese", "en": "English",
}
# Per-message framing overhead of chat templates, in tokens.
MESSAGE_OVERHEAD = 4


@lru_cache(maxsize=1)
def _encoding() -> Any:
    from persona_runtime import _offline

    _offline.install()
    import tiktoken

    encoding = tiktoken.get_encoding("cl100k_base")
    # tiktoken keeps a Python copy of the 100k merge ranks (its Rust core has its own) only to
    # pickle the encoding, which nothing here does: 11 MiB of a chat's peak memory (measured).
    encoding._mergeable_ranks = {}
    return encoding


@lru_cache(maxsize=4096)
def count_tokens(text: str) -> int:
    """cl100k token count (cached: history messages are counted once per process)."""
    return len(_encoding().encode(text, disallowed_special=()))


@dataclass(frozen=True, slots=True)
class RetrievedContext:
    """Typed-memory chunks retrieved for one message."""

    identity: tuple[Any, ...] = ()
    self_facts: tuple[Any, ...] = ()
    worldview: tuple[Any, ...] = ()
    episodic: tuple[Any, ...] = ()
    #: The persona's own facts and views for the system message; None: they are recalled above.
    standing: Standing | None = None


def fit_recall(context: RetrievedContext, budget: int, count: Callable[[str], int] = count_tokens) -> RetrievedContext:
    """``context`` within ``budget`` tokens, for a model that reads prompts slowly (a local GGUF
    model on CPU reads ~175 tokens/s on two cores, so every recalled token delays the first
    word). Entries go in by importance: facts about itself, then earlier conversations (what
    the person said before: remembering them is the point), then views, each whole while it
    fits; an earlier conversation is first cut to its opening ``budget // 4`` tokens (its
    question and the start of the answer)."""
    clip = max(16, budget // 4)
    left = budget
    kept: dict[str, list[Any]] = {"self_facts": [], "worldview": [], "episodic": []}
    for store, chunks in (("self_facts", context.self_facts), ("episodic", context.episodic), ("worldview", context.worldview)):
        for chunk in chunks:
            if store == "episodic":
                chunk = _clipped(chunk, clip, count)
            cost = count(chunk.text) + 2  # the bullet and the line break
            if cost <= left:
                kept[store].append(chunk)
                left -= cost
    return RetrievedContext(
        identity=context.identity, self_facts=tuple(kept["self_facts"]), worldview=tuple(kept["worldview"]),
        episodic=tuple(kept["episodic"]), standing=context.standing,
    )


def _clipped(chunk: Any, limit: int, count: Callable[[str], int]) -> Any:
    if count(chunk.text) <= limit:
        return chunk
    words = chunk.text.split(" ")
    low, high = 0, len(words)  # the most words whose text (plus the ellipsis) fits
    while low < high:
        mid = (low + high + 1) // 2
        if count(" ".join(words[:mid]) + " …") <= limit:
            low = mid
        else:
            high = mid - 1
    return chunk.model_copy(update={"text": " ".join(words[:low]) + " …"})


def recall_opening(standing: Standing | None) -> str:
    """How the last user message begins when memory recalls anything for it, up to the first
    entry: with standing memory, earlier conversations come first, else self facts."""
    return f"{RECALLED_HEADER}\n{EPISODIC_TITLE if standing is not None else FACTS_TITLE}\n- "


@dataclass(frozen=True, slots=True)
class BuiltPrompt:
    messages: list[ConversationMessage]
    tokens: int
    #: What the reducer dropped to fit, e.g. ("episodic", "history:2").
    dropped: tuple[str, ...] = ()
    budget: int = 0


class PromptBuilder:
    """Builds ``[system, *history, user]`` within a token budget."""

    def __init__(self, *, token_counter: Callable[[str], int] | None = None, footer: str = FOOTER) -> None:
        self._count = token_counter or count_tokens
        self._footer = footer

    def build(
        self,
        persona: Persona,
        context: RetrievedContext,
        history: Sequence[ConversationMessage],
        user_message: str,
        *,
        max_tokens: int,
        skill_index: str = "",
        skill_content: str | None = None,
        extra_system: str | None = None,
    ) -> BuiltPrompt:
        from persona.schema.conversation import ConversationMessage

        sections = {
            "self_facts": _bullets(FACTS_TITLE, [strip_kind(c.text) for c in context.self_facts]),
            "worldview": _bullets(
                "Your views:", [view_line(strip_kind(c.text), c.metadata.get("epistemic")) for c in context.worldview]
            ),
            "episodic": _bullets(EPISODIC_TITLE, [c.text for c in context.episodic]),
        }
        system = self.system_message(
            persona, standing=context.standing, skill_index=skill_index, skill_content=skill_content, extra_system=extra_system
        )
        system_text = system.content
        history = [_render_history_message(m) for m in history]
        now = system.created_at

        dropped: list[str] = []
        droppable = ["episodic", "worldview", "self_facts"]

        def assemble() -> tuple[ConversationMessage, int]:
            recalled = "\n\n".join(p for p in (sections[k] for k in ("self_facts", "worldview", "episodic")) if p)
            content = f"{RECALLED_HEADER}\n{recalled}\n\n{MESSAGE_HEADER}\n{user_message}" if recalled else user_message
            user = ConversationMessage(role="user", content=content, created_at=now)
            total = self._tokens(system_text) + self._tokens(content)
            total += sum(self._tokens(_text_of(m)) for m in history)
            return user, total

        user, total = assemble()
        while total > max_tokens and droppable:
            kind = droppable.pop(0)
            if sections[kind]:
                sections[kind] = ""
                dropped.append(kind)
                user, total = assemble()
        dropped_history = 0
        while total > max_tokens and history:
            # Oldest first; a compacted summary (a system message) goes last of all.
            index = next((i for i, m in enumerate(history) if m.role != "system"), 0)
            removed = history.pop(index)
            dropped_history += 1
            total -= self._tokens(_text_of(removed))
        if dropped_history:
            dropped.append(f"history:{dropped_history}")
        return BuiltPrompt(
            messages=[system, *history, user],
            tokens=total,
            dropped=tuple(dropped),
            budget=max_tokens,
        )

    def system_message(
        self,
        persona: Persona,
        *,
        standing: Standing | None = None,
        skill_index: str = "",
        skill_content: str | None = None,
        extra_system: str | None = None,
    ) -> ConversationMessage:
        """The system message :meth:`build` starts with: the same for every turn of a conversation
        (given the same standing memory and skill index), which is what lets a local model read it
        ahead of time."""
        from persona.schema.conversation import ConversationMessage

        fixed = [
            _identity_block(persona), _standing_block(standing), skill_index.strip(), (skill_content or "").strip(),
            (extra_system or "").strip(), self._footer,
        ]
        text = "\n\n".join(p for p in fixed if p)
        return ConversationMessage(role="system", content=text, created_at=datetime.now(UTC))

    def _tokens(self, text: str) -> int:
        return self._count(text) + MESSAGE_OVERHEAD


def _identity_block(persona: Persona) -> str:
    ident = persona.identity
    lines = [f"You are {ident.name}, {ident.role}.", ident.background.strip()]
    lang = (ident.language_default or "en").lower()
    if lang != "en":
        name = _LANGUAGES.get(lang.split("-")[0], lang)
        lines.append(f"Answer in {name} unless the person clearly writes in another language.")
    block = "\n".join(lines)
    if ident.constraints:
        rules = "\n".join(f"{i}. {c}" for i, c in enumerate(ident.constraints, start=1))
        block += f"\n\nRules you must never break:\n{rules}"
    return block


def _standing_block(standing: Standing | None) -> str:
    if standing is None:
        return ""
    parts = (_bullets("Facts about yourself:", standing.facts), _bullets("Your views:", standing.views))
    return "\n\n".join(p for p in parts if p)


def _bullets(title: str, items: Sequence[str]) -> str:
    items = [i.strip() for i in items if i and i.strip()]
    return f"{title}\n" + "\n".join(f"- {i}" for i in items) if items else ""


def _text_of(message: ConversationMessage) -> str:
    content = message.content
    if isinstance(content, str):
        return content
    return " ".join(getattr(part, "text", "") for part in content)


def _render_history_message(message: ConversationMessage) -> ConversationMessage:
    """An interrupted reply is shown to the model as such, so it can pick up sensibly."""
    if message.role == "assistant" and message.metadata.get("status") == "interrupted":
        return message.model_copy(update={"content": _text_of(message) + INTERRUPTED_NOTE})
    return message
