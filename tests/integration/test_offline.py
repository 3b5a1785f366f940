"""Importing the runtime and persona-core's tools never touches the network."""

from __future__ import annotations

import pytest

import os
import subprocess
import sys
from tests.support.paths import REPO

pytestmark = pytest.mark.subprocess  # every test here starts processes


def run_python(code: str, tmp_path, **extra_env: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PERSONA_", "TIKTOKEN", "OPENBLAS"))}
    env |= extra_env | {
        # An empty tiktoken cache: without our fix, tiktoken would have to download cl100k.
        "TIKTOKEN_CACHE_DIR": str(tmp_path / "tiktoken-cache"),
        # Any attempt to reach the internet goes to a dead proxy and fails at once.
        "HTTPS_PROXY": "http://127.0.0.1:9", "HTTP_PROXY": "http://127.0.0.1:9", "NO_PROXY": "",
    }
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)


def test_import_runtime_then_persona_tools_offline(tmp_path) -> None:
    proc = run_python(
        "import persona_runtime, persona.tools, persona.skills\n"
        "from persona.skills import count_tokens\n"
        "print(count_tokens('hello world'))",
        tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "2"


def test_persona_tools_first_is_offline_too(tmp_path) -> None:
    """A library user who imports persona-core before persona_runtime (or never imports it)."""
    proc = run_python(
        "import sys\n"
        "import persona.tools\n"
        "from persona.skills import count_tokens\n"
        "print(count_tokens('hello world'), 'persona_runtime' in sys.modules)",
        tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "2 True"


def test_a_plain_interpreter_start_loads_nothing_of_ours_but_the_finders(tmp_path) -> None:
    proc = run_python(
        "import sys\n"
        "print(sorted(m for m in sys.modules if m.startswith(('persona', 'tiktoken'))))",
        tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "['persona_cli', 'persona_cli._entry']"


def test_import_runtime_is_cheap(tmp_path) -> None:
    proc = run_python(
        "import sys, persona_runtime\n"
        "heavy = [m for m in ('persona', 'tiktoken', 'chromadb', 'torch', 'llama_cpp', 'rich', 'typer') if m in sys.modules]\n"
        "print(heavy)",
        tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def test_runtime_never_imports_ui_toolkits(tmp_path) -> None:

    root = REPO / "runtime" / "persona_runtime"
    offenders = [
        str(p.relative_to(root))
        for p in root.rglob("*.py")
        for line in p.read_text().splitlines()
        if line.strip().startswith(("import ", "from ")) and any(f" {ui}" in line for ui in ("typer", "rich", "prompt_toolkit"))
    ]
    assert offenders == []
