"""persona-core's own commands (init, validate, audit, repair), re-exposed.

Installing this app replaces persona-core's ``persona`` script; re-exposing its
commands means nothing is lost either way. The wrappers import persona-core only
when run (its import takes seconds) and point it at our data directory.
"""

from __future__ import annotations

import os
from pathlib import Path

import typer


def _core_env() -> None:
    """persona-core's config reads PERSONA_*; align it with our data layout and values."""
    from persona_cli.compose import prepare_data_dir, setup_errors_exit_2
    from persona_runtime.embedders import store_key_for
    from persona_runtime.settings import embedder_kind_from_env, verbose_from_env

    paths = prepare_data_dir()  # our data dir, created private (umask 077), with a clear error if unwritable
    with setup_errors_exit_2():
        embedder = embedder_kind_from_env()
    os.environ.setdefault("PERSONA_CHROMA_PATH", str(paths.memory(store_key_for(embedder))))
    os.environ.setdefault("PERSONA_AUDIT_PATH", str(paths.audit))
    # persona-core only knows these two values; ours adds "minilm".
    os.environ["PERSONA_EMBEDDER"] = "hash" if embedder == "hash" else "sentence-transformers"
    from persona_runtime import _offline

    _offline.configure_core_logging(paths.core_log, verbose=verbose_from_env())


def register_core_commands(app: typer.Typer) -> None:
    @app.command(help="Create a persona YAML with an interactive wizard (persona-core).")
    def init(
        output: Path = typer.Option(Path("persona.yaml"), "--output", "-o", help="Where to write the YAML."),
    ) -> None:
        _core_env()
        from persona.cli.init_cmd import init as core_init

        core_init(output=output, description=None)

    @app.command(help="Check that a persona YAML is valid (persona-core).")
    def validate(path: Path = typer.Argument(..., help="Path to the persona YAML file.")) -> None:
        from persona_cli.compose import load_persona

        persona = load_persona(path)
        typer.echo(f"valid: {path} ({persona.identity.name}, id {persona.persona_id})")

    @app.command(help="Show the memory audit trail of a persona (persona-core).")
    def audit(
        persona_path: Path = typer.Argument(..., help="Path to the persona YAML."),
        since: str | None = typer.Option(None, help="Only events newer than this, e.g. 7d or 2026-11-01."),
        action: str | None = typer.Option(None, help="Filter by action."),
        source: str | None = typer.Option(None, help="Filter by write source."),
        store: str | None = typer.Option(None, help="Filter by store."),
    ) -> None:
        _core_env()
        from persona.cli.audit_cmd import audit as core_audit

        core_audit(persona_path=persona_path, since=since, action=action, source=source, store=store)

    @app.command(help="Diagnose (and with --apply, repair) a persona's memory stores (persona-core).")
    def repair(
        persona_path: Path = typer.Argument(..., help="Path to the persona YAML."),
        store: str | None = typer.Option(None, help="Only this store."),
        apply: bool = typer.Option(False, "--apply", help="Apply the repairs instead of only reporting them."),
    ) -> None:
        _core_env()
        from persona.cli.repair_cmd import repair as core_repair

        core_repair(persona_path=persona_path, store=store, database_url=None, apply=apply)
