"""Fail when onlyif's packages import each other in a cycle (``make lint`` runs this).

Nodes are ``onlyif.<package>`` and the top-level modules (``onlyif.cli``, ``onlyif.config``, ...); edges are every
import between two nodes, function-level imports included. A cycle is a strongly connected set of two or more
nodes; each is printed with the file:line of its imports.

    python scripts/check_import_cycles.py [onlyif]
"""

from __future__ import annotations

import ast
import sys
from collections import defaultdict
from pathlib import Path


def node(module: str) -> str:
    """``onlyif.data.mixture`` → ``onlyif.data``; a top-level module is its own node."""
    return ".".join(module.split(".")[:2])


def import_graph(root: Path) -> dict[tuple[str, str], list[str]]:
    """(importer node, imported node) → the file:line of each such import."""
    edges: dict[tuple[str, str], list[str]] = defaultdict(list)
    for path in sorted(root.rglob("*.py")):
        module = ".".join(path.relative_to(root.parent).with_suffix("").parts).removesuffix(".__init__")
        for n in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(n, ast.Import):
                targets = [a.name for a in n.names]
            elif isinstance(n, ast.ImportFrom) and n.module and n.level == 0:
                targets = [n.module]
            else:
                continue
            for target in targets:
                a, b = node(module), node(target)
                if target.split(".")[0] == root.name and b != root.name and a != b:
                    edges[(a, b)].append(f"{path}:{n.lineno}")
    return edges


def cycles(edges: dict[tuple[str, str], list[str]]) -> list[list[str]]:
    """Strongly connected sets of two or more nodes (Tarjan)."""
    succ: dict[str, set[str]] = defaultdict(set)
    for a, b in edges:
        succ[a].add(b)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(succ[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(succ):
        if v not in index:
            visit(v)
    return found


def main() -> int:
    root = Path(sys.argv[1] if len(sys.argv) > 1 else "onlyif")
    edges = import_graph(root)
    found = cycles(edges)
    for component in found:
        print(f"import cycle: {' <-> '.join(component)}")
        for (a, b), places in sorted(edges.items()):
            if a in component and b in component:
                print(f"  {a} -> {b}: {', '.join(places[:3])}")
    nodes = {x for pair in edges for x in pair}
    print(f"{len(nodes)} modules/packages, {len(edges)} import edges, {len(found)} cycles")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
