"""The data directory: private when we create it, and nothing outside it changes mode."""

from __future__ import annotations

import stat
from pathlib import Path

from persona_runtime.paths import DataPaths, prepare_data_dir, tighten_private


def mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def test_a_new_data_dir_and_its_folders_are_private(tmp_path: Path) -> None:
    paths = prepare_data_dir(DataPaths(tmp_path / "new-home"))
    assert mode(paths.root) == 0o700 and mode(paths.logs) == 0o700 and mode(paths.audit) == 0o700


def test_an_existing_shared_dir_keeps_its_mode_and_sticky_bit(tmp_path: Path) -> None:
    shared = tmp_path / "shared-tmp"
    shared.mkdir()
    shared.chmod(0o1777)
    paths = prepare_data_dir(DataPaths(shared))  # PERSONA_HOME=/tmp
    assert mode(shared) == 0o1777
    assert mode(paths.logs) == 0o700  # what we created inside it is private


def test_a_symlink_in_the_data_dir_is_never_followed_when_tightening(tmp_path: Path) -> None:
    outside = tmp_path / "somebody-elses"
    (outside / "deep").mkdir(parents=True)
    (outside / "deep" / "notes.txt").write_text("theirs")
    outside.chmod(0o755)
    (outside / "deep").chmod(0o755)
    (outside / "deep" / "notes.txt").chmod(0o644)
    home = tmp_path / "home"
    home.mkdir()
    (home / "audit").symlink_to(outside, target_is_directory=True)
    paths = prepare_data_dir(DataPaths(home))
    tighten_private(paths.audit)
    tighten_private(home)
    assert (mode(outside), mode(outside / "deep"), mode(outside / "deep" / "notes.txt")) == (0o755, 0o755, 0o644)


def test_loose_data_of_ours_is_tightened(tmp_path: Path) -> None:
    paths = prepare_data_dir(DataPaths(tmp_path / "home"))
    old = paths.root / "memory" / "minilm" / "chroma.sqlite3"
    old.parent.mkdir(parents=True)
    old.write_text("")
    old.chmod(0o644)
    old.parent.chmod(0o755)
    tighten_private(paths.root / "memory")
    assert (mode(old), mode(old.parent)) == (0o600, 0o700)


def test_a_private_file_is_written_whole_or_not_at_all(tmp_path) -> None:
    import pytest

    from persona_runtime.paths import write_private_json, write_private_npz

    path = tmp_path / "standing-p.json"
    write_private_json(path, {"facts": ["one"]})
    with pytest.raises(TypeError):
        write_private_json(path, {"facts": [object()]})  # fails half-way, as a full disk would
    assert path.read_text(encoding="utf-8").count("one") == 1 and sorted(p.name for p in tmp_path.iterdir()) == [path.name]
    write_private_npz(tmp_path / "recall-p.npz", {"format": 1}, {"episodic": [[0.5, 0.25]]})
    assert (tmp_path / "recall-p.npz").stat().st_mode & 0o777 == 0o600
