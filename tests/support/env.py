"""Environments for subprocess runs of the CLI."""

from __future__ import annotations

import os
from pathlib import Path


def clean_env(home: Path | None, **extra: str) -> dict[str, str]:
    """This process's environment less every PERSONA_* variable, with PERSONA_HOME at ``home``
    (None: as ``extra`` says, or unset), plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PERSONA_")}
    return env | ({"PERSONA_HOME": str(home)} if home is not None else {}) | extra


def openai_tier_env(base_url: str, models: dict[str, str] | None = None) -> dict[str, str]:
    """Tier variables for persona-core's real openai backend on a loopback server: by default
    frontier and mid are different models on the same endpoint."""
    env: dict[str, str] = {}
    for tier, model in (models or {"FRONTIER": "gpt-4o", "MID": "gpt-4o-mini"}).items():
        env |= {
            f"PERSONA_{tier}_PROVIDER": "openai",
            f"PERSONA_{tier}_MODEL": model,
            f"PERSONA_{tier}_API_KEY": "sk-test-integration-0001",
            f"PERSONA_{tier}_BASE_URL": base_url,
        }
    return env | {"PERSONA_REQUEST_TIMEOUT_S": "10"}
