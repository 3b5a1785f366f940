"""The composition root: everything a chat or agent session needs, built once.

Start-up is split so the prompt appears at once: the cheap, fallible parts
(persona file, tier configuration, data directory) run first and fail with a
one-line error; the heavy parts (persona-core, Chroma, the embedder, the local
model) load on background threads, and the first turn waits only for them.
"""

from __future__ import annotations

import os
import stat
import threading
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from persona_cli.exit_codes import USAGE, CliError

if TYPE_CHECKING:
    from persona.schema.persona import Persona

    from persona_runtime.agentic import AgenticLoop
    from persona_runtime.loop import ConversationLoop
    from persona_runtime.paths import DataPaths
    from persona_runtime.tier import TierRegistry

MAX_PERSONA_BYTES = 1024 * 1024


def load_persona(path: Path) -> Persona:
    """Read and validate a persona YAML; every failure is a one-line ``CliError`` (exit 2)."""
    import yaml

    if not path.exists():
        raise CliError(f"persona file not found: {path}", USAGE)
    if path.is_dir():
        raise CliError(f"{path} is a directory, not a persona YAML file", USAGE)
    try:
        size = path.stat().st_size
        if size > MAX_PERSONA_BYTES:
            raise CliError(f"{path} is too large for a persona file ({size // 1024} KiB; the limit is 1 MiB)", USAGE)
        raw = path.read_bytes()
    except PermissionError:
        raise CliError(f"cannot read {path}: permission denied", USAGE) from None
    except OSError as exc:
        raise CliError(f"cannot read {path}: {exc.strerror or exc}", USAGE) from None
    if b"\x00" in raw:
        raise CliError(f"{path} is a binary file, not a persona YAML file", USAGE)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise CliError(f"{path} is not UTF-8 text", USAGE) from None
    if not text.strip():
        raise CliError(f"{path} is empty; a persona needs at least schema_version and identity", USAGE)
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or "could not parse"
        raise CliError(f"{path}: invalid YAML{where}: {problem}", USAGE) from None
    if not isinstance(data, dict):
        raise CliError(f"{path}: the top level must be a mapping (key: value), not {type(data).__name__}", USAGE)
    version = data.get("schema_version", "1.0")
    if str(version) != "1.0":
        raise CliError(f"{path}: schema_version {version!r} is not supported (this version reads 1.0)", USAGE)
    data = dict(data)
    if data.get("persona_id") is None:
        data["persona_id"] = path.stem
    from pydantic import ValidationError

    from persona.schema.persona import Persona

    try:
        return Persona.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "(top level)"
        more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
        message = "unknown field" if first["type"] == "extra_forbidden" else first["msg"]
        raise CliError(f"{path}: {where}: {message}{more}", USAGE) from None


def load_tiers() -> TierRegistry:
    from persona_runtime.errors import ConfigError
    from persona_runtime.tier import tier_registry_from_env

    try:
        return tier_registry_from_env()
    except ConfigError as exc:
        raise CliError(str(exc), USAGE) from None


def prepare_data_dir() -> DataPaths:
    from persona_runtime.paths import DataPaths

    paths = DataPaths()
    _private_umask()
    try:
        paths.ensure(paths.logs, paths.runs, paths.history, paths.audit, paths.workspace)
        probe = paths.logs / ".write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise CliError(
            f"the data directory {paths.root} is not writable ({exc.strerror or exc}); set PERSONA_HOME to a writable directory",
            USAGE,
        ) from None
    return paths


def _private_umask() -> None:
    """Everything this process creates is private (files 0600, directories 0700).

    Our own writes already ask for those modes, but Chroma (its sqlite file and vector
    segments, created lazily as memory grows), persona-core's audit log and loguru's
    rotated files are created by code we do not control, with the default umask (0644).
    Adding 077 to the umask covers them all, whenever they are created."""
    os.umask(os.umask(0o077) | 0o077)


def _tighten(root: Path) -> None:
    """Drop group/other bits under ``root``: data written by an older version, before the umask."""
    if not root.is_dir():
        return
    for path in (root, *root.rglob("*")):
        try:
            st = path.lstat()
            if not stat.S_ISLNK(st.st_mode) and st.st_mode & 0o077:
                path.chmod(stat.S_IMODE(st.st_mode) & 0o700)
        except OSError:
            continue  # not ours to change; nothing else depends on it


@dataclass
class Session:
    """What a chat or agent session runs on. ``ready()`` waits for the background parts."""

    persona: Persona
    persona_path: Path
    paths: DataPaths
    tiers: TierRegistry
    settings: Settings
    verbose: bool = False
    notices: list[str] = field(default_factory=list)
    _heavy: Future[dict[str, Any]] = field(default_factory=Future)
    _loop: ConversationLoop | None = None
    mcp_clients: list[Any] = field(default_factory=list)
    _started: bool = False

    @property
    def persona_id(self) -> str:
        return self.persona.persona_id or self.persona_path.stem

    def start_background(self) -> None:
        """Begin loading the heavy parts on one thread; returns immediately. Idempotent."""
        if self._started:
            return
        self._started = True
        thread = threading.Thread(target=self._build_heavy, name="persona-session", daemon=True)
        thread.start()

    def _build_heavy(self) -> None:
        # One thread, in order: numpy, chromadb and llama_cpp imported from several
        # threads at once can trip over half-initialised shared modules (seen: numpy).
        try:
            _preload_local_models(self.tiers)
            embedder = self._embedder_choice.embedder  # type: ignore[attr-defined]
            if hasattr(embedder, "start_loading"):
                embedder.encode(["warm up"])  # loads the model and proves the embedder works
            self._heavy.set_result(_build_heavy(self))
        except BaseException as exc:  # noqa: BLE001 - delivered to whoever awaits the session
            self._heavy.set_exception(exc)
            return
        # While the person types: a local model reads the system message now, not at the first turn.
        try:
            from persona_runtime.loop import prefill_local_models

            prefill_local_models(self.persona, self.tiers)
        except Exception:  # noqa: BLE001, S110 - only a head start; the first turn reads it anyway
            pass

    @property
    def built_loop(self) -> ConversationLoop | None:
        """The ConversationLoop if it is built already (no waiting), else None."""
        return self._loop

    async def loop(self) -> ConversationLoop:
        """The ConversationLoop, built on first use (waits for the background load)."""
        if self._loop is not None:
            return self._loop
        heavy = await self._heavy_parts()
        toolbox, clients = await _build_toolbox(self, heavy)
        self.mcp_clients = clients
        from persona_runtime.history import HistoryWindow
        from persona_runtime.loop import ConversationLoop
        from persona_runtime.turnlog.writer import JSONLTurnLogWriter

        self._loop = ConversationLoop(
            persona=self.persona,
            tiers=self.tiers,
            memory=heavy["memory"],
            router=make_router(self.persona, self.tiers),
            toolbox=toolbox,
            skills=heavy["skills"],
            skill_injector=heavy["injector"],
            turn_log=JSONLTurnLogWriter(self.paths.turn_log, max_bytes=self.settings.log_max_bytes),
            reply_tokens=self.settings.reply_tokens,
            tool_timeout_s=self.settings.tool_timeout_s,
            history_window=HistoryWindow(
                compact_after=self.settings.history_compact_after,
                keep_recent_turns=self.settings.history_keep_turns,
            ),
        )
        return self._loop

    async def _heavy_parts(self) -> dict[str, Any]:
        import asyncio

        self.start_background()
        # shield: a Ctrl-C while waiting must not cancel the shared future (the loader thread
        # could then never deliver, and every later turn would see CancelledError).
        return await asyncio.shield(asyncio.wrap_future(self._heavy))

    async def agentic(self, **kwargs: Any) -> AgenticLoop:
        """An AgenticLoop on the same persona, tiers, memory, tools and logs (waits for the
        background load). ``kwargs`` go to ``AgenticLoop`` (e.g. ``max_steps``)."""
        heavy = await self._heavy_parts()
        toolbox, clients = await _build_toolbox(self, heavy)
        self.mcp_clients.extend(clients)
        from persona_runtime.agentic import AgenticLoop
        from persona_runtime.turnlog.writer import JSONLTurnLogWriter

        options: dict[str, Any] = {
            "memory": heavy["memory"],
            "toolbox": toolbox,
            "skills": heavy["skills"],
            "skill_injector": heavy["injector"],
            "turn_log": JSONLTurnLogWriter(self.paths.turn_log, max_bytes=self.settings.log_max_bytes),
            "runs_dir": self.paths.runs,
            "persona_path": self.persona_path,
            "reply_tokens": self.settings.reply_tokens,
            "tool_timeout_s": self.settings.tool_timeout_s,
        }
        options.update(kwargs)
        return AgenticLoop(persona=self.persona, tiers=self.tiers, **options)

    async def aclose(self) -> None:
        for client in self.mcp_clients:
            closer = getattr(client, "aclose", None) or getattr(client, "disconnect", None)
            if closer is not None:
                try:
                    await closer()
                except Exception:  # noqa: BLE001 - shutting down
                    pass
        await self.tiers.aclose()


def make_router(persona: Persona, tiers: TierRegistry) -> Any:
    """UnifiedRouter (cost/quality/latency scoring) when any tier has metadata; else the heuristic."""
    from persona_runtime.routing import HeuristicRouter, UnifiedRouter

    if any(tiers.metadata_for(name) is not None for name in tiers.configured_tier_names):
        return UnifiedRouter.for_persona(persona, tiers)
    return HeuristicRouter.for_persona(persona, tiers)


def open_session(persona_path: Path, *, verbose: bool = False, start: bool = True) -> Session:
    """Validate everything cheap now (one-line errors), start the heavy loading in the background.

    ``start=False`` leaves the start to the caller (the REPL starts it once its prompt is drawn:
    the loader's imports compete for the GIL with the prompt's own).
    """
    persona = load_persona(persona_path)
    tiers = load_tiers()
    paths = prepare_data_dir()
    choice = _embedder_choice()
    settings = Settings.from_env()
    session = Session(persona=persona, persona_path=persona_path, paths=paths, tiers=tiers, settings=settings, verbose=verbose)
    if choice.notice:
        session.notices.append(choice.notice)
    session._embedder_choice = choice  # type: ignore[attr-defined]
    if start:
        session.start_background()
    return session


def _embedder_choice() -> Any:
    from persona_runtime.embedders import embedder_from_env
    from persona_runtime.errors import ConfigError

    try:
        return embedder_from_env()
    except ConfigError as exc:
        raise CliError(str(exc), USAGE) from None


def _preload_local_models(tiers: TierRegistry) -> None:
    """Load every local GGUF model a tier uses, and wait for it (we are on the loader thread)."""
    for _name, _serving, slot in tiers.describe():
        if slot.provider == "gguf":
            try:
                backend = tiers.backend_for(slot)
            except Exception:  # noqa: BLE001 - the first turn reports it (and falls back)
                continue
            preload = getattr(backend, "preload", None)
            if preload is not None:
                preload()
                backend._loaded.wait()


def _build_heavy(session: Session) -> dict[str, Any]:
    """persona-core imports, Chroma stores, persona indexing, skills. Runs on a worker thread."""
    from persona_runtime import _offline

    _offline.configure_core_logging(session.paths.core_log, verbose=session.verbose)
    from persona_runtime.memory import PersonaMemory

    choice = session._embedder_choice  # type: ignore[attr-defined]
    _tighten(session.paths.root / "memory")
    _tighten(session.paths.audit)
    memory = PersonaMemory.open(
        session.persona, root=session.paths.memory(choice.key), embedder=choice.embedder, audit_root=session.paths.audit
    )
    memory.load()
    skills: list[Any] = []
    injector = None
    if session.persona.skills:
        from persona.skills import BUILTIN_ROOT, SkillInjector, SkillScanner

        skills = SkillScanner([BUILTIN_ROOT]).scan(session.persona.skills, tool_allow_list=session.persona.tools)
        injector = SkillInjector()
    return {"memory": memory, "skills": skills, "injector": injector}


async def _build_toolbox(session: Session, heavy: dict[str, Any]) -> tuple[Any, list[Any]]:
    if not session.persona.tools:
        return None, []  # persona-core treats an empty list as "all tools": we treat it as none
    from persona.config import PersonaCoreConfig
    from persona.tools import build_default_toolbox

    extra = []
    if heavy["skills"]:
        from persona.skills import make_use_skill_tool

        extra.append(make_use_skill_tool(heavy["skills"]))
    config = PersonaCoreConfig(
        embedder="hash",  # unused by the toolbox; keeps persona-core's validation away from our "minilm"
        tools_sandbox_root=session.paths.workspace,
        chroma_path=session.paths.root / "memory",
    )
    toolbox, clients = await build_default_toolbox(config, session.persona, extra_tools=extra or None)
    return toolbox, list(clients)


def _int_env(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise CliError(f"{name} must be a whole number, got {raw!r}", USAGE) from None
    if value <= 0:
        raise CliError(f"{name} must be positive, got {raw!r}", USAGE)
    return value


@dataclass(frozen=True)
class Settings:
    """The numeric PERSONA_* settings, read and checked at start-up (one-line errors before the
    first prompt, not at the first turn)."""

    reply_tokens: int
    tool_timeout_s: float
    history_compact_after: int
    history_keep_turns: int
    log_max_bytes: int

    @classmethod
    def from_env(cls) -> Settings:
        return cls(
            reply_tokens=_int_env("PERSONA_MAX_REPLY_TOKENS", 1024),
            tool_timeout_s=float(_int_env("PERSONA_TOOL_TIMEOUT_S", 60)),
            history_compact_after=_int_env("PERSONA_HISTORY_COMPACT_AFTER", 20),
            history_keep_turns=_int_env("PERSONA_HISTORY_KEEP_TURNS", 3),
            log_max_bytes=_int_env("PERSONA_LOG_MAX_MB", 64) * 1024 * 1024,
        )
