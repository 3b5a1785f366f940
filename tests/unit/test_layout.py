"""The code's shape: modules of a readable size, no import cycles, no reaching into another
module's private names, and a runtime that never imports a UI toolkit."""

from __future__ import annotations

import ast
from pathlib import Path
from tests.support.paths import REPO

PACKAGES = {"persona_cli": REPO / "persona_cli", "persona_runtime": REPO / "runtime" / "persona_runtime"}
MAX_LINES = 420  # "about 400"


def modules() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for package, root in PACKAGES.items():
        for path in root.rglob("*.py"):
            parts = [package, *path.relative_to(root).with_suffix("").parts]
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


def imports(path: Path, known: dict[str, Path], *, top_level_only: bool) -> list[tuple[str, str | None]]:
    """(module, imported name or None) for each import of our own modules in ``path``."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    found: list[tuple[str, str | None]] = []
    for node in nodes:
        if isinstance(node, ast.If) and top_level_only:
            continue  # `if TYPE_CHECKING:` blocks never run
        if isinstance(node, ast.Import):
            found += [(alias.name, None) for alias in node.names if alias.name.split(".")[0] in PACKAGES]
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] in PACKAGES:
            for alias in node.names:
                submodule = f"{node.module}.{alias.name}"
                found.append((submodule, None) if submodule in known else (node.module, alias.name))
    return found


def test_no_module_is_much_over_400_lines() -> None:
    too_long = {
        name: n for name, path in modules().items() if (n := len(path.read_text(encoding="utf-8").splitlines())) > MAX_LINES
    }
    assert too_long == {}


def test_no_module_imports_another_modules_private_names() -> None:
    known = modules()
    offenders = [
        f"{name} imports {module}.{imported}"
        for name, path in known.items()
        for module, imported in imports(path, known, top_level_only=False)
        if imported is not None and imported.startswith("_") and not imported.startswith("__") and module != name
    ]
    assert offenders == []


def test_no_import_cycles_at_import_time() -> None:
    known = modules()
    graph: dict[str, set[str]] = {name: set() for name in known}
    for name, path in known.items():
        for module, _imported in imports(path, known, top_level_only=True):
            # Importing a.b.c runs a and a.b first: each is an edge.
            parts = module.split(".")
            for i in range(1, len(parts) + 1):
                target = ".".join(parts[:i])
                if target in known and target != name and not name.startswith(target + "."):
                    graph[name].add(target)
    cycles: list[list[str]] = []
    state: dict[str, int] = {}  # 1 on the path, 2 done

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append(path[path.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt, [*path, nxt])
        state[node] = 2

    for start in sorted(graph):
        if start not in state:
            visit(start, [start])
    assert cycles == []
