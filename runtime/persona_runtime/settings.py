"""Every scalar ``PERSONA_*`` setting, read and checked once, in one frozen ``Settings``.

``Settings.from_env()`` reads the environment (or a mapping given to it) and fails with
one :class:`~persona_runtime.errors.ConfigError` naming the variable at fault, so a bad
value is a one-line error before the first prompt, not a surprise at the first turn.
The per-tier variables (``PERSONA_<TIER>_*``, ``PERSONA_<PROVIDER>_*``) stay with their
parser in :mod:`persona_runtime.tier`; ``Settings.tiers`` holds what it parsed and
``Settings.tier_registry()`` builds the registry.

The ``*_from_env`` functions below read one variable each, for the modules that accept
the value as an argument and fall back to the environment when called without one.
Nothing heavy is imported here: the CLI reads settings before its prompt is drawn.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from persona_runtime.chroma_server import ChromaServer, chroma_server_from_env
from persona_runtime.errors import ConfigError
from persona_runtime.paths import DataPaths, data_dir_from_env, platform_data_dir
from persona_runtime.turnlog.files import DEFAULT_KEEP

if TYPE_CHECKING:
    from persona_runtime.engine.engine import EngineOptions
    from persona_runtime.spend import SpendLimits
    from persona_runtime.tier import TierConfig, TierRegistry

__all__ = [
    "EMBEDDER_KINDS",
    "EMBEDDER_VAR",
    "LOCAL_CONTEXT_VAR",
    "Settings",
    "embedder_kind_from_env",
    "local_context_from_env",
    "local_repeat_penalty_from_env",
    "max_cost_from_env",
    "log_keep_from_env",
    "request_timeout_from_env",
    "verbose_from_env",
]

EMBEDDER_VAR = "PERSONA_EMBEDDER"
EMBEDDER_KINDS = ("minilm", "sentence-transformers", "hash")
LOCAL_CONTEXT_VAR = "PERSONA_LOCAL_CONTEXT"
DEFAULT_LOCAL_CONTEXT = 8192  # SmolLM2's trained context
MIN_LOCAL_CONTEXT = 256  # llama.cpp pads n_ctx up to a multiple of 256; below that llama-cpp-python breaks
DEFAULT_REPEAT_PENALTY = 1.3  # tiny models loop without it; 1.0 turns it off
DEFAULT_LOG_KEEP = DEFAULT_KEEP
DEFAULT_REQUEST_TIMEOUT_S = 60.0
_MIB = 1024 * 1024


@dataclass(frozen=True)
class Settings:
    """What a session runs with. Build it with :meth:`from_env`, or directly (library use):
    every field has the default the app uses when its variable is unset."""

    #: Reply cap per model call (``PERSONA_MAX_REPLY_TOKENS``).
    reply_tokens: int = 1024
    #: Reply cap on local GGUF models, chat and agent alike (``PERSONA_LOCAL_REPLY_TOKENS``):
    #: small local models ramble, at tens of tokens a second. A reply cut by it says so.
    local_reply_tokens: int = 384
    #: What memory may add to a local GGUF model's prompt, in tokens (``PERSONA_LOCAL_RECALL_TOKENS``):
    #: on CPU it reads ~175 prompt tokens/s on two cores, so each recalled token delays the first word.
    local_recall_tokens: int = 192
    #: Tool-call rounds per chat turn before the model must answer (``PERSONA_MAX_TOOL_ROUNDS``).
    max_tool_rounds: int = 5
    #: One tool call's time limit (``PERSONA_TOOL_TIMEOUT_S``).
    tool_timeout_s: float = 60.0
    #: How long the first turn waits for MCP servers to start, from the session's start
    #: (``PERSONA_MCP_START_WAIT_S``); a server still starting joins later.
    mcp_start_wait_s: float = 5.0
    #: One provider request's time limit (``PERSONA_REQUEST_TIMEOUT_S``).
    request_timeout_s: float = DEFAULT_REQUEST_TIMEOUT_S
    #: Messages sent verbatim before older turns are summarised (``PERSONA_HISTORY_COMPACT_AFTER``).
    history_compact_after: int = 20
    #: Turns kept verbatim when summarising (``PERSONA_HISTORY_KEEP_TURNS``).
    history_keep_turns: int = 3
    #: The turn log rotates at this size (``PERSONA_LOG_MAX_MB``).
    log_max_bytes: int = 64 * _MIB
    #: Rotated turn-log files kept (``PERSONA_LOG_KEEP``; 0 keeps none).
    log_keep: int = DEFAULT_LOG_KEEP
    #: ``minilm`` | ``sentence-transformers`` | ``hash`` (``PERSONA_EMBEDDER``).
    embedder: str = "minilm"
    #: Context size of local GGUF models (``PERSONA_LOCAL_CONTEXT``).
    local_context: int = DEFAULT_LOCAL_CONTEXT
    #: Repetition penalty of local GGUF models (``PERSONA_LOCAL_REPEAT_PENALTY``).
    local_repeat_penalty: float = DEFAULT_REPEAT_PENALTY
    #: CPU threads llama.cpp runs local GGUF models on (``PERSONA_LOCAL_THREADS``); None: every
    #: core. Fewer keeps it from stalling when other programs take a core.
    local_threads: int | None = None
    #: Where logs, memory, runs and history live (``PERSONA_HOME``); None: the platform's user data dir.
    data_dir: Path | None = None
    #: persona-core warnings on stderr, full tracebacks on errors (``PERSONA_VERBOSE=1``, the CLI's ``-v``).
    verbose: bool = False
    #: Spend cap per session, in US dollars (``PERSONA_MAX_COST_PER_SESSION``; the CLI's ``--max-cost`` wins).
    max_cost_per_session: float | None = None
    #: Spend cap per local calendar day, in US dollars, counted from the TurnLog (``PERSONA_MAX_COST_PER_DAY``).
    max_cost_per_day: float | None = None
    #: Under a spend cap, still call models with no known price (the CLI's ``--allow-unpriced``).
    allow_unpriced: bool = False
    #: A one-line recall summary after each chat turn (``PERSONA_SHOW_RECALL=1``; /recall on|off).
    show_recall: bool = False
    #: The tiers and their models (``PERSONA_<TIER>_*``, ``PERSONA_PROVIDER`` ..., ``PERSONA_LOCAL_MODEL``);
    #: empty: the bundled local model on every tier.
    tiers: tuple[TierConfig, ...] = ()
    #: Memory on a Chroma server (``PERSONA_CHROMA_URL``, ``_TOKEN``, ``_TENANT``, ``_DATABASE``);
    #: None: the embedded store under ``data_dir``.
    chroma: ChromaServer | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Read every setting from ``env`` (default ``os.environ``); a bad value is a ConfigError."""
        source: Mapping[str, str] = os.environ if env is None else env
        from persona_runtime.tier_env import tier_configs_from_env

        tiers = tier_configs_from_env(source)  # first: the variables a person sets most
        return cls(
            request_timeout_s=request_timeout_from_env(source),
            embedder=embedder_kind_from_env(source),
            reply_tokens=_positive_int(source, "PERSONA_MAX_REPLY_TOKENS", 1024),
            local_reply_tokens=_positive_int(source, "PERSONA_LOCAL_REPLY_TOKENS", 384),
            local_recall_tokens=_positive_int(source, "PERSONA_LOCAL_RECALL_TOKENS", 192),
            max_tool_rounds=_whole_number(source, "PERSONA_MAX_TOOL_ROUNDS", 5),
            tool_timeout_s=float(_positive_int(source, "PERSONA_TOOL_TIMEOUT_S", 60)),
            mcp_start_wait_s=float(_whole_number(source, "PERSONA_MCP_START_WAIT_S", 5)),
            history_compact_after=_positive_int(source, "PERSONA_HISTORY_COMPACT_AFTER", 20),
            history_keep_turns=_positive_int(source, "PERSONA_HISTORY_KEEP_TURNS", 3),
            log_max_bytes=_positive_int(source, "PERSONA_LOG_MAX_MB", 64) * _MIB,
            log_keep=log_keep_from_env(source),
            local_context=local_context_from_env(source),
            local_repeat_penalty=local_repeat_penalty_from_env(source),
            local_threads=_positive_int(source, "PERSONA_LOCAL_THREADS", 0) or None,
            data_dir=data_dir_from_env(source),
            verbose=verbose_from_env(source),
            max_cost_per_session=max_cost_from_env(source, "PERSONA_MAX_COST_PER_SESSION"),
            max_cost_per_day=max_cost_from_env(source, "PERSONA_MAX_COST_PER_DAY"),
            show_recall=source.get("PERSONA_SHOW_RECALL", "").strip().lower() in {"1", "true", "yes", "on"},
            tiers=tuple(tiers),
            chroma=chroma_server_from_env(source),
        )

    def data_paths(self) -> DataPaths:
        """The data layout under ``data_dir`` (creates nothing)."""
        return DataPaths(self.data_dir if self.data_dir is not None else platform_data_dir())

    def engine_options(self) -> EngineOptions:
        """How the chat and agent loops call models and run tools, from these settings."""
        from persona_runtime.engine.engine import EngineOptions

        return EngineOptions(
            reply_tokens=self.reply_tokens, local_reply_tokens=self.local_reply_tokens,
            local_recall_tokens=self.local_recall_tokens, tool_timeout_s=self.tool_timeout_s,
        )

    def spend_limits(self) -> SpendLimits:
        """The spend caps, in cents (the TurnLog's unit)."""
        from persona_runtime.spend import SpendLimits

        def cents(usd: float | None) -> float | None:
            return round(usd * 100, 6) if usd is not None else None

        return SpendLimits(cents(self.max_cost_per_session), cents(self.max_cost_per_day), self.allow_unpriced)

    def tier_registry(self, **kwargs: Any) -> TierRegistry:
        """A new registry over ``tiers``; its backends use these timeouts and local-model settings.
        ``kwargs`` go to :class:`~persona_runtime.tier.TierRegistry` (e.g. ``backend_factory``)."""
        from functools import partial

        from persona_runtime.tier import BUNDLED_MODEL, ModelSlot, TierRegistry, build_backend
        from persona_runtime.tier_env import tier_configs_from_env

        kwargs.setdefault(
            "backend_factory",
            partial(
                build_backend,
                request_timeout_s=self.request_timeout_s,
                local_context=self.local_context,
                local_repeat_penalty=self.local_repeat_penalty,
                local_threads=self.local_threads,
            ),
        )
        tiers = self.tiers or tuple(tier_configs_from_env({}))
        kwargs.setdefault("local_context", self.local_context)
        # Under a spend cap, the bundled model ($0) is the last resort even when no tier names it.
        kwargs.setdefault("last_resort", ModelSlot(provider="gguf", model=BUNDLED_MODEL))
        return TierRegistry(tiers, request_timeout_s=self.request_timeout_s, **kwargs)


# -- one variable each ---------------------------------------------------------------------


def _environ(env: Mapping[str, str] | None) -> Mapping[str, str]:
    return os.environ if env is None else env


def request_timeout_from_env(env: Mapping[str, str] | None = None) -> float:
    """``PERSONA_REQUEST_TIMEOUT_S``: seconds, >= 0."""
    var = "PERSONA_REQUEST_TIMEOUT_S"
    raw = _environ(env).get(var, "").strip()
    if not raw:
        return DEFAULT_REQUEST_TIMEOUT_S
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{var} must be a float number, got {raw!r}", variable=var) from None
    if value < 0:
        raise ConfigError(f"{var} must not be negative, got {raw!r}", variable=var)
    return value


def embedder_kind_from_env(env: Mapping[str, str] | None = None) -> str:
    """``PERSONA_EMBEDDER``: one of :data:`EMBEDDER_KINDS` (case and spaces ignored)."""
    raw = _environ(env).get(EMBEDDER_VAR, "")
    kind = raw.strip().lower() or "minilm"
    if kind not in EMBEDDER_KINDS:
        raise ConfigError(f"{EMBEDDER_VAR} must be one of {', '.join(EMBEDDER_KINDS)}; got {raw!r}", variable=EMBEDDER_VAR)
    return kind


def log_keep_from_env(env: Mapping[str, str] | None = None) -> int:
    """``PERSONA_LOG_KEEP``: rotated turn-log files kept, >= 0."""
    return _whole_number(_environ(env), "PERSONA_LOG_KEEP", DEFAULT_LOG_KEEP)


def log_index_from_env(env: Mapping[str, str] | None = None) -> bool:
    """``PERSONA_LOG_INDEX``: 0 turns off the SQLite index beside the turn log (queries scan)."""
    raw = _environ(env).get("PERSONA_LOG_INDEX", "").strip().lower()
    if raw in ("", "1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"PERSONA_LOG_INDEX must be 0 or 1, got {raw!r}", variable="PERSONA_LOG_INDEX")


def local_context_from_env(env: Mapping[str, str] | None = None) -> int:
    """``PERSONA_LOCAL_CONTEXT``: tokens, >= 256."""
    raw = _environ(env).get(LOCAL_CONTEXT_VAR, "").strip()
    if not raw:
        return DEFAULT_LOCAL_CONTEXT
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < MIN_LOCAL_CONTEXT:
        raise ConfigError(
            f"{LOCAL_CONTEXT_VAR} must be a whole number of tokens >= {MIN_LOCAL_CONTEXT}; got {raw!r}",
            variable=LOCAL_CONTEXT_VAR,
        )
    return value


def local_repeat_penalty_from_env(env: Mapping[str, str] | None = None) -> float:
    """``PERSONA_LOCAL_REPEAT_PENALTY``: at least 1.0; a value that is not a number means the default
    (lenient on purpose: a sampling nicety is not worth refusing to start)."""
    raw = _environ(env).get("PERSONA_LOCAL_REPEAT_PENALTY", "").strip()
    try:
        return max(1.0, float(raw)) if raw else DEFAULT_REPEAT_PENALTY
    except ValueError:
        return DEFAULT_REPEAT_PENALTY


def max_cost_from_env(env: Mapping[str, str] | None, var: str) -> float | None:
    """A spend cap in US dollars (``PERSONA_MAX_COST_PER_SESSION`` / ``_PER_DAY``): a number >= 0; unset: no cap."""
    raw = _environ(env).get(var, "").strip()
    if not raw:
        return None
    try:
        value = float(raw.removeprefix("$"))
    except ValueError:
        value = -1.0
    if not value >= 0 or value == float("inf"):
        raise ConfigError(f"{var} must be an amount in US dollars >= 0 (e.g. 0.50), got {raw!r}", variable=var)
    return value


def verbose_from_env(env: Mapping[str, str] | None = None) -> bool:
    """``PERSONA_VERBOSE=1`` (the CLI's ``-v`` sets it)."""
    return _environ(env).get("PERSONA_VERBOSE") == "1"


def _positive_int(env: Mapping[str, str], var: str, default: int) -> int:
    return _int_at_least(env, var, default, 1, "a positive whole number")


def _whole_number(env: Mapping[str, str], var: str, default: int) -> int:
    return _int_at_least(env, var, default, 0, "a whole number >= 0")


def _int_at_least(env: Mapping[str, str], var: str, default: int, minimum: int, wanted: str) -> int:
    raw = env.get(var, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = minimum - 1
    if value < minimum:
        raise ConfigError(f"{var} must be {wanted}, got {raw!r}", variable=var)
    return value
