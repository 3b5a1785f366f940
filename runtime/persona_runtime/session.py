"""A chat or agent session as a library object: persona, settings, data, memory, tiers, tools.

    from persona_runtime.session import open_session

    session = open_session("personas/kai.yaml")        # settings from the environment
    loop = await session.loop()                          # a ConversationLoop
    conversation = session.new_conversation()
    async for event in loop.turn(conversation, "Hello"):
        ...
    await session.aclose()

Start-up is split so a prompt can appear at once: :func:`open_session` does the cheap, fallible
parts (persona file, settings, data directory, embedder choice) and fails with a one-line
:class:`~persona_runtime.errors.SetupError`; the heavy parts (persona-core, Chroma, the embedder,
local models) load in the background, and the first turn waits only for them.
"""

from __future__ import annotations

import asyncio
import os
import threading
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from persona_runtime.settings import Settings

if TYPE_CHECKING:
    from persona.schema.conversation import Conversation
    from persona.schema.persona import Persona

    from persona_runtime.agentic import AgenticLoop
    from persona_runtime.engine.engine import EngineOptions
    from persona_runtime.conversations import ConversationStore, ConversationSummary, StoredTurn
    from persona_runtime.embedders import EmbedderChoice
    from persona_runtime.loop import ConversationLoop
    from persona_runtime.mcp.compose import McpPlan
    from persona_runtime.memory import PersonaMemory
    from persona_runtime.paths import DataPaths
    from persona_runtime.spend import SpendCap
    from persona_runtime.tier import TierRegistry
    from persona_runtime.turnlog import JSONLTurnLogWriter

__all__ = [
    "HeavyParts", "Session", "load_heavy_parts", "make_router", "new_conversation", "open_session",
]


def open_session(
    persona_path: str | os.PathLike[str],
    *,
    settings: Settings | None = None,
    tiers: TierRegistry | None = None,
    start: bool = True,
    mcp_config: str | os.PathLike[str] | None = None,
) -> Session:
    """Validate everything cheap now (one-line :class:`SetupError`), then start the heavy loading
    in the background.

    ``settings`` defaults to :meth:`Settings.from_env`; ``tiers`` to ``settings.tier_registry()``
    (pass your own registry to run on, say, a ``ScriptedBackend``). ``mcp_config`` is an
    ``mcp.json`` to use instead of ``PERSONA_HOME/mcp.json`` (a bad one is a one-line
    ``McpConfigError``; the servers the persona names start with the background load). ``start=False`` leaves the
    start to the caller (the CLI's REPL starts it once its prompt is drawn: the loader's imports
    compete for the GIL with the prompt's own).
    """
    from persona_runtime.embedders import choose_embedder
    from persona_runtime.paths import prepare_data_dir
    from persona_runtime.persona_file import load_persona

    path = Path(persona_path)
    persona = load_persona(path)
    settings = settings if settings is not None else Settings.from_env()
    registry = tiers if tiers is not None else settings.tier_registry()
    paths = prepare_data_dir(settings.data_paths())
    embedder = choose_embedder(settings.embedder)
    from persona_runtime.mcp.compose import plan_mcp

    mcp = plan_mcp(
        list(persona.tools), config_path=Path(mcp_config) if mcp_config is not None else None,
        data_root=paths.root, log_dir=paths.logs,
    )
    session = Session(
        persona=persona, persona_path=path, settings=settings, paths=paths, tiers=registry, embedder=embedder, mcp=mcp
    )
    if start:
        session.start_background()
    return session


def new_conversation(persona_id: str) -> Conversation:
    """An empty chat conversation with a fresh, sortable id (``chat-<UTC time>-<random>``)."""
    from datetime import UTC, datetime

    from persona.schema.conversation import Conversation

    from persona_runtime.turnlog import new_id

    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    return Conversation(conversation_id=f"chat-{stamp}-{new_id()[:6]}", persona_id=persona_id)


def make_router(persona: Persona, tiers: TierRegistry) -> Any:
    """UnifiedRouter (cost/quality/latency scoring) when any tier has metadata; else the heuristic."""
    from persona_runtime.routing import HeuristicRouter, UnifiedRouter

    if any(tiers.metadata_for(name) is not None for name in tiers.configured_tier_names):
        return UnifiedRouter.for_persona(persona, tiers)
    return HeuristicRouter.for_persona(persona, tiers)


@dataclass(frozen=True)
class HeavyParts:
    """What the background thread loads: memory (Chroma, the embedder) and the persona's skills."""

    memory: PersonaMemory | None  # None: the store could not be used (see HeavyParts.notices)
    skills: list[Any]
    skill_injector: Any
    #: What the person should hear about the load (a store set aside, memory off), once.
    notices: list[str] = field(default_factory=list)


class Session:
    """What a chat or agent session runs on; build it with :func:`open_session`.

    :meth:`loop` and :meth:`agentic` wait for the background load; :attr:`built_loop` never waits.
    """

    def __init__(
        self,
        *,
        persona: Persona,
        persona_path: Path,
        settings: Settings,
        paths: DataPaths,
        tiers: TierRegistry,
        embedder: EmbedderChoice,
        mcp: McpPlan | None = None,
    ) -> None:
        self.persona = persona
        self.persona_path = persona_path
        self.settings = settings
        self.paths = paths
        self.tiers = tiers
        self.embedder = embedder
        #: One-line notes for the person (e.g. about the embedder), shown once at start-up.
        self.notices: list[str] = [embedder.notice] if embedder.notice else []
        self.mcp_clients: list[Any] = []
        self._spend: SpendCap | None = None
        #: The MCP servers this session uses (see :mod:`persona_runtime.mcp`); None: none configured.
        self.mcp = mcp
        self._heavy: Future[HeavyParts] = Future()
        self._loop: ConversationLoop | None = None
        self._loop_lock = asyncio.Lock()
        self._started = False
        self._start_lock = threading.Lock()
        #: Set at the first turn's first event, and at its end (see memory_open.attach_memory).
        self.turn_started, self.first_turn_done = threading.Event(), threading.Event()

    @property
    def persona_id(self) -> str:
        return self.persona.persona_id or self.persona_path.stem

    def new_conversation(self) -> Conversation:
        """A new, empty conversation with this persona (long-term memory is shared)."""
        return new_conversation(self.persona_id)

    # -- stored conversations ----------------------------------------------------------------

    @property
    def conversations(self) -> ConversationStore:
        from persona_runtime.conversations import ConversationStore

        return ConversationStore(self.paths.conversations)

    def list_conversations(self) -> list[ConversationSummary]:
        """This persona's stored conversations, the most recently active first."""
        return self.conversations.summaries(self.persona_id)

    def open_conversation(self, id_prefix: str) -> Conversation:
        """The stored conversation whose id starts with ``id_prefix`` (one-line
        :class:`~persona_runtime.conversations.ConversationNotFound` when none or several match)."""
        store = self.conversations
        return store.load(self.persona_id, store.find(self.persona_id, id_prefix))

    def latest_conversation(self) -> Conversation | None:
        """The most recently active stored conversation with this persona, or None."""
        latest = self.conversations.latest(self.persona_id)
        return self.conversations.load(self.persona_id, latest) if latest is not None else None

    async def undo_last_turn(self, conversation: Conversation) -> tuple[StoredTurn, str | None]:
        """Take back the last exchange (conversation, file, memory; the TurnLog records it).
        Raises :class:`~persona_runtime.undo.NothingToUndo`."""
        from persona_runtime.undo import undo_last_turn

        loop = await self.loop()
        return undo_last_turn(self.conversations, conversation, memory=loop.memory, events=loop.events)

    # -- background loading ----------------------------------------------------------------

    def start_background(self) -> None:
        """Begin loading the heavy parts on one thread; returns immediately. Idempotent."""
        with self._start_lock:
            if self._started:
                return
            self._started = True
        if self.mcp is not None and self.mcp.hub is not None:
            self.mcp.hub.start()  # first: a server starting is mostly waiting for a child process
        threading.Thread(target=self._load_in_background, name="persona-session", daemon=True).start()

    def _load_in_background(self) -> None:
        from persona_runtime.local_prefix import loading_beside

        with loading_beside():  # llama.cpp reads ahead on one thread meanwhile
            self._load_all()

    def _load_all(self) -> None:
        # At once from launch, each on a thread of its own: the local model (llama.cpp, mostly C),
        # the embedder, and memory on this one. What they all import comes first, alone.
        try:
            from persona_runtime.embedders import WARM_UP_TEXT
            from persona_runtime.memory_open import attach_memory, open_memory_early
            from persona_runtime.prefill import prefill_session, preload_local_models
            from persona_runtime.shared_imports import warm_shared_imports

            warm_shared_imports()
            preload_local_models(self.tiers, wait=False)  # each loads on a thread of its own
            # A loaded local model reads the system message; a turn takes it over within a chunk.
            threading.Thread(target=prefill_session, args=(self,), name="persona-prefill", daemon=True).start()
            embedder = self.embedder.embedder
            warm = hasattr(embedder, "start_loading")
            if warm:
                embedder.start_loading()
            early = open_memory_early(self)  # recalls from the last session's snapshot while the store opens
            heavy = load_heavy_parts(self, memory=early)
            if warm:
                embedder.encode([WARM_UP_TEXT])  # waits for the load and proves the embedder works
            preload_local_models(self.tiers)  # waits for the models
            self._heavy.set_result(heavy)
        except BaseException as exc:  # noqa: BLE001 - delivered to whoever awaits the session
            self._heavy.set_exception(exc)
            return
        if early is not None:
            attach_memory(self, early, heavy.notices, started=self.turn_started, finished=self.first_turn_done)

    async def _heavy_parts(self) -> HeavyParts:
        self.start_background()
        # shield: a Ctrl-C while waiting must not cancel the shared future (later turns would fail).
        return await asyncio.shield(asyncio.wrap_future(self._heavy))

    # -- loops -----------------------------------------------------------------------------

    @property
    def ready(self) -> bool:
        """Memory and models have loaded (so :meth:`loop` does not wait), without error."""
        return self._heavy.done() and self._heavy.exception() is None

    @property
    def built_loop(self) -> ConversationLoop | None:
        """The ConversationLoop if it is built already (no waiting), else None."""
        return self._loop

    def take_notices(self) -> list[str]:
        """Notices from the background load (once it is done), each given once."""
        future = self._heavy
        if not future.done() or future.exception() is not None:
            return []
        heavy = future.result()
        notices = list(heavy.notices)
        heavy.notices.clear()
        return notices

    async def loop(self) -> ConversationLoop:
        """The ConversationLoop, built on first use (waits for the background load), once even
        when a turn and a draft read ahead ask at the same time."""
        async with self._loop_lock:
            if self._loop is None:
                self._loop = await self._build_loop()
        return self._loop

    async def _build_loop(self) -> ConversationLoop:
        heavy = await self._heavy_parts()
        from persona_runtime.toolbox import build_toolbox, tools_reachable

        toolbox, clients = await build_toolbox(self, heavy) if tools_reachable(self.tiers) else (None, [])
        self.mcp_clients = clients
        from persona_runtime.conversations import ConversationRecorder
        from persona_runtime.history import HistoryWindow
        from persona_runtime.loop import ConversationLoop
        from persona_runtime.memory_open import turn_watch

        settings = self.settings
        return ConversationLoop(
            persona=self.persona,
            tiers=self.tiers,
            memory=heavy.memory,
            router=make_router(self.persona, self.tiers),
            toolbox=toolbox,
            skills=heavy.skills,
            skill_injector=heavy.skill_injector,
            turn_log=self._turn_log(),
            subscribers=[ConversationRecorder(self.conversations), turn_watch(self.turn_started, self.first_turn_done)],
            max_tool_rounds=settings.max_tool_rounds,
            options=self.engine_options(),
            history_window=HistoryWindow(
                compact_after=settings.history_compact_after, keep_recent_turns=settings.history_keep_turns
            ),
        )

    async def agentic(self, **kwargs: Any) -> AgenticLoop:
        """An AgenticLoop on the same persona, tiers, memory, tools and logs (waits for the
        background load). ``kwargs`` go to ``AgenticLoop`` (e.g. ``max_steps``)."""
        heavy = await self._heavy_parts()
        from persona_runtime.toolbox import build_toolbox

        toolbox, clients = await build_toolbox(self, heavy)
        self.mcp_clients.extend(clients)
        from persona_runtime.agentic import AgenticLoop

        options: dict[str, Any] = {
            "memory": heavy.memory,
            "toolbox": toolbox,
            "skills": heavy.skills,
            "skill_injector": heavy.skill_injector,
            "turn_log": self._turn_log(),
            "runs_dir": self.paths.runs,
            "persona_path": self.persona_path,
            "options": self.engine_options(),
        }
        options.update(kwargs)
        return AgenticLoop(persona=self.persona, tiers=self.tiers, **options)

    @property
    def spend(self) -> SpendCap:
        """The session's spend cap (one ledger for chat and agent loops alike); today's spend is
        read from the TurnLog once, on first use, when a day cap is set."""
        if self._spend is None:
            from persona_runtime.spend import SpendCap

            self._spend = SpendCap.from_turn_log(self.settings.spend_limits(), self.paths.turn_log)
        return self._spend

    @property
    def built_spend(self) -> SpendCap | None:
        """The spend cap if it is set up already (never reads the TurnLog: safe in a toolbar)."""
        return self._spend

    def engine_options(self) -> EngineOptions:
        from dataclasses import replace

        return replace(self.settings.engine_options(), spend=self.spend if self.spend.active else None)

    def _turn_log(self) -> JSONLTurnLogWriter:
        from persona_runtime.turnlog import JSONLTurnLogWriter

        return JSONLTurnLogWriter(self.paths.turn_log, max_bytes=self.settings.log_max_bytes, keep=self.settings.log_keep)

    async def aclose(self) -> None:
        """Stop the MCP servers, close every model backend and the memory store (a load still
        running closes it when done); safe to call more than once."""
        self.turn_started.set()
        self.first_turn_done.set()  # a store still waiting to open opens now, and is closed
        self._heavy.add_done_callback(_close_memory)
        if self.mcp is not None and self.mcp.hub is not None:
            await self.mcp.hub.aclose()
        for client in self.mcp_clients:
            closer = getattr(client, "aclose", None) or getattr(client, "disconnect", None)
            if closer is not None:
                try:
                    await closer()
                except Exception:  # noqa: BLE001 - shutting down
                    pass
        await self.tiers.aclose()


# -- the heavy parts (loader thread) -----------------------------------------------------------


def _close_memory(heavy: Future[HeavyParts]) -> None:
    if not heavy.cancelled() and heavy.exception() is None and (memory := heavy.result().memory) is not None:
        memory.close(save_recall=True)


def load_heavy_parts(session: Session, memory: PersonaMemory | None = None) -> HeavyParts:
    """persona-core imports, Chroma stores, persona indexing, skills; with ``memory`` (an early
    one) the store is left to open later. Blocking: runs on the loader thread."""
    from persona_runtime import _offline

    _offline.configure_core_logging(session.paths.core_log, verbose=session.settings.verbose)
    from persona_runtime.paths import tighten_private

    tighten_private(session.paths.root / "memory")
    tighten_private(session.paths.audit)
    from persona_runtime.memory_open import open_memory

    memory, notices = (memory, []) if memory is not None else open_memory(session)
    skills: list[Any] = []
    injector = None
    if session.persona.skills:
        from persona.skills import BUILTIN_ROOT, SkillInjector, SkillScanner

        skills = SkillScanner([BUILTIN_ROOT]).scan(session.persona.skills, tool_allow_list=session.persona.tools)
        injector = SkillInjector()
    return HeavyParts(memory=memory, skills=skills, skill_injector=injector, notices=notices)
