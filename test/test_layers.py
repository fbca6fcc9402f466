"""The package's layers, read from the code: no module imports a higher layer or a sibling
package of its own layer, and no import circle between files (docs/architecture.md).

Layers, lowest first (a module may import its own package and any lower layer):

0. core — the top-level modules (io_utils, metadata, tasks, nyuv2_classes, geometry,
   image_codec, colormap, metrics, pointcloud, baselines);
1. data, models (the networks with their losses);
2. training, runtime (engine build and cache included);
3. export (tooling: ONNX export, checks, calibration, quantisation, accuracy gate, export_engine
   and the train command);
4. ros;
5. evaluation;
6. demo (``make demo``: synthetic bag -> replay).

Every ``import`` / ``from ... import`` statement counts, at module level or inside a function
(a lazy import is still a dependency).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = "joint_perception"
ROOT = Path(__file__).resolve().parents[1] / PACKAGE
LAYERS: dict[str, int] = {
    "data": 1,
    "models": 1,
    "training": 2,
    "runtime": 2,
    "export": 3,
    "ros": 4,
    "evaluation": 5,
    "demo": 6,
}


def group(module: str) -> str:
    """``joint_perception.data.nyuv2`` -> ``data``; a top-level core module -> ``core``."""
    parts = module.split(".")
    if len(parts) == 1:
        return "core"
    return parts[1] if parts[1] in LAYERS else "core"


def layer(module: str) -> int:
    return LAYERS.get(group(module), 0)


def module_name(path: Path) -> str:
    rel = path.relative_to(ROOT.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def imports_of(source: str, module: str, is_package: bool = False) -> set[str]:
    """Modules of this package imported anywhere in ``source`` (absolute names)."""
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] == PACKAGE)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative import
                base = module.split(".")[
                    : len(module.split(".")) - node.level + (1 if is_package else 0)
                ]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            if name.split(".")[0] != PACKAGE:
                continue
            found.add(name)
            found.update(f"{name}.{a.name}" for a in node.names)  # "from pkg import module"
    return found


def all_modules() -> dict[str, set[str]]:
    mods = {}
    for path in sorted(ROOT.rglob("*.py")):
        name = module_name(path)
        mods[name] = imports_of(path.read_text(encoding="utf-8"), name, path.name == "__init__.py")
    known = set(mods)
    return {m: {i for i in imps if i in known and i != m} for m, imps in mods.items()}


def layer_violations(graph: dict[str, set[str]]) -> list[str]:
    """Imports that go up a layer or across to a sibling package of the same layer."""
    bad = []
    for mod, imps in graph.items():
        for imp in imps:
            src, dst = group(mod), group(imp)
            if src == dst:
                continue
            if layer(imp) > layer(mod) or (layer(imp) == layer(mod) and src != dst):
                bad.append(
                    f"{mod} (layer {layer(mod)}, {src}) imports {imp} (layer {layer(imp)}, {dst})"
                )
    return sorted(bad)


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one file (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
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

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def _package_faces(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    """Drop edges to a package's own ``__init__`` (re-exports), which make every package a
    trivial circle with its modules."""
    return {m: {i for i in imps if not m.startswith(i + ".")} for m, imps in graph.items()}


def test_no_import_goes_up_a_layer_or_across_a_sibling():
    assert layer_violations(all_modules()) == []


def test_no_import_circle_between_files():
    assert cycles(_package_faces(all_modules())) == []


@pytest.mark.parametrize(
    ("module", "source"),
    [
        # the back-edges this test was written against (each one existed once)
        ("joint_perception.models.cinet", "from joint_perception.training import losses as L"),
        ("joint_perception.runtime.torch_backend",
         "def f():\n    from joint_perception.export.onnx_export import DeployWrapper"),
        ("joint_perception.runtime.tensorrt_backend",
         "from joint_perception.export.export_engine import build_engine_with_gate"),
        ("joint_perception.training.config",
         "from joint_perception.runtime.tensorrt_engine import BuildOptions"),
        ("joint_perception.training.train", "from joint_perception.export.onnx_export import export_onnx"),
        ("joint_perception.data.synthetic", "import joint_perception.models.blocks"),
        ("joint_perception.metrics", "from joint_perception.ros import topics"),
    ],
)  # fmt: skip
def test_the_checker_catches_back_edges(module, source):
    graph = all_modules()
    graph[module] = graph.get(module, set()) | (imports_of(source, module) & set(graph))
    assert any(v.startswith(module) for v in layer_violations(graph))


def test_the_checker_catches_circles():
    graph = {
        "joint_perception.a": {"joint_perception.b"},
        "joint_perception.b": {"joint_perception.a"},
    }
    assert cycles(graph) == [["joint_perception.a", "joint_perception.b"]]
