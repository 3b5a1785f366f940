"""`persona chat` in a real pseudo-terminal: Ctrl-C and signals mid-reply, typing while it
streams, bytes that are not UTF-8."""

from __future__ import annotations

import json
import os
import signal

import pexpect
import pytest

from tests.support.openai_server import ScriptedOpenAIServer, Text
from tests.support.paths import REPO
from tests.support.pty import persona_in_pty

PROMPT = "›"  # the prompt glyph (styled, so followed by escape codes)
STORY = "Once upon a time there was a tenant who read every clause of the lease. " * 20
CHAT = ["chat", str(REPO / "personas" / "astrid.yaml")]


def turn_statuses(home) -> list[str]:
    return [json.loads(line)["status"] for line in (home / "logs" / "turns.jsonl").read_text().splitlines()]


@pytest.mark.pty
def test_ctrl_c_cancels_a_streaming_reply_and_the_session_lives_on(tmp_path) -> None:
    with ScriptedOpenAIServer() as server:
        server.enqueue(Text(STORY, chunk_size=12, delay_s=0.25))  # ~30 s if nobody interrupts
        server.enqueue(Text("Second answer, in full."))
        with persona_in_pty(CHAT, tmp_path, tmp_path, server=server) as (child, screen):
            child.expect_exact(PROMPT)
            child.send("Tell me a long story\r")
            child.expect_exact("Once upon a time")  # the reply is streaming
            child.sendcontrol("c")
            child.expect_exact("interrupted")
            child.expect_exact(PROMPT)  # the prompt is back: the session is alive
            child.send("And now a short one\r")
            child.expect_exact("Second answer, in full.")
            child.expect_exact(PROMPT)
            child.sendcontrol("d")
            child.expect(pexpect.EOF)
        assert child.exitstatus == 0, "".join(screen)[-2000:]
        assert len(server.requests) == 2

    records = [json.loads(line) for line in (tmp_path / "logs" / "turns.jsonl").read_text().splitlines()]
    assert [r["status"] for r in records] == ["interrupted", "ok"]
    assert records[0]["attempts"][0]["outcome"] == "interrupted"
    # The interrupted reply went into the history of the next request, marked as such.
    second = server.requests[1].body["messages"]
    assert second[1]["content"] == "Tell me a long story"
    assert second[2]["role"] == "assistant" and second[2]["content"].startswith("Once upon a time")
    assert second[2]["content"].endswith("[reply interrupted by the user]")


@pytest.mark.pty
def test_keys_typed_while_a_reply_streams_wait_for_the_next_prompt_unechoed(tmp_path) -> None:
    with ScriptedOpenAIServer() as server:
        server.enqueue(Text("A reply that takes a moment to arrive. " * 4, chunk_size=10, delay_s=0.1))
        server.enqueue(Text("Answer to the typed-ahead question."))
        with persona_in_pty(CHAT, tmp_path, tmp_path, server=server) as (child, screen):
            child.expect_exact(PROMPT)
            child.send("First question\r")
            child.expect_exact("A reply that takes")  # streaming
            child.send("typed ahead")
            child.expect_exact("$0.0")  # the usage line: the reply is over (cost of gpt-4o-mini)
            during = "".join(screen)
            child.expect_exact("typed ahead")  # shown at the next prompt, as if typed there
            child.send("\r")
            child.expect_exact("Answer to the typed-ahead question.")
            child.expect_exact(PROMPT)
            child.sendcontrol("d")
            child.expect(pexpect.EOF)
        assert "typed ahead" not in during, "the keys were echoed into the reply"
        assert server.requests[1].body["messages"][-1]["content"].endswith("\ntyped ahead")


@pytest.mark.pty
@pytest.mark.parametrize(("signum", "code"), [(signal.SIGTERM, 143), (signal.SIGHUP, 129)])
def test_sigterm_or_sighup_mid_reply_keeps_the_turn_and_exits_128_plus_the_signal(tmp_path, signum, code) -> None:
    with ScriptedOpenAIServer() as server:
        server.enqueue(Text(STORY, chunk_size=12, delay_s=0.25))
        with persona_in_pty(CHAT, tmp_path, tmp_path, server=server) as (child, screen):
            child.expect_exact(PROMPT)
            child.send("Tell me a long story\r")
            child.expect_exact("Once upon a time")
            child.kill(signum)
            child.expect(pexpect.EOF)
        assert child.exitstatus == code, "".join(screen)[-2000:]
    assert turn_statuses(tmp_path) == ["interrupted"]


@pytest.mark.pty
def test_sigterm_at_the_idle_prompt_leaves_cleanly(tmp_path) -> None:
    with persona_in_pty(CHAT, tmp_path, tmp_path) as (child, screen):
        child.expect_exact(PROMPT)
        child.kill(signal.SIGTERM)
        child.expect_exact("log:")  # the normal way out: the prompt gave the terminal back
        child.expect(pexpect.EOF)
    assert child.exitstatus == 143, "".join(screen)[-2000:]


def screen_lines(raw: str, columns: int = 120, rows: int = 40) -> list[str]:
    """What a person would see, scrollback included: the raw stream through a terminal emulator."""
    import pyte

    screen = pyte.HistoryScreen(columns, rows, history=5000)
    pyte.Stream(screen).feed(raw)
    scrolled = ["".join(line[x].data for x in range(columns)).rstrip() for line in screen.history.top]
    return scrolled + [line.rstrip() for line in screen.display]


@pytest.mark.pty
def test_typing_while_a_reply_streams_prints_every_line_once_and_keeps_the_keys(tmp_path) -> None:
    reply = "".join(f"Line {n:02d} of the reply, streamed a word at a time.\n\n" for n in range(1, 31))
    with ScriptedOpenAIServer() as server:
        server.enqueue(Text(reply, chunk_size=9, delay_s=0.02))
        server.enqueue(Text("Second."))
        with persona_in_pty(CHAT, tmp_path, tmp_path, server=server) as (child, screen):
            child.expect_exact(PROMPT)
            child.send("Stream it\r")
            child.expect_exact("Line 03")
            child.send("ab\r")  # an Enter typed during the reply, too
            child.expect_exact("Line 12")
            child.send("c")
            child.expect_exact("$0.0")  # the usage line: the reply is over
            child.expect_exact("c")  # the keys typed during the reply wait at the prompt
            child.send("\r")
            child.expect_exact("Second.")
            child.expect_exact(PROMPT)
            child.sendcontrol("d")
            child.expect(pexpect.EOF)
        assert server.requests[1].body["messages"][-1]["content"].endswith("ab\nc")
    shown = screen_lines("".join(screen))
    counts = {n: sum(f"Line {n:02d} of the reply" in line for line in shown) for n in range(1, 31)}
    assert counts == dict.fromkeys(range(1, 31), 1), "\n".join(shown)
    before_the_end = shown[: next(i for i, line in enumerate(shown) if "Line 30" in line)]
    assert not any(line.strip() in ("ab", "c", "abc") for line in before_the_end), "keys were echoed into the reply"


@pytest.mark.pty
def test_typed_bytes_that_are_not_utf8_fail_that_message_only(tmp_path) -> None:
    with ScriptedOpenAIServer() as server:
        server.enqueue(Text("Fine, that one I can read."))
        with persona_in_pty(CHAT, tmp_path, tmp_path, server=server) as (child, _screen):
            child.expect_exact(PROMPT)
            os.write(child.child_fd, b"caf\xe9 \xff\xfe ok\r")
            child.expect_exact("not all UTF-8 text")
            child.expect_exact(PROMPT)
            child.send("A clean question\r")
            child.expect_exact("Fine, that one I can read.")
            child.expect_exact(PROMPT)
            child.sendcontrol("d")
            child.expect(pexpect.EOF)
        assert child.exitstatus == 0 and len(server.requests) == 1
