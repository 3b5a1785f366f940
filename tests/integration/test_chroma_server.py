"""PersonaMemory on a real Chroma server (`chroma run` on 127.0.0.1, started by the fixture)."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest
from persona.stores import HashEmbedder

from persona_runtime.chroma_server import ChromaServer, EmbedderMismatch, MemoryServerDown, make_client
from persona_runtime.memory import PersonaMemory
from persona_runtime.memory_migrate import migrate_memory
from persona_runtime.persona_file import load_persona
from tests.support.paths import REPO

PERSONA = load_persona(REPO / "personas" / "astrid.yaml")


class OtherEmbedder(HashEmbedder):
    """Same width, another model: its vectors must never share a collection with HashEmbedder's."""

    def __init__(self) -> None:
        super().__init__()
        self.model_name = "other-embedder"


def open_memory(memories, home: Path, server: ChromaServer, embedder=None) -> PersonaMemory:
    """Memory on ``server``, closed at the test's teardown (the ``memories`` fixture)."""
    return memories.keep(PersonaMemory.open(
        PERSONA, root=home / "marker", embedder=embedder or HashEmbedder(), audit_root=home / "audit",
        server=server, queue_dir=home / "queue",
    ))


def episodic_texts(memory: PersonaMemory) -> list[str]:
    return sorted(c.text for c in memory.stores["episodic"].get_all(memory.persona_id))


def test_what_one_client_is_told_the_other_recalls(chroma_server, tmp_path, memories) -> None:
    server = ChromaServer.parse(chroma_server.url)
    laptop, desktop = open_memory(memories, tmp_path / "a", server), open_memory(memories, tmp_path / "b", server)
    laptop.load()
    desktop.load()  # the same persona indexed twice: deterministic ids, so nothing doubles
    assert len(laptop.stores["identity"].get_all(PERSONA.persona_id)) == len(desktop.retrieve("x").identity)
    laptop.remember("USER: My boat is called Tern.", metadata={}, written_by="test")
    assert [c.text for c in desktop.retrieve("boat").episodic] == ["USER: My boat is called Tern."]


def test_a_dead_server_queues_writes_tells_once_and_replays_when_back(chroma_server, tmp_path, memories) -> None:
    server = ChromaServer.parse(chroma_server.url)
    memory = open_memory(memories, tmp_path, server)
    memory.load()
    memory.remember("USER: one", metadata={}, written_by="test")
    chroma_server.stop()
    with pytest.raises(MemoryServerDown, match="unreachable.*goes on without memory"):
        memory.retrieve("anything")
    assert memory.retrieve("anything").episodic == ()  # the same outage: quiet
    memory.remember("USER: two", metadata={}, written_by="test")  # quiet too: already told
    memory.remember("USER: three", metadata={}, written_by="test")
    assert memory.pending_writes == 2
    chroma_server.start()
    memory.retrieve("the next turn")  # the next turn: its recall finds the server back ...
    memory.remember("USER: four", metadata={}, written_by="test")  # ... and its write replays the queue first
    assert memory.pending_writes == 0 and not memory.queue.path.exists()
    assert episodic_texts(memory) == ["USER: four", "USER: one", "USER: three", "USER: two"]
    chroma_server.stop()  # a new outage gets its own notice
    with pytest.raises(MemoryServerDown, match="queued in"):
        memory.remember("USER: five", metadata={}, written_by="test")


def test_the_next_start_replays_the_queue_once(chroma_server, tmp_path, memories) -> None:
    server = ChromaServer.parse(chroma_server.url)
    first = open_memory(memories, tmp_path, server)
    first.load()
    chroma_server.stop()
    with pytest.raises(MemoryServerDown):
        first.remember("USER: queued while down", metadata={}, written_by="test")
    chroma_server.start()
    second = open_memory(memories, tmp_path, server)  # the next start
    second.load()
    assert second.pending_writes == 0
    assert episodic_texts(second) == ["USER: queued while down"]
    third = open_memory(memories, tmp_path, server)
    third.queue.append("episodic", second.stores["episodic"].get_all(PERSONA.persona_id)[0])  # landed, answer lost
    third.load()
    every_version = third.stores["episodic"].get_all(PERSONA.persona_id, include_superseded=True)
    assert [c.text for c in every_version] == ["USER: queued while down"]  # idempotent: not written twice


def test_down_at_start_means_memory_waits_and_indexes_when_back(chroma_server, tmp_path, memories) -> None:
    server = ChromaServer.parse(chroma_server.url)
    chroma_server.stop()
    memory = open_memory(memories, tmp_path, server)
    with pytest.raises(MemoryServerDown):
        memory.load()
    assert memory.retrieve("hello").episodic == ()  # told at start (the load's notice): quiet
    chroma_server.start()
    assert len(memory.retrieve("hello").identity) > 0  # indexed now that the server is back


def test_another_embedder_fails_in_one_line_and_writes_nothing(chroma_server, tmp_path, memories) -> None:
    server = ChromaServer.parse(chroma_server.url)
    first = open_memory(memories, tmp_path / "a", server)
    first.load()
    first.remember("USER: hash vectors", metadata={}, written_by="test")
    other = open_memory(memories, tmp_path / "b", server, embedder=OtherEmbedder())
    with pytest.raises(EmbedderMismatch) as caught:
        other.load()
    message = str(caught.value)
    assert "\n" not in message and "'hash" in message and "'other-embedder'" in message and "PERSONA_EMBEDDER" in message
    with pytest.raises(EmbedderMismatch):
        other.remember("USER: other vectors", metadata={}, written_by="test")
    assert episodic_texts(first) == ["USER: hash vectors"]


def test_migration_both_ways_is_idempotent(chroma_server, tmp_path, memories) -> None:
    local_root = tmp_path / "local-memory"
    local = memories.keep(PersonaMemory.open(PERSONA, root=local_root, embedder=HashEmbedder(), audit_root=tmp_path / "audit"))
    local.load()
    local.remember("USER: local only", metadata={}, written_by="test")
    total = sum(len(s.get_all(PERSONA.persona_id, include_superseded=True)) for s in local.stores.values())
    server = ChromaServer.parse(chroma_server.url)
    up = migrate_memory(PERSONA.persona_id, local_root=local_root, server=server, to_server=True, embedder=HashEmbedder())
    assert (up.copied, up.already) == (total, 0)
    again = migrate_memory(PERSONA.persona_id, local_root=local_root, server=server, to_server=True, embedder=HashEmbedder())
    assert (again.copied, again.already) == (0, total)
    remote = open_memory(memories, tmp_path / "remote", server)
    assert [c.text for c in remote.retrieve("local").episodic] == ["USER: local only"]  # vectors came along
    remote.remember("USER: told the server", metadata={}, written_by="test")
    back_root = tmp_path / "back"
    down = migrate_memory(PERSONA.persona_id, local_root=back_root, server=server, to_server=False, embedder=HashEmbedder())
    assert (down.copied, down.already) == (total + 1, 0)
    twice = migrate_memory(PERSONA.persona_id, local_root=back_root, server=server, to_server=False, embedder=HashEmbedder())
    assert (twice.copied, twice.already) == (0, total + 1)
    back = memories.keep(PersonaMemory.open(PERSONA, root=back_root, embedder=HashEmbedder(), audit_root=tmp_path / "audit2"))
    assert episodic_texts(back) == ["USER: local only", "USER: told the server"]
    with pytest.raises(EmbedderMismatch):
        migrate_memory(PERSONA.persona_id, local_root=back_root, server=server, to_server=True, embedder=OtherEmbedder())


def test_a_server_that_never_answers_fails_within_the_timeout(tmp_path) -> None:
    with socket.socket() as silent:  # accepts connections (the kernel's backlog), never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        port = silent.getsockname()[1]
        server = ChromaServer.parse(f"http://127.0.0.1:{port}", token="tok-never-shown-123")
        server = ChromaServer(**{**server.__dict__, "read_timeout_s": 0.5, "connect_timeout_s": 0.5})
        started = time.monotonic()
        with pytest.raises(MemoryServerDown) as caught:
            make_client(server)
        assert time.monotonic() - started < 5
        assert "tok-never-shown-123" not in str(caught.value) and str(port) in str(caught.value)


def run_persona(args: list[str], monkeypatch, capsys) -> tuple[int, str, str]:
    """``persona ARGS`` in process, through ``main()`` (which maps errors to exit codes)."""
    from persona_cli.app import main

    monkeypatch.setattr("sys.argv", ["persona", *args])
    with pytest.raises(SystemExit) as exited:
        main()
    out = capsys.readouterr()
    return int(exited.value.code or 0), out.out, out.err


def test_the_migrate_command_copies_and_says_so_in_one_line(chroma_server, tmp_path, monkeypatch, capsys, memories) -> None:
    astrid = str(REPO / "personas" / "astrid.yaml")
    monkeypatch.setenv("PERSONA_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("PERSONA_EMBEDDER", "hash")
    monkeypatch.setenv("PERSONA_CHROMA_TOKEN", "tok-cli-secret-4321")
    local = memories.keep(PersonaMemory.open(PERSONA, root=tmp_path / "home" / "memory" / "hash", embedder=HashEmbedder(), audit_root=tmp_path / "audit"))
    local.load()
    code, out, err = run_persona(["memory", "migrate", astrid, "--to", chroma_server.url], monkeypatch, capsys)
    assert code == 0, err
    assert out.startswith("copied ") and ", already there 0 (" in out and chroma_server.url in out
    code, out, err = run_persona(["memory", "migrate", astrid, "--to", chroma_server.url], monkeypatch, capsys)
    assert code == 0 and out.startswith("copied 0, already there "), err
    code, out, err = run_persona(["memory", "migrate", astrid, "--to", "chroma.example:8000"], monkeypatch, capsys)
    assert code == 2 and "PERSONA_CHROMA_URL must look like http://HOST:PORT" in err and len(err.strip().splitlines()) == 1
    code, out, err = run_persona(["memory", "migrate", astrid, "--to", "local"], monkeypatch, capsys)
    assert code == 2 and "PERSONA_CHROMA_URL" in err
    chroma_server.stop()
    code, out, err = run_persona(["memory", "migrate", astrid, "--to", chroma_server.url], monkeypatch, capsys)
    assert code == 1 and "unreachable" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert "tok-cli-secret-4321" not in err


def test_a_session_started_while_the_server_is_down_chats_with_one_notice(chroma_server, tmp_path) -> None:
    import asyncio

    from persona_runtime import events as ev
    from persona_runtime.session import open_session
    from persona_runtime.settings import Settings
    from persona_runtime.testing import ScriptedBackend
    from persona_runtime.tier import TierConfig, TierRegistry

    server = ChromaServer.parse(chroma_server.url, token="tok-session-secret-55")
    chroma_server.stop()
    session = open_session(
        REPO / "personas" / "astrid.yaml", settings=Settings(data_dir=tmp_path / "home", embedder="hash", chroma=server),
        tiers=TierRegistry([TierConfig.from_backend("mid", ScriptedBackend(["One.", "Two."]))]),
    )

    async def chat() -> tuple[list[str], list[object]]:
        try:
            loop = await session.loop()
            notices = session.take_notices()
            conversation = session.new_conversation()
            events = [e async for e in loop.turn(conversation, "first")]
            events += [e async for e in loop.turn(conversation, "second")]
            return notices, events
        finally:
            await session.aclose()

    notices, events = asyncio.run(asyncio.wait_for(chat(), 120))
    assert len(notices) == 1 and notices[0].startswith("memory is off until the server is back: the memory server")
    assert "tok-session-secret-55" not in notices[0]
    assert [e.status for e in events if isinstance(e, ev.TurnFinished)] == ["ok", "ok"]
    assert not [e for e in events if isinstance(e, ev.Notice)]  # told at start: the turns are quiet
    [queue] = list((tmp_path / "home" / "memory-queue").rglob("astrid.jsonl"))
    assert len(queue.read_text().splitlines()) == 2
    assert not list((tmp_path / "home").rglob("chroma.sqlite3"))  # never fell back to a local store


def test_the_token_goes_in_the_authorization_header_and_nowhere_else() -> None:
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    seen: list[str | None] = []

    class Unavailable(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            seen.append(self.headers.get("Authorization"))
            self.send_response(503)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Unavailable)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        server = ChromaServer.parse(f"http://127.0.0.1:{httpd.server_address[1]}", token="tok-header-only-8080")
        with pytest.raises(MemoryServerDown) as caught:  # 503: the server is there but not serving
            make_client(server)
    finally:
        httpd.shutdown()
        httpd.server_close()
    assert seen == ["Bearer tok-header-only-8080"]
    assert "tok-header-only-8080" not in str(caught.value) and "503" in str(caught.value)


def test_a_session_with_another_embedder_is_told_in_one_line_and_writes_nothing(chroma_server, tmp_path, memories) -> None:
    import asyncio

    from persona_runtime.session import open_session
    from persona_runtime.settings import Settings
    from persona_runtime.testing import ScriptedBackend
    from persona_runtime.tier import TierConfig, TierRegistry

    server = ChromaServer.parse(chroma_server.url)
    open_memory(memories, tmp_path / "first", server, embedder=OtherEmbedder()).load()  # the server's collections: other-embedder
    session = open_session(
        REPO / "personas" / "astrid.yaml", settings=Settings(data_dir=tmp_path / "home", embedder="hash", chroma=server),
        tiers=TierRegistry([TierConfig.from_backend("mid", ScriptedBackend(["Fine."]))]),
    )

    async def chat() -> list[str]:
        try:
            loop = await session.loop()
            notices = session.take_notices()
            _ = [e async for e in loop.turn(session.new_conversation(), "Remember this.")]
            return notices
        finally:
            await session.aclose()

    notices = asyncio.run(asyncio.wait_for(chat(), 120))
    [notice] = [n for n in notices if "embedder" in n]
    assert notice.startswith("memory is off for this session: the memory collection persona__astrid__")
    assert "'other-embedder'" in notice and "'hash-384'" in notice and "\n" not in notice
    check = open_memory(memories, tmp_path / "check", server, embedder=OtherEmbedder())
    assert episodic_texts(check) == []  # nothing of the hash embedder's was written


def test_the_indexing_marker_is_not_trusted_when_the_server_lost_the_persona(tmp_path, memories) -> None:
    from tests.support.chroma_server import ChromaServerProcess

    first = ChromaServerProcess(tmp_path / "data-1").start()
    try:
        server = ChromaServer.parse(first.url)
        open_memory(memories, tmp_path / "home", server).load()  # indexed; the marker is written
    finally:
        first.stop()
    wiped = ChromaServerProcess(tmp_path / "data-2", port=first.port).start()  # same URL, empty server
    try:
        again = open_memory(memories, tmp_path / "home", server)
        again.load()
        assert len(again.retrieve("hello").identity) > 0  # indexed again, not skipped on the marker's word
    finally:
        wiped.stop()
