"""The CLI's side of start-up. The runtime builds the session (:mod:`persona_runtime.session`);
this module only turns its one-line set-up errors (bad persona file, variable or data
directory: :class:`persona_runtime.errors.SetupError`) into exit code 2."""

from __future__ import annotations

from contextlib import contextmanager
from typing import TYPE_CHECKING

from persona_cli.exit_codes import USAGE, CliError

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from persona.schema.persona import Persona

    from persona_runtime.paths import DataPaths
    from persona_runtime.session import Session

__all__ = ["closed_on_error", "load_persona", "open_session", "prepare_data_dir", "setup_errors_exit_2"]


@contextmanager
def setup_errors_exit_2() -> Iterator[None]:
    """A :class:`SetupError` inside becomes a one-line ``CliError`` with exit code 2."""
    from persona_runtime.errors import SetupError

    try:
        yield
    except SetupError as exc:
        raise CliError(str(exc), USAGE) from None


@contextmanager
def closed_on_error(session: Session) -> Iterator[None]:
    """Close ``session`` if what runs inside fails (a bad --resume id) before a turn owns it: its
    background load would keep the memory store open for the rest of an in-process caller."""
    try:
        yield
    except BaseException:
        import asyncio

        asyncio.run(session.aclose())
        raise


def open_session(
    persona_path: Path, *, start: bool = True, max_cost: float | None = None, allow_unpriced: bool = False,
    mcp_config: Path | None = None,
) -> Session:
    """:func:`persona_runtime.session.open_session` with the settings from the environment;
    ``max_cost`` (US dollars, ``--max-cost``) wins over ``PERSONA_MAX_COST_PER_SESSION``;
    ``mcp_config``: ``--mcp-config``, else ``PERSONA_HOME/mcp.json``."""
    from dataclasses import replace

    from persona_runtime.session import open_session as open_runtime_session
    from persona_runtime.settings import Settings

    if max_cost is not None and not 0 <= max_cost < float("inf"):
        raise CliError(f"--max-cost must be an amount in US dollars >= 0 (e.g. 0.50), got {max_cost!r}", USAGE)
    with setup_errors_exit_2():
        settings = Settings.from_env()
        if max_cost is not None:
            settings = replace(settings, max_cost_per_session=max_cost)
        if allow_unpriced:
            settings = replace(settings, allow_unpriced=True)
        return open_runtime_session(persona_path, settings=settings, start=start, mcp_config=mcp_config)


def load_persona(path: Path) -> Persona:
    from persona_runtime.persona_file import load_persona as load_persona_file

    with setup_errors_exit_2():
        return load_persona_file(path)


def prepare_data_dir() -> DataPaths:
    """The data directory (``PERSONA_HOME`` or the platform's), created private and proven writable."""
    from persona_runtime.paths import prepare_data_dir as prepare

    with setup_errors_exit_2():
        return prepare()
