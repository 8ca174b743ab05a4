#!/usr/bin/env python3
"""The import picture of the `chaperone` package: modules, arrows, floors, circles.

    python scripts/import_graph.py            # summary
    python scripts/import_graph.py --arrows   # every arrow, importer -> imported
    python scripts/import_graph.py --packages # the same picture, one node per package
    python scripts/import_graph.py --json

Reads the source with `ast` (nothing is imported or run). An arrow is any `import chaperone.x` or
`from chaperone.x import y` anywhere in a module, deferred imports inside functions included: they are
dependencies all the same. A floor is the length of the longest import path below a module (a module that
imports nothing of the package is on floor 0); it is defined only when there is no circle.
"""

from __future__ import annotations

import argparse
import ast
import json
import sys
from pathlib import Path

PACKAGE = "chaperone"


def module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def graph(root: Path) -> dict[str, set[str]]:
    """Module -> the package modules it imports (packages count as their __init__)."""
    files = {module_name(root, p): p for p in sorted(root.rglob("*.py"))}
    arrows: dict[str, set[str]] = {m: set() for m in files}
    for mod, path in files.items():
        is_pkg = path.name == "__init__.py"
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = mod.split(".") if is_pkg else mod.split(".")[:-1]
                    anchor = anchor[: len(anchor) - (node.level - 1)]
                    base = ".".join([*anchor, base] if base else anchor)
                # `from chaperone.engine import events` names a module; `from chaperone.x import name` a name.
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in files else base for a in node.names]
            for t in targets:
                while t and t not in files:
                    t = t.rpartition(".")[0]
                if t and t.split(".")[0] == PACKAGE and t != mod:
                    arrows[mod].add(t)
    return arrows


def by_package(arrows: dict[str, set[str]]) -> dict[str, set[str]]:
    """Collapse chaperone.engine.x into chaperone.engine; modules at the root stay themselves."""

    def node(m: str) -> str:
        parts = m.split(".")
        sub = ".".join(parts[:2])
        return sub if len(parts) > 2 or any(k.startswith(sub + ".") for k in arrows) else m

    out: dict[str, set[str]] = {}
    for m, targets in arrows.items():
        out.setdefault(node(m), set()).update(node(t) for t in targets)
    return {k: v - {k} for k, v in out.items()}


def circles(arrows: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    counter = [0]
    sys.setrecursionlimit(10_000)

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in arrows[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(arrows):
        if v not in index:
            visit(v)
    return out


def floors(arrows: dict[str, set[str]]) -> dict[str, int]:
    memo: dict[str, int] = {}

    def floor(m: str) -> int:
        if m not in memo:
            memo[m] = 1 + max((floor(d) for d in arrows[m]), default=-1)
        return memo[m]

    for m in arrows:
        floor(m)
    return memo


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", type=Path, default=Path(__file__).resolve().parents[1] / PACKAGE)
    ap.add_argument("--arrows", action="store_true", help="print every arrow")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--packages", action="store_true", help="one node per package (root modules stay apart)")
    args = ap.parse_args()
    arrows = graph(args.root)
    if args.packages:
        arrows = by_package(arrows)
    found = circles(arrows)
    fl = {} if found else floors(arrows)
    summary = {
        "modules": len(arrows),
        "arrows": sum(len(v) for v in arrows.values()),
        "circles": found,
        "floors": (max(fl.values()) + 1) if fl else None,
    }
    if args.json:
        print(json.dumps({**summary, "graph": {k: sorted(v) for k, v in arrows.items()}, "floor": fl}, indent=2))
        return 0
    print(
        f"modules {summary['modules']} · arrows {summary['arrows']} · floors {summary['floors']} · circles {len(found)}"
    )
    for c in found:
        print("  circle: " + " <-> ".join(c))
    if args.arrows:
        for m in sorted(arrows):
            for d in sorted(arrows[m]):
                print(f"{m} -> {d}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
