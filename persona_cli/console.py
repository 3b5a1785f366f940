"""Consoles and start-up lines shared by `persona chat` and `persona agent`."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

from persona_cli.term import plain_output

if TYPE_CHECKING:
    from rich.console import Console

    from persona_cli.compose import Session

BUNDLED_NOTE = (
    "model: bundled SmolLM2-135M (local, offline) on every tier: small and fast, not smart. "
    "Set PERSONA_PROVIDER, PERSONA_MODEL and PERSONA_API_KEY (see .env.example) for a real model."
)


def make_consoles(*, info_to_stderr: bool) -> tuple[Console, Console]:
    """(reply console on stdout, info console). Info goes to stderr when asked, or when output is plain."""
    from rich.console import Console

    plain = plain_output()
    common: dict[str, Any] = {"highlight": False, "emoji": False, "markup": False}
    if plain:
        common.update(force_terminal=False, no_color=True, color_system=None)
    out = Console(file=sys.stdout, **common)
    if not (info_to_stderr or plain):
        return out, Console(file=sys.stdout, **common)
    if plain_output(sys.stderr):
        common.update(force_terminal=False, no_color=True, color_system=None)
    return out, Console(file=sys.stderr, **common)


def startup_lines(session: Session, *, bundled_note: str = BUNDLED_NOTE) -> list[str]:
    """The honest one-liner about which model serves each tier, plus any notices."""
    tiers = session.tiers
    if tiers.bundled_only:
        lines = [bundled_note]
        if session.persona.tools:
            lines.append("tools are off: a local model cannot call them reliably (/tools lists them)")
    else:
        described = [f"{name}{f' (= {serving})' if serving != name else ''}: {slot.label}" for name, serving, slot in tiers.describe()]
        lines = ["models: " + " · ".join(described)]
        if any(slot.provider == "gguf" for _n, _s, slot in tiers.describe()):
            lines.append("tools are off on local GGUF tiers (small models cannot call tools reliably)")
    return [*lines, *session.notices]
