"""The light install: what pyproject excludes is neither installed nor asked for by any path we run."""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path

import pytest

from tests.support.env import clean_env
from tests.support.paths import REPO


# Each excluded distribution, and the top-level modules it (with what only it brought) provides.
EXCLUDED_MODULES = {
    "sentence-transformers": (
        "sentence_transformers", "torch", "triton", "transformers", "sklearn", "scipy", "sympy", "PIL",
    ),
    "onnxruntime": ("onnxruntime",),
    "kubernetes": ("kubernetes",),
}
# Distributions that only an excluded package brought in.
GONE_WITH_THEM = ("torch", "triton", "transformers", "scikit-learn", "scipy", "sympy", "pillow")
WATCHED = sorted({module for modules in EXCLUDED_MODULES.values() for module in modules})


def test_the_test_knows_every_exclusion() -> None:
    excluded = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["uv"]["exclude-dependencies"]
    assert sorted(excluded) == sorted(EXCLUDED_MODULES)


def test_none_of_the_excluded_packages_is_installed() -> None:
    for name in [*EXCLUDED_MODULES, *GONE_WITH_THEM]:
        with pytest.raises(metadata.PackageNotFoundError):
            metadata.distribution(name)
    cuda = [d.metadata["Name"] for d in metadata.distributions() if d.metadata["Name"].lower().startswith("nvidia")]
    assert cuda == []


def _probe(tmp_path: Path, name: str, *argv: str, stdin: str = "", watched: tuple[str, ...] = WATCHED) -> dict[str, list[str]]:
    report = tmp_path / f"{name}.json"
    command = [sys.executable, "-m", "tests.support.import_probe", str(report), ",".join(watched), "--", *argv]
    env = clean_env(tmp_path / "home", PERSONA_MAX_REPLY_TOKENS="16")
    done = subprocess.run(command, input=stdin, capture_output=True, text=True, env=env, cwd=REPO, timeout=600)
    assert done.returncode in (0, 4), f"{argv}: exit {done.returncode}: {done.stderr[-2000:]}"
    return json.loads(report.read_text())


@pytest.mark.slow
def test_chat_agent_and_logs_never_ask_for_an_excluded_module(tmp_path: Path) -> None:
    """Default settings: the bundled model, the bundled embedder, the local Chroma store."""
    astrid, kai = str(REPO / "personas" / "astrid.yaml"), str(REPO / "personas" / "kai.yaml")
    reports = {
        "chat": _probe(tmp_path, "chat", "chat", astrid, stdin="Hei! Hva er depositum?\n"),
        "agent": _probe(tmp_path, "agent", "agent", kai, "Name one prime number.", "--max-steps", "1"),
    }
    records = [json.loads(line) for line in (tmp_path / "home" / "logs" / "turns.jsonl").read_text().splitlines()]
    assert len(records) >= 2, "the chat turn and the agent step are logged"
    for logs_argv in (["tail"], ["list"], ["show", records[0]["conversation_id"]], ["stats"], ["path"]):
        reports["logs " + logs_argv[0]] = _probe(tmp_path, "logs-" + logs_argv[0], "logs", *logs_argv)
    assert {path: report for path, report in reports.items() if report["asked"] or report["loaded"]} == {}


@pytest.mark.slow
def test_a_piped_chat_on_the_bundled_model_loads_no_provider_sdk_and_no_markdown(tmp_path: Path) -> None:
    """Both are seconds of start-up and tens of MiB: the provider SDKs come with persona.backends'
    __init__ (runtime/persona_runtime/lazy_core.py), markdown with the terminal renderer."""
    heavy = ("openai", "anthropic", "markdown_it")  # (pygments comes anyway: chromadb imports httpx, which imports it)
    report = _probe(tmp_path, "piped", "chat", str(REPO / "personas" / "astrid.yaml"), stdin="Hei!\n", watched=heavy)
    assert report == {"asked": [], "loaded": []}
