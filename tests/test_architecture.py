"""The import contract (issue 17, docs/ARCHITECTURE.md): layers point only down, no import
cycles between modules, and a function-level import of cnnlab code never reaches up a layer.

Read from the source with ``ast`` (nothing is imported), over every module of the package,
module-level and function-level imports alike.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "cnnlab"

# lowest first; a module may import from its own layer or any layer listed before it
LAYERS = [
    ("foundations", ["cnnlab.errors", "cnnlab.files", "cnnlab.weightfile", "cnnlab.version",
                     "cnnlab.yamltext", "cnnlab.lazy", "cnnlab.progress",
                     "cnnlab.choices", "cnnlab.extras", "cnnlab.devices"]),
    ("operators", ["cnnlab.reference", "cnnlab.layers", "cnnlab.data"]),
    ("models", ["cnnlab.models"]),
    ("tasks", ["cnnlab.tasks", "cnnlab.detection"]),
    ("config", ["cnnlab.config", "cnnlab.recipes"]),
    ("runs", ["cnnlab.runs"]),
    ("train", ["cnnlab.train"]),
    ("analysis", ["cnnlab.analysis"]),
    ("evaluate", ["cnnlab.evaluate", "cnnlab.predict", "cnnlab.export", "cnnlab.objects"]),
    ("viz", ["cnnlab.viz"]),
    ("applications", ["cnnlab.bovw", "cnnlab.live"]),
    ("cli", ["cnnlab.cli", "cnnlab.__main__"]),
]
# (importer, imported) pairs allowed to point up, each with its reason
ALLOWED_UP = {
    # the analysis tools draw with viz's grid helpers and score with evaluate
    ("cnnlab.analysis.ablate", "cnnlab.evaluate"): "baseline accuracy is evaluate's",
    ("cnnlab.evaluate", "cnnlab.viz.segmentation"): "evaluate draws the mask panel",
    ("cnnlab.predict", "cnnlab.viz.segmentation"): "predict draws a mask PNG per image",
}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer_of(module: str) -> int | None:
    for rank, (_, prefixes) in enumerate(LAYERS):
        if any(module == p or module.startswith(p + ".") for p in prefixes):
            return rank
    return None


def imports(path: Path) -> list[tuple[str, int, bool]]:
    """``(imported module, line, inside a function)`` of every cnnlab import in ``path``."""
    tree = ast.parse(path.read_text())
    found = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            inner = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef))
            if isinstance(child, ast.ImportFrom) and child.module and child.level == 0:
                if child.module.startswith("cnnlab"):
                    found.append((child.module, child.lineno, in_function))
            elif isinstance(child, ast.Import):
                found.extend((a.name, child.lineno, in_function) for a in child.names
                             if a.name.startswith("cnnlab"))
            visit(child, inner)

    visit(tree, False)
    return found


def all_modules() -> dict[str, Path]:
    return {module_name(p): p for p in PACKAGE.rglob("*.py")}


def test_every_module_has_a_layer():
    assert [m for m in all_modules() if m != "cnnlab" and layer_of(m) is None] == []


def test_layers_point_only_down():
    wrong = []
    for name, path in all_modules().items():
        if name == "cnnlab":  # the root only re-exports, lazily
            continue
        for target, line, _ in imports(path):
            if target == "cnnlab" or (name, target) in ALLOWED_UP:
                continue
            if layer_of(target) > layer_of(name):
                wrong.append(f"{name}:{line} imports {target} "
                             f"({LAYERS[layer_of(name)][0]} -> {LAYERS[layer_of(target)][0]})")
    assert wrong == []


def test_no_import_cycles_between_modules():
    modules = all_modules()
    graph = {name: {t for t, _, _ in imports(path) if t in modules and t != name}
             for name, path in modules.items() if name != "cnnlab"}
    cycles, state = [], {}

    def walk(node: str, stack: list[str]) -> None:
        state[node] = "open"
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                cycles.append(" -> ".join(stack[stack.index(nxt):] + [node, nxt]))
            elif nxt not in state:
                walk(nxt, stack + [node] if nxt not in stack else stack)
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            walk(node, [])
    assert cycles == []


def test_run_kinds_are_opened_by_modules_above_the_run_layer():
    """``RUN_KINDS`` (cnnlab/runs/reader.py) is the one place the run layer names a module
    above it, by name: each entry must exist, sit in a higher layer and define ``open_kind``."""
    from cnnlab.runs.reader import RUN_KINDS

    modules = all_modules()
    for kind, module in RUN_KINDS.items():
        assert module in modules, kind
        assert layer_of(module) > layer_of("cnnlab.runs"), kind
        tree = ast.parse(modules[module].read_text())
        assert "open_kind" in {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}, kind
