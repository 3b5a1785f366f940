"""PERSONA_CHROMA_* settings, the embedder check on a collection, and what counts as "unreachable"."""

from __future__ import annotations

from types import SimpleNamespace

import httpx
import pytest

from persona_runtime.chroma_backends import EMBEDDER_DIMENSION, EMBEDDER_KEY, check_embedder
from persona_runtime.chroma_http import is_unreachable
from persona_runtime.chroma_server import ChromaServer, EmbedderMismatch
from persona_runtime.errors import ConfigError
from persona_runtime.memory_guard import memory_notice
from persona_runtime.settings import Settings


def test_unset_url_means_the_embedded_store() -> None:
    assert Settings.from_env({}).chroma is None


def test_the_server_variables_are_read_once() -> None:
    env = {
        "PERSONA_CHROMA_URL": " https://chroma.example.com:8443/ ",
        "PERSONA_CHROMA_TOKEN": "tok-abcdef-123",
        "PERSONA_CHROMA_TENANT": "team",
        "PERSONA_CHROMA_DATABASE": "personas.v1",
    }
    server = Settings.from_env(env).chroma
    assert server is not None
    assert (server.url, server.host, server.port, server.ssl) == ("https://chroma.example.com:8443", "chroma.example.com", 8443, True)
    assert (server.tenant, server.database, server.token) == ("team", "personas.v1", "tok-abcdef-123")
    assert "tok-abcdef-123" not in repr(server) and "tok-abcdef-123" not in server.label
    assert server.label == "https://chroma.example.com:8443 (team/personas.v1)"
    assert server.secrets == ("tok-abcdef-123",)


def test_defaults_port_tenant_and_database() -> None:
    server = ChromaServer.parse("http://127.0.0.1")
    assert (server.port, server.tenant, server.database, server.token) == (8000, "default_tenant", "default_database", None)
    assert server.label == "http://127.0.0.1:8000"
    assert server.key != ChromaServer.parse("http://127.0.0.1", database="other").key
    assert ChromaServer.parse("http://[::1]:8001").url == "http://[::1]:8001"


@pytest.mark.parametrize(
    "url",
    ["127.0.0.1:8000", "ftp://chroma.example.com:21", "http://", "http://chroma.example.com:notaport", "http://user:pw@chroma.example.com:8000",
     "http://chroma.example.com:8000/api", "http://chroma.example.com:8000?x=1"],
)
def test_a_bad_url_is_one_config_error_naming_the_variable(url: str) -> None:
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({"PERSONA_CHROMA_URL": url})
    assert caught.value.variable == "PERSONA_CHROMA_URL" and "\n" not in str(caught.value)
    assert "http://HOST:PORT" in str(caught.value)


def test_a_bad_tenant_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="PERSONA_CHROMA_TENANT"):
        Settings.from_env({"PERSONA_CHROMA_URL": "http://chroma.example.com:1", "PERSONA_CHROMA_TENANT": "a b"})


def collection(meta: dict | None) -> SimpleNamespace:
    return SimpleNamespace(name="persona__kai__episodic", metadata=meta)


def test_a_collection_of_the_same_embedder_or_without_a_name_is_accepted() -> None:
    check_embedder(collection({EMBEDDER_KEY: "hash-384", EMBEDDER_DIMENSION: 384}), key="hash-384", dimension=384, where="x")
    check_embedder(collection(None), key="hash-384", dimension=384, where="x")  # a store from before the metadata


@pytest.mark.parametrize("meta", [{EMBEDDER_KEY: "all-MiniLM-L6-v2", EMBEDDER_DIMENSION: 384}, {EMBEDDER_KEY: "hash-384", EMBEDDER_DIMENSION: 768}])
def test_another_embedder_or_width_is_one_line(meta: dict) -> None:
    with pytest.raises(EmbedderMismatch) as caught:
        check_embedder(collection(meta), key="hash-384", dimension=384, where="http://127.0.0.1:8000")
    text = str(caught.value)
    assert "\n" not in text and "persona__kai__episodic" in text and "http://127.0.0.1:8000" in text


def test_what_counts_as_an_unreachable_server() -> None:
    request = httpx.Request("GET", "http://127.0.0.1:1")
    assert is_unreachable(httpx.ConnectError("refused", request=request))
    assert is_unreachable(httpx.ReadTimeout("slow", request=request))
    try:
        try:
            raise httpx.ConnectError("refused", request=request)
        except httpx.ConnectError:
            raise ValueError("Could not connect to tenant default_tenant. Are you sure it exists?")  # noqa: B904
    except ValueError as wrapped:
        assert is_unreachable(wrapped)  # chromadb's wrapping keeps the cause
    assert is_unreachable(httpx.HTTPStatusError("x", request=request, response=httpx.Response(503, request=request)))
    assert not is_unreachable(httpx.HTTPStatusError("x", request=request, response=httpx.Response(400, request=request)))
    assert not is_unreachable(ValueError("Collection does not exist"))


def test_the_notice_for_a_server_memory_names_the_fault_and_never_the_token() -> None:
    from persona_runtime.chroma_server import MemoryServerDown

    server = ChromaServer.parse("http://127.0.0.1:9", token="tok-hidden-987654")
    memory = SimpleNamespace(root=None, server=server)
    notice = memory_notice("could not recall", memory, MemoryServerDown("the memory server http://127.0.0.1:9 said tok-hidden-987654"))
    assert notice.startswith("memory could not recall: the memory server http://127.0.0.1:9")
    assert "tok-hidden-987654" not in notice
