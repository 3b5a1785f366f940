"""Usage a provider did not report: counted by us (cl100k, the prompt budget's tokenizer),
marked estimated through sums, the TurnLog, `logs stats`, the usage line and the toolbar."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace

from persona.backends.types import TokenUsage, ToolSpec
from persona.schema.conversation import Conversation, ConversationMessage
from persona.schema.tools import ToolCall

from persona_runtime.engine import tokens
from persona_runtime.engine.engine import ModelEngine
from persona_runtime.engine.account import CallAccount
from persona_runtime.engine.reply import ModelReply, stream_reply
from persona_runtime.engine.usage import Usage
from persona_runtime.loop import ConversationLoop
from persona_runtime.prompt import count_tokens
from persona_runtime.testing import Reply, ScriptedBackend, ScriptedToolCall
from persona_runtime.turnlog import MemoryTurnLogWriter, TurnLog
from persona_runtime.turnlog.stats import stats
from tests.support import agentic
from tests.support.turnlogs import rec

NOW = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)
PRICE = (1.0, 2.0)  # cents per 1k tokens in, out


def msg(role: str, content: str, **kw: object) -> ConversationMessage:
    return ConversationMessage(role=role, content=content, created_at=NOW, **kw)  # type: ignore[arg-type]


def never() -> int:
    raise AssertionError("a measured count must not be estimated")


# -- Usage -----------------------------------------------------------------------------------


def test_an_estimate_stays_marked_through_sums() -> None:
    measured, guessed = Usage(100, 20, 0.5, 1), Usage(40, 4, 0.1, 1, estimated=True)
    assert not (measured + measured).estimated
    assert (measured + guessed).estimated and (guessed + measured).estimated
    assert sum([measured, guessed, measured], Usage()) == Usage(240, 44, 1.1, 3, estimated=True)


def test_reported_counts_are_kept_and_missing_ones_are_counted() -> None:
    reported = TokenUsage(prompt_tokens=1000, completion_tokens=500, total_tokens=1500)
    kept = Usage.measured_or_estimated(reported, PRICE, prompt_estimate=never, completion_estimate=never)
    assert kept == Usage(1000, 500, 2.0, 1, estimated=False)

    for missing in (None, TokenUsage(prompt_tokens=0, completion_tokens=0, total_tokens=0)):
        # No usage, or persona-core's stand-in zeros: never a measured 0.
        guessed = Usage.measured_or_estimated(missing, PRICE, prompt_estimate=lambda: 300, completion_estimate=lambda: 50)
        assert guessed == Usage(300, 50, 0.4, 1, estimated=True)  # the cost of estimated tokens: an estimate
    # Only the prompt reported: the completion is ours (the reply said something).
    half = TokenUsage(prompt_tokens=300, completion_tokens=0, total_tokens=300)
    assert Usage.measured_or_estimated(half, None, prompt_estimate=never, completion_estimate=lambda: 7) == Usage(
        300, 7, None, 1, estimated=True
    )
    # A measured prompt and a really empty reply: that 0 is measured.
    assert not Usage.measured_or_estimated(half, None, prompt_estimate=never, completion_estimate=lambda: 0).estimated


# -- the counts ------------------------------------------------------------------------------


def test_prompt_tokens_count_messages_tool_calls_and_tool_specs() -> None:
    call = ToolCall(name="calculator", args={"expression": "6*7"}, call_id="c1")
    messages = [msg("system", "You are Kai."), msg("user", "What is six times seven?"), msg("assistant", "", tool_calls=[call])]
    spec = ToolSpec(name="calculator", description="Evaluates arithmetic.", parameters={"type": "object"})
    plain = sum(count_tokens(m.content) + 4 for m in messages[:2]) + 4
    with_call = plain + count_tokens("calculator") + count_tokens(json.dumps({"expression": "6*7"})) + 4
    assert tokens.prompt_tokens(messages) == with_call
    spec_tokens = count_tokens("calculator") + count_tokens("Evaluates arithmetic.") + count_tokens('{"type": "object"}') + 4
    assert tokens.prompt_tokens(messages, [spec]) == with_call + spec_tokens
    assert tokens.completion_tokens("Forty-two.", "", [("calculator", '{"expression": "6*7"}')]) == (
        count_tokens("Forty-two.") + count_tokens("calculator") + count_tokens('{"expression": "6*7"}')
    )
    assert tokens.completion_tokens("") == 0


# -- one streamed request ------------------------------------------------------------------------


def reply_of(backend: ScriptedBackend, messages: list[ConversationMessage], tools: list | None = None) -> ModelReply:
    async def run() -> ModelReply:
        items = [i async for i in stream_reply(backend, messages, tools=tools, temperature=0.0, max_tokens=256, price=PRICE)]
        assert isinstance(items[-1], ModelReply)
        return items[-1]

    return asyncio.run(run())


def test_a_stream_without_usage_is_counted_over_what_was_sent_and_received() -> None:
    messages = [msg("system", "You are Kai."), msg("user", "Say hello in five words.")]
    spec = ToolSpec(name="calculator", description="Evaluates arithmetic.", parameters={"type": "object"})
    backend = ScriptedBackend([
        Reply("Hello there, how are you?", usage_reported=False),
        Reply("", tool_calls=[ScriptedToolCall("calculator", {"expression": "1+1"})], usage_reported=False),
        Reply("Measured.", usage=(77, 3)),
    ])
    text = reply_of(backend, messages)
    assert text.usage.estimated and text.usage.requests == 1
    assert text.usage.prompt_tokens == tokens.prompt_tokens(messages)
    assert text.usage.completion_tokens == count_tokens("Hello there, how are you?")
    assert text.usage.cost_cents == round(text.usage.prompt_tokens / 1000 + 2 * text.usage.completion_tokens / 1000, 6)

    call = reply_of(backend, messages, [spec])
    assert call.usage.prompt_tokens == tokens.prompt_tokens(messages, [spec])
    assert call.usage.completion_tokens == count_tokens("calculator") + count_tokens('{"expression": "1+1"}')

    measured = reply_of(backend, messages)
    assert (measured.usage.prompt_tokens, measured.usage.completion_tokens, measured.usage.estimated) == (77, 3, False)


def test_a_summary_without_usage_is_estimated_too() -> None:
    backend = ScriptedBackend([Reply("A short summary.", usage=(0, 0))])
    engine = ModelEngine(agentic.tiers(small=backend))
    account = CallAccount()
    summary = asyncio.run(engine.summarise(account, "USER: hi\nASSISTANT: hello", instructions="Summarise.", max_tokens=64))
    assert summary.text == "A short summary."
    assert account.usage.estimated and account.usage.prompt_tokens > 0
    assert account.usage.completion_tokens == count_tokens("A short summary.")


# -- the TurnLog ------------------------------------------------------------------------------


def test_a_chat_turn_without_usage_is_logged_non_zero_and_estimated() -> None:
    log = MemoryTurnLogWriter()
    backend = ScriptedBackend([Reply("Hi there.", usage_reported=False), Reply("Again.", usage=(90, 2))])
    loop = ConversationLoop(persona=agentic.PERSONA, tiers=agentic.tiers(mid=backend), turn_log=log)
    conversation = Conversation(conversation_id="estimates", persona_id="tester")

    async def turns() -> list:
        return [[e async for e in loop.turn(conversation, text, tier="mid")][-1] for text in ("Hello?", "Again?")]

    first, second = asyncio.run(turns())
    assert first.log.usage_estimated and first.prompt_tokens > 0 and first.completion_tokens == count_tokens("Hi there.")
    assert not second.log.usage_estimated and (second.prompt_tokens, second.completion_tokens) == (90, 2)
    assert [r.usage_estimated for r in log.logs] == [True, False]


def test_an_agent_step_without_usage_is_estimated_in_its_record_and_the_run(tmp_path: Path) -> None:
    loop, log = agentic.make_loop(agentic.tiers(frontier=ScriptedBackend([Reply("[FINAL] Done.", usage_reported=False)])), tmp_path)
    run = agentic.final_run(asyncio.run(agentic.collect(loop, "Say done.", max_steps=1)))
    assert run.steps[0].usage_estimated and run.usage_estimated and run.prompt_tokens > 0 and run.completion_tokens > 0
    assert [r.usage_estimated for r in log.logs] == [True]


def test_old_records_without_the_field_read_as_measured() -> None:
    old = rec(0)
    old.pop("usage_estimated", None)
    assert TurnLog.model_validate(old).usage_estimated is False


# -- what is shown ------------------------------------------------------------------------------


def test_stats_count_estimated_turns_and_the_table_marks_them(log: Path) -> None:
    from typer.testing import CliRunner

    from persona_cli.app import app
    from tests.support.turnlogs import write

    records = [rec(0), rec(1, usage_estimated=True, tier="local"), rec(2, tier="local")]
    rows = {r.key: r for r in stats(records, by="tier", total=True)}
    assert (rows["fast"].estimated, rows["local"].estimated, rows["total"].estimated) == (0, 1, 1)

    write(log, records)
    result = CliRunner().invoke(app, ["logs", "stats"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    fast = next(line for line in lines if line.strip().startswith("fast"))
    local = next(line for line in lines if line.strip().startswith("local"))
    assert "~" not in fast and "~200/20" in local and "~$0.0100" in local
    assert any(line.startswith("~ estimated") and "1 turn;" in line for line in lines)
    listed = CliRunner().invoke(app, ["logs", "list"]).stdout
    assert listed.count("~100/10") == 1


def test_the_usage_line_and_the_toolbar_mark_estimates() -> None:
    from persona_cli.commands.chat_repl import toolbar as _toolbar
    from persona_cli.turn_view import SessionTotals, usage_line

    def done(estimated: bool) -> SimpleNamespace:
        return SimpleNamespace(
            tier="mid", model="smollm2", prompt_tokens=812, completion_tokens=143, cost_cents=0.0, latency_ms=2300.0,
            log=SimpleNamespace(usage_estimated=estimated),
        )

    assert usage_line(done(False)) == "mid · smollm2 · 812 in · 143 out · $0 (local) · 2.3 s"
    assert usage_line(done(True)) == (
        "mid · smollm2 · ~812 in · ~143 out · ~$0 (local) · 2.3 s · tokens estimated (the provider reported none)"
    )
    totals = SessionTotals()
    totals.add(done(False))
    assert (totals.tokens_text(), totals.cost_text()) == ("955", "$0 (local)")
    totals.add(done(True))
    assert (totals.tokens_text(), totals.cost_text()) == ("~1.9k", "~$0 (local)")

    tiers = SimpleNamespace(context_window_for=lambda _tier: 2048)
    session = SimpleNamespace(tiers=tiers, persona=SimpleNamespace(identity=SimpleNamespace(name="Kai")), built_spend=None)
    ctx = SimpleNamespace(totals=totals, session=session, tier="auto", prompt=None)
    text = "".join(part[1] for part in _toolbar(ctx))
    assert "context ~40%" in text and "~1.9k tokens" in text and "~$0 (local)" in text


def test_the_agent_step_title_and_run_summary_mark_estimates() -> None:
    from persona_cli.agent_view import run_summary, step_title
    from persona_runtime.agentic.run import Run, Step, StepType

    measured = Step(index=1, type=StepType.REASONING, tier="mid", prompt_tokens=500, completion_tokens=40, cost_cents=0.0)
    guessed = measured.model_copy(update={"index": 2, "usage_estimated": True})
    assert "~" not in step_title(measured, 2) and "540 tok · $0 (local)" in step_title(measured, 2)
    assert "~540 tok · ~$0 (local)" in step_title(guessed, 2)
    assert "~" not in run_summary(Run(id="r1", task="t", persona_id="p", steps=(measured,)))
    summary = run_summary(Run(id="r2", task="t", persona_id="p", steps=(measured, guessed)))
    assert "~1.1k tok · ~$0 (local) (tokens estimated: the provider reported none)" in summary


def test_a_reply_interrupted_mid_stream_logs_what_was_sent_and_received_as_estimated() -> None:
    import threading

    from persona_runtime.testing import Hang

    waiting = threading.Event()
    log = MemoryTurnLogWriter()
    backend = ScriptedBackend([Hang(waiting, after_deltas=("Partial ", "answer"))])
    loop = ConversationLoop(persona=agentic.PERSONA, tiers=agentic.tiers(mid=backend), turn_log=log)
    conversation = Conversation(conversation_id="cut", persona_id="tester")

    async def main() -> None:
        async def consume() -> None:
            async for _event in loop.turn(conversation, "Tell me a long story.", tier="mid"):
                pass

        task = asyncio.ensure_future(consume())
        while not waiting.is_set():
            await asyncio.sleep(0)  # yield until the backend says it hangs mid-reply
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            pass

    asyncio.run(main())
    [record] = log.logs
    assert record.status == "interrupted" and record.usage_estimated
    assert record.prompt_tokens == tokens.prompt_tokens(backend.calls[0].messages)
    assert record.completion_tokens == count_tokens("Partial answer")
