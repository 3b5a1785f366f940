"""The spend cap through `persona chat` and `persona agent`, on persona-core's real openai backend
against the loopback server, which sends usage. Prices are the price table's: mid is gpt-4o
(0.25 / 1.0 cents per 1k tokens), small gpt-4o-mini (0.015 / 0.06). With a 1024-token reply cap
a gpt-4o call's worst case is over 1 cent, a gpt-4o-mini call's under 0.1 cent."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.support.env import openai_tier_env
from tests.support.openai_server import Text
from tests.support.cli import invoke
from tests.support.paths import REPO

ASTRID = REPO / "personas" / "astrid.yaml"
KAI = REPO / "personas" / "kai.yaml"
#: Each reply reports this usage: 0.55 cents on gpt-4o, 0.033 on gpt-4o-mini.
USAGE = (600, 400)


@pytest.fixture
def home(server, tmp_path, monkeypatch) -> Path:
    for key in [k for k in os.environ if k.startswith("PERSONA_")]:
        monkeypatch.delenv(key)
    env = openai_tier_env(server.base_url, {"MID": "gpt-4o", "SMALL": "gpt-4o-mini"}) | {
        "PERSONA_HOME": str(tmp_path / "home"),
        "PERSONA_EMBEDDER": "hash",
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.chdir(tmp_path)
    return tmp_path / "home"


@pytest.fixture
def no_room_locally(monkeypatch) -> None:
    """Under a cap the bundled model ($0) is the last resort; with a 256-token local context it
    cannot hold Astrid's prompt, so nothing fits and the cap must refuse."""
    monkeypatch.setenv("PERSONA_LOCAL_CONTEXT", "256")


def turn_log(home: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (home / "logs" / "turns.jsonl").read_text().splitlines()]


def test_a_capped_chat_falls_back_to_the_cheaper_tier_and_never_crosses_the_cap(server, home) -> None:
    for i in range(4):
        server.enqueue(Text(f"Reply {i}.", usage=USAGE))
    code, result = invoke(["chat", str(ASTRID), "--tier", "mid", "--max-cost", "0.015"], input="One\nTwo\nThree\nFour\n")
    assert code == 0, result.output
    records = turn_log(home)
    assert [r["tier"] for r in records] == ["mid", "small", "small", "small"]
    assert [r["model"] for r in records] == ["gpt-4o", "gpt-4o-mini", "gpt-4o-mini", "gpt-4o-mini"]
    assert sum(r["cost_cents"] for r in records) <= 1.5
    assert records[1]["routing"]["spend_cap"][0]["from"] == "mid openai/gpt-4o"
    notes = [line for line in result.stderr.splitlines() if line.startswith("$ spend cap")]
    assert len(notes) == 3 and "using small · gpt-4o-mini" in notes[0]
    assert [r.model for r in server.requests] == ["gpt-4o", "gpt-4o-mini", "gpt-4o-mini", "gpt-4o-mini"]


def test_a_chat_at_its_cap_refuses_the_turn_in_one_line_and_goes_on(server, home, no_room_locally) -> None:
    server.enqueue(Text("Only answer.", usage=USAGE))  # 0.033 cents on gpt-4o-mini
    code, result = invoke(["chat", str(ASTRID), "--tier", "mid", "--max-cost", "0.001"], input="One\nTwo\nThree\n")
    assert code == 1, result.output  # piped: a turn failed
    assert result.stdout == "Only answer.\n" and "Traceback" not in result.stderr
    refusals = [line for line in result.stderr.splitlines() if line.startswith("✗")]
    assert len(refusals) == 2 and all("over the $0.0010 cap" in line for line in refusals)
    records = turn_log(home)
    assert [r["status"] for r in records] == ["ok", "error", "error"] and len(server.requests) == 1
    assert sum(r["cost_cents"] for r in records) <= 0.1


def test_an_unpriced_model_is_refused_under_a_cap_unless_allowed(server, home, monkeypatch, no_room_locally) -> None:
    for tier in ("MID", "SMALL"):
        monkeypatch.setenv(f"PERSONA_{tier}_MODEL", "house-model-7b")  # not in the price table
    code, result = invoke(["chat", str(ASTRID), "--max-cost", "1"], input="Hi\n")
    assert code == 1 and "is unpriced" in result.stderr and "--allow-unpriced" in result.stderr
    assert server.requests == []
    server.enqueue(Text("Hello."))
    code, result = invoke(["chat", str(ASTRID), "--max-cost", "1", "--allow-unpriced"], input="Hi\n")
    assert code == 0 and result.stdout == "Hello.\n"
    assert turn_log(home)[-1]["cost_cents"] is None


def test_the_day_cap_counts_what_the_turn_log_already_holds_for_today(server, home, monkeypatch) -> None:
    (home / "logs").mkdir(parents=True)
    now = datetime.now(UTC)
    earlier = [
        {"timestamp": now.isoformat(), "cost_cents": 4.5, "status": "ok"},
        {"timestamp": (now - timedelta(days=3)).isoformat(), "cost_cents": 100.0, "status": "ok"},
    ]
    (home / "logs" / "turns.jsonl").write_text("".join(json.dumps(r) + "\n" for r in earlier))
    monkeypatch.setenv("PERSONA_MAX_COST_PER_DAY", "0.05")  # 5 cents: 0.5 left today
    server.enqueue(Text("Cheap.", usage=USAGE))
    code, result = invoke(["chat", str(ASTRID), "--tier", "mid"], input="Hi\n")
    assert code == 0, result.output
    assert [r.model for r in server.requests] == ["gpt-4o-mini"]  # gpt-4o's worst case is over 1 cent
    assert "spend cap" in result.stderr


def test_a_bad_cap_is_one_line_and_exit_2(home, monkeypatch) -> None:
    code, result = invoke(["chat", str(ASTRID), "--max-cost", "-1"], input="Hi\n")
    assert code == 2 and "--max-cost must be an amount in US dollars" in str(result.exception)
    monkeypatch.setenv("PERSONA_MAX_COST_PER_SESSION", "lots")
    code, result = invoke(["agent", str(KAI), "Do it"])
    assert code == 2 and "PERSONA_MAX_COST_PER_SESSION must be an amount" in str(result.exception)


def test_an_agent_at_its_cap_exits_4_and_the_run_can_resume(server, home, monkeypatch, no_room_locally) -> None:
    monkeypatch.setenv("PERSONA_FRONTIER_PROVIDER", "openai")
    for tier in ("FRONTIER", "MID", "SMALL"):
        monkeypatch.setenv(f"PERSONA_{tier}_MODEL", "gpt-4o")
        monkeypatch.setenv(f"PERSONA_{tier}_PROVIDER", "openai")
        monkeypatch.setenv(f"PERSONA_{tier}_API_KEY", "sk-test-integration-0001")
        monkeypatch.setenv(f"PERSONA_{tier}_BASE_URL", server.base_url)
    # 0.55 cents; the first step's worst case fits 1.7 cents (kai's system message holds its facts
    # and views), the next step's does not.
    server.enqueue(Text("Thinking about the plan.", usage=USAGE))
    code, result = invoke(["agent", str(KAI), "Pick a database", "--max-cost", "0.017"])
    assert code == 4, result.output
    assert "spend cap reached" in result.stderr and "--max-cost" in result.stderr and "Traceback" not in result.stderr
    assert "$ spend $0.0055 / $0.0170" in result.stderr
    [saved] = [json.loads(p.read_text()) for p in (home / "runs").glob("*.json")]
    assert saved["status"] == "spend_cap_reached" and len(server.requests) == 1
    assert sum(r["cost_cents"] or 0 for r in turn_log(home)) <= 1.7
    server.enqueue(Text("[FINAL] DuckDB.", usage=USAGE))
    code, result = invoke(["agent", "--resume", saved["id"], "--max-cost", "1"])
    assert code == 0, result.output
    assert result.stdout == "DuckDB.\n"
