"""Provider faults through persona-core's real OpenAI backend, over HTTP on 127.0.0.1.

Each fault the scripted server can produce is sent to a chat turn (ConversationLoop) and
to an agent step (AgenticLoop). The tiers come from environment variables, as the CLI
builds them: the frontier tier has two models (``gpt-4o``, ``gpt-4o-b``), mid has one
(``gpt-4o-mini``), so a fault walks the next model of the tier first, then the next tier.

Every test is bounded by ``asyncio.wait_for``: a fault must never hang a turn.
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from persona.schema.conversation import Conversation
from persona.schema.persona import Persona

from persona_runtime import events as ev
from persona_runtime.agentic import AgenticLoop, Run, RunStatus, StepType
from persona_runtime.agentic import events as aev
from persona_runtime.loop import ConversationLoop
from persona_runtime.tier_env import tier_registry_from_env
from persona_runtime.turnlog import JSONLTurnLogWriter, MemoryTurnLogWriter, TurnLog
from tests.support.openai_server import (
    CutStream,
    EmptyCompletion,
    MalformedSSE,
    ScriptedOpenAIServer,
    SlowFirstByte,
    Status,
    Text,
    ToolCall,
)
from tests.support.paths import REPO

PERSONA = Persona.model_validate(
    {
        "persona_id": "kai-faults",
        "identity": {"name": "Kai", "role": "research assistant", "background": "Careful with numbers."},
        "tools": ["calculator"],
    }
)
KEY = "sk-test-faults-0000-abcdef"
FRONTIER_A, FRONTIER_B, MID = "gpt-4o", "gpt-4o-b", "gpt-4o-mini"
CHAIN = [("frontier", FRONTIER_A), ("frontier", FRONTIER_B), ("mid", MID)]
BOUND_S = 30  # no test may take longer than this: a hang fails, it does not block the suite

# (id, the fault, the error type the TurnLog must record, whether text streamed before the fault)
FAULTS = [
    pytest.param(Status(429, retry_after=120), "RateLimitError", False, id="429-long-retry-after"),
    pytest.param(Status(429), "RateLimitError", False, id="429-no-retry-after"),
    pytest.param(Status(500), "ProviderError", False, id="500"),
    pytest.param(Status(503), "ProviderError", False, id="503"),
    pytest.param(Status(401), "AuthenticationError", False, id="401"),
    # The request timeout is 1 s; the server would answer only after 5 s.
    pytest.param(SlowFirstByte(5, then=Text("too late")), "BackendTimeoutError", False, id="slow-first-byte"),
    pytest.param(CutStream(after_chunks=2), "ProviderError", True, id="stream-cut"),
    pytest.param(MalformedSSE("partial"), "ProviderError", True, id="malformed-sse"),
    pytest.param(EmptyCompletion(), "EmptyCompletionError", False, id="empty-completion"),
]


def tier_env(srv: ScriptedOpenAIServer) -> dict[str, str]:
    return {
        "PERSONA_FRONTIER_MODELS": f"openai/{FRONTIER_A},openai/{FRONTIER_B}",
        "PERSONA_MID_MODELS": f"openai/{MID}",
        "PERSONA_OPENAI_API_KEY": KEY,
        "PERSONA_OPENAI_BASE_URL": srv.base_url,
        "PERSONA_REQUEST_TIMEOUT_S": "1",
    }


def calculator_toolbox() -> Any:
    from persona.tools import Toolbox
    from persona.tools.builtin.calculator import make_calculator_tool

    return Toolbox([make_calculator_tool()], allow_list=["calculator"])


def read_log(path: Path) -> list[TurnLog]:
    return [TurnLog.model_validate_json(line) for line in path.read_text().splitlines()]


def bounded(coro: Any) -> Any:
    return asyncio.run(asyncio.wait_for(coro, BOUND_S))


class Chat:
    """A ConversationLoop on env-built tiers with a JSONL turn log; one conversation."""

    def __init__(self, srv: ScriptedOpenAIServer, tmp_path: Path, *, toolbox: Any = None) -> None:
        self.tiers = tier_registry_from_env(tier_env(srv))
        self.log_path = tmp_path / "logs" / "turns.jsonl"
        self.loop = ConversationLoop(
            persona=PERSONA, tiers=self.tiers, toolbox=toolbox, turn_log=JSONLTurnLogWriter(self.log_path)
        )
        self.conv = Conversation(conversation_id="faults", persona_id=PERSONA.persona_id)

    async def turn(self, text: str, tier: str = "frontier") -> list[ev.TurnEvent]:
        return [e async for e in self.loop.turn(self.conv, text, tier=tier)]

    async def close(self) -> None:
        await self.tiers.aclose()


def fallbacks(events: list[Any]) -> list[tuple[str, str, str, str]]:
    return [
        (e.failed_tier, e.failed_model, e.next_tier, e.next_model) for e in events if isinstance(e, ev.FallbackTriggered)
    ]


# -- chat turns ----------------------------------------------------------------------------


@pytest.mark.parametrize(("fault", "error_type", "streamed"), FAULTS)
def test_chat_fault_walks_the_tier_then_the_next_tier(server, tmp_path, fault, error_type, streamed) -> None:
    server.enqueue(fault, model=FRONTIER_A)
    server.enqueue(fault, model=FRONTIER_B)
    server.enqueue(Text("Answer from the mid tier."), model=MID)
    chat = Chat(server, tmp_path)

    async def main():
        try:
            return await chat.turn("What is a deposit?")
        finally:
            await chat.close()

    events = bounded(main())
    assert fallbacks(events) == [
        ("frontier", FRONTIER_A, "frontier", FRONTIER_B),
        ("frontier", FRONTIER_B, "mid", MID),
    ]
    for fb in (e for e in events if isinstance(e, ev.FallbackTriggered)):
        assert fb.error.startswith(error_type) and fb.discarded_text is streamed
        assert KEY not in fb.error
    assert not any(isinstance(e, (ev.TurnFailed, ev.RetryWaiting)) for e in events)
    done = events[-1]
    assert isinstance(done, ev.TurnFinished) and done.status == "ok"
    assert (done.tier, done.model, done.text) == ("mid", MID, "Answer from the mid tier.")
    # Text streamed by a failed attempt is not part of the kept reply.
    assert [(m.role, m.content) for m in chat.conv.messages] == [
        ("user", "What is a deposit?"), ("assistant", "Answer from the mid tier."),
    ]
    assert [r.model for r in server.requests] == [FRONTIER_A, FRONTIER_B, MID] and not server.unscripted

    [record] = read_log(chat.log_path)
    assert record.status == "ok" and record.error is None and record.fallback
    assert [(a.tier, a.model, a.outcome, a.error_type) for a in record.attempts] == [
        ("frontier", FRONTIER_A, "error", error_type),
        ("frontier", FRONTIER_B, "error", error_type),
        ("mid", MID, "ok", None),
    ]
    assert KEY not in chat.log_path.read_text()


@pytest.mark.parametrize(("fault", "error_type", "streamed"), FAULTS)
def test_chat_fault_everywhere_fails_cleanly_and_retry_resends(server, tmp_path, fault, error_type, streamed) -> None:
    from persona_cli.slash import SlashContext, handle_slash

    for _tier, model in CHAIN:
        server.enqueue(fault, model=model)
    chat = Chat(server, tmp_path)

    async def main():
        try:
            failed = await chat.turn("Is anyone there?")
            # What `/retry` does in the REPL: take the kept message back out and send it again.
            ctx = SlashContext(session=SimpleNamespace(built_loop=None), tier="frontier", totals=None, out=None, info=_NullConsole(), conversation=chat.conv)
            assert await handle_slash(ctx, "/retry") == "retry"
            server.enqueue(Text("Yes, I am here."), model=FRONTIER_A)
            retried = await chat.turn(ctx.retry_text or "")
            return failed, retried
        finally:
            await chat.close()

    failed, retried = bounded(main())
    assert len(fallbacks(failed)) == 2
    assert isinstance(failed[-2], ev.TurnFailed) and failed[-2].error_type == error_type
    assert "every model failed (3 attempts)" in failed[-2].message and KEY not in failed[-2].message
    assert isinstance(failed[-1], ev.TurnFinished) and failed[-1].status == "error" and failed[-1].text == ""
    assert [type(e).__name__ for e in failed].count("TurnFinished") == 1

    assert isinstance(retried[-1], ev.TurnFinished) and retried[-1].status == "ok"
    assert retried[-1].text == "Yes, I am here."
    # The message was kept (status error), and /retry replaced it: it appears once, answered.
    assert [(m.role, m.content, m.metadata.get("status")) for m in chat.conv.messages] == [
        ("user", "Is anyone there?", "ok"), ("assistant", "Yes, I am here.", "ok"),
    ]
    resent = server.requests[-1].body["messages"]
    assert [m["content"] for m in resent if m["role"] == "user"] == ["Is anyone there?"]

    first, second = read_log(chat.log_path)
    assert first.status == "error" and "every model failed" in (first.error or "")
    assert [(a.tier, a.model, a.outcome, a.error_type) for a in first.attempts] == [
        (tier, model, "error", error_type) for tier, model in CHAIN
    ]
    assert second.status == "ok" and [a.outcome for a in second.attempts] == ["ok"]
    assert KEY not in chat.log_path.read_text()


def test_chat_failed_message_is_kept_but_not_sent_with_the_next_one(server, tmp_path) -> None:
    for _tier, model in CHAIN:
        server.enqueue(Status(500), model=model)
    server.enqueue(Text("Fresh answer."), model=FRONTIER_A)
    chat = Chat(server, tmp_path)

    async def main():
        try:
            return await chat.turn("first, fails"), await chat.turn("second, works")
        finally:
            await chat.close()

    failed, ok = bounded(main())
    assert failed[-1].status == "error" and ok[-1].status == "ok"
    assert chat.conv.messages[0].content == "first, fails" and chat.conv.messages[0].metadata["status"] == "error"
    sent = server.requests[-1].body["messages"]
    assert [m["content"] for m in sent if m["role"] == "user"] == ["second, works"]


def test_chat_short_retry_after_is_waited_out_then_the_same_model(server, tmp_path) -> None:
    server.enqueue(Status(429, retry_after=0.2), model=FRONTIER_A)
    server.enqueue(Text("After the wait."), model=FRONTIER_A)
    chat = Chat(server, tmp_path)

    async def main():
        try:
            return await chat.turn("Hi")
        finally:
            await chat.close()

    events = bounded(main())
    [wait] = [e for e in events if isinstance(e, ev.RetryWaiting)]
    assert (wait.seconds, wait.tier, wait.model) == (0.2, "frontier", FRONTIER_A)
    assert wait.reason.startswith("RateLimitError")
    assert fallbacks(events) == []
    assert events[-1].status == "ok" and (events[-1].model, events[-1].text) == (FRONTIER_A, "After the wait.")
    assert [r.model for r in server.requests] == [FRONTIER_A, FRONTIER_A]
    [record] = read_log(chat.log_path)
    assert [(a.model, a.outcome, a.error_type) for a in record.attempts] == [
        (FRONTIER_A, "error", "RateLimitError"), (FRONTIER_A, "ok", None),
    ]


def test_chat_short_retry_after_is_waited_once_then_falls_back(server, tmp_path) -> None:
    server.enqueue(Status(429, retry_after=0.1), model=FRONTIER_A)
    server.enqueue(Status(429, retry_after=0.1), model=FRONTIER_A)
    server.enqueue(Text("From the second model."), model=FRONTIER_B)
    chat = Chat(server, tmp_path)

    async def main():
        try:
            return await chat.turn("Hi")
        finally:
            await chat.close()

    events = bounded(main())
    kinds = [type(e).__name__ for e in events if isinstance(e, (ev.RetryWaiting, ev.FallbackTriggered))]
    assert kinds == ["RetryWaiting", "FallbackTriggered"]
    assert fallbacks(events) == [("frontier", FRONTIER_A, "frontier", FRONTIER_B)]
    assert events[-1].status == "ok" and events[-1].model == FRONTIER_B
    [record] = read_log(chat.log_path)
    assert [(a.model, a.outcome) for a in record.attempts] == [
        (FRONTIER_A, "error"), (FRONTIER_A, "error"), (FRONTIER_B, "ok"),
    ]


def test_chat_tool_call_with_non_json_arguments_goes_back_to_the_model(server, tmp_path) -> None:
    server.enqueue(ToolCall("calculator", '{"expression": "2*', call_id="call_bad"), model=FRONTIER_A)
    server.enqueue(Text("Let me answer without the tool."), model=FRONTIER_A)
    chat = Chat(server, tmp_path, toolbox=calculator_toolbox())

    async def main():
        try:
            return await chat.turn("What is 2*21?")
        finally:
            await chat.close()

    events = bounded(main())
    [started] = [e for e in events if isinstance(e, ev.ToolCallStarted)]
    [finished] = [e for e in events if isinstance(e, ev.ToolCallFinished)]
    assert (started.name, started.arguments) == ("calculator", {})
    assert finished.is_error and "Nothing was executed" in finished.content
    assert fallbacks(events) == [] and events[-1].status == "ok"
    assert events[-1].text == "Let me answer without the tool."
    # The model saw its call answered with the error, paired by id.
    follow_up = server.requests[1].body["messages"]
    assert follow_up[-2]["role"] == "assistant" and follow_up[-2]["tool_calls"][0]["id"] == "call_bad"
    assert follow_up[-1]["role"] == "tool" and follow_up[-1]["tool_call_id"] == "call_bad"
    assert "Nothing was executed" in follow_up[-1]["content"]
    [record] = read_log(chat.log_path)
    assert [(t.name, t.ok) for t in record.tool_calls] == [("calculator", False)]
    assert [(a.model, a.outcome) for a in record.attempts] == [(FRONTIER_A, "ok")]


# -- agent steps ---------------------------------------------------------------------------


class Agent:
    def __init__(self, srv: ScriptedOpenAIServer, tmp_path: Path, *, toolbox: Any = None) -> None:
        self.tiers = tier_registry_from_env(tier_env(srv))
        self.log_path = tmp_path / "logs" / "turns.jsonl"
        self.runs_dir = tmp_path / "runs"
        self.loop = AgenticLoop(
            persona=PERSONA, tiers=self.tiers, toolbox=toolbox, turn_log=JSONLTurnLogWriter(self.log_path),
            runs_dir=self.runs_dir, max_steps=3,
        )

    async def run(self, task: str) -> list[Any]:
        try:
            return [e async for e in self.loop.run(task)]
        finally:
            await self.tiers.aclose()

    def saved(self, run_id: str) -> dict[str, Any]:
        return json.loads((self.runs_dir / f"{run_id}.json").read_text())


@pytest.mark.parametrize(("fault", "error_type", "streamed"), FAULTS)
def test_agent_step_fault_falls_back(server, tmp_path, fault, error_type, streamed) -> None:
    # The first step of a run goes to frontier.
    server.enqueue(fault, model=FRONTIER_A)
    server.enqueue(fault, model=FRONTIER_B)
    server.enqueue(Text("[FINAL] Done on mid."), model=MID)
    agent = Agent(server, tmp_path)

    events = bounded(agent.run("Finish the task"))
    assert fallbacks(events) == [
        ("frontier", FRONTIER_A, "frontier", FRONTIER_B),
        ("frontier", FRONTIER_B, "mid", MID),
    ]
    assert all(e.discarded_text is streamed for e in events if isinstance(e, ev.FallbackTriggered))
    done = events[-1]
    assert isinstance(done, aev.RunFinished)
    run = done.run
    assert run.status is RunStatus.COMPLETED and run.output == "Done on mid."
    [step] = run.steps
    assert (step.type, step.tier, step.model) == (StepType.FINAL, "mid", MID)
    assert agent.saved(run.id)["status"] == "completed"
    [record] = read_log(agent.log_path)
    assert record.kind == "agent" and record.status == "ok"
    assert [(a.tier, a.model, a.outcome, a.error_type) for a in record.attempts] == [
        ("frontier", FRONTIER_A, "error", error_type),
        ("frontier", FRONTIER_B, "error", error_type),
        ("mid", MID, "ok", None),
    ]


@pytest.mark.parametrize(("fault", "error_type", "streamed"), FAULTS)
def test_agent_step_fault_everywhere_ends_the_run_with_error(server, tmp_path, fault, error_type, streamed) -> None:
    for _tier, model in CHAIN:
        server.enqueue(fault, model=model)
    agent = Agent(server, tmp_path)

    events = bounded(agent.run("Finish the task"))  # never raises: the run ends with a status
    done = events[-1]
    assert isinstance(done, aev.RunFinished)
    run = done.run
    assert run.status is RunStatus.ERROR
    assert run.error is not None and "every model failed (3 attempts)" in run.error and KEY not in run.error
    [step] = run.steps
    assert step.type is StepType.ERROR and step.error == run.error
    saved = agent.saved(run.id)
    assert saved["status"] == "error" and saved["error"] == run.error
    assert Run.from_json((agent.runs_dir / f"{run.id}.json").read_text()).status is RunStatus.ERROR
    [record] = read_log(agent.log_path)
    assert record.status == "error" and record.run_id == run.id
    assert [(a.tier, a.model, a.outcome, a.error_type) for a in record.attempts] == [
        (tier, model, "error", error_type) for tier, model in CHAIN
    ]
    assert KEY not in agent.log_path.read_text() + (agent.runs_dir / f"{run.id}.json").read_text()


def test_agent_short_retry_after_is_waited_out(server, tmp_path) -> None:
    server.enqueue(Status(429, retry_after=0.2), model=FRONTIER_A)
    server.enqueue(Text("[FINAL] After the wait."), model=FRONTIER_A)
    agent = Agent(server, tmp_path)

    events = bounded(agent.run("Finish the task"))
    [wait] = [e for e in events if isinstance(e, ev.RetryWaiting)]
    assert (wait.seconds, wait.model) == (0.2, FRONTIER_A)
    assert fallbacks(events) == []
    run = events[-1].run
    assert run.status is RunStatus.COMPLETED and run.output == "After the wait."
    [record] = read_log(agent.log_path)
    assert [(a.model, a.outcome) for a in record.attempts] == [(FRONTIER_A, "error"), (FRONTIER_A, "ok")]


def test_agent_tool_call_with_non_json_arguments_is_an_error_result(server, tmp_path) -> None:
    server.enqueue(ToolCall("calculator", "not json at all", call_id="call_bad"), model=FRONTIER_A)
    server.enqueue(Text("[FINAL] Answered without the tool."), model=MID)  # after tool results: mid
    agent = Agent(server, tmp_path, toolbox=calculator_toolbox())

    events = bounded(agent.run("Compute something"))
    [finished] = [e for e in events if isinstance(e, ev.ToolCallFinished)]
    assert finished.is_error and "Nothing was executed" in finished.content
    run = events[-1].run
    assert run.status is RunStatus.COMPLETED and run.output == "Answered without the tool."
    assert [s.type for s in run.steps] == [StepType.TOOL_CALL, StepType.FINAL]
    assert run.steps[0].tool_calls[0].is_error
    follow_up = server.requests[1].body["messages"]
    assert follow_up[-1]["role"] == "tool" and follow_up[-1]["tool_call_id"] == "call_bad"


# -- the CLI -------------------------------------------------------------------------------


def _piped_chat(server, tmp_path, monkeypatch, extra_env: dict[str, str]) -> Any:
    from typer.testing import CliRunner

    from persona_cli.app import app

    for key in [k for k in os.environ if k.startswith("PERSONA_")]:
        monkeypatch.delenv(key)
    monkeypatch.delenv("COLUMNS", raising=False)
    env = tier_env(server) | {"PERSONA_HOME": str(tmp_path / "home"), "PERSONA_EMBEDDER": "hash"} | extra_env
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.chdir(tmp_path)
    server.enqueue(Status(500), model=FRONTIER_A)
    server.enqueue(Text("Reply one."), model=FRONTIER_B)
    server.enqueue(Status(429, retry_after=0.1), model=FRONTIER_A)
    server.enqueue(Text("Reply two."), model=FRONTIER_A)
    astrid = REPO / "personas" / "astrid.yaml"
    result = CliRunner().invoke(app, ["chat", str(astrid), "--tier", "frontier"], input="one\ntwo\n")
    assert result.exit_code == 0, result.output
    assert result.stdout == "Reply one.\nReply two.\n"
    assert "\x1b" not in result.stdout + result.stderr and KEY not in result.stdout + result.stderr
    return result


def test_piped_chat_shows_the_fallback_and_the_retry_wait_on_stderr(server, tmp_path, monkeypatch) -> None:
    result = _piped_chat(server, tmp_path, monkeypatch, {})
    err = result.stderr.splitlines()
    [fallback] = [line for line in err if line.startswith("↪")]
    assert fallback.startswith(f"↪ openai/{FRONTIER_A} failed (ProviderError: Error code: 500")
    assert fallback.endswith(f"); trying frontier · {FRONTIER_B}")
    [waiting] = [line for line in err if "retrying in" in line]
    assert waiting.startswith(f"⏳ {FRONTIER_A} is rate limited (RateLimitError") and waiting.endswith("retrying in 0.1 s")


def test_piped_fallback_notice_is_one_line_at_the_default_width(server, tmp_path, monkeypatch) -> None:
    result = _piped_chat(server, tmp_path, monkeypatch, {})
    err = result.stderr.splitlines()
    [fallback] = [line for line in err if line.startswith("↪")]
    assert fallback.endswith(f"trying frontier · {FRONTIER_B}")


def test_the_fallback_line_is_dim_on_a_terminal() -> None:
    from io import StringIO

    from rich.console import Console

    from persona_cli.turn_view import TurnView

    buf = StringIO()
    info = Console(file=buf, force_terminal=True, color_system="standard", width=300)
    view = TurnView(out=Console(file=StringIO()), info=info)
    view.handle(ev.FallbackTriggered("frontier", "openai", FRONTIER_A, "ProviderError: boom", "mid", MID))
    lines = [line for line in buf.getvalue().splitlines() if line.strip()]
    assert len(lines) == 1
    assert lines[0].startswith("\x1b[2m↪ openai/gpt-4o failed (ProviderError: boom); trying mid · gpt-4o-mini")


class _NullConsole:
    def print(self, *args: Any, **kwargs: Any) -> None:
        pass


@pytest.mark.parametrize(("first", "answered"), [(Status(500), True), (Status(503), True), (Status(401), False)])
def test_a_single_model_retries_a_server_error_once(server, tmp_path, first, answered) -> None:
    from tests.support.env import openai_tier_env

    server.enqueue(first)
    server.enqueue(Text("Second try worked."))
    tiers = tier_registry_from_env(openai_tier_env(server.base_url, {"MID": "gpt-4o-mini"}))
    loop = ConversationLoop(persona=PERSONA, tiers=tiers, turn_log=MemoryTurnLogWriter())

    async def turn() -> list[Any]:
        try:
            return [e async for e in loop.turn(Conversation(conversation_id="one", persona_id="tester"), "Hi", tier="mid")]
        finally:
            await tiers.aclose()

    events = asyncio.run(turn())
    retries = [e for e in events if isinstance(e, ev.RetryWaiting)]
    if answered:
        assert events[-1].status == "ok" and events[-1].text == "Second try worked."
        assert len(retries) == 1 and len(server.requests) == 2
        assert [a.outcome for a in events[-1].log.attempts] == ["error", "ok"]
    else:  # a bad key will not get better by asking again
        assert events[-1].status == "error" and retries == [] and len(server.requests) == 1
