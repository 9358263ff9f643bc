"""The package's layers: every import points down, no circles, no function-local imports inside jaxfne.

Parsed from the source (every ``import`` statement, at module level or inside
a function), so it fails on the first upward import or circle, and on an
import hidden in a function to dodge one. The layer order is the one of
docs/architecture.md.
"""

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parent.parent / "jaxfne"

#: lowest first; a module may import modules of its own layer or below
LAYERS = [
    ("base", ["jaxfne._errors", "jaxfne._version", "jaxfne._validate", "jaxfne._fields", "jaxfne._progress",
              "jaxfne._probes", "jaxfne._stats"]),
    ("config", ["jaxfne.config"]),
    ("model", ["jaxfne.model"]),
    ("engine", ["jaxfne.engine"]),
    ("sinks", ["jaxfne.sinks"]),
    ("results", ["jaxfne.results"]),
    ("api", ["jaxfne._api"]),
    ("uses", ["jaxfne.analysis", "jaxfne.viz", "jaxfne.export", "jaxfne.bench", "jaxfne.calibration"]),
    ("cli", ["jaxfne.cli"]),
    ("face", ["jaxfne"]),               # jaxfne/__init__.py re-exports only
]


def module_name(path: Path) -> str:
    rel = path.relative_to(PKG.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def layer_of(module: str) -> int:
    best, best_len = None, -1
    for i, (_, prefixes) in enumerate(LAYERS):
        for p in prefixes:
            if (module == p or module.startswith(p + ".")) and len(p) > best_len:
                best, best_len = i, len(p)
    if best is None:
        raise AssertionError(f"{module} belongs to no layer; add it to LAYERS and docs/architecture.md")
    return best


def imports(path: Path):
    """(imported jaxfne module, line, inside a function?) of every import in ``path``."""
    tree = ast.parse(path.read_text())
    mod = module_name(path)
    package = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
    out = []

    def visit(node, in_function):
        for child in ast.iter_child_nodes(node):
            inner = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            if isinstance(child, ast.Import):
                out.extend((a.name, child.lineno, in_function) for a in child.names if a.name.startswith("jaxfne"))
            elif isinstance(child, ast.ImportFrom):
                if child.level:
                    base = package.split(".")
                    base = base[:len(base) - child.level + 1]
                    target = ".".join(base + ([child.module] if child.module else []))
                else:
                    target = child.module or ""
                if target.startswith("jaxfne"):
                    # "from . import x" / "from .pkg import mod": the names may be modules
                    for a in child.names:
                        full = f"{target}.{a.name}"
                        is_module = (PKG.parent / (full.replace(".", "/") + ".py")).exists() or \
                            (PKG.parent / full.replace(".", "/")).is_dir()
                        out.append((full if is_module else target, child.lineno, in_function))
            visit(child, inner)

    visit(tree, False)
    return out


MODULES = {module_name(p): p for p in sorted(PKG.rglob("*.py"))}


def test_every_module_has_a_layer():
    for mod in MODULES:
        layer_of(mod)


@pytest.mark.parametrize("mod", sorted(MODULES))
def test_imports_point_down_and_none_hides_in_a_function(mod):
    here = layer_of(mod)
    for target, line, in_function in imports(MODULES[mod]):
        where = f"{MODULES[mod].relative_to(PKG.parent)}:{line} imports {target}"
        assert not in_function, f"{where} inside a function; import at module level (a hidden circle?)"
        there = layer_of(target)
        assert there <= here, (f"{where}: layer {LAYERS[there][0]!r} is above {LAYERS[here][0]!r} "
                                f"(order: {' < '.join(name for name, _ in LAYERS)})")


def test_no_import_circles():
    graph = {m: {t for t, _, _ in imports(p) if t in MODULES and t != m} for m, p in MODULES.items()}
    # a package's __init__ re-exporting its own modules is not a circle of behaviour
    for m in graph:
        graph[m] = {t for t in graph[m] if not (MODULES[m].name == "__init__.py" and t.startswith(m + "."))}
    state, stack = {}, []

    def dfs(node):
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycle = stack[stack.index(nxt):] + [nxt]
                raise AssertionError("import circle: " + " -> ".join(cycle))
            if nxt not in state:
                dfs(nxt)
        stack.pop()
        state[node] = 2

    for m in sorted(graph):
        if m not in state:
            dfs(m)


def test_the_checker_catches_an_upward_import(tmp_path, monkeypatch):
    """The rule is live: an engine module importing the results layer is reported."""
    MODULES["jaxfne.engine._zz_upward_probe"] = PKG / "engine" / "_zz_upward_probe.py"
    fake = PKG / "engine" / "_zz_upward_probe.py"
    try:
        fake.write_text("from ..results import Signals\n")
        with pytest.raises(AssertionError, match="layer 'results' is above 'engine'"):
            test_imports_point_down_and_none_hides_in_a_function("jaxfne.engine._zz_upward_probe")
        fake.write_text("def f():\n    from .. import _errors\n")
        with pytest.raises(AssertionError, match="inside a function"):
            test_imports_point_down_and_none_hides_in_a_function("jaxfne.engine._zz_upward_probe")
    finally:
        fake.unlink()
