"""The import graph: layers point one way (features < base_learners, meta < pipelines < benchmarks;
the two level packages never import each other) and no module imports itself round a circle.

Read from the source with `ast` (function-level imports included), so a lazy import cannot hide
a circle or a layer break."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LAYERS = {"features": 0, "base_learners": 1, "meta": 1, "pipelines": 2, "benchmarks": 3}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports() -> dict[str, set[str]]:
    """module -> the project modules it imports (a `from pkg import name` of a submodule counts)."""
    files = {module_name(p): p for pkg in LAYERS for p in (ROOT / pkg).rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        found = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                found |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                found.add(node.module)
                found |= {f"{node.module}.{a.name}" for a in node.names}
        graph[name] = {m for m in found if m in files and m != name}
    return graph


def test_no_import_from_a_lower_layer_to_a_higher_or_across_levels():
    bad = []
    for name, targets in imports().items():
        src = name.split(".")[0]
        for target in targets:
            dst = target.split(".")[0]
            if LAYERS[dst] > LAYERS[src] or (LAYERS[dst] == LAYERS[src] and dst != src):
                bad.append(f"{name} -> {target}")
    assert not bad, bad


def test_no_import_circle():
    graph = imports()
    # a package's __init__ is imported on the way to any of its modules: that edge is not a circle
    graph = {m: {t for t in ts if not m.startswith(t + ".")} for m, ts in graph.items()}
    state: dict[str, int] = {}
    cycles = []

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append(path[path.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt, path + [nxt])
        state[node] = 2

    for start in sorted(graph):
        if start not in state:
            visit(start, [start])
    assert not cycles, cycles


def test_the_packaged_detector_does_not_import_the_training_orchestrators():
    graph = imports()
    for module in ("pipelines.scoring.detector", "pipelines.scoring.package"):
        assert "base_learners.oof" not in graph[module] and "pipelines.oof" not in graph[module]
