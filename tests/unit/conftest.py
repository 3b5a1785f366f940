"""Unit tests run in-process: one that starts a process belongs in tests/integration or tests/e2e."""

from __future__ import annotations

import subprocess

import pytest


class _NoProcesses(subprocess.Popen):  # type: ignore[type-arg]
    def __init__(self, *args: object, **kwargs: object) -> None:
        raise AssertionError("a unit test started a process; move it to tests/integration or tests/e2e")


@pytest.fixture(autouse=True)
def _in_process_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(subprocess, "Popen", _NoProcesses)
