"""`persona logs` and `persona --help` as real processes: what they import (start-up is measured)
and `logs tail -f` until Ctrl-C."""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

from persona_runtime.turnlog import JSONLTurnLogWriter, TurnLog
from tests.support.env import clean_env
from tests.support.paths import REPO
from tests.support.turnlogs import fixture_records, indexes, rec, write

ROOT = REPO

WRAPPER = """
import typer
from persona_cli.commands.logs import fast_tail, logs_app
app = typer.Typer()
app.add_typer(logs_app, name="logs")
app()
"""


def _read_line(proc: subprocess.Popen[str], timeout: float = 20) -> str:
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([proc.stdout], [], [], 0.1)
        if ready:
            return proc.stdout.readline()
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
    raise AssertionError("no line from `persona logs tail -f`")




def test_fast_tail_never_imports_pydantic(log: Path, tmp_path: Path) -> None:
    write(log, fixture_records())
    report = tmp_path / "imports.json"
    argv = ["logs", "tail", "-n", "3", "-p", "bob", "--since=2026-10-01", "--json"]
    command = [sys.executable, "-m", "tests.support.import_probe", str(report), "pydantic", "--", *argv]
    done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=120, env=os.environ.copy())
    assert done.returncode == 0, done.stderr
    assert indexes(done.stdout) == [1, 4, 5]
    assert json.loads(report.read_text()) == {"asked": [], "loaded": []}


def test_tail_follow_then_ctrl_c(log: Path, tmp_path: Path) -> None:
    write(log, [rec(0), rec(1)])
    env = {**os.environ, "PERSONA_HOME": str(tmp_path), "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-c", WRAPPER, "logs", "tail", "-f", "-n", "1", "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=ROOT,
    )
    try:
        assert json.loads(_read_line(proc))["turn_index"] == 1
        writer = JSONLTurnLogWriter(log)
        for i in (2, 3):
            writer.write(TurnLog(conversation_id="live", turn_index=i, persona_id="ada"))
            assert json.loads(_read_line(proc))["turn_index"] == i
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=20) == 0
        assert proc.stderr is not None and "Traceback" not in proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_help_and_logs_tail_import_neither_rich_nor_routing(tmp_path: Path) -> None:
    """term is imported by `persona --help` and `persona logs tail`, whose start-up is measured."""
    probe = (
        "import sys\n"
        "from persona_cli.app import main\n"
        "sys.argv = ['persona', *sys.argv[1:]]\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('rich', 'prompt_toolkit')"
        " or m.startswith('persona_runtime.routing'))\n"
        "sys.stderr.write(f'HEAVY={heavy}\\n')\n"
    )
    for argv in (["--help"], ["logs", "tail", "-n", "5"]):
        result = subprocess.run(
            [sys.executable, "-c", probe, *argv], cwd=ROOT, env=clean_env(tmp_path), capture_output=True, text=True,
            timeout=60,
        )
        assert "HEAVY=[]" in result.stderr, (argv, result.stderr)
