"""Run at every interpreter start in the environment, by a one-line `.pth` file in our wheel.

1. Make the `persona` command ours even when persona-core's script wins the install race.

persona-core 1.2.1 also installs a `persona` console script (`persona.cli.main:app`), and
installers write both scripts to the same path in no fixed order. A one-line `.pth` file
shipped with this package imports this module at interpreter start; it only adds a finder
that, when a process started as `persona` imports `persona.cli.main`, hands it our app
instead. `python -m persona.cli.main` and every other use of persona-core are untouched.

2. Keep persona-core offline in whichever order a program imports things: importing
`persona.tools` runs tiktoken's cl100k download at import time, so just before `persona` or
`tiktoken` is first imported, `persona_runtime` registers the bundled cl100k file. A library
user need not import `persona_runtime` first.

Both are finders that do nothing until their module is asked for.
"""

from __future__ import annotations

import sys

_TARGET = "persona.cli.main"

# Plain classes, not importlib.abc subclasses: this module is imported at every interpreter
# start in the environment, and importlib.abc alone costs ~35 ms.


class _OurApp:
    def create_module(self, spec: object) -> None:
        return None

    def exec_module(self, module: object) -> None:
        from persona_cli import app as ours

        module.app = ours.main  # type: ignore[attr-defined]  # the script calls app()


class _Finder:
    def find_spec(self, name: str, path: object = None, target: object = None) -> object:
        if name != _TARGET:
            return None
        argv0 = sys.argv[0] if sys.argv else ""
        if argv0.rsplit("/", 1)[-1] not in ("persona", "persona.exe"):
            return None
        from importlib.machinery import ModuleSpec

        return ModuleSpec(name, _OurApp())


class _OfflineFirst:
    def __init__(self) -> None:
        self.done = False

    def find_spec(self, name: str, path: object = None, target: object = None) -> None:
        # Stays on sys.meta_path (removing itself mid-lookup would make the lookup skip a finder).
        if self.done or name not in ("persona", "tiktoken"):
            return None
        self.done = True
        import persona_runtime

        persona_runtime.install_offline()
        return None


def install() -> None:
    if not any(isinstance(f, _Finder) for f in sys.meta_path):
        sys.meta_path.insert(0, _Finder())
    if not any(isinstance(f, _OfflineFirst) for f in sys.meta_path):
        sys.meta_path.insert(0, _OfflineFirst())
