"""Where things are, for tests in any folder."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PERSONAS = REPO / "personas"
RUNTIME = REPO / "runtime"
