"""Environments for subprocess runs of the CLI."""

from __future__ import annotations

import os
from pathlib import Path


def clean_env(home: Path, **extra: str) -> dict[str, str]:
    """This process's environment less every PERSONA_* variable, with PERSONA_HOME at ``home``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PERSONA_")}
    return env | {"PERSONA_HOME": str(home), **extra}
