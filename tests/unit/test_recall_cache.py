"""The snapshot a session leaves beside its embedded store, so the next launch recalls before
Chroma opens: it recalls what the store recalls, and any change to the store since makes it
unusable. Real parts: embedded Chroma on a temp dir, the hash embedder."""

from __future__ import annotations

from persona.stores.embedder import HashEmbedder

from persona_runtime.memory import MemoryOff, PersonaMemory, content_hash
from persona_runtime.memory_admin import MemoryAdmin
from persona_runtime.recall_cache import cache_path, load_recall_cache
from tests.support.memory import open_memory

QUERIES = ("the boat", "sailing lessons on Saturday", "what is my dog called?", "")
EPISODES = (
    "The person's boat is called Tern.", "The person's dog is called Rufus.", "Lessons are on Saturdays at ten.",
    "The person fears capsizing.", "The person sails a Laser dinghy.",
)


def _snapshot(tmp_path, memories) -> PersonaMemory:
    """A store with episodes, an edited fact and a forgotten one, closed as a session closes it."""
    memory = open_memory(tmp_path)
    admin = MemoryAdmin(memory)
    for text in EPISODES:
        admin.add("episodic", text)
    facts = {e.text: e for e in admin.list_entries(("self_facts",))}
    admin.edit(facts["self_fact: I prefer short answers."].id, "I prefer short answers with one example.")
    memory.retrieve("warm up")  # a query flushes Chroma's log into its files, as a turn does
    memory.close(save_recall=True)
    return memory


def _cache(tmp_path, persona):
    return load_recall_cache(tmp_path / "store", "tess", content_hash(persona, set()))


def test_a_snapshot_recalls_what_the_store_recalls(tmp_path, memories) -> None:
    persona = _snapshot(tmp_path, memories).persona
    cache = _cache(tmp_path, persona)
    assert cache is not None and (tmp_path / "store" / "recall-tess.npz").stat().st_mode & 0o777 == 0o600
    store = memories.open(tmp_path)  # opening changes the store's files: loaded before, as a launch does
    embedder = HashEmbedder()
    for query in QUERIES:
        text = query or persona.identity.role
        cached, live = cache.retrieve(text, embedder), store.retrieve(query)
        assert [c.id for c in cached.episodic] == [c.id for c in live.episodic] and len(live.episodic) == 3
        assert [round(c.distance, 4) for c in cached.episodic] == [round(c.distance, 4) for c in live.episodic]
        assert cached.standing == live.standing and "I prefer short answers with one example." in cached.standing.facts
        assert [c.id for c in cached.identity] == [c.id for c in live.identity]


def test_any_change_since_makes_the_snapshot_unusable(tmp_path, memories) -> None:
    persona = _snapshot(tmp_path, memories).persona
    assert _cache(tmp_path, persona) is not None
    assert load_recall_cache(tmp_path / "store", "tess", "another persona file") is None
    opened = memories.open(tmp_path)  # another process opening the store is enough
    assert _cache(tmp_path, persona) is None
    opened.retrieve("hello")
    opened.close(save_recall=True)
    assert _cache(tmp_path, persona) is not None
    MemoryAdmin(memories.open(tmp_path)).add("episodic", "The person bought a new sail.")
    assert _cache(tmp_path, persona) is None
    cache_path(tmp_path / "store", "tess").write_bytes(b"not a snapshot")
    assert _cache(tmp_path, persona) is None


def test_an_early_memory_recalls_at_once_then_uses_the_store_it_is_given(tmp_path, memories) -> None:
    persona = _snapshot(tmp_path, memories).persona
    early = PersonaMemory.early(persona, _cache(tmp_path, persona), embedder=HashEmbedder(), root=tmp_path / "store")
    before = early.retrieve("the boat")
    assert len(before.episodic) == 3 and early.standing() == before.standing
    held = early.remember_turn("Where is my boat?", "At the pier.", conversation_id="c1")  # held: no store yet
    early.attach(memories.open(tmp_path))
    memories.keep(early)
    assert [c.id for c in early.stores["episodic"].get_all("tess") if "Where is my boat?" in c.text] == [held]
    assert early.remember("The person's boat was renamed Tern II.", metadata={}, written_by="test")
    assert "The person's boat was renamed Tern II." in [c.text for c in early.stores["episodic"].get_all("tess")]
    assert [c.id for c in early.retrieve("the boat").episodic] != [c.id for c in before.episodic]


def test_an_early_memory_whose_store_cannot_be_used_is_off(tmp_path, memories) -> None:
    persona = _snapshot(tmp_path, memories).persona
    early = PersonaMemory.early(persona, _cache(tmp_path, persona), embedder=HashEmbedder(), root=tmp_path / "store")
    early.attach(None, off="memory is off for this session: the store is broken")
    assert early.retrieve("the boat").episodic == () and early.standing() is None
    assert early.remember("lost", metadata={}, written_by="test") is None
    try:
        early.stores
    except MemoryOff as exc:
        assert "the store is broken" in str(exc)
    else:
        raise AssertionError("stores of a memory that is off")
