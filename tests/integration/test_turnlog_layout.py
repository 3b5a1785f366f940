"""persona_runtime.turnlog's modules keep to their jobs: the writer never loads the readers,
and the readers never load pydantic (``persona logs tail`` must start as fast as ``--help``).

Each check imports one module in a fresh interpreter and looks at ``sys.modules``.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

pytestmark = pytest.mark.subprocess  # every test here starts processes

READERS = ["persona_runtime.turnlog.query", "persona_runtime.turnlog.follow", "persona_runtime.turnlog.stats"]


def modules_after_import(module: str) -> set[str]:
    code = f"import json, sys, {module}; print(json.dumps(sorted(sys.modules)))"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return set(json.loads(proc.stdout))


def test_the_writer_does_not_import_the_readers() -> None:
    loaded = modules_after_import("persona_runtime.turnlog.writer")
    assert "persona_runtime.turnlog.files" in loaded  # shared with the readers: the file layout
    assert [m for m in READERS if m in loaded] == []


@pytest.mark.parametrize("module", [*READERS, "persona_runtime.turnlog.files", "persona_runtime.turnlog"])
def test_the_readers_do_not_import_pydantic(module: str) -> None:
    loaded = modules_after_import(module)
    assert "pydantic" not in loaded
    assert "persona_runtime.turnlog.record" not in loaded
