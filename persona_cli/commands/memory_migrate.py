"""``persona memory migrate PERSONA --to URL|local``: a persona's memory between the embedded store
and a Chroma server. The runtime does the copying (:mod:`persona_runtime.memory_migrate`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from persona_cli import exit_codes
from persona_cli.exit_codes import CliError

__all__ = ["HELP", "migrate"]

HELP = """Copy a persona's memory to a Chroma server, or back to this machine's store.

Idempotent: what the destination already holds is not copied again.

\b
Examples:
  persona memory migrate personas/kai.yaml --to http://127.0.0.1:8000
  PERSONA_CHROMA_URL=http://127.0.0.1:8000 persona memory migrate personas/kai.yaml --to local
"""


def migrate(
    persona: Annotated[Path, typer.Argument(help="The persona's YAML file.", show_default=False)],
    to: Annotated[
        str, typer.Option("--to", help="A server URL (http(s)://host:port), or 'local' to copy from PERSONA_CHROMA_URL to this machine.", show_default=False)
    ],
) -> None:
    """Copy a persona's memory between this machine and a Chroma server (see --help)."""
    from persona_cli.compose import load_persona, setup_errors_exit_2

    from persona_runtime.chroma_server import ChromaServer, EmbedderMismatch, MemoryServerDown, URL_VAR
    from persona_runtime.embedders import choose_embedder
    from persona_runtime.errors import ConfigError
    from persona_runtime.memory_migrate import migrate_memory
    from persona_runtime.paths import prepare_data_dir
    from persona_runtime.secrets import redact
    from persona_runtime.settings import Settings

    with setup_errors_exit_2():
        loaded = load_persona(persona)
        settings = Settings.from_env()
        to_server = to.strip().lower() != "local"
        if to_server:
            base = settings.chroma
            server = ChromaServer.parse(
                to,
                token=base.token if base else None,
                tenant=base.tenant if base else "",
                database=base.database if base else "",
            )
        elif settings.chroma is None:
            raise ConfigError(f"--to local copies from the server in {URL_VAR}; set it to that server's URL", variable=URL_VAR)
        else:
            server = settings.chroma
        choice = choose_embedder(settings.embedder)
        paths = prepare_data_dir(settings.data_paths())
    from persona_runtime import _offline

    _offline.configure_core_logging(paths.core_log, verbose=settings.verbose)
    try:
        result = migrate_memory(
            loaded.persona_id or persona.stem, local_root=paths.memory(choice.key), server=server,
            to_server=to_server, embedder=choice.embedder,
        )
    except EmbedderMismatch as exc:
        raise CliError(redact(str(exc), server.secrets), exit_codes.USAGE) from None
    except MemoryServerDown as exc:
        raise CliError(redact(f"{exc}; run it again when the server is back (what was copied is kept; nothing is copied twice)", server.secrets), exit_codes.RUNTIME_ERROR) from None
    except Exception as exc:  # noqa: BLE001 - one line, never a traceback
        detail = " ".join(str(exc).split())[:300]
        raise CliError(redact(f"memory migration failed: {type(exc).__name__}: {detail}", server.secrets), exit_codes.RUNTIME_ERROR) from None
    typer.echo(result.summary())
