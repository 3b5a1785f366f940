"""One process per agent run: the run lock, and what a killed run reads as (``abandoned``)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from persona_runtime.agentic import (
    CancelToken,
    Run,
    RunBusyError,
    RunLock,
    RunStatus,
    find_run,
    list_runs,
)
from persona_runtime.agentic import events as ev
from persona_runtime.agentic.run import is_held
from persona_runtime.testing import Hang, ScriptedBackend

from tests.support.agentic import collect, final_run, make_loop, tiers

pytestmark = pytest.mark.subprocess  # every test here starts processes

# A stand-in for a `persona agent` process: saves a running run, holds its lock, says so, waits.
OWNER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from persona_runtime.agentic import Run, RunLock
    runs = Path(sys.argv[1])
    lock = RunLock(runs, "run-owned-1").acquire()
    Run(id="run-owned-1", task="Pick a database", persona_id="tester").save(runs)
    print("holding", flush=True)
    sys.stdin.read()
    """
)


@pytest.fixture
def owner(tmp_path: Path):
    """A live process holding run ``run-owned-1``; the test may SIGKILL it."""
    runs = tmp_path / "runs"
    proc = subprocess.Popen(
        [sys.executable, "-c", OWNER, str(runs)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "holding"
        yield proc, runs
    finally:
        proc.kill()
        proc.wait(timeout=30)


def test_a_run_held_by_a_live_process_reads_as_running_and_cannot_be_taken(owner) -> None:
    proc, runs = owner
    assert is_held(runs, "run-owned-1")
    assert find_run(runs, "run-owned-1").status is RunStatus.RUNNING
    assert [r.status for r in list_runs(runs)] == [RunStatus.RUNNING]
    with pytest.raises(RunBusyError, match=f"another process \\(pid {proc.pid}\\)"):
        RunLock(runs, "run-owned-1").acquire()


def test_a_sigkilled_owner_leaves_an_abandoned_run_that_resumes(owner, tmp_path: Path) -> None:
    proc, runs = owner
    os.kill(proc.pid, signal.SIGKILL)
    assert proc.wait(timeout=30) == -signal.SIGKILL
    stored = find_run(runs, "run-owned")
    assert stored.status is RunStatus.ABANDONED and stored.status.resumable
    assert [r.status for r in list_runs(runs)] == [RunStatus.ABANDONED]
    assert Run.load(runs / "run-owned-1.json").status is RunStatus.RUNNING  # derived on read, never saved

    loop, _ = make_loop(tiers(mid=ScriptedBackend(["[FINAL] DuckDB."]), frontier=ScriptedBackend(["[FINAL] DuckDB."])), tmp_path)
    events = asyncio.run(collect(loop, None, resume=stored))
    assert isinstance(events[0], ev.RunStarted) and events[0].resumed
    done = final_run(events)
    assert (done.id, done.status, done.output) == ("run-owned-1", RunStatus.COMPLETED, "DuckDB.")
    assert find_run(runs, "run-owned-1").status is RunStatus.COMPLETED
    assert not (runs / "run-owned-1.lock").exists()


def test_the_loop_holds_the_run_while_it_works_and_lets_go_after(tmp_path: Path) -> None:
    loop, _ = make_loop(tiers(frontier=ScriptedBackend([Hang()])), tmp_path)
    runs = tmp_path / "runs"
    token = CancelToken()
    seen: list[tuple[RunStatus, bool]] = []

    async def main() -> Run:
        events = loop.run("Pick a database", cancel=token)
        async for event in events:
            if isinstance(event, ev.StepStarted):  # the model call hangs from here on
                [live] = list_runs(runs)
                seen.append((live.status, is_held(runs, live.id)))
                with pytest.raises(RunBusyError):
                    RunLock(runs, live.id).acquire()
                token.cancel()
            if isinstance(event, ev.RunFinished):
                return event.run
        raise AssertionError("no RunFinished")

    finished = asyncio.run(main())
    assert seen == [(RunStatus.RUNNING, True)]
    assert finished.status is RunStatus.CANCELLED
    assert not is_held(runs, finished.id) and not (runs / f"{finished.id}.lock").exists()


def test_resuming_a_run_another_process_holds_fails_before_any_event(owner, tmp_path: Path) -> None:
    _, runs = owner
    stored = Run.load(runs / "run-owned-1.json").model_copy(update={"status": RunStatus.CANCELLED})
    loop, _ = make_loop(tiers(mid=ScriptedBackend(["[FINAL] x"])), tmp_path)
    with pytest.raises(RunBusyError, match="another process"):
        asyncio.run(collect(loop, None, resume=stored))
    assert Run.load(runs / "run-owned-1.json").status is RunStatus.RUNNING  # untouched


def test_resuming_from_a_stale_read_is_refused(tmp_path: Path) -> None:
    backend = ScriptedBackend(["[ASK_USER] Which one?", "[FINAL] DuckDB."])
    loop, _ = make_loop(tiers(mid=backend, frontier=backend), tmp_path)
    paused = final_run(asyncio.run(collect(loop, "Pick a database", ask=None)))
    read_earlier = find_run(tmp_path / "runs", paused.id)
    # Meanwhile another invocation answers the question and finishes the run.
    async def answer(question: str) -> str:
        return "analytics"

    assert final_run(asyncio.run(collect(loop, None, resume=read_earlier, ask=answer))).status is RunStatus.COMPLETED
    with pytest.raises(RunBusyError, match="changed since it was read"):
        asyncio.run(collect(loop, None, resume=read_earlier, ask=answer))
    assert find_run(tmp_path / "runs", paused.id).status is RunStatus.COMPLETED
