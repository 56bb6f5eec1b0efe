#!/usr/bin/env python3
"""Check the rules of the house that a program can check; exit 1 listing every breach.

* No import cycle among the project's modules (``blobfs``, ``sdk``), counting imports made
  inside functions too: a cycle held together by a late import is still a cycle.
* Dependencies point one way.  ``blobfs``'s folders are layers, top to bottom::

      cli -> mount -> fuse -> fs -> cache, write -> bridge -> (options, errors) -> sdk

  A module may import its own folder and the folders below it, never one above or beside
  it (``cache`` and ``write`` are siblings: neither imports the other).
* Who may import what: only ``blobfs/fuse/`` imports pyfuse3; only ``sdk/providers/``
  imports a provider's library (boto, botocore, azure); ``sdk`` imports neither trio nor
  ``blobfs``.
* Size: no module over :data:`MAX_MODULE_LINES` lines, no class over
  :data:`MAX_CLASS_LINES` (tests and benchmarks aside).

Every import counts, those under ``if TYPE_CHECKING:`` too: a type that must be named
from a module above or beside is a dependency all the same (a Protocol breaks such a tie).
"""

from __future__ import annotations

import ast
import sys
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PACKAGES = ("blobfs", "sdk")
MAX_MODULE_LINES = 600
MAX_CLASS_LINES = 400

#: blobfs's layers, highest first; modules of one rank may not import each other's folders
#: unless they share the folder.
LAYERS: dict[str, int] = {
    "blobfs.cli": 7,
    "blobfs.mount": 6,
    "blobfs.fuse": 5,
    "blobfs.fs": 4,
    "blobfs.cache": 3,
    "blobfs.write": 3,
    "blobfs.bridge": 2,
    "blobfs.options": 1,
    "blobfs.errors": 1,
    "sdk": 0,
}
#: Third-party packages only some folders may import: package -> allowed module prefixes.
RESTRICTED: dict[str, tuple[str, ...]] = {
    "pyfuse3": ("blobfs.fuse",),
    "boto3": ("sdk.providers",),
    "botocore": ("sdk.providers",),
    "aioboto3": ("sdk.providers",),
    "aiobotocore": ("sdk.providers",),
    "azure": ("sdk.providers",),
    "trio": ("blobfs",),
}


@dataclass(frozen=True)
class Module:
    name: str
    path: Path
    is_package: bool


def modules() -> dict[str, Module]:
    found: dict[str, Module] = {}
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            parts = list(path.relative_to(REPO).with_suffix("").parts)
            is_package = parts[-1] == "__init__"
            if is_package:
                parts.pop()
            name = ".".join(parts)
            found[name] = Module(name, path, is_package)
    return found


def imported_names(module: Module, tree: ast.Module) -> set[str]:
    """Every module name ``module`` imports (absolute, dotted), wherever the import is."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = module.name.split(".")
                if not module.is_package:
                    parts.pop()
                parts = parts[: len(parts) - (node.level - 1)]
                base = ".".join([*parts, base] if base else parts)
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


def layer_of(name: str) -> tuple[str, int] | None:
    best: tuple[str, int] | None = None
    for prefix, rank in LAYERS.items():
        if (name == prefix or name.startswith(prefix + ".")) and (
            best is None or len(prefix) > len(best[0])
        ):
            best = (prefix, rank)
    return best


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []
    counter = 0

    def visit(v: str) -> None:
        nonlocal counter
        index[v] = low[v] = counter
        counter += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    sys.setrecursionlimit(10_000)
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return cycles


def check() -> list[str]:
    found = modules()
    problems: list[str] = []
    graph: dict[str, set[str]] = {}
    for module in found.values():
        source = module.path.read_text()
        rel = module.path.relative_to(REPO)
        lines = source.count("\n")
        if lines > MAX_MODULE_LINES:
            problems.append(f"{rel}: {lines} lines (at most {MAX_MODULE_LINES})")
        tree = ast.parse(source, str(rel))
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef):
                length = (node.end_lineno or node.lineno) - node.lineno + 1
                if length > MAX_CLASS_LINES:
                    problems.append(
                        f"{rel}:{node.lineno}: class {node.name} has {length} lines "
                        f"(at most {MAX_CLASS_LINES})"
                    )
        imports = imported_names(module, tree)
        # Importing a module runs its package's __init__ too; an edge to the package
        # itself is what "import a.b" means for a cycle only when a.b is not itself known.
        targets = {name for name in imports if name in found and name != module.name}
        graph[module.name] = targets
        mine = layer_of(module.name)
        for target in sorted(targets):
            theirs = layer_of(target)
            if mine is None or theirs is None or target.startswith(mine[0]):
                continue
            if theirs[1] >= mine[1]:
                problems.append(f"{rel}: imports {target} ({theirs[0]} is not below {mine[0]})")
        for name in sorted(imports):
            top = name.split(".")[0]
            allowed = RESTRICTED.get(top)
            if allowed and not module.name.startswith(allowed):
                problems.append(f"{rel}: imports {name} (only {', '.join(allowed)} may)")
        if module.name.startswith("sdk") and any(
            n == "blobfs" or n.startswith("blobfs.") for n in imports
        ):
            problems.append(f"{rel}: the sdk imports blobfs")
    for cycle in find_cycles(graph):
        problems.append("import cycle: " + " <-> ".join(cycle))
    return problems


def main() -> int:
    problems = check()
    for line in problems:
        print(line)
    if problems:
        print(f"check_architecture: {len(problems)} problem(s)")
        return 1
    print(f"check_architecture: {len(modules())} modules, no cycle, layers and sizes kept")
    return 0


if __name__ == "__main__":
    sys.exit(main())
