"""Settings.from_env: defaults, one ConfigError per bad value (naming its variable), .env.example."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from persona_runtime.engine.engine import EngineOptions
from persona_runtime.errors import ConfigError
from persona_runtime.settings import Settings
from tests.support.paths import REPO

RUNTIME = REPO / "runtime" / "persona_runtime"


def test_nothing_set_gives_the_defaults_and_the_bundled_model_on_every_tier() -> None:
    settings = Settings.from_env({})
    defaults = Settings()
    for field in dataclasses.fields(Settings):
        if field.name != "tiers":
            assert getattr(settings, field.name) == getattr(defaults, field.name), field.name
    assert settings.reply_tokens == 1024 and settings.max_tool_rounds == 5 and settings.tool_timeout_s == 60.0
    assert settings.local_reply_tokens == 384
    assert settings.log_max_bytes == 64 * 1024 * 1024 and settings.log_keep == 10
    assert settings.embedder == "minilm" and settings.local_context == 8192 and settings.local_repeat_penalty == 1.3
    assert settings.data_dir is None and settings.verbose is False and settings.show_recall is False
    assert [(t.name, t.models[0].label) for t in settings.tiers] == [
        ("frontier", "gguf/bundled"), ("mid", "gguf/bundled"), ("small", "gguf/bundled"),
    ]
    assert settings.tier_registry().bundled_only and Settings().tier_registry().bundled_only


def test_every_value_is_read(tmp_path: Path) -> None:
    env = {
        "PERSONA_MAX_REPLY_TOKENS": "300", "PERSONA_LOCAL_REPLY_TOKENS": "200", "PERSONA_MAX_TOOL_ROUNDS": "0", "PERSONA_TOOL_TIMEOUT_S": "9",
        "PERSONA_REQUEST_TIMEOUT_S": "2.5", "PERSONA_HISTORY_COMPACT_AFTER": "8", "PERSONA_HISTORY_KEEP_TURNS": "2",
        "PERSONA_LOG_MAX_MB": "3", "PERSONA_LOG_KEEP": "0", "PERSONA_EMBEDDER": " Hash ",
        "PERSONA_LOCAL_CONTEXT": "4096", "PERSONA_LOCAL_REPEAT_PENALTY": "1.1", "PERSONA_HOME": str(tmp_path),
        "PERSONA_VERBOSE": "1", "PERSONA_MID_PROVIDER": "ollama", "PERSONA_MID_MODEL": "llama3",
        "PERSONA_CHROMA_URL": "http://127.0.0.1:8000",
        "PERSONA_MAX_COST_PER_SESSION": "0.25", "PERSONA_MAX_COST_PER_DAY": "3",
        "PERSONA_SHOW_RECALL": "1",
        "PERSONA_MCP_START_WAIT_S": "0", "PERSONA_LOCAL_RECALL_TOKENS": "64", "PERSONA_LOCAL_THREADS": "1",
    }
    settings = Settings.from_env(env)
    assert settings.chroma is not None and settings.chroma.url == "http://127.0.0.1:8000"
    assert dataclasses.asdict(settings) | {"tiers": None, "chroma": None} == {
        "reply_tokens": 300, "local_reply_tokens": 200, "max_tool_rounds": 0, "tool_timeout_s": 9.0, "request_timeout_s": 2.5,
        "history_compact_after": 8, "history_keep_turns": 2, "log_max_bytes": 3 * 1024 * 1024, "log_keep": 0,
        "embedder": "hash", "local_context": 4096, "local_repeat_penalty": 1.1, "data_dir": tmp_path,
        "verbose": True, "max_cost_per_session": 0.25, "max_cost_per_day": 3.0, "allow_unpriced": False,
        "show_recall": True, "tiers": None, "chroma": None, "mcp_start_wait_s": 0.0, "local_recall_tokens": 64,
        "local_threads": 1,
    }
    assert [t.name for t in settings.tiers] == ["mid"]
    assert settings.engine_options() == EngineOptions(
        reply_tokens=300, local_reply_tokens=200, local_recall_tokens=64, tool_timeout_s=9.0
    )
    assert settings.data_paths().turn_log == tmp_path / "logs" / "turns.jsonl"


def test_an_env_mapping_is_read_instead_of_the_process_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PERSONA_MAX_REPLY_TOKENS", "0")
    assert Settings.from_env({}).reply_tokens == 1024
    with pytest.raises(ConfigError):
        Settings.from_env()


BAD_VALUES = [
    ("PERSONA_MAX_REPLY_TOKENS", "0"), ("PERSONA_MAX_REPLY_TOKENS", "lots"), ("PERSONA_MAX_REPLY_TOKENS", "-3"),
    ("PERSONA_LOCAL_REPLY_TOKENS", "0"), ("PERSONA_LOCAL_REPLY_TOKENS", "all"),
    ("PERSONA_LOCAL_RECALL_TOKENS", "0"), ("PERSONA_LOCAL_RECALL_TOKENS", "few"),
    ("PERSONA_LOCAL_THREADS", "0"), ("PERSONA_LOCAL_THREADS", "all"),
    ("PERSONA_MAX_TOOL_ROUNDS", "-1"), ("PERSONA_MAX_TOOL_ROUNDS", "many"),
    ("PERSONA_TOOL_TIMEOUT_S", "soon"), ("PERSONA_TOOL_TIMEOUT_S", "0"), ("PERSONA_TOOL_TIMEOUT_S", "1.5"),
    ("PERSONA_REQUEST_TIMEOUT_S", "soon"), ("PERSONA_REQUEST_TIMEOUT_S", "-1"),
    ("PERSONA_HISTORY_COMPACT_AFTER", "0"), ("PERSONA_HISTORY_KEEP_TURNS", "zero"),
    ("PERSONA_LOG_MAX_MB", "big"), ("PERSONA_LOG_KEEP", "-1"), ("PERSONA_LOG_KEEP", "some"),
    ("PERSONA_EMBEDDER", "word2vec"),
    ("PERSONA_LOCAL_CONTEXT", "100"), ("PERSONA_LOCAL_CONTEXT", "lots"),
    ("PERSONA_MID_MODEL", "gpt-4o"),  # the tier parser: a partial triple
]


@pytest.mark.parametrize(("variable", "value"), BAD_VALUES, ids=[f"{v}={x}" for v, x in BAD_VALUES])
def test_a_bad_value_is_one_line_config_error_naming_its_variable(variable: str, value: str) -> None:
    with pytest.raises(ConfigError) as info:
        Settings.from_env({variable: value})
    expected = "PERSONA_MID_PROVIDER" if variable == "PERSONA_MID_MODEL" else variable
    assert info.value.variable == expected
    message = str(info.value)
    assert expected in message and "\n" not in message


@pytest.mark.parametrize(("raw", "penalty"), [("abc", 1.3), ("0.5", 1.0), ("", 1.3), ("1.05", 1.05)])
def test_the_repeat_penalty_is_lenient(raw: str, penalty: float) -> None:
    assert Settings.from_env({"PERSONA_LOCAL_REPEAT_PENALTY": raw}).local_repeat_penalty == penalty


def test_local_model_settings_reach_the_gguf_backend(monkeypatch: pytest.MonkeyPatch) -> None:
    from persona_runtime.local_backend import LlamaCppBackend

    asked: list[tuple[object, dict[str, object]]] = []
    monkeypatch.setattr(LlamaCppBackend, "shared", classmethod(lambda cls, path=None, **kw: asked.append((path, kw)) or object()))
    settings = Settings.from_env(
        {"PERSONA_LOCAL_CONTEXT": "2048", "PERSONA_LOCAL_REPEAT_PENALTY": "1.2", "PERSONA_LOCAL_THREADS": "1"}
    )
    settings.tier_registry().get("small")
    assert asked == [(None, {"context_window": 2048, "repeat_penalty": 1.2, "n_threads": 1})]


def _documented() -> set[str]:
    text = (REPO / ".env.example").read_text()
    return set(re.findall(r"^#\s*(PERSONA_[A-Z0-9_]+)=", text, flags=re.MULTILINE))


def _named_in(*modules: str) -> set[str]:
    """Every "PERSONA_..." string literal in these runtime modules."""
    return {name for m in modules for name in re.findall(r'"(PERSONA_[A-Z0-9_]+)"', (RUNTIME / m).read_text())}


def test_env_example_documents_every_variable_settings_reads() -> None:
    read = _named_in("settings.py", "paths.py", "chroma_server.py")  # paths.py: PERSONA_HOME; chroma_server.py: PERSONA_CHROMA_*
    assert len(read) >= 13
    assert sorted(read - _documented()) == []


def test_env_example_documents_nothing_that_is_no_longer_read() -> None:
    read = _named_in("settings.py", "paths.py", "tier.py", "tier_env.py", "chroma_server.py", "mcp/config.py")
    from persona_runtime.tier import KNOWN_PROVIDERS
    from persona_runtime.routing.types import TIER_NAMES

    # Names tier_env.py builds from a prefix: PERSONA_{PROVIDER,MODEL,API_KEY,BASE_URL} (every tier),
    # PERSONA_<TIER>_* and PERSONA_<PROVIDER>_{API_KEY,BASE_URL}.
    tiers = "|".join(t.upper() for t in TIER_NAMES)
    providers = "|".join(p.upper() for p in KNOWN_PROVIDERS)
    built = re.compile(rf"PERSONA_((PROVIDER|MODEL|API_KEY|BASE_URL)|({tiers})_[A-Z0-9_]+|({providers})_(API_KEY|BASE_URL))")
    read_by_persona_core = {"PERSONA_WEB_SEARCH_API_KEY"}
    stale = sorted(n for n in _documented() - read - read_by_persona_core if not built.fullmatch(n))
    assert stale == []
