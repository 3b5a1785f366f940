"""Collecting what a pexpect child writes, to show in a failing test's message."""

from __future__ import annotations


class ScreenCollector:
    """A file-like sink for ``child.logfile_read``: appends every chunk to ``sink``."""

    def __init__(self, sink: list[str]) -> None:
        self.sink = sink

    def write(self, data: str) -> None:
        self.sink.append(data)

    def flush(self) -> None:
        pass
