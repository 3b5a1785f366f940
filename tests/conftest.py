import os

os.environ["ANONYMIZED_TELEMETRY"] = "False"
# Loopback traffic must never go through a proxy a machine may have configured.
os.environ["NO_PROXY"] = os.environ["no_proxy"] = "127.0.0.1,localhost"

from persona_runtime import _offline  # noqa: E402

_offline.install()
# persona-core logs every record twice on stderr by default; keep test output readable.
_offline.configure_core_logging(None)


import pytest  # noqa: E402


def pytest_configure(config: pytest.Config) -> None:
    # PERSONA_FD_TRACE=1 (or a path): count open file descriptors around every test.
    from tests.support import fdtrace

    fdtrace.configure(config)


@pytest.fixture(autouse=True)
def _restore_environ():
    """Commands load .env files into os.environ; no test may leak variables into the next."""
    saved = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved)


@pytest.fixture
def log(tmp_path, monkeypatch):
    """The turn log's path under a temporary PERSONA_HOME (nothing written yet)."""
    monkeypatch.setenv("PERSONA_HOME", str(tmp_path))
    monkeypatch.delenv("NO_COLOR", raising=False)
    return tmp_path / "logs" / "turns.jsonl"


@pytest.fixture
def memories():
    """Opens PersonaMemory stores for a test and closes them at teardown (tests/support/memory.py)."""
    from tests.support.memory import Memories

    opened = Memories()
    yield opened
    opened.close()


@pytest.fixture
def server():
    """A scripted OpenAI-compatible server on 127.0.0.1 (tests/support/openai_server.py)."""
    from tests.support.openai_server import ScriptedOpenAIServer

    with ScriptedOpenAIServer() as srv:
        yield srv


@pytest.fixture
def chroma_server(tmp_path):
    """A real Chroma server (`chroma run`) on 127.0.0.1 and a free port, data under tmp_path;
    killed at teardown (tests/support/chroma_server.py)."""
    from tests.support.chroma_server import ChromaServerProcess

    with ChromaServerProcess(tmp_path / "chroma-server") as chroma:
        yield chroma


@pytest.fixture
def srv(server):
    return server


@pytest.fixture(scope="session")
def llama_server(tmp_path_factory):
    """llama-cpp-python's own OpenAI-compatible server on the bundled GGUF, on 127.0.0.1
    (tests/support/llama_server.py); started once for the tests that ask for it, always stopped."""
    from tests.support.llama_server import LlamaServer

    with LlamaServer.start(tmp_path_factory.mktemp("llama")) as llama:
        yield llama


@pytest.fixture(scope="module")
def backend():
    """The bundled SmolLM2 as a LlamaCppBackend (one per process), loading from here on."""
    from persona_runtime.local_backend import LlamaCppBackend

    b = LlamaCppBackend.shared(None)
    b.preload()
    return b


@pytest.fixture
def cached_prefixes(monkeypatch):
    """(prompt tokens, of which already in the KV cache) for every llama.cpp generation: an
    observer around the real ``Llama.generate``, which does the reuse itself."""
    import llama_cpp

    seen: list[tuple[int, int]] = []
    real = llama_cpp.Llama.generate

    def observed(self, tokens, *args, **kwargs):
        cached = self.input_ids[: self.n_tokens].tolist()
        common = next((i for i, (a, b) in enumerate(zip(cached, tokens, strict=False)) if a != b), min(len(cached), len(tokens)))
        seen.append((len(tokens), common))
        return real(self, tokens, *args, **kwargs)

    monkeypatch.setattr(llama_cpp.Llama, "generate", observed)
    return seen
