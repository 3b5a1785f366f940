"""`persona` is our command even when persona-core's identically named script was installed last."""

from __future__ import annotations

import subprocess
import sys


def test_persona_cores_script_runs_our_app(tmp_path) -> None:
    # Exactly what an installer writes for persona-core's `persona = persona.cli.main:app`.
    script = tmp_path / "persona"
    script.write_text(
        f"#!{sys.executable}\nimport sys\nfrom persona.cli.main import app\nif __name__ == '__main__':\n    sys.exit(app())\n"
    )
    script.chmod(0o755)
    proc = subprocess.run([str(script), "--version"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip() == "persona 0.1.0", proc.stderr


def test_persona_core_itself_is_untouched_elsewhere() -> None:
    proc = subprocess.run(
        [sys.executable, "-c", "import persona.cli.main as m, typer; print(isinstance(m.app, typer.Typer))"],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.stdout.strip() == "True", proc.stderr
