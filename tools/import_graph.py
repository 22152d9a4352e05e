"""Import graph of the project's packages, function-level imports included; exits 1 on any cycle.

``python tools/import_graph.py`` prints every cycle (strongly connected component of more than one module) and
every pair of modules that import each other. Written on ``ast`` rather than ``grimp``/``pydeps`` because those
follow only what is importable at module level in an installed package, and the cycles that crept in before were
hidden in imports inside functions. ``--edges`` prints the whole graph.
"""

from __future__ import annotations

import argparse
import ast
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("audiosweep", "analysis", "bench")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def resolve(current: str, is_package: bool, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = current.split(".")
    base = base if is_package else base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def imported(path: Path, modules: set[str]) -> set[str]:
    """Project modules imported anywhere in ``path`` (a ``from pkg import mod`` counts as ``pkg.mod``)."""
    name = module_name(path)
    tree = ast.parse(path.read_text(), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = resolve(name, path.name == "__init__.py", node)
            # As grimp counts it: ``from pkg import mod`` imports pkg.mod, ``from pkg import func`` imports pkg.
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
        else:
            continue
        for target in targets:
            # The closest project module that the target names: a.b.c -> a.b.c, else a.b, else a.
            parts = target.split(".")
            while parts and ".".join(parts) not in modules:
                parts.pop()
            if parts:
                found.add(".".join(parts))
    found.discard(name)
    return found


def package_parents(found: set[str], name: str) -> set[str]:
    """Drop a package's own ``__init__`` from what its submodules import: ``from pkg import x`` inside pkg."""
    return {m for m in found if not name.startswith(m + ".")}


def graph() -> dict[str, set[str]]:
    files = [p for pkg in PACKAGES for p in sorted((REPO / pkg).rglob("*.py"))]
    modules = {module_name(p) for p in files}
    return {module_name(p): package_parents(imported(p, modules), module_name(p)) for p in files}


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan's algorithm, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for root in sorted(edges):
        if root in index:
            continue
        work = [(root, iter(sorted(edges[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is None:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        found.append(sorted(component))
            elif child not in index:
                index[child] = low[child] = counter
                counter += 1
                stack.append(child)
                on_stack.add(child)
                work.append((child, iter(sorted(edges.get(child, ())))))
            elif child in on_stack:
                low[node] = min(low[node], index[child])
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--edges", action="store_true", help="print every module and what it imports")
    args = parser.parse_args(argv)
    edges = graph()
    if args.edges:
        for name in sorted(edges):
            print(f"{name}: {', '.join(sorted(edges[name])) or '-'}")
    pairs = sorted({tuple(sorted((a, b))) for a in edges for b in edges[a] if a in edges.get(b, ())})
    found = cycles(edges)
    n_edges = sum(len(v) for v in edges.values())
    print(f"{len(edges)} modules, {n_edges} imports (function-level included) in {', '.join(PACKAGES)}")
    for a, b in pairs:
        print(f"mutual import: {a} <-> {b}")
    for component in found:
        print(f"cycle: {' , '.join(component)}")
    if not found:
        print("no import cycle")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
