"""`persona logs ...` through Typer's CliRunner (and one real process for -f and Ctrl-C)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from hypothesis import given, settings
from hypothesis import strategies as st
from typer._click.exceptions import UsageError  # Typer vendors click

from persona_cli.commands.fast_invoke import parse_without_pydantic, plain_kind, typer_command
from persona_cli.commands.logs import fast_tail, logs_app
from tests.support.paths import REPO
from tests.support.turnlogs import fixture_records, indexes, rec, write

ROOT = REPO

app = typer.Typer()
app.add_typer(logs_app, name="logs")
runner = CliRunner()



def run(*args: str) -> typer.testing.Result:  # type: ignore[name-defined]
    return runner.invoke(app, ["logs", *args])


# --- path and empty logs ---------------------------------------------------------------------


def test_path(log: Path) -> None:
    result = run("path")
    assert result.exit_code == 0
    assert result.stdout.strip() == str(log)


@pytest.mark.parametrize("command", ["tail", "list", "stats"])
def test_no_log_yet_is_friendly(log: Path, command: str) -> None:
    result = run(command)
    assert result.exit_code == 0
    assert "No turns logged yet" in result.stdout and str(log) in result.stdout
    assert not log.parent.exists()  # reading never creates anything


def test_no_args_shows_help(log: Path) -> None:
    result = run()
    assert "tail" in result.output and "stats" in result.output


# --- tail ------------------------------------------------------------------------------------


def test_tail_lines(log: Path) -> None:
    write(log, fixture_records())
    result = run("tail", "-n", "20")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert len(lines) == 6
    assert "\x1b" not in result.stdout  # not a terminal: plain text
    first = lines[0]
    for part in ("ada", "fast → gpt-4o-mini", "100/10", "$0.0050", "1.0s", "ttft 0.2s"):
        assert part in first
    assert "2026-11-01" in first  # older than today: the date is shown
    assert "unpriced" in lines[1] and "smart → claude-sonnet-4" in lines[1]
    assert "↪" in lines[2] and "↪" not in lines[0]
    assert "error: provider exploded" in lines[3]
    assert "run run-bb#1" in lines[4]
    assert lines[5].endswith("interrupted")


def test_tail_uses_the_shared_cost_and_token_formats(log: Path) -> None:
    write(log, [rec(0, prompt_tokens=12_345, completion_tokens=987, provider="gguf", model="bundled", cost_cents=0)])
    line = run("tail").stdout.splitlines()[0]
    assert "12.3k/987" in line and "$0 (local)" in line  # as in chat and agent


def test_tail_order_and_n(log: Path) -> None:
    write(log, [rec(i) for i in range(30)])
    assert indexes(run("tail", "--json").stdout) == list(range(10, 30))
    assert indexes(run("tail", "-n", "3", "--json").stdout) == [27, 28, 29]
    assert run("tail", "-n", "0").stdout == ""
    assert run("tail", "-n", "-1").exit_code == 2


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--persona", "bob"], [1, 4, 5]),
        (["--tier", "smart"], [1]),
        (["--model", "claude-sonnet-4"], [1]),
        (["--model", "openai/gpt-4o-mini"], [0, 2, 3, 4, 5]),
        (["--errors"], [3]),
        (["--fallbacks"], [2]),
        (["--run", "run-bbbbbbbb"], [4, 5]),
        (["-c", "conv-run"], [4, 5]),
        (["--persona", "bob", "--tier", "fast"], [4, 5]),
        (["--persona", "nobody"], []),
    ],
)
def test_filters(log: Path, args: list[str], expected: list[int]) -> None:
    write(log, fixture_records())
    assert indexes(run("tail", "--json", *args).stdout) == expected
    assert indexes(run("list", "--json", *args).stdout) == expected


def test_json_is_the_stored_record(log: Path) -> None:
    records = fixture_records()
    write(log, records)
    result = run("tail", "--json")
    parsed = [json.loads(line) for line in result.stdout.splitlines()]
    assert parsed == records


def test_since(log: Path) -> None:
    now = datetime.now(UTC)
    write(log, [rec(i, timestamp=(now - timedelta(hours=10 - i)).isoformat()) for i in range(10)])
    assert indexes(run("list", "--since", "150m", "--json").stdout) == [8, 9]
    assert indexes(run("tail", "--since", "190m", "--json").stdout) == [7, 8, 9]
    since_date = (now - timedelta(days=400)).date().isoformat()
    assert len(indexes(run("list", "--since", since_date, "--json").stdout)) == 10
    stats_rows = [json.loads(line) for line in run("stats", "--since", "150m", "--json").stdout.splitlines()]
    assert stats_rows[-1]["turns"] == 2


@pytest.mark.parametrize("command", ["tail", "list", "stats"])
def test_bad_since_is_a_usage_error(log: Path, command: str) -> None:
    write(log, [rec(0)])
    result = run(command, "--since", "last tuesday")
    assert result.exit_code == 2
    assert result.stdout == ""
    assert len(result.stderr.strip().splitlines()) == 1
    assert "--since" in result.stderr and "last tuesday" in result.stderr


def test_torn_last_line_and_corrupt_middle_line(log: Path) -> None:
    write(log, [rec(0), rec(1)], extra="{not json at all\n" + json.dumps(rec(2)) + "\n" + '{"turn_id": "half')
    text = run("tail")
    assert text.exit_code == 0
    assert text.stdout.splitlines()[-1] == "2 corrupt lines skipped"
    assert len(text.stdout.splitlines()) == 4
    as_json = run("tail", "--json")
    assert indexes(as_json.stdout) == [0, 1, 2]  # the footer is not on stdout
    assert "2 corrupt lines skipped" in as_json.stderr
    listed = run("list")
    assert listed.stdout.splitlines()[-1] == "2 corrupt lines skipped"
    assert "2 corrupt lines skipped" in run("stats").stdout


def test_unknown_fields_are_read_and_kept(log: Path) -> None:
    write(log, [rec(0, schema_version=9, mood="curious", cache_read_tokens=42)])
    assert "ada" in run("tail").stdout
    stored = json.loads(run("tail", "--json").stdout)
    assert stored["mood"] == "curious" and stored["cache_read_tokens"] == 42


def test_rotated_files_are_spanned(log: Path) -> None:
    write(log.with_name("turns-20261101T000001000000Z.jsonl"), [rec(0), rec(1)])
    write(log.with_name("turns-20261101T000002000000Z.jsonl"), [rec(2), rec(3)])
    write(log, [rec(4)])
    assert indexes(run("tail", "-n", "4", "--json").stdout) == [1, 2, 3, 4]
    assert indexes(run("list", "--json").stdout) == [0, 1, 2, 3, 4]
    assert indexes(run("list", "-n", "2", "--json").stdout) == [3, 4]
    assert json.loads(run("stats", "--json").stdout.splitlines()[-1])["turns"] == 5


def test_rotated_files_without_a_live_file(log: Path) -> None:
    write(log.with_name("turns-20261101T000001000000Z.jsonl"), [rec(0), rec(1)])
    assert indexes(run("tail", "--json").stdout) == [0, 1]


def test_no_color_env_and_plain_output(log: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(log, fixture_records())
    monkeypatch.setenv("NO_COLOR", "1")
    for command in ("tail", "list", "stats"):
        assert "\x1b" not in run(command).stdout


# --- list ------------------------------------------------------------------------------------


def test_list_all_oldest_first(log: Path) -> None:
    write(log, [rec(i) for i in range(40)])
    assert indexes(run("list", "--json").stdout) == list(range(40))
    assert len(run("list").stdout.splitlines()) == 40
    assert "No matching turns." in run("list", "--persona", "zed").stdout


# --- show ------------------------------------------------------------------------------------


def test_show_a_turn(log: Path) -> None:
    records = fixture_records()
    write(log, records)
    result = run("show", str(records[2]["turn_id"]))
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert out.startswith("1 turn")
    assert str(records[2]["turn_id"]) in out
    assert "routing router=heuristic, reason=short question" in out
    assert "attempt 1  smart  anthropic/claude-sonnet-4  error" in out
    assert "RateLimitError: 429 slow down" in out
    assert "attempt 2  fast  openai/gpt-4o-mini  ok" in out


def test_show_a_conversation_by_prefix_and_a_run(log: Path) -> None:
    write(log, fixture_records())
    conversation = run("show", "conv-aaa")  # 8 characters: a prefix
    assert conversation.exit_code == 0
    assert conversation.stdout.startswith("4 turns · conversation conv-aaaaaaaa")
    runs = run("show", "run-bbbbbbbb", "--json")
    assert indexes(runs.stdout) == [4, 5]
    assert "run run-bbbbbbbb step 2" in run("show", "run-bbbbbbbb").stdout


def test_show_unknown_or_too_short(log: Path) -> None:
    write(log, fixture_records())
    missing = run("show", "does-not-exist")
    assert missing.exit_code == 1
    assert missing.stdout == "" and "does-not-exist" in missing.stderr
    short = run("show", "conv")
    assert short.exit_code == 1 and "at least 6" in short.stderr


def test_show_with_no_log(log: Path) -> None:
    result = run("show", "abcdef123")
    assert result.exit_code == 1 and "no log yet" in result.stderr


# --- stats -----------------------------------------------------------------------------------


def test_stats_json_exact(log: Path) -> None:
    write(log, fixture_records())
    rows = [json.loads(line) for line in run("stats", "--json").stdout.splitlines()]
    by_tier = {row.get("tier", "total"): row for row in rows}
    fast, smart, total = by_tier["fast"], by_tier["smart"], by_tier["total"]
    assert fast == {
        "tier": "fast",
        "turns": 5,
        "prompt_tokens": 500,
        "completion_tokens": 40,
        "cost_cents": 2.0,
        "unpriced": 1,
        "estimated": 0,
        "latency_p50_ms": 1000.0,
        "latency_p95_ms": 1500.0,
        "fallback_rate": 0.2,
        "error_rate": 0.2,
        "interrupted": 1,
    }
    assert (smart["turns"], smart["unpriced"], smart["latency_p50_ms"]) == (1, 1, 3000.0)
    assert (total["turns"], total["cost_cents"], total["unpriced"], total["latency_p95_ms"]) == (6, 2.0, 2, 3000.0)


def test_stats_table_and_chart(log: Path) -> None:
    write(log, fixture_records())
    result = run("stats", "--by", "persona")
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "Turns by persona" in out
    ada = next(line for line in out.splitlines() if line.strip().startswith("ada") and "$" in line)
    assert ada.split()[:2] == ["ada", "3"]
    assert "$0.0100" in ada and "33.3%" in ada  # one of three fell back, one errored
    assert "total" in out
    bars = [line for line in out.splitlines() if "█" in line]
    assert len(bars) == 2  # ada and bob, three turns each: equal full bars
    assert bars[0].count("█") == bars[1].count("█")
    cost_chart = run("stats", "--by", "tier", "--chart", "cost").stdout
    assert "cost by tier" in cost_chart


def test_stats_by_day_and_model(log: Path) -> None:
    write(log, [rec(0), rec(1, timestamp="2026-11-03T12:00:00Z"), rec(2, model="gpt-4.1")])
    days = [json.loads(line) for line in run("stats", "--by", "day", "--json").stdout.splitlines()]
    assert [d["turns"] for d in days] == [2, 1, 3]
    models = [json.loads(line) for line in run("stats", "--by", "model", "--json").stdout.splitlines()]
    assert [(m.get("model"), m["turns"]) for m in models[:-1]] == [("gpt-4o-mini", 2), ("gpt-4.1", 1)]


def test_stats_bad_by(log: Path) -> None:
    write(log, [rec(0)])
    assert run("stats", "--by", "colour").exit_code == 2


# --- the entry point's fast path for `logs tail` ------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["-n", "2"],
        ["--lines=3", "--json"],
        ["--persona", "bob", "--json"],
        ["-p", "bob", "-t", "fast", "--errors"],
        ["--fallbacks", "--model=gpt-4o-mini"],
        ["--run", "run-bbbbbbbb", "-c", "conv-run", "--since", "2026-10-01"],
    ],
)
def test_fast_tail_matches_typer(log: Path, capsys: pytest.CaptureFixture[str], args: list[str]) -> None:
    write(log, fixture_records(), extra="{torn")
    expected = run("tail", *args)
    assert fast_tail(["logs", "tail", *args]) == expected.exit_code == 0
    assert capsys.readouterr().out == expected.stdout


@pytest.mark.parametrize(
    "argv",
    [
        ["logs", "list"],
        ["chat"],
        ["logs", "tail", "--help"],
        ["logs", "tail", "-n"],
        ["logs", "tail", "-n", "-3"],
        ["logs", "tail", "-n", "x"],
        ["logs", "tail", "--bogus"],
        ["logs", "tail", "--json=1"],
        ["logs", "tail", "extra"],
        ["--env-file", "x", "logs", "tail"],
    ],
)
def test_fast_tail_leaves_the_rest_to_typer(log: Path, argv: list[str]) -> None:
    assert fast_tail(argv) is None


def test_fast_tail_usage_error(log: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write(log, [rec(0)])
    assert fast_tail(["logs", "tail", "--since", "soon"]) == 2
    assert "--since" in capsys.readouterr().err


TAIL = typer_command(logs_app, "tail")


def typer_values(args: list[str]) -> dict[str, object]:
    """What Typer itself (pydantic conversion and all) passes to tail_cmd for ``args``."""
    assert TAIL is not None
    return dict(TAIL.make_context("tail", list(args)).params)


def test_every_tail_option_takes_the_fast_path() -> None:
    """The fast path reads tail's options from Typer's own command: each one, in each of its
    spellings, is accepted and gives Typer's value. A new option of a kind the fast path does
    not convert fails here (teach persona_cli.commands.fast_invoke the kind)."""
    assert TAIL is not None
    seen = set()
    for param in TAIL.params:
        kind = plain_kind(param)
        assert kind is not None, f"tail's {param.name} would send every `logs tail` through pydantic"
        for opt in [*param.opts, *param.secondary_opts]:
            args = [opt] if kind == "flag" else [opt, "7" if kind == "int" else "2026-10-01"]
            assert parse_without_pydantic(TAIL, args) == typer_values(args), args
            seen.add(opt)
    assert {"-n", "--lines", "-f", "--since", "--json"} <= seen  # one of each kind, at least


OPTIONS = sorted({opt for param in TAIL.params for opt in (*param.opts, *param.secondary_opts)})  # type: ignore[union-attr]
VALUES = ["3", "0", "-3", "+5", "5_000", " 5", "x", "", "2h", "2026-10-01", "--json", "-f"]
STRAYS = ["--bogus", "-x", "-fn5", "-pn", "--lines=4", "--json=1", "--persona=", "--", "extra", "--help"]


def assert_agree(args: list[str]) -> None:
    """Whatever the fast path accepts, Typer accepts with the same values; whatever Typer
    rejects, the fast path leaves to Typer (which then prints its own error)."""
    assert TAIL is not None
    fast = parse_without_pydantic(TAIL, args)
    try:
        expected = typer_values(args)
    except (UsageError, typer.Exit):  # Exit: --help printed
        assert fast is None, args
        return
    assert fast is None or fast == expected, args


def test_each_option_with_each_value_agrees_with_typer(capsys: pytest.CaptureFixture[str]) -> None:
    for args in [[opt, value] for opt in OPTIONS for value in VALUES] + [[token] for token in STRAYS]:
        assert_agree(args)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from([*OPTIONS, *VALUES, *STRAYS[:-1]]), max_size=6))
def test_any_argv_agrees_with_typer(args: list[str]) -> None:
    assert_agree(args)


def test_show_lists_the_memory_entries_recalled_for_a_turn(log: Path) -> None:
    records = fixture_records()
    records[2] = records[2] | {"recalled": ["astrid::episodic::01a2-tern", "astrid::self_facts::0003"]}
    write(log, records)
    out = run("show", str(records[2]["turn_id"])).stdout
    assert "recalled episodic::01a2-tern, self_facts::0003" in out
    assert "recalled" not in run("show", str(records[1]["turn_id"])).stdout
