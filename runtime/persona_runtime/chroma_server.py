"""Memory on a Chroma server: its settings, and a client with bounded timeouts.

``PERSONA_CHROMA_URL`` (``http(s)://host:port``) puts memory on a Chroma server (``chroma run``)
instead of the embedded store under PERSONA_HOME; ``PERSONA_CHROMA_TOKEN`` is sent as Chroma's
token header (``Authorization: Bearer``), and ``PERSONA_CHROMA_TENANT`` /
``PERSONA_CHROMA_DATABASE`` pick the tenant and database. Nothing heavy is imported at module
level: the settings read these before the prompt is drawn.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from persona_runtime.errors import ConfigError

__all__ = [
    "CONNECT_TIMEOUT_S", "READ_TIMEOUT_S", "URL_VAR", "ChromaServer", "EmbedderMismatch", "MemoryServerDown",
    "chroma_server_from_env", "make_client",
]

URL_VAR = "PERSONA_CHROMA_URL"
TOKEN_VAR = "PERSONA_CHROMA_TOKEN"
TENANT_VAR = "PERSONA_CHROMA_TENANT"
DATABASE_VAR = "PERSONA_CHROMA_DATABASE"
DEFAULT_TENANT = "default_tenant"
DEFAULT_DATABASE = "default_database"
CONNECT_TIMEOUT_S = 3.0
READ_TIMEOUT_S = 10.0


class MemoryServerDown(Exception):
    """The memory server could not be reached (refused, timed out, 5xx): memory waits for it."""


class EmbedderMismatch(Exception):
    """A collection holds vectors of another embedder; writing ours would mix them."""


@dataclass(frozen=True)
class ChromaServer:
    """Where memory lives when it is on a server. ``token`` never appears in ``repr`` or messages."""

    url: str
    host: str
    port: int
    ssl: bool
    token: str | None = field(default=None, repr=False)
    tenant: str = DEFAULT_TENANT
    database: str = DEFAULT_DATABASE
    connect_timeout_s: float = CONNECT_TIMEOUT_S
    read_timeout_s: float = READ_TIMEOUT_S

    @classmethod
    def parse(cls, url: str, *, token: str | None = None, tenant: str = "", database: str = "") -> ChromaServer:
        """``http(s)://host:port`` (no path, query or credentials); anything else is a ConfigError."""
        raw = url.strip()
        wanted = f"{URL_VAR} must look like http://HOST:PORT or https://HOST:PORT"
        try:
            parts = urlsplit(raw)
            port = parts.port
        except ValueError:
            raise ConfigError(f"{wanted}; got {raw!r}", variable=URL_VAR) from None
        if parts.scheme not in ("http", "https") or not parts.hostname or parts.username or parts.password:
            raise ConfigError(f"{wanted}; got {raw!r}", variable=URL_VAR)
        if parts.path not in ("", "/") or parts.query or parts.fragment:
            raise ConfigError(f"{wanted} (no path or query); got {raw!r}", variable=URL_VAR)
        ssl = parts.scheme == "https"
        port = port if port is not None else (443 if ssl else 8000)
        for var, name in ((TENANT_VAR, tenant), (DATABASE_VAR, database)):
            if name and not all(c.isalnum() or c in "_-." for c in name):
                raise ConfigError(f"{var} may hold letters, digits, '_', '-' and '.' only; got {name!r}", variable=var)
        shown = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname  # an IPv6 address
        return cls(
            url=f"{parts.scheme}://{shown}:{port}", host=parts.hostname, port=port, ssl=ssl,
            token=token or None, tenant=tenant or DEFAULT_TENANT, database=database or DEFAULT_DATABASE,
        )

    @property
    def label(self) -> str:
        """For messages: the URL, plus tenant and database when they are not the defaults."""
        extra = "" if (self.tenant, self.database) == (DEFAULT_TENANT, DEFAULT_DATABASE) else f" ({self.tenant}/{self.database})"
        return self.url + extra

    @property
    def key(self) -> str:
        """Filesystem-safe and unique per URL + tenant + database (keys local markers and the queue)."""
        return hashlib.sha256(f"{self.url}|{self.tenant}|{self.database}".encode()).hexdigest()[:16]

    @property
    def secrets(self) -> tuple[str, ...]:
        """Values :func:`persona_runtime.secrets.redact` must remove (the token)."""
        return (self.token,) if self.token else ()


def chroma_server_from_env(env: Mapping[str, str]) -> ChromaServer | None:
    """The server from ``PERSONA_CHROMA_*``, or None when ``PERSONA_CHROMA_URL`` is unset."""
    url = env.get(URL_VAR, "").strip()
    if not url:
        return None
    return ChromaServer.parse(
        url,
        token=env.get(TOKEN_VAR, "").strip() or None,
        tenant=env.get(TENANT_VAR, "").strip(),
        database=env.get(DATABASE_VAR, "").strip(),
    )


def make_client(server: ChromaServer) -> Any:
    """A chromadb client for ``server``: its HTTP session has bounded connect and read timeouts
    (chromadb's own has none), and the token goes in the ``Authorization`` header. A server that
    cannot be reached is a :class:`MemoryServerDown` naming the URL, never the token."""
    import chromadb
    import httpx
    from chromadb.config import Settings as ChromaSettings

    from persona_runtime.chroma_http import is_unreachable, set_timeouts

    headers = {"Authorization": f"Bearer {server.token}"} if server.token else {}
    timeout = httpx.Timeout(server.read_timeout_s, connect=server.connect_timeout_s)
    try:
        # chromadb's client asks for the tenant and database as it is made, with no timeout:
        # one bounded heartbeat first, so a server that does not answer fails here, in seconds.
        httpx.get(f"{server.url}/api/v2/heartbeat", headers=headers, timeout=timeout).raise_for_status()
        client = chromadb.HttpClient(
            host=server.host, port=server.port, ssl=server.ssl, headers=headers or None,
            settings=ChromaSettings(anonymized_telemetry=False), tenant=server.tenant, database=server.database,
        )
    except Exception as exc:
        if is_unreachable(exc):
            raise MemoryServerDown(unreachable_message(server, exc)) from None
        from persona_runtime.secrets import redact

        detail = " ".join(str(exc).split())[:200]
        raise ConnectionError(redact(f"the memory server {server.label} refused the client ({detail})", server.secrets)) from None
    set_timeouts(client, timeout)
    return client


def unreachable_message(server: ChromaServer, exc: BaseException) -> str:
    from persona_runtime.secrets import redact

    detail = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
    return redact(f"the memory server {server.label} is unreachable ({type(exc).__name__}: {detail})", server.secrets)
