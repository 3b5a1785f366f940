"""JSONLTurnLogWriter under real concurrency, and a writer killed in the middle of a record.

Writers are separate processes (flock is per open file description; threads would not
prove anything about processes). Synchronisation is explicit: the writers start on a
byte from the parent, and the kill happens once the file has visibly grown past the
complete records, never after a sleep.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from persona_runtime.turnlog import JSONLTurnLogWriter, TurnLog
from persona_runtime.turnlog.files import log_files
from persona_runtime.turnlog.query import LogFilter, ReadCounter, iter_records, tail
from tests.support.paths import REPO
from tests.support.turnlogs import Collector

pytestmark = pytest.mark.subprocess  # every test here starts processes

RUNTIME = REPO / "runtime"

WRITERS = 8
PER_WRITER = 2_000

WRITER = r"""
import sys
from pathlib import Path
from persona_runtime.turnlog import JSONLTurnLogWriter, TurnLog

path, name, count, max_bytes = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
writer = JSONLTurnLogWriter(path, max_bytes=max_bytes, keep=10_000)
records = [
    TurnLog(conversation_id=name, turn_index=i, persona_id="stress", error=f"{name}:{i}:" + "x" * 900)
    for i in range(count)
]
print("ready", flush=True)
sys.stdin.read(1)  # the parent starts everyone at once
for record in records:
    writer.write(record)
print("done", flush=True)
"""

# Writes three small records, then a 4 MiB one whose write stalls after its first 64 KiB
# (holding the lock), as a process killed mid-write would leave it.
KILLED = r"""
import os, signal, sys
from pathlib import Path
from persona_runtime.turnlog import JSONLTurnLogWriter, TurnLog

writer = JSONLTurnLogWriter(Path(sys.argv[1]))
for i in range(3):
    writer.write(TurnLog(conversation_id="before-kill", turn_index=i, persona_id="stress"))
real_write = os.write
def stalling_write(fd, data):
    real_write(fd, bytes(data[:65536]))
    signal.pause()  # never returns: the parent kills us here
os.write = stalling_write
writer.write(TurnLog(conversation_id="huge", turn_index=0, persona_id="stress", error="y" * (4 << 20)))
"""


def _env() -> dict[str, str]:
    return os.environ | {"PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "runtime"), os.environ.get("PYTHONPATH", "")])}


def test_eight_processes_append_without_tearing_a_line(tmp_path) -> None:
    path = tmp_path / "logs" / "turns.jsonl"
    # 1 MiB files: ~18 MiB of records rotate many times while all eight write.
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, str(path), f"w{n}", str(PER_WRITER), str(1 << 20)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=_env(), cwd=tmp_path,
        )
        for n in range(WRITERS)
    ]
    try:
        for proc in procs:
            assert proc.stdout.readline() == b"ready\n"
        for proc in procs:
            proc.stdin.write(b"g")
            proc.stdin.close()
        for proc in procs:
            assert proc.wait(timeout=120) == 0
            assert proc.stdout.read() == b"done\n"
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()

    files = log_files(path)
    assert len(files) > 5  # rotation happened under contention
    seen: dict[str, list[int]] = {}
    lines = 0
    for file in files:
        data = file.read_bytes()
        assert data.endswith(b"\n"), file.name
        for line in data.split(b"\n")[:-1]:
            lines += 1
            record = TurnLog.model_validate_json(line)  # every line is one whole record
            assert record.error == f"{record.conversation_id}:{record.turn_index}:" + "x" * 900
            seen.setdefault(record.conversation_id, []).append(record.turn_index)
        assert os.stat(file).st_mode & 0o777 == 0o600
    assert lines == WRITERS * PER_WRITER
    # Each writer's records are all there, once, in its own order.
    assert seen == {f"w{n}": list(range(PER_WRITER)) for n in range(WRITERS)}
    counter = ReadCounter()
    assert sum(1 for _ in iter_records(path, counter=counter)) == WRITERS * PER_WRITER
    assert counter.skipped == 0


def test_a_writer_killed_mid_record_leaves_a_tail_readers_skip(tmp_path) -> None:
    path = tmp_path / "logs" / "turns.jsonl"
    proc = subprocess.Popen([sys.executable, "-c", KILLED, str(path)], env=_env(), cwd=tmp_path)
    try:
        complete = None
        deadline = time.monotonic() + 60
        # Wait until the file holds the three records plus part of the huge one.
        while True:
            assert proc.poll() is None, "the writer exited before it was killed"
            assert time.monotonic() < deadline, "the writer never reached the huge record"
            data = path.read_bytes() if path.exists() else b""
            if data.count(b"\n") >= 3:
                complete = data[: data.rindex(b"\n") + 1]
                if len(data) >= len(complete) + 65536:
                    break
            time.sleep(0.01)  # polling the file size, not waiting for time to pass
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL

    data = path.read_bytes()
    assert data.startswith(complete) and not data.endswith(b"\n")  # a torn last line

    result = tail(path, 10)
    assert [(r["conversation_id"], r["turn_index"]) for r in result.records] == [("before-kill", i) for i in range(3)]
    assert result.skipped == 1
    counter = ReadCounter()
    assert [r["turn_index"] for r in iter_records(path, counter=counter)] == [0, 1, 2]
    assert counter.skipped == 1

    # The dead writer's lock went with it, and the next record does not glue onto the torn line.
    done = threading.Event()

    def write_after() -> None:
        JSONLTurnLogWriter(path).write(TurnLog(conversation_id="after-kill", turn_index=0, persona_id="stress"))
        done.set()

    threading.Thread(target=write_after, daemon=True).start()
    assert done.wait(10), "the writer blocked: the killed process's lock was not released"
    result = tail(path, 10)
    assert [r["conversation_id"] for r in result.records] == ["before-kill"] * 3 + ["after-kill"]
    assert result.skipped == 1  # the torn record, now a whole (unparseable) line
    counter = ReadCounter()
    assert [r["conversation_id"] for r in iter_records(path, counter=counter)][-1] == "after-kill"
    assert counter.skipped == 1
    unparseable = []
    for line in path.read_bytes().split(b"\n")[:-1]:
        try:
            json.loads(line)
        except ValueError:
            unparseable.append(line)
    assert len(unparseable) == 1 and b'"conversation_id":"huge"' in unparseable[0][:300]


WRITER_SCRIPT = """
import sys
sys.path.insert(0, {runtime!r})
from pathlib import Path
from persona_runtime.turnlog import JSONLTurnLogWriter, TurnLog
path, tag, count, max_bytes = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
writer = JSONLTurnLogWriter(path, max_bytes=max_bytes, keep=100_000)
for i in range(count):
    writer.write(TurnLog(conversation_id=tag, turn_index=i, persona_id="ada", tier="fast",
                         provider="openai", model="gpt-4o-mini", prompt_tokens=i, completion_tokens=1))
"""


@pytest.mark.parametrize(
    ("procs", "per_proc", "max_bytes"),
    [
        pytest.param(4, 500, 64 * 1024, id="4x500"),
        pytest.param(8, 2000, 256 * 1024, id="8x2000", marks=pytest.mark.slow),
    ],
)
def test_concurrent_writers_while_following(tmp_path: Path, procs: int, per_proc: int, max_bytes: int) -> None:
    path = tmp_path / "logs" / "turns.jsonl"
    total = procs * per_proc
    collector = Collector(path, total)
    script = WRITER_SCRIPT.format(runtime=str(RUNTIME))
    writers = [
        subprocess.Popen([sys.executable, "-c", script, str(path), f"w{k}", str(per_proc), str(max_bytes)])
        for k in range(procs)
    ]
    for proc in writers:
        assert proc.wait(timeout=300) == 0
    records = collector.finish()

    seen = [(r["conversation_id"], r["turn_index"]) for r in records]
    assert len(seen) == total
    assert set(seen) == {(f"w{k}", i) for k in range(procs) for i in range(per_proc)}
    assert collector.counter.skipped == 0
    files = log_files(path)
    assert len(files) > 2, "the test should exercise rotation"
    parsed = 0
    for file in files:
        lines = file.read_bytes().splitlines(keepends=True)
        for raw in lines:
            json.loads(raw)  # no torn or interleaved line in any file
        parsed += len(lines)
        if file != path:  # nothing was appended to a file already full (it rotated instead)
            assert sum(map(len, lines[:-1])) < max_bytes <= sum(map(len, lines)), file.name
    assert parsed == total
    # Each writer's records are in order across files.
    for k in range(procs):
        order = [r["turn_index"] for r in iter_records(path, LogFilter(conversation_id=f"w{k}"))]
        assert order == list(range(per_proc))
