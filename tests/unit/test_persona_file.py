"""Ids that name files are never paths: a persona's id, a run's id."""

from __future__ import annotations

from pathlib import Path

import pytest

from persona_runtime.agentic.run import Run
from persona_runtime.errors import PersonaFileError
from persona_runtime.persona_file import check_persona_id, load_persona
from tests.support.paths import PERSONAS

HOSTILE_IDS = ["../../tmp/x/PWNED", "a/b", "..", ".hidden", " padded", "tab\there", "a" * 65, "x\x00y", "/etc/passwd", "a..b"]


@pytest.mark.parametrize("persona_id", ["astrid", "kai_research", "Åsa-2", "my persona", "v1.2", "a" * 64])
def test_ordinary_ids_are_fine(persona_id: str) -> None:
    assert check_persona_id(persona_id) is None


@pytest.mark.parametrize("persona_id", HOSTILE_IDS)
def test_an_id_that_could_be_a_path_is_a_one_line_persona_file_error(persona_id: str, tmp_path: Path) -> None:
    text = (PERSONAS / "astrid.yaml").read_text().replace("persona_id: astrid", f"persona_id: {persona_id!r}")
    path = tmp_path / "shared.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(PersonaFileError) as info:
        load_persona(path)
    message = str(info.value)
    assert "persona_id" in message and "\n" not in message and len(message) < 300


def test_a_file_name_that_is_no_valid_id_is_refused_too(tmp_path: Path) -> None:
    text = "\n".join(l for l in (PERSONAS / "astrid.yaml").read_text().splitlines() if not l.startswith("persona_id:"))
    path = tmp_path / ".sneaky.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(PersonaFileError, match="persona_id"):
        load_persona(path)


@pytest.mark.parametrize("run_id", ["../../x", "a/b", "", "a" * 65, "id.json"])
def test_a_run_id_that_could_be_a_path_is_not_a_run(run_id: str) -> None:
    with pytest.raises(ValueError):
        Run(id=run_id, task="t", persona_id="p")
    assert Run(id="0123abcd" * 4, task="t", persona_id="p").path_in(Path("/runs")) == Path("/runs/" + "0123abcd" * 4 + ".json")
