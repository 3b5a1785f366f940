"""MemoryAdmin on a real embedded Chroma (temp dir, hash embedder): list, search, show, forget,
add, edit, history, rollback, YAML marking and pins that survive a reload."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from persona_runtime.memory_admin import MemoryAdmin, MemoryAdminError, format_age
from tests.support.memory import PERSONA_YAML, write_persona


@pytest.fixture
def admin(tmp_path, memories) -> MemoryAdmin:
    return MemoryAdmin(memories.open(tmp_path))


def test_list_marks_what_the_yaml_defines(admin: MemoryAdmin) -> None:
    note = admin.add("episodic", "The person's boat is called Tern.")
    entries = admin.list_entries()
    by_store = {s: [e for e in entries if e.store == s] for s in ("identity", "self_facts", "worldview", "episodic")}
    assert len(by_store["identity"]) == 4 and len(by_store["self_facts"]) == 2 and len(by_store["worldview"]) == 1
    assert {e.origin for e in entries if e.store != "episodic"} == {"yaml"}
    assert by_store["episodic"] == [note] and note.origin == "runtime" and note.id.startswith("tess::episodic::")
    assert admin.find("tess::self_facts::0001").text == "self_fact: I prefer short answers."


def test_search_scores_by_similarity_and_gives_an_age(admin: MemoryAdmin) -> None:
    admin.add("episodic", "The person's boat is called Tern.")
    hits = admin.search("self_fact: I prefer short answers.", top_k=3)
    assert len(hits) == 3
    assert hits[0].id == "tess::self_facts::0001" and hits[0].score == pytest.approx(1.0, abs=1e-4)
    assert all(a.score >= b.score for a, b in zip(hits, hits[1:], strict=False))
    assert hits[0].age() in {f"{n}s" for n in range(0, 60)}


def test_format_age() -> None:
    now = datetime(2026, 1, 2, tzinfo=UTC)
    assert format_age(now - timedelta(seconds=5), now) == "5s"
    assert format_age(now - timedelta(minutes=3, seconds=59), now) == "3m"
    assert format_age(now - timedelta(hours=2), now) == "2h"
    assert format_age(now - timedelta(days=9), now) == "9d"
    assert format_age(None, now) == "?"


def test_ids_by_prefix_or_part_and_one_line_errors(admin: MemoryAdmin) -> None:
    assert admin.find("worldview::0000").id == "tess::worldview::0000"  # the persona part left out
    assert admin.find("wor").id == "tess::worldview::0000"  # a short start, the persona part left out
    assert admin.find("tess::worldview").id == "tess::worldview::0000"  # a unique prefix
    with pytest.raises(MemoryAdminError, match="matches 2 entries") as ambiguous:
        admin.find("self_facts")
    assert ambiguous.value.usage
    with pytest.raises(MemoryAdminError, match="no memory entry 'nope'") as missing:
        admin.find("nope")
    assert not missing.value.usage


def test_forget_a_runtime_entry_removes_it_from_search(admin: MemoryAdmin) -> None:
    note = admin.add("episodic", "The person's boat is called Tern.")
    result = admin.forget([note.id[-8:]])
    assert [e.id for e in result.forgotten] == [note.id] and result.returning == ()
    assert all("Tern" not in e.text for e in admin.list_entries())
    assert all("Tern" not in e.text for e in admin.search("The person's boat is called Tern.", top_k=10))


def test_forget_checks_every_id_before_deleting_any(admin: MemoryAdmin) -> None:
    note = admin.add("episodic", "Keep me.")
    with pytest.raises(MemoryAdminError):
        admin.forget([note.id, "no-such-entry"])
    assert admin.find(note.id).text == "Keep me."


def test_identity_cannot_be_forgotten_or_written(admin: MemoryAdmin) -> None:
    with pytest.raises(MemoryAdminError, match="identity") as err:
        admin.forget(["identity::0000"])
    assert err.value.usage and admin.find("identity::0000").text == "name: Tess"
    with pytest.raises(MemoryAdminError, match="identity store cannot be written"):
        admin.add("identity", "name: Someone else")


def test_a_forgotten_yaml_entry_comes_back_at_the_next_load(tmp_path, memories) -> None:
    admin = MemoryAdmin(memories.open(tmp_path))
    result = admin.forget(["self_facts::0000"])
    assert [e.id for e in result.returning] == ["tess::self_facts::0000"]
    with pytest.raises(MemoryAdminError):
        admin.find("self_facts::0000")
    again = MemoryAdmin(memories.open(tmp_path))  # a new chat start: the YAML is indexed again
    assert again.find("self_facts::0000").text == "self_fact: I have sailed for twenty years."


def test_a_pinned_out_yaml_entry_stays_out_across_loads_and_renumbering(tmp_path, memories) -> None:
    admin = MemoryAdmin(memories.open(tmp_path))
    result = admin.forget(["self_facts::0000"], pin=True)
    assert result.pinned and not result.returning and len(admin.pins()) == 1
    reordered = PERSONA_YAML.replace(
        "  - fact: I have sailed for twenty years.\n  - fact: I prefer short answers.\n",
        "  - fact: I prefer short answers.\n  - fact: I like knots.\n  - fact: I have sailed for twenty years.\n",
    )
    path = write_persona(tmp_path, reordered)
    for _ in range(2):  # the changed YAML is indexed, then an unchanged start skips indexing
        texts = [e.text for e in MemoryAdmin(memories.open(tmp_path, path)).list_entries(("self_facts",))]
        assert "self_fact: I have sailed for twenty years." not in texts and "self_fact: I like knots." in texts
    back = MemoryAdmin(memories.open(tmp_path, path))
    assert [p.preview for p in back.unpin([back.pins()[0].hash[:6]])] == ["self_fact: I have sailed for twenty years."]
    assert "self_fact: I have sailed for twenty years." in [e.text for e in back.list_entries(("self_facts",))]


def test_edit_history_and_rollback(admin: MemoryAdmin) -> None:
    note = admin.add("self_facts", "I sail a Laser.")
    assert note.text == "self_fact: I sail a Laser."
    edited = admin.edit(note.id[-10:], "I sail an Optimist.")
    assert edited.version == 2 and edited.logical_id == note.id and edited.text == "self_fact: I sail an Optimist."
    versions = admin.history(note.id)
    assert [(v.version, v.text) for v in versions] == [(1, "self_fact: I sail a Laser."), (2, "self_fact: I sail an Optimist.")]
    back = admin.rollback(edited.id, 1)
    assert back.version == 3 and back.text == "self_fact: I sail a Laser."
    assert [e.text for e in admin.list_entries(("self_facts",)) if e.logical_id == note.id] == ["self_fact: I sail a Laser."]
    with pytest.raises(MemoryAdminError, match="no version 7"):
        admin.rollback(note.id, 7)
    with pytest.raises(MemoryAdminError, match="no versions"):
        admin.history("identity::0001")


def test_added_text_is_redacted(admin: MemoryAdmin) -> None:
    note = admin.add("episodic", "my key is sk-live-ABCDEFGHIJKLMNOPQRSTUVWX1234")
    assert "ABCDEFGHIJKLMNOP" not in note.text


def test_recent_lists_newest_episodic_first(admin: MemoryAdmin) -> None:
    first = admin.add("episodic", "first note")
    second = admin.add("episodic", "second note")
    assert [e.id for e in admin.recent(5)] == [second.id, first.id]
