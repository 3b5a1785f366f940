"""The benchmark's report: what it concludes from raw samples, and that the README shows it.

``bench/results/latest.json`` holds every raw sample of the run the README's Performance table
comes from (``uv run python -m bench --json bench/results/latest.json``). These tests re-derive
the table from those samples, so the README cannot drift from what was measured, and check that
the summaries call a missed goal a loss.
"""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from bench.__main__ import SUMMARISERS, Report, table
from tests.support.paths import REPO

RESULTS = REPO / "bench" / "results" / "latest.json"


@pytest.fixture(scope="module")
def recorded() -> dict[str, Any]:
    return json.loads(RESULTS.read_text(encoding="utf-8"))


def summarise(data: dict[str, Any]) -> Report:
    report = Report()
    for name, result in data["results"].items():
        SUMMARISERS[name](result, report)
    return report


def test_the_readme_table_is_what_the_recorded_run_measured(recorded) -> None:
    rows = table(recorded["machine"], summarise(recorded), recorded["quick"]).splitlines()[2:]
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("## Performance"):]
    section = section[: section.index("\n## ", 1)]
    lines = section.splitlines()
    start = lines.index(rows[0])
    assert lines[start : start + len(rows)] == rows
    assert len(rows) > 2 and not recorded["quick"]
    assert f"commit {recorded['machine']['commit']}" in section
    assert recorded["machine"]["date"] in section


def test_every_loss_in_the_recorded_run_is_explained_in_the_readme(recorded) -> None:
    report = summarise(recorded)
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    performance = readme[readme.index("## Performance"):]
    assert report.losses, "ours loses nowhere in the recorded run: the README's 'where we lose' section must go"
    explained = performance[performance.index("Where we lose, and why:"):]
    for what, _ours, _against, _goal, met in report.rows:
        if met is False:
            assert what in performance
    # Each kind of loss the summaries name has its paragraph (with the reason).
    topics = {"first reply byte": "**First reply, piped", "first reply in the REPL": "**First reply in the REPL",
              "memory:": "**Memory:**", "logs tail": "**`logs tail`", "renderer": "**Streaming renderer",
              "tokens/s": "**Tokens/s", "`logs stats`": "**`logs stats`", "`logs list`": "**`logs list`"}  # fmt: skip
    for loss in report.losses:
        [heading] = [h for key, h in topics.items() if key in loss]
        assert heading in explained, loss


def test_a_slow_help_is_a_missed_goal_and_a_listed_loss(recorded) -> None:
    data = copy.deepcopy(recorded)
    help_runs = data["results"]["startup"]["help"]
    help_runs["persona --help"] = [9.0] * len(help_runs["persona --help"])  # slower than llm and persona-core
    report = summarise(data)
    [row] = [r for r in report.rows if r[0] == "`--help` wall time"]
    assert row[1] == "`persona --help` 9.00 s" and row[4] is False
    assert any("`persona --help` takes 9.00 s" in loss for loss in report.losses)
    assert any(loss.startswith("`llm --help` (") and "starts faster" in loss for loss in report.losses)
    assert not any("starts faster" in loss for loss in summarise(recorded).losses)


def test_a_renderer_slower_than_the_naive_one_is_a_listed_loss(recorded) -> None:
    data = copy.deepcopy(recorded)
    burst = data["results"]["renderer"]["regimes"]["burst"]["5000"]
    burst["ours_s"] = burst["naive_s"] + 0.5  # over the goal, and slower than the naive renderer
    report = summarise(data)
    [row] = [r for r in report.rows if r[0].startswith("streaming renderer CPU")]
    assert f"{burst['ours_s']:.2f}" in row[1] and row[4] is False
    assert any(f"fed at once, 5k tokens: ours {burst['ours_s']:.2f} s CPU, naive {burst['naive_s']:.2f} s" in loss
               for loss in report.losses)
    assert any(f"costs {burst['ours_s']:.2f} s CPU (goal ≤ 0.5 s)" in loss for loss in report.losses)


def test_a_renderer_over_half_a_second_streamed_live_is_a_missed_goal_and_a_listed_loss(recorded) -> None:
    data = copy.deepcopy(recorded)
    live = data["results"]["renderer"]["regimes"]["arrival"]
    scale = 0.6 / live["5000"]["ours_s"]
    for row in live.values():  # still linear, but 0.6 s at 5k
        row["ours_s"] *= scale
    report = summarise(data)
    [row] = [r for r in report.rows if r[0] == "same, streamed live at 100 tokens/s"]
    assert row[1].split(" / ")[1] == "0.60" and row[3] == "≤ 0.5 s at 5k, linear" and row[4] is False
    assert any("streamed live at 100 tok/s costs 0.60 s CPU (goal ≤ 0.5 s)" in loss for loss in report.losses)


def test_merged_sections_are_named_with_their_own_date_and_commit(recorded) -> None:
    data = copy.deepcopy(recorded)
    again = {"date": "2031-01-02", "commit": "abc1234", "load_start": [9.0, 0, 0], "load_end": [8.0, 0, 0], "seconds": 1.0}
    data["machine"]["remeasured"] = {"logs": again, "renderer": again}
    head = table(data["machine"], summarise(data), data["quick"]).splitlines()[0]
    assert f"commit {recorded['machine']['commit']}" in head
    assert "The `logs`, `renderer` rows were measured again on 2031-01-02 at commit abc1234" in head
    assert "load average 9.0 at the start, 8.0 at the end" in head


def test_a_slow_first_reply_is_a_missed_goal_and_a_listed_loss(recorded) -> None:
    data = copy.deepcopy(recorded)
    runs = data["results"]["first_reply"]
    llm = sorted(s["first_s"] for s in runs["llm"]["samples"])[len(runs["llm"]["samples"]) // 2]
    for sample in runs["persona"]["samples"]:
        sample["first_s"] = 2 * llm  # twice llm's: over the 1.5x goal
    report = summarise(data)
    [row] = [r for r in report.rows if r[0].startswith("first reply byte, piped, from launch")]
    assert row[1].split(" (")[1].startswith("2.00×") and row[3] == "≤ 1.5× llm" and row[4] is False
    assert any(loss.startswith("first reply byte, piped, from launch:") and "2.0×, goal ≤ 1.5×" in loss for loss in report.losses)


def test_llm_ahead_at_its_own_thread_count_is_a_missed_goal_and_a_listed_loss(recorded) -> None:
    data = copy.deepcopy(recorded)
    paths = data["results"]["throughput"]["paths"]
    paths["llm"]["tok_s"] = [rate * 2 for rate in paths["persona-chat-llm-threads"]["tok_s"]]
    report = summarise(data)
    [row] = [r for r in report.rows if r[0].startswith("tokens/s delivered by `persona chat`, piped")]
    assert row[3] == "≥ 0.97× raw; ahead of `llm` at its thread count"
    assert any(loss.startswith("tokens/s at llm's thread count (1):") for loss in report.losses)
    assert not any(loss.startswith("tokens/s at llm's thread count") for loss in summarise(recorded).losses)
