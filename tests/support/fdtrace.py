"""A pytest plugin that counts this process's open file descriptors around every test.

Off unless ``PERSONA_FD_TRACE`` is set (tests/conftest.py registers it then): ``1`` prints a
summary at the end of the run; a path also writes one line per test there (nodeid, fds
before, after, and what the new ones are). Linux only (it reads /proc/self/fd).

    PERSONA_FD_TRACE=/tmp/fd.tsv uv run --offline pytest tests/integration
"""

from __future__ import annotations

import os
import re
from collections import Counter
from pathlib import Path

import pytest

__all__ = ["FdTrace", "fd_kinds", "open_fds"]


def open_fds() -> dict[int, str]:
    """This process's open descriptors and what each points at (a path, socket:[n], pipe:[n] ...)."""
    fds: dict[int, str] = {}
    for name in os.listdir("/proc/self/fd"):
        try:
            fds[int(name)] = os.readlink(f"/proc/self/fd/{name}")
        except OSError:
            continue  # closed meanwhile (or the listing's own descriptor)
    return fds


def kind(target: str) -> str:
    """A descriptor's target, grouped: socket, pipe, anon_inode:[eventpoll], *.sqlite3, ..."""
    if target.startswith(("socket:", "pipe:")):
        return target.split(":", 1)[0]
    if target.startswith("anon_inode:"):
        return target
    if target.startswith("/dev/pts") or target == "/dev/ptmx":
        return "pty"
    suffix = Path(target.removesuffix(" (deleted)")).name
    return re.sub(r"^[0-9a-f-]{36}$", "<uuid>", suffix.rsplit(".", 1)[-1] if "." in suffix else suffix)


def fd_kinds(fds: dict[int, str]) -> Counter[str]:
    return Counter(kind(t) for t in fds.values())


class FdTrace:
    """Records the descriptor count before and after each test (its fixtures' teardown included)."""

    def __init__(self, out: Path | None) -> None:
        self.out = out
        self.rows: list[tuple[str, int, int, Counter[str]]] = []
        self.start = len(open_fds())
        if out is not None:
            out.write_text("nodeid\tbefore\tafter\tnew\n", encoding="utf-8")

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_protocol(self, item: pytest.Item, nextitem: pytest.Item | None):  # noqa: ANN201
        before = open_fds()
        yield
        after = open_fds()
        new = Counter(kind(t) for fd, t in after.items() if before.get(fd) != t)
        self.rows.append((item.nodeid, len(before), len(after), new))
        if self.out is not None:
            with self.out.open("a", encoding="utf-8") as f:
                grown = ",".join(f"{k}={n}" for k, n in new.most_common()) if len(after) > len(before) else ""
                f.write(f"{item.nodeid}\t{len(before)}\t{len(after)}\t{grown}\n")

    def pytest_terminal_summary(self, terminalreporter: pytest.TerminalReporter) -> None:
        now = open_fds()
        write = terminalreporter.write_line
        terminalreporter.section("open file descriptors")
        write(f"at start {self.start}, at the end {len(now)}; by kind: {dict(fd_kinds(now).most_common(12))}")
        worst = sorted(self.rows, key=lambda r: r[2] - r[1], reverse=True)[:15]
        for nodeid, before, after, new in worst:
            if after > before:
                write(f"  +{after - before:4d} {nodeid}  {dict(new.most_common(4))}")


def configure(config: pytest.Config) -> None:
    """Register the plugin when PERSONA_FD_TRACE is set (a path: also one line per test there)."""
    value = os.environ.get("PERSONA_FD_TRACE", "")
    if value and value != "0" and Path("/proc/self/fd").is_dir():
        config.pluginmanager.register(FdTrace(None if value == "1" else Path(value)), "persona-fd-trace")
