"""PromptBuilder: what goes where, epistemic tags, the stable system message, and the budget
reducer's drop order."""

from __future__ import annotations

from datetime import UTC, datetime

from persona.schema.chunks import PersonaChunk
from persona.schema.conversation import ConversationMessage
from persona.schema.persona import Persona
from persona_runtime.prompt import (
    INTERRUPTED_NOTE,
    MESSAGE_HEADER,
    RECALLED_HEADER,
    PromptBuilder,
    RetrievedContext,
    count_tokens,
)

NOW = datetime.now(UTC)
ASTRID_LIKE = Persona.model_validate(
    {
        "persona_id": "p",
        "identity": {
            "name": "Astrid", "role": "tenancy adviser", "background": "Knows the tenancy act.",
            "language_default": "nb", "constraints": ["Never invent paragraphs.", "Recommend a lawyer when serious."],
        },
    }
)


def chunk(text: str, **meta: str) -> PersonaChunk:
    return PersonaChunk(id=f"id-{abs(hash(text))}", text=text, metadata=meta, created_at=NOW)


CONTEXT = RetrievedContext(
    self_facts=(chunk("self_fact: I answer in Norwegian."),),
    worldview=(chunk("worldview: Deposits are capped at six months.", epistemic="fact"), chunk("worldview: Calm letters work.", epistemic="belief")),
    episodic=(chunk("USER: my landlord kept my deposit\nASSISTANT: write to him"),),
)


def msg(role: str, text: str, **meta: str) -> ConversationMessage:
    return ConversationMessage(role=role, content=text, created_at=NOW, metadata=meta)


def test_identity_in_the_system_message_and_recalled_memory_in_front_of_the_message() -> None:
    built = PromptBuilder().build(ASTRID_LIKE, CONTEXT, [], "Hei", max_tokens=10_000, skill_index="Available skills:\n- x")
    system, user = built.messages[0].content, built.messages[-1].content
    order = [
        "You are Astrid, tenancy adviser.", "Answer in Norwegian Bokmål", "Rules you must never break:\n1. Never invent paragraphs.",
        "Available skills:", "Stay in character.",
    ]
    positions = [system.index(part) for part in order]
    assert positions == sorted(positions)
    assert "Relevant facts" not in system and "Your views" not in system and "From earlier" not in system
    assert built.messages[-1].role == "user"
    order = [
        RECALLED_HEADER, "Relevant facts about yourself:\n- I answer in Norwegian.", "Your views:\n- Deposits are capped at six months. (fact)",
        "- Calm letters work. (belief)", "From earlier conversations:", MESSAGE_HEADER,
    ]
    positions = [user.index(part) for part in order]
    assert positions == sorted(positions) and positions[0] == 0
    assert user.endswith(f"{MESSAGE_HEADER}\nHei")
    assert built.dropped == ()


def test_the_system_message_stays_the_same_from_turn_to_turn() -> None:
    """Only the end of the prompt changes between turns, so a prompt/KV cache can reuse the rest."""
    builder = PromptBuilder()
    first = builder.build(ASTRID_LIKE, CONTEXT, [], "Hei", max_tokens=10_000)
    history = [msg("user", "Hei"), msg("assistant", "Hei! Hva lurer du på?")]
    second = builder.build(ASTRID_LIKE, RetrievedContext(episodic=CONTEXT.episodic), history, "Depositum?", max_tokens=10_000)
    assert second.messages[0].content == first.messages[0].content
    assert [m.content for m in second.messages[1:3]] == ["Hei", "Hei! Hva lurer du på?"]  # history as it was typed


def test_without_recalled_memory_the_message_is_sent_as_typed() -> None:
    built = PromptBuilder().build(ASTRID_LIKE, RetrievedContext(), [], "Hei", max_tokens=10_000)
    assert built.messages[-1].content == "Hei"


def test_reducer_drops_episodic_then_worldview_then_self_facts_then_oldest_history() -> None:
    history = [msg("user" if i % 2 == 0 else "assistant", f"history message {i} " + "word " * 30) for i in range(6)]
    builder = PromptBuilder()
    full = builder.build(ASTRID_LIKE, CONTEXT, history, "Hei", max_tokens=100_000)
    without_episodic = builder.build(ASTRID_LIKE, CONTEXT, history, "Hei", max_tokens=full.tokens - 1)
    assert without_episodic.dropped == ("episodic",)
    assert "From earlier conversations" not in without_episodic.messages[-1].content
    assert "Your views" in without_episodic.messages[-1].content

    identity_only = builder.build(ASTRID_LIKE, RetrievedContext(), [], "Hei", max_tokens=100_000).tokens
    tight = builder.build(ASTRID_LIKE, CONTEXT, history, "Hei", max_tokens=identity_only + 100)
    assert tight.dropped[:3] == ("episodic", "worldview", "self_facts")
    assert tight.dropped[-1].startswith("history:")
    kept = [m.content for m in tight.messages[1:-1]]
    assert kept == [m.content for m in history[len(history) - len(kept):]]  # the newest survive
    assert tight.tokens <= identity_only + 100
    # Identity, rules and the current message always stay, even over budget.
    impossible = builder.build(ASTRID_LIKE, CONTEXT, history, "Hei", max_tokens=1)
    assert "Never invent paragraphs." in impossible.messages[0].content and impossible.messages[-1].content == "Hei"
    assert len(impossible.messages) == 2


def test_interrupted_replies_are_marked_for_the_model() -> None:
    history = [msg("user", "tell me"), msg("assistant", "Once upon", status="interrupted")]
    built = PromptBuilder().build(ASTRID_LIKE, RetrievedContext(), history, "go on", max_tokens=10_000)
    assert built.messages[2].content == "Once upon" + INTERRUPTED_NOTE


def test_token_counting_uses_cl100k_offline() -> None:
    assert count_tokens("hello world") == 2


def _words(n: int, word: str = "lease") -> str:
    return " ".join([word] * n)


def test_fit_recall_keeps_facts_then_clipped_conversations_then_views_within_its_budget() -> None:
    from persona_runtime.prompt import fit_recall

    long_exchange = chunk("USER: " + _words(300, "deposit"))
    context = RetrievedContext(
        identity=(chunk("identity: Astrid"),),
        self_facts=(chunk("self_fact: " + _words(30)),),
        worldview=(chunk("worldview: " + _words(200)), chunk("worldview: short view"), chunk("worldview: " + _words(60))),
        episodic=(long_exchange,),
    )
    fitted = fit_recall(context, 120)
    assert fitted.identity == context.identity  # identity is never budgeted here
    assert fitted.self_facts == context.self_facts
    [clipped] = fitted.episodic
    assert clipped.id == long_exchange.id and clipped.text.startswith("USER: deposit") and clipped.text.endswith(" …")
    assert count_tokens(clipped.text) <= 30  # an earlier conversation is cut to a quarter of the budget
    # Views come last: the long ones no longer fit, a smaller later one still goes in.
    assert [c.text for c in fitted.worldview] == ["worldview: short view"]
    sent = [*fitted.self_facts, *fitted.worldview, *fitted.episodic]
    assert sum(count_tokens(c.text) + 2 for c in sent) <= 120


def test_fit_recall_leaves_what_fits_as_it_is() -> None:
    from persona_runtime.prompt import fit_recall

    assert fit_recall(CONTEXT, 1000) == CONTEXT
    assert fit_recall(CONTEXT, 5) == RetrievedContext()
