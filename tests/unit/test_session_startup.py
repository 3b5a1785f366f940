"""What a session loads from launch runs at once (model, embedder, memory), and a chat whose
every tier is a local GGUF model builds no toolbox (those models are never sent tools)."""

from __future__ import annotations

import asyncio
import threading

import persona_runtime.session as session_module
from persona_runtime.embedders import EmbedderChoice
from persona_runtime.session import open_session
from persona_runtime.settings import Settings
from persona_runtime.testing import ScriptedBackend
from persona_runtime.tier import ModelSlot, TierConfig
from persona_runtime.toolbox import tools_reachable
from tests.support.paths import REPO

PERSONA = REPO / "personas" / "astrid.yaml"  # lists tools
WAIT_S = 30  # a bound on each wait, not a timing: in the sequential order the waits never end


class _Model(ScriptedBackend):
    """A local model whose load only finishes once the embedder and memory are loading too."""

    def __init__(self, others: list[threading.Event]) -> None:
        super().__init__([], model_name="fake", provider_name="gguf")
        self.started, self.loaded, self.overlapped = threading.Event(), threading.Event(), False
        self._others = others

    def preload(self) -> None:
        if not self.started.is_set():
            self.started.set()
            threading.Thread(target=self._load, daemon=True).start()

    def _load(self) -> None:
        self.overlapped = all(e.wait(WAIT_S) for e in self._others)
        self.loaded.set()

    def wait_loaded(self) -> None:
        self.loaded.wait()


class _Embedder:
    dimension = 8

    def __init__(self, other: threading.Event) -> None:
        self.started, self.loaded, self.overlapped, self._other = threading.Event(), threading.Event(), False, other

    def start_loading(self) -> None:
        self.started.set()
        threading.Thread(target=self._load, daemon=True).start()

    def _load(self) -> None:
        self.overlapped = self._other.wait(WAIT_S)
        self.loaded.set()

    def encode(self, texts):
        self.loaded.wait()
        return [[0.0] * 8 for _ in texts]


def test_model_embedder_and_memory_load_at_once(tmp_path, monkeypatch) -> None:
    memory_started = threading.Event()
    model = _Model([memory_started])
    embedder = _Embedder(model.started)
    model._others.append(embedder.started)
    seen: dict[str, bool] = {}

    def load_heavy(session, memory=None):
        memory_started.set()
        seen["memory"] = model.started.wait(WAIT_S) and embedder.started.wait(WAIT_S)
        return session_module.HeavyParts(memory=None, skills=[], skill_injector=None)

    monkeypatch.setattr(session_module, "load_heavy_parts", load_heavy)
    settings = Settings(data_dir=tmp_path, embedder="hash")
    tiers = settings.tier_registry(backend_factory=lambda slot: model)
    session = open_session(PERSONA, settings=settings, tiers=tiers, start=False)
    session.embedder = EmbedderChoice(key="fake", embedder=embedder)
    session.start_background()
    session._heavy.result(timeout=3 * WAIT_S)
    assert seen["memory"] and model.overlapped and embedder.overlapped


def test_a_chat_on_local_models_only_builds_no_toolbox(tmp_path, monkeypatch) -> None:
    import persona_runtime.toolbox as toolbox_module

    built: list[object] = []

    async def build(session, heavy):
        built.append(session)
        return object(), []

    monkeypatch.setattr(toolbox_module, "build_toolbox", build)
    settings = Settings(data_dir=tmp_path, embedder="hash")
    local = settings.tier_registry(backend_factory=lambda slot: ScriptedBackend([], provider_name="gguf"))
    assert not tools_reachable(local)

    async def toolbox_of(session) -> object:
        try:
            return (await session.loop()).toolbox
        finally:
            await session.aclose()

    assert asyncio.run(toolbox_of(open_session(PERSONA, settings=settings, tiers=local))) is None and built == []

    remote = ScriptedBackend([], model_name="gpt", provider_name="openai")
    mixed = settings.tier_registry()
    mixed = type(mixed)([TierConfig.from_backend("mid", remote), TierConfig("small", (ModelSlot("gguf", "bundled"),))])
    assert tools_reachable(mixed)
    asyncio.run(toolbox_of(open_session(PERSONA, settings=settings, tiers=mixed)))
    assert len(built) == 1
