"""The spend cap: its arithmetic, and the engine's reroute / refuse decisions before every model
call (chat turns, tool rounds, agent steps, summaries), on ScriptedBackend tiers with prices.

Prices (tests/support/spend.py): PRICEY is 10 cents per 1k tokens in and out, CHEAP 0.1. With
``reply_tokens=1000`` a PRICEY call's worst case is 10 cents plus its prompt, a CHEAP one's 0.1."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from persona.backends.errors import ProviderError
from persona.schema.conversation import Conversation

from persona_runtime import events as ev
from persona_runtime.agentic import RunStatus
from persona_runtime.engine.account import CallAccount
from persona_runtime.engine.engine import EngineOptions, ModelEngine
from persona_runtime.engine.usage import Usage
from persona_runtime.errors import ConfigError
from persona_runtime.loop import ConversationLoop
from persona_runtime.settings import Settings
from persona_runtime.engine.tokens import prompt_tokens as count_prompt_tokens
from persona_runtime.spend import day_spent_cents, worst_case_cents
from persona_runtime.testing import Raise, Reply, ScriptedBackend, ScriptedToolCall
from persona_runtime.turnlog import MemoryTurnLogWriter
from tests.support import agentic
from tests.support.spend import CHEAP, PRICEY, cap, priced, registry

REPLY_TOKENS = 1000


def chat_loop(tiers, spend, **kw) -> tuple[ConversationLoop, MemoryTurnLogWriter]:
    log = MemoryTurnLogWriter()
    options = EngineOptions(reply_tokens=REPLY_TOKENS, spend=spend)
    return ConversationLoop(persona=agentic.PERSONA, tiers=tiers, turn_log=log, options=options, **kw), log


def turn(loop: ConversationLoop, conv: Conversation, text: str) -> list:
    async def go() -> list:
        return [e async for e in loop.turn(conv, text, tier="mid")]

    return asyncio.run(go())


def conversation() -> Conversation:
    return Conversation(conversation_id="spend", persona_id="tester")


def logged_cost(log: MemoryTurnLogWriter) -> float:
    return sum(r.cost_cents or 0.0 for r in log.logs)


# -- arithmetic ------------------------------------------------------------------------------


def test_worst_case_is_the_whole_prompt_and_the_whole_reply_cap_and_unpriced_is_unknown() -> None:
    assert worst_case_cents(1000, 500, (1.0, 2.0)) == 2.0
    assert worst_case_cents(1000, 500, (0.0, 0.0)) == 0.0  # a local model: $0 for real
    assert worst_case_cents(1000, 500, None) is None


def test_the_cap_fits_calls_within_the_tightest_limit_and_charges_what_was_reported() -> None:
    spend = cap(10.0, day_cents=50.0, day_before=45.0)
    assert spend.headroom_cents() == 5.0  # the day leaves less than the session
    assert spend.fits(5.0) and not spend.fits(5.01)
    assert not spend.fits(None)  # unpriced: refused under a cap
    assert cap(10.0, allow_unpriced=True).fits(None)
    assert cap().fits(1e9) and not cap().active  # no limit set: no cap
    spend.charge(Usage(100, 10, 1.5, 1), worst=4.0)
    assert spend.spent_cents == 1.5 and not spend.estimated
    assert "today's $0.50 cap ($0.4650 spent today)" in spend.refusal(4.0, "mid openai/gpt-4o")


def test_a_call_with_no_reported_usage_is_charged_its_worst_case_marked_estimated() -> None:
    spend = cap(10.0)
    spend.charge(Usage(requests=1), worst=3.0)  # the provider sent no usage
    assert spend.spent_cents == 3.0 and spend.estimated
    assert spend.summary() == "~$0.03 / $0.10"
    spend.charge(Usage(0, 0, None, 1), worst=None)
    assert spend.unpriced_calls == 1 and spend.summary().endswith("(+1 unpriced)")


def test_prompt_tokens_are_counted_over_the_exact_messages() -> None:
    from persona_runtime.engine.messages import system_message, user_message

    short = count_prompt_tokens([system_message("Be brief."), user_message("Hi")])
    longer = count_prompt_tokens([system_message("Be brief."), user_message("Hi " * 200)])
    assert 10 <= short < 30 and longer >= short + 200


def test_the_days_spend_is_read_from_the_turn_logs_records_of_today(tmp_path: Path) -> None:
    path = tmp_path / "turns.jsonl"
    now = datetime.now(UTC)
    rows = [
        {"timestamp": (now - timedelta(days=2)).isoformat(), "cost_cents": 100.0},
        {"timestamp": now.isoformat(), "cost_cents": 1.25},
        {"timestamp": now.isoformat(), "cost_cents": None},  # unpriced adds nothing known
        {"timestamp": now.isoformat(), "cost_cents": 0.5},
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert day_spent_cents(path) == 1.75
    assert day_spent_cents(path, (now - timedelta(days=2)).astimezone().date()) == 100.0
    assert day_spent_cents(tmp_path / "none.jsonl") == 0.0


@pytest.mark.parametrize("raw", ["-1", "abc", "nan", "inf"])
def test_a_bad_cap_variable_is_one_config_error(raw: str) -> None:
    with pytest.raises(ConfigError, match="PERSONA_MAX_COST_PER_DAY must be an amount in US dollars"):
        Settings.from_env({"PERSONA_MAX_COST_PER_DAY": raw})


def test_cap_variables_become_cents() -> None:
    settings = Settings.from_env({"PERSONA_MAX_COST_PER_SESSION": "0.05", "PERSONA_MAX_COST_PER_DAY": "$2"})
    limits = settings.spend_limits()
    assert (limits.session_cents, limits.day_cents, limits.allow_unpriced) == (5.0, 200.0, False)
    assert not Settings.from_env({}).spend_limits().active


# -- chat turns ------------------------------------------------------------------------------


def test_a_turn_that_could_cross_the_cap_goes_to_the_cheaper_tier_and_the_log_stays_under_it() -> None:
    mid = ScriptedBackend(default=Reply("Costly answer.", usage=(100, 400)), model_name="big")  # 5 cents a turn
    small = ScriptedBackend(default=Reply("Cheap answer.", usage=(100, 400)), model_name="tiny")
    spend = cap(15.0)
    loop, log = chat_loop(registry(priced("mid", mid, PRICEY), priced("small", small, CHEAP)), spend)
    conv = conversation()
    first = turn(loop, conv, "Hello.")
    assert not [e for e in first if isinstance(e, ev.SpendCapRerouted)] and len(mid.calls) == 1
    second = turn(loop, conv, "And again?")  # 5 spent: mid's worst case (10+) no longer fits
    [rerouted] = [e for e in second if isinstance(e, ev.SpendCapRerouted)]
    assert (rerouted.from_tier, rerouted.from_model, rerouted.to_tier, rerouted.to_model) == ("mid", "big", "small", "tiny")
    assert "could cost up to $0.1" in rerouted.reason
    assert len(mid.calls) == 1 and len(small.calls) == 1
    assert small.calls[0].max_tokens == REPLY_TOKENS
    assert second[-1].status == "ok" and second[-1].tier == "small" and conv.messages[-1].metadata["tier"] == "small"
    record = log.logs[1]
    assert record.routing["spend_cap"][0]["from"] == "mid scripted/big"
    assert record.routing["spend_cap"][0]["to"] == "small scripted/tiny"
    assert [a.model for a in record.attempts] == ["tiny"]
    for text in ("Three.", "Four.", "Five."):
        turn(loop, conv, text)
    assert logged_cost(log) <= 15.0 and spend.spent_cents == pytest.approx(logged_cost(log))


def test_with_nothing_that_fits_the_turn_is_refused_the_message_kept_and_the_session_goes_on() -> None:
    mid = ScriptedBackend(default=Reply("never"), model_name="big")
    loop, log = chat_loop(registry(priced("mid", mid, PRICEY)), cap(5.0))
    conv = conversation()
    events = turn(loop, conv, "Hello.")
    [failed] = [e for e in events if isinstance(e, ev.TurnFailed)]
    assert failed.error_type == "SpendCapReached"
    assert failed.message.startswith("this turn could cost up to $0.1") and "over the $0.05 cap ($0.00 spent)" in failed.message
    assert mid.calls == []  # nothing was sent
    assert events[-1].status == "error" and log.logs[0].status == "error" and log.logs[0].cost_cents == 0.0
    assert conv.messages[-1].role == "user" and conv.messages[-1].metadata["status"] == "error"  # kept for /retry
    again = turn(loop, conv, "Still there?")
    assert isinstance(again[-1], ev.TurnFinished) and again[-1].status == "error" and mid.calls == []


def test_an_unpriced_model_is_refused_under_a_cap_unless_allowed() -> None:
    refused = ScriptedBackend(default=Reply("never"))
    loop, _log = chat_loop(registry(priced("mid", refused, None)), cap(100.0))
    [failed] = [e for e in turn(loop, conversation(), "Hi") if isinstance(e, ev.TurnFailed)]
    assert "is unpriced" in failed.message and "--allow-unpriced" in failed.message and refused.calls == []

    allowed = ScriptedBackend(default=Reply("Fine."))
    spend = cap(100.0, allow_unpriced=True)
    loop, log = chat_loop(registry(priced("mid", allowed, None)), spend)
    assert turn(loop, conversation(), "Hi")[-1].status == "ok"
    assert len(allowed.calls) == 1 and spend.unpriced_calls == 1 and log.logs[0].cost_cents is None


def test_every_tool_round_is_checked_and_a_round_that_could_cross_the_cap_moves_to_the_cheaper_tier() -> None:
    from persona.tools import Toolbox
    from persona.tools.builtin.calculator import make_calculator_tool

    call = ScriptedToolCall("calculator", {"expression": "6*7"})
    mid = ScriptedBackend([Reply(tool_calls=[call], usage=(100, 400))], model_name="big")  # 5 cents
    small = ScriptedBackend([Reply("It is 42.", usage=(200, 5))], model_name="tiny")
    spend = cap(15.0)
    loop, log = chat_loop(
        registry(priced("mid", mid, PRICEY), priced("small", small, CHEAP)), spend,
        toolbox=Toolbox([make_calculator_tool()], allow_list=["calculator"]),
    )
    events = turn(loop, conversation(), "What is six times seven?")
    assert events[-1].status == "ok" and events[-1].text == "It is 42."
    assert len(mid.calls) == 1 and len(small.calls) == 1
    assert small.calls[0].messages[-1].role == "tool"  # the second round, with the tool's result
    assert sum(isinstance(e, ev.SpendCapRerouted) for e in events) == 1
    assert log.logs[0].tool_calls and log.logs[0].tier == "small" and log.logs[0].cost_cents <= 15.0


def test_a_reply_cut_off_mid_stream_is_charged_its_worst_case() -> None:
    mid = ScriptedBackend([Raise(ProviderError("connection dropped"), after_deltas=["Hel", "lo"])], model_name="big")
    spend = cap(50.0)
    loop, _log = chat_loop(registry(priced("mid", mid, PRICEY)), spend)
    turn(loop, conversation(), "Hi")
    prompt = count_prompt_tokens(mid.calls[0].messages)
    assert spend.estimated and spend.spent_cents == pytest.approx(worst_case_cents(prompt, REPLY_TOKENS, PRICEY))


# -- summaries -------------------------------------------------------------------------------


def summarise(engine: ModelEngine, account: CallAccount):
    return asyncio.run(engine.summarise(account, "USER: a\nASSISTANT: b", instructions="Sum up.", max_tokens=256))


def test_a_summary_that_could_cross_the_cap_goes_to_the_cheapest_model_that_fits_or_is_skipped() -> None:
    small = ScriptedBackend(default=Reply("pricey summary"), model_name="tiny-but-pricey")
    mid = ScriptedBackend(default=Reply("cheap summary", usage=(50, 10)), model_name="cheap")
    tiers = registry(priced("small", small, PRICEY), priced("mid", mid, CHEAP))
    spend = cap(2.0)  # the small tier's worst case (256 reply tokens at 10 c/1k) is over 2.5 cents
    account = CallAccount()
    summary = summarise(ModelEngine(tiers, spend=spend), account)
    assert (summary.text, summary.tier) == ("cheap summary", "mid") and small.calls == []
    assert mid.calls[0].method == "chat" and mid.calls[0].max_tokens == 256
    assert account.spend_reroutes[0]["to"] == "mid scripted/cheap" and spend.spent_cents == account.usage.cost_cents

    nothing = cap(0.001)
    assert summarise(ModelEngine(tiers, spend=nothing), CallAccount()).text is None
    assert len(mid.calls) == 1 and small.calls == []


# -- agent steps -----------------------------------------------------------------------------


def test_an_agent_step_that_could_cross_the_cap_stops_the_run_as_spend_cap_reached(tmp_path: Path) -> None:
    frontier = ScriptedBackend([Reply("Planning the work.", usage=(100, 400))], model_name="big")  # 5 cents
    spend = cap(15.0)
    loop, log = agentic.make_loop(
        registry(priced("frontier", frontier, PRICEY)), tmp_path, options=EngineOptions(reply_tokens=REPLY_TOKENS, spend=spend)
    )
    run = agentic.final_run(asyncio.run(agentic.collect(loop, "Do it.", max_steps=5)))
    assert run.status is RunStatus.SPEND_CAP_REACHED and run.status.resumable
    assert "over the $0.15 cap ($0.05 spent)" in (run.error or "")
    assert len(frontier.calls) == 1 and len(run.steps) == 2 and run.steps[-1].type == "error"
    assert sum(r.cost_cents or 0 for r in log.logs) <= 15.0


def test_an_agent_step_moves_to_a_cheaper_tier_that_fits_and_says_so(tmp_path: Path) -> None:
    frontier = ScriptedBackend(default=Reply("[FINAL] never"), model_name="big")
    mid = ScriptedBackend([Reply("[FINAL] Done cheaply.", usage=(100, 5))], model_name="cheap")
    loop, log = agentic.make_loop(
        registry(priced("frontier", frontier, PRICEY), priced("mid", mid, CHEAP)), tmp_path,
        options=EngineOptions(reply_tokens=REPLY_TOKENS, spend=cap(5.0)),
    )
    events = asyncio.run(agentic.collect(loop, "Do it.", max_steps=2))
    run = agentic.final_run(events)
    assert run.status is RunStatus.COMPLETED and run.output == "Done cheaply." and frontier.calls == []
    [rerouted] = [e for e in events if isinstance(e, ev.SpendCapRerouted)]
    assert (rerouted.from_tier, rerouted.to_tier) == ("frontier", "mid")
    assert log.logs[0].tier == "mid" and log.logs[0].routing["spend_cap"][0]["from"] == "frontier scripted/big"


# -- the CLI's lines ---------------------------------------------------------------------------


def test_the_toolbar_shows_spent_over_the_cap_once_the_cap_is_set_up() -> None:
    from types import SimpleNamespace

    from persona_cli.commands.chat_repl import toolbar as _toolbar
    from persona_cli.turn_view import SessionTotals

    mid = ScriptedBackend(model_name="big")
    session = SimpleNamespace(
        tiers=registry(priced("mid", mid, PRICEY)), persona=agentic.PERSONA, built_spend=None,
    )
    ctx = SimpleNamespace(totals=SessionTotals(), session=session, tier="auto", prompt=None)
    assert "spend" not in "".join(text for _style, text in _toolbar(ctx))
    spend = cap(5.0)
    spend.charge(Usage(100, 10, 1.23, 1), worst=2.0)
    session.built_spend = spend
    assert "· spend $0.0123 / $0.05 " in "".join(text for _style, text in _toolbar(ctx))


def test_a_reroute_is_one_line() -> None:
    import io

    from rich.console import Console

    from persona_cli.event_view import EventView

    out, info = io.StringIO(), io.StringIO()
    view = EventView(out=Console(file=out, width=60), info=Console(file=info, width=60))
    view.handle(ev.SpendCapRerouted("mid", "gpt-4o", "small", "gpt-4o-mini", "mid openai/gpt-4o could cost up to $0.0117"))
    assert info.getvalue() == "$ spend cap: mid openai/gpt-4o could cost up to $0.0117; using small · gpt-4o-mini\n"
    assert out.getvalue() == ""


def test_a_zero_cap_ends_at_the_local_model_which_costs_nothing_and_gets_no_tools() -> None:
    from persona.tools import Toolbox
    from persona.tools.builtin.calculator import make_calculator_tool

    mid = ScriptedBackend(default=Reply("never"), model_name="big")
    local = ScriptedBackend([Reply("Local answer.", usage=(80, 3))], provider_name="gguf", model_name="bundled")
    spend = cap(0.0)
    loop, log = chat_loop(
        registry(priced("mid", mid, PRICEY), priced("small", local, None)), spend,
        toolbox=Toolbox([make_calculator_tool()], allow_list=["calculator"]),
    )
    events = turn(loop, conversation(), "Hello.")
    assert events[-1].status == "ok" and events[-1].text == "Local answer." and mid.calls == []
    assert local.calls[0].tools is None  # a local model is not sent tool specs
    assert log.logs[0].cost_cents == 0.0 and log.logs[0].provider == "gguf" and spend.spent_cents == 0.0


def test_with_no_local_tier_the_bundled_model_is_the_last_resort_under_a_cap() -> None:
    """No tier names a local model: a call that fits nowhere priced goes to the bundled GGUF ($0)."""
    from persona_runtime.tier import BUNDLED_MODEL, ModelSlot, TierRegistry

    mid = ScriptedBackend(default=Reply("never"), model_name="big")
    small = ScriptedBackend(default=Reply("never"), model_name="less-big")
    local = ScriptedBackend([Reply("Local answer.", usage=(80, 3))], provider_name="gguf", model_name=BUNDLED_MODEL)
    bundled = ModelSlot(provider="gguf", model=BUNDLED_MODEL)
    built: list[ModelSlot] = []

    def factory(slot: ModelSlot) -> ScriptedBackend:
        built.append(slot)
        return local

    tiers = TierRegistry(
        [priced("mid", mid, PRICEY), priced("small", small, CHEAP)], backend_factory=factory,
        last_resort=bundled, local_context=4096,
    )
    spend = cap(0.0)
    loop, log = chat_loop(tiers, spend)
    events = turn(loop, conversation(), "Hello.")
    assert events[-1].status == "ok" and events[-1].text == "Local answer."
    assert mid.calls == [] and small.calls == [] and built == [bundled]
    rerouted = [e for e in events if isinstance(e, ev.SpendCapRerouted)]
    assert len(rerouted) == 1 and rerouted[0].to_model == BUNDLED_MODEL
    assert log.logs[0].provider == "gguf" and log.logs[0].cost_cents == 0.0 and spend.spent_cents == 0.0
    # Its own window counts: a prompt longer than the local context is refused, not sent.
    roomy = ScriptedBackend(default=Reply("Would have answered."), provider_name="gguf", model_name=BUNDLED_MODEL)
    tight = TierRegistry([priced("mid", mid, PRICEY)], backend_factory=lambda _slot: roomy, last_resort=bundled,
                         local_context=300)
    loop, _log = chat_loop(tight, cap(0.0))
    assert turn(loop, conversation(), "Hello.")[-1].status == "error" and mid.calls == [] and roomy.calls == []


def test_the_cli_registry_names_the_bundled_model_as_its_last_resort() -> None:
    from persona_runtime.tier import BUNDLED_MODEL, ModelSlot

    settings = Settings.from_env({"PERSONA_LOCAL_CONTEXT": "2048", "PERSONA_MID_PROVIDER": "openai",
                                  "PERSONA_MID_MODEL": "gpt-4o", "PERSONA_MID_API_KEY": "sk-test"})
    tiers = settings.tier_registry()
    assert tiers.last_resort == ModelSlot(provider="gguf", model=BUNDLED_MODEL)
    assert tiers.window_of("mid", tiers.last_resort) == 2048 and tiers.window_of("mid", tiers.slots("mid")[0]) > 2048
