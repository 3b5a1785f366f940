"""Run the `persona` command in this process, noting every watched top-level module it asks for.

    python -m tests.support.import_probe REPORT.json torch,onnxruntime -- chat personas/astrid.yaml

A finder placed first on ``sys.meta_path`` sees each import before any installed package could
answer it, so an import that fails and is caught (an optional dependency probed with
try/except) counts too. The report is written at exit: ``{"asked": [...], "loaded": [...]}``.
"""

from __future__ import annotations

import atexit
import json
import sys


class _Watch:
    def __init__(self, watched: frozenset[str]) -> None:
        self.watched = watched
        self.asked: set[str] = set()

    def find_spec(self, name: str, path: object = None, target: object = None) -> None:
        top = name.partition(".")[0]
        if top in self.watched:
            self.asked.add(top)


def main() -> None:
    report, watched_csv, separator, *argv = sys.argv[1:]
    assert separator == "--", "usage: import_probe REPORT MODULES -- ARGS..."
    watch = _Watch(frozenset(watched_csv.split(",")))
    sys.meta_path.insert(0, watch)

    def write_report() -> None:
        loaded = {name.partition(".")[0] for name in list(sys.modules)} & watch.watched
        with open(report, "w", encoding="utf-8") as handle:
            json.dump({"asked": sorted(watch.asked), "loaded": sorted(loaded)}, handle)

    atexit.register(write_report)
    sys.argv = ["persona", *argv]
    from persona_cli.app import main as persona_main

    persona_main()


if __name__ == "__main__":
    main()
