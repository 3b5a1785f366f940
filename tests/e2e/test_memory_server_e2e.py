"""Memory on a real Chroma server (`chroma run` on 127.0.0.1), driven through the real `persona`.

Two PERSONA_HOMEs stand for two machines sharing one persona's memory; the server is killed in
the middle of a session and the chat goes on; restarted, the next start writes what was queued.
"""

from __future__ import annotations

import json
import stat
import subprocess
import sys
from pathlib import Path

from tests.support.chroma_server import ChromaServerProcess
from tests.support.env import clean_env
from tests.support.openai_server import ScriptedOpenAIServer, Text
from tests.support.paths import REPO

ASTRID = REPO / "personas" / "astrid.yaml"
KEY = "sk-test-chroma-e2e-7777"
TOKEN = "chroma-token-e2e-SECRET-5150"


def machine_env(llm: ScriptedOpenAIServer, home: Path, chroma_url: str) -> dict[str, str]:
    return clean_env(
        home,
        PERSONA_PROVIDER="openai",
        PERSONA_MODEL="gpt-4o-mini",
        PERSONA_API_KEY=KEY,
        PERSONA_BASE_URL=llm.base_url,
        PERSONA_EMBEDDER="hash",
        PERSONA_REQUEST_TIMEOUT_S="10",
        PERSONA_CHROMA_URL=chroma_url,
        PERSONA_CHROMA_TOKEN=TOKEN,
        NO_PROXY="127.0.0.1",
        PYTHONUNBUFFERED="1",
    )


def chat(env: dict[str, str], cwd: Path, stdin: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "persona_cli", "chat", str(ASTRID)], input=stdin, env=env, cwd=cwd,
        capture_output=True, text=True, timeout=180,
    )


def sent_text(request) -> str:
    return json.dumps(request.body["messages"], ensure_ascii=False)


def server_episodic(url: str) -> dict[str, str]:
    import chromadb

    client = chromadb.HttpClient(host="127.0.0.1", port=int(url.rsplit(":", 1)[1]))
    got = client.get_collection("persona__astrid__episodic").get(include=["documents"])
    return dict(zip(got["ids"], got["documents"], strict=True))


def all_bytes(root: Path) -> bytes:
    return b"".join(p.read_bytes() for p in root.rglob("*") if p.is_file())


def test_two_machines_share_one_personas_memory(server, chroma_server, tmp_path) -> None:
    laptop, desktop = tmp_path / "laptop", tmp_path / "desktop"
    server.enqueue(Text("Noted: your boat is Tern."))
    told = chat(machine_env(server, laptop, chroma_server.url), tmp_path, "My boat is called Tern.\n")
    assert told.returncode == 0, told.stderr
    server.enqueue(Text("It is called Tern."))
    asked = chat(machine_env(server, desktop, chroma_server.url), tmp_path, "What is my sailing vessel named?\n")
    assert asked.returncode == 0, asked.stderr
    assert asked.stdout == "It is called Tern.\n"
    # The desktop never heard it: the recalled memory in its request came from the server.
    assert "Tern" not in sent_text(server.requests[0]).replace("My boat is called Tern.", "")
    assert "My boat is called Tern." in sent_text(server.requests[1])
    # Memory lives on the server: neither home holds a Chroma database; both keep their own logs.
    for home in (laptop, desktop):
        assert not list(home.rglob("chroma.sqlite3"))
        assert len((home / "logs" / "turns.jsonl").read_text().splitlines()) == 1
        assert TOKEN.encode() not in all_bytes(home)
    assert TOKEN not in told.stderr + asked.stderr


def test_the_server_dies_mid_session_and_the_queued_writes_land_at_the_next_start(server, tmp_path) -> None:
    home = tmp_path / "home"
    chroma = ChromaServerProcess(tmp_path / "chroma-data").start()
    try:
        env = machine_env(server, home, chroma.url)

        def kill_chroma(_body: dict) -> bool:  # runs while turn 1's model request is in flight
            chroma.stop()
            return True

        server.enqueue(Text("First answer."), when=kill_chroma)
        server.enqueue(Text("Second answer."))
        result = chat(env, tmp_path, "Remember the lighthouse at Lindesnes.\nAnd the harbour at Mandal.\n")
        assert result.returncode == 0, result.stderr
        assert result.stdout == "First answer.\nSecond answer.\n"  # the chat went on
        notices = [line for line in result.stderr.splitlines() if "memory server" in line]
        assert len(notices) == 1, result.stderr  # one notice per outage, not one per turn
        assert "unreachable" in notices[0] and "queued" in notices[0] and chroma.url in notices[0]
        assert "Traceback" not in result.stderr and TOKEN not in result.stderr
        records = [json.loads(line) for line in (home / "logs" / "turns.jsonl").read_text().splitlines()]
        assert [r["status"] for r in records] == ["ok", "ok"]  # both turns logged
        [queue] = list((home / "memory-queue").rglob("astrid.jsonl"))
        assert stat.S_IMODE(queue.stat().st_mode) == 0o600
        queued = [json.loads(line)["chunk"] for line in queue.read_text().splitlines()]
        assert [c["text"].split("\n")[0] for c in queued] == [
            "USER: Remember the lighthouse at Lindesnes.", "USER: And the harbour at Mandal."
        ]
        assert TOKEN.encode() not in all_bytes(home)

        chroma.start()  # same path, same port
        server.enqueue(Text("Welcome back."))
        again = chat(env, tmp_path, "What do you remember?\n")
        assert again.returncode == 0, again.stderr
        assert "memory server" not in again.stderr
        assert not queue.exists()  # replayed at the start, and removed once it landed
        on_server = server_episodic(chroma.url)
        assert {c["id"] for c in queued} <= set(on_server)
        assert "Lindesnes" in sent_text(server.requests[-1])  # and recalled in the same turn
    finally:
        chroma.stop()
