"""Interrupt soak: 100 Ctrl-C at random points of `persona chat` in a real pty.

Each cycle sends a message and presses Ctrl-C at a random moment of one of these phases:

* ``stream``      a slow streamed reply, mid-stream;
* ``tool``        a tool call: while its arguments stream in, or while ``file_read`` is blocked
                  on a FIFO nobody writes to (a tool that hangs);
* ``fallback``    the countdown of a 429 ``Retry-After`` wait;
* ``compaction``  the small-tier summary request that compacts the history (set to run on
                  every turn from the third on);
* ``early``       right after Enter, before or while the turn starts (memory retrieval);
* ``late``        around the end of a short reply: before, during, or just after it (the prompt
                  may already be back, where Ctrl-C is a key, or not yet, where it is SIGINT).

Afterwards: the session answers a last message in full, ``/save`` shows every message typed,
in order, alternating with replies; every TurnLog line parses, one per turn; every request the
model received was well-formed (alternating roles, no tool result without its call); exit 0.

Cycles are synchronised on what the app does, never on sleeps: the server records each
request as it arrives, and prompt-toolkit writes ``ESC[?2004h`` / ``ESC[?2004l`` (bracketed
paste on/off) exactly once when a prompt starts / ends. The random delays are the test
input. ``PERSONA_SOAK_INTERRUPTS`` (default 100) and ``PERSONA_SOAK_SEED`` change the run.
"""

from __future__ import annotations

import json
import os
import random
import time
from pathlib import Path

import pexpect
import pytest

from persona_cli.slash import INTERRUPTED_LABEL
from tests.support.fifo import release_fifo
from tests.support.openai_server import BodyPredicate, ScriptedOpenAIServer, SlowFirstByte, Status, Text, ToolCall
from tests.support.pty import pty_env, spawn_persona
from tests.support.paths import REPO

PROMPT_STARTED = "\x1b[?2004h"  # prompt-toolkit enables bracketed paste as a prompt starts...
PROMPT_ENDED = "\x1b[?2004l"  # ...and disables it as the prompt returns the line
SMALL, MID = "small-soak", "mid-soak"
INTERRUPTS = int(os.environ.get("PERSONA_SOAK_INTERRUPTS", "100"))
SEED = int(os.environ.get("PERSONA_SOAK_SEED", "20261124"))
# ~15 s at 16 chars / 50 ms: far longer than the random delay before Ctrl-C, even on a loaded machine.
STORY = "The tenant read every clause of the lease twice, then wrote to the landlord. " * 60
WAIT_S = 60  # bound on any single wait; a healthy cycle takes about a second


@pytest.mark.pty
@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_ctrl_c_at_random_points_never_breaks_the_session(tmp_path) -> None:
    rng = random.Random(SEED)
    home = tmp_path / "home"
    workspace = home / "workspace"
    workspace.mkdir(parents=True)
    screen: list[str] = []
    sent: list[str] = []
    kinds: list[str] = []
    with ScriptedOpenAIServer() as server:
        child = _spawn(server, home, tmp_path, screen)
        try:
            child.expect_exact(PROMPT_STARTED)
            for i in range(INTERRUPTS):
                kind = _pick_kind(rng, i)
                kinds.append(kind)
                _run_cycle(child, server, rng, i, kind, workspace, sent)
                records = _turn_records(home)
                assert len(records) == i + 1, f"cycle {i} ({kind}): {len(records)} turn records"
                if kind not in ("late", "early"):
                    assert records[-1]["status"] == "interrupted", f"cycle {i} ({kind}): {records[-1]}"
            # Still usable: a last message gets its whole reply, and /save sees everything.
            server.clear()
            server.enqueue(Text("Summary of the talk so far."), model=SMALL, when=_summary_in_cycle(INTERRUPTS))
            server.enqueue(Text("Final answer, all in one piece."), model=MID, when=_reply_to("final question"))
            _send(child, "final question", sent)
            child.expect_exact("Final answer, all in one piece.")
            child.expect_exact(PROMPT_STARTED)
            transcript = tmp_path / "transcript.md"
            child.send(f"/save {transcript}\r")
            child.expect_exact(PROMPT_ENDED)
            child.expect_exact(PROMPT_STARTED)
            child.sendcontrol("d")
            child.expect(pexpect.EOF)
        except (pexpect.TIMEOUT, pexpect.EOF, AssertionError) as exc:
            detail = f"seed {SEED}, kinds so far {kinds[-5:]}: {type(exc).__name__}: {exc}"
            raise AssertionError(f"{detail}\nscreen (tail):\n{''.join(screen)[-3000:]}") from None
        finally:
            child.close()
            for fifo in workspace.glob("*.fifo"):
                release_fifo(fifo)
        requests = list(server.requests)

    output = "".join(screen)
    assert child.exitstatus == 0, output[-2000:]
    assert "Traceback" not in output
    assert len(kinds) == INTERRUPTS and {"stream", "tool", "fallback", "compaction", "early", "late"} <= set(kinds)

    # Every TurnLog line parses; one record per message; only ok/interrupted.
    records = _turn_records(home)
    assert len(records) == len(sent) == INTERRUPTS + 1
    assert {r["status"] for r in records} <= {"ok", "interrupted"}
    assert records[-1]["status"] == "ok"
    assert len({r["conversation_id"] for r in records}) == 1
    for log in (home / "logs").glob("*.jsonl*"):
        for line in log.read_text().splitlines():
            json.loads(line)

    # The conversation: every message typed, in order, each followed by the persona's reply,
    # which says so when it was cut short.
    speakers, texts = _parse_transcript(transcript.read_text())
    assert speakers == ["You", "Astrid"] * len(sent)
    assert texts[0::2] == sent
    assert texts[-1] == "Final answer, all in one piece."
    marked = [reply.endswith(INTERRUPTED_LABEL) for reply in texts[1::2]]
    assert marked == [r["status"] == "interrupted" for r in records]

    # Every request the model saw was well-formed.
    main_requests = [r for r in requests if r.model == MID]
    assert main_requests, "no request reached the model"
    for request in main_requests:
        _assert_well_formed(request.body["messages"])
    summaries = [r for r in requests if r.model == SMALL]
    assert any(kind == "compaction" for kind in kinds) and summaries


# -- one cycle -----------------------------------------------------------------------------


def _pick_kind(rng: random.Random, i: int) -> str:
    if i == 0:
        return "stream"  # the first turn waits for memory and models to load; keep it plain
    kinds = ["stream", "tool", "fallback", "early", "late"] + (["compaction"] if i >= 3 else [])
    return rng.choice(kinds)


def _run_cycle(child: pexpect.spawn, server: ScriptedOpenAIServer, rng: random.Random, i: int, kind: str,
               workspace: Path, sent: list[str]) -> None:
    server.clear()
    text = f"message {i} ({kind})"
    # From the third turn on, every turn first asks the small tier for a summary.
    summary = SlowFirstByte(30.0, Text("too late")) if kind == "compaction" else Text(f"Summary {i}.")
    server.enqueue(summary, model=SMALL, when=_summary_in_cycle(i))
    mine = _reply_to(text)
    if kind == "stream":
        server.enqueue(Text(STORY, chunk_size=16, delay_s=0.05), model=MID, when=mine)
    elif kind == "tool":
        fifo = workspace / f"pipe-{i}.fifo"
        os.mkfifo(fifo)
        server.enqueue(ToolCall("file_read", {"path": fifo.name}, call_id=f"call_{i}", text="Let me read it."), model=MID, when=mine)
        server.enqueue(Text("unused"), model=MID, when=mine)
    elif kind == "fallback":
        server.enqueue(Status(429, retry_after=10), model=MID, when=mine)  # the longest wait the app sits out
        server.enqueue(Text("After the wait."), model=MID, when=mine)
    elif kind in ("early", "late", "compaction"):
        server.enqueue(Text("A short answer.", chunk_size=4, delay_s=0.02), model=MID, when=mine)
    before = len(server.requests)
    _send(child, text, sent)
    if kind != "early":
        model, when = (SMALL, _summary_in_cycle(i)) if kind == "compaction" else (MID, mine)
        assert server.wait_for_request(model, after=before, timeout=WAIT_S, when=when), f"no {model} request"
    delay = {"stream": 2.0, "tool": 1.0, "fallback": 2.5, "compaction": 1.5, "early": 0.05, "late": 0.4}[kind]
    time.sleep(rng.uniform(0, delay))  # the random point: this is the test's input, not synchronisation
    child.sendcontrol("c")
    child.expect_exact(PROMPT_STARTED)  # the turn is over and the prompt is back
    if kind == "compaction":
        assert not [r for r in server.requests[before:] if r.model == MID and mine(r.body)], "the reply started despite Ctrl-C"
    if kind == "tool":
        release_fifo(workspace / f"pipe-{i}.fifo")


# A turn cancelled just after its request left may still reach the server after the prompt is
# back and the next cycle has queued its replies. Each reply therefore answers only its own
# cycle's request, so such a late request gets a 500 nobody reads instead of the next reply.


def _reply_to(text: str) -> BodyPredicate:
    """The main-model request of the turn that sent ``text`` (its last user message)."""

    def match(body: dict) -> bool:
        users = [m for m in body.get("messages", []) if m.get("role") == "user"]
        return bool(users) and text in str(users[-1].get("content"))

    return match


def _summary_in_cycle(i: int) -> BodyPredicate:
    """The summary request of cycle ``i``: with one turn kept verbatim, it folds up to and
    including turn ``i - 2`` (a summary cancelled in cycle ``i - 1`` stopped at ``i - 3``)."""
    folded = f"USER: message {i - 2} ("
    return lambda body: folded in str(body.get("messages", [{}])[-1].get("content"))


def _send(child: pexpect.spawn, text: str, sent: list[str]) -> None:
    child.send(text + "\r")
    child.expect_exact(PROMPT_ENDED)  # the prompt took the line
    sent.append(text)


# -- checks --------------------------------------------------------------------------------


def _turn_records(home: Path) -> list[dict]:
    path = home / "logs" / "turns.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def _parse_transcript(text: str) -> tuple[list[str], list[str]]:
    speakers: list[str] = []
    bodies: list[list[str]] = []
    for line in text.splitlines()[1:]:
        if line in ("**You:**", "**Astrid:**"):
            speakers.append(line.strip("*:"))
            bodies.append([])
        elif bodies:
            bodies[-1].append(line)
    return speakers, ["\n".join(b).strip() for b in bodies]


def _assert_well_formed(messages: list[dict]) -> None:
    """System first; then user/assistant alternating from a user; the turn's own tail is either
    the user message or an assistant tool call followed by exactly its tool results."""
    roles = [m["role"] for m in messages]
    i = 0
    while i < len(roles) and roles[i] == "system":
        i += 1
    body = messages[i:]
    tail_start = next((k for k, m in enumerate(body) if m["role"] == "assistant" and m.get("tool_calls")), len(body))
    history, tail = body[:tail_start], body[tail_start:]
    assert history and [m["role"] for m in history] == ["user", "assistant"] * (len(history) // 2) + ["user"], roles
    for message in history:
        assert isinstance(message.get("content"), str), message
    if tail:
        call_ids = [c["id"] for c in tail[0]["tool_calls"]]
        results = tail[1:]
        assert [m["role"] for m in results] == ["tool"] * len(results), roles
        assert [m["tool_call_id"] for m in results] == call_ids[: len(results)], (call_ids, results)


def _spawn(server: ScriptedOpenAIServer, home: Path, cwd: Path, screen: list[str]) -> pexpect.spawn:
    env = pty_env(home, {
        # Summarise on every turn from the third on, so there is a compaction to interrupt.
        "PERSONA_HISTORY_COMPACT_AFTER": "2", "PERSONA_HISTORY_KEEP_TURNS": "1",
        "PERSONA_SMALL_PROVIDER": "openai", "PERSONA_SMALL_MODEL": SMALL,
        "PERSONA_SMALL_API_KEY": "sk-soak-small-0000", "PERSONA_SMALL_BASE_URL": server.base_url,
        "PERSONA_MID_PROVIDER": "openai", "PERSONA_MID_MODEL": MID,
        "PERSONA_MID_API_KEY": "sk-soak-mid-0000", "PERSONA_MID_BASE_URL": server.base_url,
    })
    args = ["chat", str(REPO / "personas" / "astrid.yaml"), "--tier", "mid"]
    return spawn_persona(args, env, cwd, screen, timeout=WAIT_S)
