"""The house: subpackages import downward only, and nothing imports in a cycle.

Layers, top to bottom (each may import those below it, never those above)::

    web, cli        the ways in: FastAPI + Gradio, the command line
    services        the composition root: builds every manager of one process
    distributed     Celery, Redis state, the remote job manager, the worker
    asr             loaders, leases, the speech pipeline, the job manager
    models          what is on disk and how bytes arrive
    core            settings, errors, the event bus, the catalog

An AST walk over every module finds each ``modelmgr`` import, function-level ones included (a
lazy import is still an arrow, and two modules that import each other lazily are still a
knot), checks its direction, and a depth-first search over that graph finds cycles.
``if TYPE_CHECKING:`` blocks are skipped (they run only under a type checker).
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "modelmgr"
LAYERS = ["core", "models", "asr", "distributed", "services", "web", "cli"]
RANK = {"core": 0, "models": 1, "asr": 2, "distributed": 3, "services": 4, "web": 5, "cli": 5}
# Process entry points sit on top whatever folder they live in: they build the services.
ENTRY_POINTS = {"modelmgr.distributed.worker": "services", "modelmgr.__main__": "cli"}


def modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def layer_of(module: str) -> str | None:
    parts = module.split(".")
    if len(parts) < 2:
        return None  # the package itself
    return parts[1] if parts[1] in RANK else None


def _type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def imports(path: Path, module: str, *, top_level_only: bool) -> set[str]:
    """The modelmgr modules ``path`` imports (``from x import y`` counts y when y is a module)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    known = modules()
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()

    def visit(nodes: list[ast.stmt], depth: int) -> None:
        for node in nodes:
            if isinstance(node, ast.If) and _type_checking(node):
                visit(node.orelse, depth)
                continue
            if isinstance(node, ast.Import):
                found.update(a.name for a in node.names if a.name.startswith("modelmgr"))
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                    base = ".".join(anchor + ([base] if base else []))
                if base.startswith("modelmgr"):
                    for alias in node.names:
                        child = f"{base}.{alias.name}"
                        found.add(child if child in known else base)
            if top_level_only and isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for field in ("body", "orelse", "finalbody", "handlers"):
                inner = getattr(node, field, None)
                if isinstance(inner, list) and inner and isinstance(inner[0], (ast.stmt, ast.ExceptHandler)):
                    visit(inner if field != "handlers" else [s for h in inner for s in h.body], depth + 1)

    visit(tree.body, 0)
    found.discard(module)
    return found


def test_every_module_belongs_to_a_layer() -> None:
    loose = [m for m in modules() if m.count(".") >= 1 and layer_of(m) is None and m not in ENTRY_POINTS]
    assert loose == [], f"modules outside the layers {LAYERS}: {loose}"


def test_imports_point_down_the_layers() -> None:
    wrong = []
    for module, path in modules().items():
        source = ENTRY_POINTS.get(module) or layer_of(module)
        if source is None:
            continue
        for target in imports(path, module, top_level_only=False):
            target_layer = layer_of(target)
            if target_layer is None:
                continue
            if RANK[target_layer] > RANK[source] or (
                RANK[target_layer] == RANK[source] and target_layer != source
            ):
                wrong.append(f"{module} ({source}) imports {target} ({target_layer})")
    assert wrong == [], (
        "imports against the direction web/cli -> services -> distributed -> asr -> models -> core:\n"
        + "\n".join(wrong)
    )


def test_no_import_cycles() -> None:
    graph = {m: imports(p, m, top_level_only=False) for m, p in modules().items()}
    state: dict[str, int] = {}  # 1: on the stack, 2: done
    cycles = []

    def walk(node: str, stack: list[str]) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in graph:
                continue
            if state.get(nxt) == 1:
                cycles.append(" -> ".join(stack[stack.index(nxt) :] + [nxt]))
            elif state.get(nxt) is None:
                walk(nxt, stack)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            walk(node, [])
    assert cycles == [], "import cycles:\n" + "\n".join(cycles)


def test_each_subpackage_says_what_it_owns_and_may_import() -> None:
    for layer in ("core", "models", "asr", "distributed", "web", "cli"):
        doc = ast.get_docstring(ast.parse((PACKAGE / layer / "__init__.py").read_text()))
        assert doc and "import" in doc, (
            f"modelmgr/{layer}/__init__.py needs a docstring saying what it may import"
        )
