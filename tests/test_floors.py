"""The house keeps its floors: read from the source of every module (imports inside functions included),
no module imports a higher floor, mlflow is imported by the tracking floor alone, tenacity by recovery
alone, ray by the cluster evaluator's two modules alone, no import circle (counting the imports inside functions
and behind ``if TYPE_CHECKING:``, which only hide one), no module over 400 lines, and no tag name spelled out
anywhere but in the run model."""

from __future__ import annotations

import ast
from pathlib import Path

from conftest import ROOT

from btc_ai.tracking.run_model import names

PACKAGE = ROOT / "btc_ai"
FLOORS = ["domain", "training", "tracking", "recovery", "desk", "cli"]  # lowest first
MAX_LINES = 400


def _module(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _floor(module: str) -> int:
    """The floor of a btc_ai module: the package root (its version, names loaded on first use) is below
    every floor, `python -m btc_ai` is the face."""
    parts = module.split(".")
    if module == "btc_ai":
        return 0
    return FLOORS.index(parts[1]) if len(parts) > 1 and parts[1] in FLOORS else len(FLOORS) - 1


def _modules() -> dict[str, Path]:
    return {_module(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def _imports(path: Path, module: str, *, top_level_only: bool = False) -> set[str]:
    """Every module ``path`` imports (relative imports resolved); with ``top_level_only``, only those run at
    import time outside ``if TYPE_CHECKING:``."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    if top_level_only:  # module level, and inside module-level try/if blocks that are not TYPE_CHECKING
        nodes = []
        stack = list(tree.body)
        while stack:
            node = stack.pop()
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                continue
            nodes.append(node)
            if isinstance(node, (ast.If, ast.Try)):
                stack.extend(node.body + node.orelse + getattr(node, "finalbody", []) +
                             [h for handler in getattr(node, "handlers", []) for h in handler.body])
    found = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)  # `from pkg import module`
    return found


def test_no_module_imports_a_higher_floor() -> None:
    modules = _modules()
    assert len(modules) > 40  # the walk really found the package
    wrong = []
    for module, path in modules.items():
        for imported in _imports(path, module):
            if imported in modules and _floor(imported) > _floor(module):
                wrong.append(f"{module} ({FLOORS[_floor(module)]}) imports {imported} ({FLOORS[_floor(imported)]})")
    assert not wrong, "\n".join(wrong)


def test_mlflow_only_in_tracking_and_tenacity_only_in_recovery() -> None:
    wrong = []
    for module, path in _modules().items():
        roots = {name.split(".")[0] for name in _imports(path, module)}
        if "mlflow" in roots and not module.startswith("btc_ai.tracking"):
            wrong.append(f"{module} imports mlflow")
        if "tenacity" in roots and not module.startswith("btc_ai.recovery"):
            wrong.append(f"{module} imports tenacity")
    assert not wrong, "\n".join(wrong)


RAY_MODULES = {"btc_ai.training.cluster.connection", "btc_ai.training.cluster.evaluator"}


def test_ray_only_in_the_cluster_evaluator() -> None:
    users = {module for module, path in _modules().items()
             if "ray" in {name.split(".")[0] for name in _imports(path, module)}}
    assert users == RAY_MODULES


def import_graph(modules: dict[str, Path]) -> dict[str, set[str]]:
    """Each module's imports of other btc_ai modules, wherever they sit: at module level, inside a function (put
    there to keep start-up fast) or behind ``if TYPE_CHECKING:`` — a circle through either is still a circle.
    An edge from a module to a package above it is none: `from pkg import submodule` needs pkg half-built."""
    return {m: {i for i in _imports(p, m) if i in modules and i != m and not m.startswith(i + ".")}
            for m, p in modules.items()}


def test_no_import_circle_and_no_module_over_400_lines() -> None:
    modules = _modules()
    graph = import_graph(modules)

    def cycle_from(start: str) -> list[str] | None:
        stack, seen = [(start, [start])], set()
        while stack:
            node, trail = stack.pop()
            for nxt in graph[node]:
                if nxt == start:
                    return [*trail, start]
                if nxt not in seen:
                    seen.add(nxt)
                    stack.append((nxt, [*trail, nxt]))
        return None

    circles = [c for m in modules if (c := cycle_from(m))]
    assert not circles, " -> ".join(circles[0])
    long = {m: n for m, p in modules.items() if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES}
    assert not long


def test_tag_names_are_spelled_out_only_in_the_run_model() -> None:
    tags = {value for key, value in vars(names).items() if key.startswith("TAG_") and isinstance(value, str)}
    assert {"btc_ai.kind", "btc_ai.status", "mlflow.parentRunId", "btc_ai.repair_rule"} <= tags
    home = PACKAGE / "tracking" / "run_model"
    wrong = []
    for path in PACKAGE.rglob("*.py"):
        if path.is_relative_to(home):
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                wrong += [f"{path.relative_to(ROOT)}:{node.lineno} {tag}" for tag in tags if tag in node.value]
    assert not wrong, "\n".join(wrong)
