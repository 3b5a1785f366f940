"""No API key ever lands in PERSONA_HOME, on stdout or on stderr; data is private (0600 / 0700).

Real ``persona`` processes (chat and agent, piped, with and without ``-v``) talk to the
scripted server on 127.0.0.1. One key comes from the environment, the other from a file
passed with ``--env-file``; the server echoes keys back in a 401 error body, as providers
do. Afterwards every byte of every file under PERSONA_HOME, and everything the processes
printed, is searched for the keys (and their last 8 characters).
"""

from __future__ import annotations

import stat
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.openai_server import Status, Text, ToolCall
from tests.support.env import clean_env
from tests.support.paths import REPO

KAI = REPO / "personas" / "kai.yaml"
ENV_KEY = "sk-SECRET-e2e-7f3a9c"  # frontier's key, in the real environment
FILE_KEY = "sk-SECRET-file-4d2e8b"  # mid's key, only in the --env-file file
KEYS = (ENV_KEY, FILE_KEY)
NEEDLES = tuple(n for key in KEYS for n in (key, key[-8:]))


def _echo_401(key: str) -> Status:
    """A 401 whose body repeats the key, in full and masked, as OpenAI's does."""
    masked = key[:3] + "*" * (len(key) - 7) + key[-4:]
    return Status(401, body={"error": {
        "message": f"Incorrect API key provided: {key}. You passed {masked}.",
        "type": "invalid_request_error", "param": None, "code": "invalid_api_key",
    }})


@pytest.fixture
def setup(server, tmp_path):
    home = tmp_path / "home"
    env_file = tmp_path / "secrets.env"
    env_file.write_text(
        "PERSONA_MID_PROVIDER=openai\n"
        "PERSONA_MID_MODEL=gpt-4o-mini\n"
        f"PERSONA_MID_API_KEY={FILE_KEY}\n"
        f"PERSONA_MID_BASE_URL={server.base_url}\n"
    )
    env = clean_env(home) | {
        "PERSONA_FRONTIER_PROVIDER": "openai",
        "PERSONA_FRONTIER_MODEL": "gpt-4o",
        "PERSONA_FRONTIER_API_KEY": ENV_KEY,
        "PERSONA_FRONTIER_BASE_URL": server.base_url,
        "PERSONA_EMBEDDER": "hash",
        "PERSONA_REQUEST_TIMEOUT_S": "10",
        "NO_PROXY": "127.0.0.1",
    }
    return home, env_file, env


def persona(args: list[str], env: dict[str, str], cwd: Path, stdin: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "persona_cli", *args], input=stdin.encode(), env=env, cwd=cwd,
        capture_output=True, timeout=120,
    )


def leaks(data: bytes) -> list[str]:
    return [n for n in NEEDLES if n.encode() in data]


def test_no_key_anywhere_and_data_is_private(server, setup, tmp_path) -> None:
    home, env_file, env = setup
    outputs: list[tuple[str, subprocess.CompletedProcess[bytes]]] = []

    # 1. chat: a normal turn, then a 401 on frontier (key echoed) that falls back to mid.
    server.enqueue(Text("Hello, I am Kai."), model="gpt-4o")
    server.enqueue(_echo_401(ENV_KEY), model="gpt-4o")
    server.enqueue(Text("Answer from mid."), model="gpt-4o-mini")
    proc = persona(["chat", str(KAI), "--tier", "frontier", "--env-file", str(env_file)], env, tmp_path, "Hi\nAgain\n")
    outputs.append(("chat", proc))
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]
    assert proc.stdout.decode() == "Hello, I am Kai.\nAnswer from mid.\n"
    assert b"AuthenticationError" in proc.stderr

    # 2. chat -v: every model answers 401 with the key in the body; the turn fails (exit 1).
    server.enqueue(_echo_401(ENV_KEY), model="gpt-4o")
    server.enqueue(_echo_401(FILE_KEY), model="gpt-4o-mini")
    proc = persona(["-v", "--env-file", str(env_file), "chat", str(KAI), "--tier", "frontier"], env, tmp_path, "Fail please\n")
    outputs.append(("chat -v, all 401", proc))
    assert proc.returncode == 1, proc.stderr.decode()[-2000:]
    assert b"every model failed" in proc.stderr

    # 3. agent: a tool call, then an echoed 401 on mid that falls back to frontier, then the answer.
    server.enqueue(ToolCall("calculator", {"expression": "6*7"}, text="Computing."), model="gpt-4o")
    server.enqueue(_echo_401(FILE_KEY), model="gpt-4o-mini")
    server.enqueue(Text("[FINAL] The answer is 42."), model="gpt-4o")
    proc = persona(
        ["--env-file", str(env_file), "agent", str(KAI), "What is six times seven?", "--on-ask", "proceed"],
        env, tmp_path, "",
    )
    outputs.append(("agent", proc))
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]
    assert "42" in proc.stdout.decode()

    # 4. agent -v, every model 401: the run ends in error (exit 1).
    server.enqueue(_echo_401(ENV_KEY), model="gpt-4o")
    server.enqueue(_echo_401(FILE_KEY), model="gpt-4o-mini")
    proc = persona(["-v", "--env-file", str(env_file), "agent", str(KAI), "Another task", "--on-ask", "proceed"], env, tmp_path, "")
    outputs.append(("agent -v, all 401", proc))
    assert proc.returncode == 1, proc.stderr.decode()[-2000:]

    # The keys really were in use: each reached the server in the Authorization header.
    auth = {r.authorization for r in server.requests}
    assert {f"Bearer {ENV_KEY}", f"Bearer {FILE_KEY}"} <= auth
    assert not server.unscripted

    for name, proc in outputs:
        assert leaks(proc.stdout) == [], f"{name}: key on stdout"
        assert leaks(proc.stderr) == [], f"{name}: key on stderr:\n{proc.stderr.decode()[-3000:]}"

    files = [p for p in home.rglob("*") if p.is_file() or p.is_symlink()]
    names = {p.relative_to(home).as_posix() for p in files}
    # The places a key could end up were all written (so the search below means something).
    assert "logs/turns.jsonl" in names and "logs/persona-core.log" in names
    assert any(n.startswith("runs/") for n in names) and any(n.startswith("memory/") and n.endswith(".sqlite3") for n in names)
    # The echoed error bodies were recorded, with the key taken out.
    assert b"Incorrect API key provided: [redacted]" in (home / "logs" / "turns.jsonl").read_bytes()
    found = {p.relative_to(home).as_posix(): leaks(p.read_bytes()) for p in files if p.is_file()}
    assert {k: v for k, v in found.items() if v} == {}
    assert ENV_KEY not in str(tmp_path) and not any(n in name for name in names for n in NEEDLES)

    # Private: every directory 0700, every file 0600 (no group or other bits anywhere).
    loose = [
        f"{p.relative_to(home)} {stat.filemode(p.lstat().st_mode)}"
        for p in [home, *home.rglob("*")]
        if not p.is_symlink() and stat.S_IMODE(p.lstat().st_mode) != (0o700 if p.is_dir() else 0o600)
    ]
    assert loose == [], "\n".join(loose)


def test_data_written_before_the_umask_is_tightened(tmp_path) -> None:
    from persona_runtime.paths import tighten_private

    store = tmp_path / "memory" / "hash" / "segment"
    store.mkdir(parents=True)
    (store / "data.bin").write_bytes(b"x")
    for path in (tmp_path / "memory", tmp_path / "memory" / "hash", store):
        path.chmod(0o755)
    (store / "data.bin").chmod(0o644)
    (store / "link").symlink_to(store / "data.bin")
    tighten_private(tmp_path / "memory")
    modes = {p.relative_to(tmp_path).as_posix(): stat.S_IMODE(p.lstat().st_mode) for p in tmp_path.rglob("*") if not p.is_symlink()}
    assert modes == {
        "memory": 0o700, "memory/hash": 0o700, "memory/hash/segment": 0o700, "memory/hash/segment/data.bin": 0o600,
    }


def test_persona_cores_own_commands_keep_the_data_dir_private(tmp_path) -> None:
    """`persona audit` / `persona repair` run persona-core's code on our data dir: same 0700 / 0600."""
    home = tmp_path / "home"
    env = clean_env(home, PERSONA_EMBEDDER="hash")
    for args in (["audit", str(KAI)], ["repair", str(KAI)]):
        done = persona(args, env, tmp_path, "")
        assert done.returncode == 0, done.stderr.decode()[-500:]
    created = [home, *home.rglob("*")]
    assert any(p.is_file() for p in created)  # something was written (the core log at least)
    loose = [
        f"{p.relative_to(home)} {stat.filemode(p.lstat().st_mode)}"
        for p in created
        if not p.is_symlink() and stat.S_IMODE(p.lstat().st_mode) != (0o700 if p.is_dir() else 0o600)
    ]
    assert loose == [], "\n".join(loose)
