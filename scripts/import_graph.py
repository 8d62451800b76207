"""How the modules of ``core/`` depend on each other: the figures docs/architecture.md quotes.

Counts the imports between core modules (one per importing module and imported module,
lazy imports inside functions included), the layers (the longest chain of imports, bottom
= 1), cycles, and imports that point from a side package back up into a module that uses
it. ``--check`` exits 1 when there is a cycle or the counts exceed the given limits.

Usage: scripts/import_graph.py [--check] [--max-imports N] [--max-layers N]
"""

from __future__ import annotations

import argparse
import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CORE = ROOT / "core"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(CORE.rglob("*.py"))}


def public_api() -> dict[str, str]:
    """The public API's table (``core/__init__.py``): public name -> the core module defining it."""
    tree = ast.parse((CORE / "__init__.py").read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", "") == "_API" for t in node.targets):
            table = ast.literal_eval(node.value)
            return {k: "core." + (v.partition(":")[0] or k) for k, v in table.items()}
    return {}


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """The core modules ``name`` imports (``from . import x`` counts x when x is a module).

    A name taken from the public API (``from . import X`` in ``core/``) counts as an import of
    the module that defines X: going through ``core/__init__.py`` hides no dependency."""
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    api = public_api()
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = package.split(".")[: len(package.split(".")) - node.level + 1]
            target = ".".join(base + ([node.module] if node.module else []))
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                if sub in known:
                    found.add(sub)
                elif target == "core" and alias.name in api:
                    found.add(api[alias.name])
                else:
                    found.add(target)
    return {m for m in found if m in known and m != name and not known_package(m, known)}


def known_package(name: str, known: set[str]) -> bool:
    """A package's ``__init__`` holds no code of ours: importing through it is not an edge."""
    return any(k.startswith(name + ".") for k in known)


def graph() -> dict[str, set[str]]:
    mods = modules()
    known = set(mods)
    return {n: imports_of(n, p, known) for n, p in mods.items() if not known_package(n, known)}


def layers(edges: dict[str, set[str]]) -> dict[str, int]:
    depth: dict[str, int] = {}

    def visit(node: str, stack: tuple[str, ...]) -> int:
        if node in stack:
            raise ValueError("cycle: " + " -> ".join((*stack[stack.index(node) :], node)))
        if node not in depth:
            depth[node] = 1 + max((visit(d, (*stack, node)) for d in edges[node]), default=0)
        return depth[node]

    for n in edges:
        visit(n, ())
    return depth


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true")
    parser.add_argument("--max-imports", type=int, default=None)
    parser.add_argument("--max-layers", type=int, default=None)
    args = parser.parse_args()
    edges = graph()
    count = sum(len(v) for v in edges.values())
    try:
        depth = layers(edges)
    except ValueError as cycle:
        print(cycle)
        return 1
    print(f"core modules: {len(edges)}; imports between them: {count}; layers: {max(depth.values())}")
    for level in range(max(depth.values()), 0, -1):
        names = sorted(n.removeprefix("core.") for n, d in depth.items() if d == level)
        print(f"  layer {level}: {', '.join(names)}")
    ok = (args.max_imports is None or count <= args.max_imports) and (
        args.max_layers is None or max(depth.values()) <= args.max_layers
    )
    return 0 if ok or not args.check else 1


if __name__ == "__main__":
    sys.exit(main())
