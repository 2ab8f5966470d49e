"""The package's import graph: layered, without cycles, and no private name borrowed.

Read from the source with ``ast`` (function-level imports included), so a cycle that
only a lazy import hides is still found.
"""

import ast
import pathlib

import pytest

import pymdbn

# The package being tested, a checkout's or an installed wheel's (the wheel's tests run
# away from the source); its benchmark scripts (_bench) are no part of the graph.
ROOT = pathlib.Path(pymdbn.__file__).resolve().parent


def _modules():
    out = {}
    for path in sorted(ROOT.rglob("*.py")):
        parts = path.relative_to(ROOT.parent).with_suffix("").parts
        if "_bench" in parts:
            continue
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


MODULES = _modules()


def _is_package(name):
    return MODULES[name].name == "__init__.py"


def _imports(name):
    """(imported module, imported names or None, line) of every import in ``name``."""
    tree = ast.parse(MODULES[name].read_text(), filename=str(MODULES[name]))
    package = name if _is_package(name) else name.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, None, node.lineno
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[:len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            yield module, [a.name for a in node.names], node.lineno


def _edges(name):
    """Modules of this package that ``name`` imports (a package's own submodules
    excluded: ``pymdbn/x/__init__.py`` may re-export ``pymdbn.x.y``)."""
    out = set()
    for module, names, _ in _imports(name):
        for target in [module] + [f"{module}.{n}" for n in names or ()]:
            if target in MODULES and target != name:
                out.add(target)
    if _is_package(name):
        out = {m for m in out if not m.startswith(name + ".")}
    return out


def _cycle(graph):
    """One cycle of ``graph`` as a list of nodes, or None."""
    state, stack = {}, []

    def visit(v):
        state[v] = 1
        stack.append(v)
        for w in sorted(graph[v]):
            if state.get(w) == 1:
                return stack[stack.index(w):] + [w]
            if w not in state:
                found = visit(w)
                if found:
                    return found
        stack.pop()
        state[v] = 2
        return None

    for v in sorted(graph):
        if v not in state:
            found = visit(v)
            if found:
                return found
    return None


def test_the_graph_sees_imports():
    graph = {m: _edges(m) for m in MODULES}
    assert "pymdbn.io" in graph["pymdbn.models.dbn"]
    assert "pymdbn.backend" in graph["pymdbn.models.rbm"]
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycle():
    graph = {m: _edges(m) for m in MODULES}
    cycle = _cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


# (lower layer, higher layer, the one module of the higher layer it may use)
@pytest.mark.parametrize("low, high, shared", [
    ("pymdbn.io", "pymdbn.models", None),
    ("pymdbn.io", "pymdbn.preprocessing", None),
    ("pymdbn.backend", "pymdbn.models", None),
    # LRP runs the models' forward pass (one copy of it), nothing else of theirs.
    ("pymdbn.lrp", "pymdbn.models", "pymdbn.models.network"),
    ("pymdbn.models", "pymdbn.presets", None),
    ("pymdbn.models", "pymdbn.experiments", None),
    ("pymdbn.models", "pymdbn.cli", None),
    ("pymdbn.data", "pymdbn.models", None),
    ("pymdbn.metrics", "pymdbn.models", None),
])
def test_layers(low, high, shared):
    """A lower layer never imports a higher one, even lazily."""
    offenders = sorted(f"{m} imports {t}" for m in MODULES
                       if m == low or m.startswith(low + ".")
                       for t in _edges(m) if (t == high or t.startswith(high + "."))
                       and t != shared)
    assert not offenders, offenders


def test_no_private_name_across_modules():
    """``from pymdbn.x import _y`` only for modules (``_core``, ``_atomic``...) and
    dunders; a private function or class stays in its module."""
    found = []
    for name in MODULES:
        for module, names, line in _imports(name):
            if not module.startswith("pymdbn") or names is None:
                continue
            for n in names:
                private = n.startswith("_") and not n.startswith("__")
                if private and f"{module}.{n}" not in MODULES and n not in ("_core", "_cuda"):
                    found.append(f"{MODULES[name].relative_to(ROOT.parent)}:{line} "
                                 f"imports {n} from {module}")
    assert not found, found


def test_no_private_attribute_of_another_module():
    """``module._name`` on an imported pymdbn module is a private name borrowed too."""
    found = []
    for name in MODULES:
        tree = ast.parse(MODULES[name].read_text())
        aliases = {}
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("pymdbn"):
                for a in node.names:
                    if f"{node.module}.{a.name}" in MODULES:
                        aliases[a.asname or a.name] = f"{node.module}.{a.name}"
            elif isinstance(node, ast.Import):
                for a in node.names:
                    if a.name.startswith("pymdbn") and a.asname:
                        aliases[a.asname] = a.name
        for node in ast.walk(tree):
            if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                    and node.value.id in aliases and node.attr.startswith("_")
                    and not node.attr.startswith("__")
                    and f"{aliases[node.value.id]}.{node.attr}" not in MODULES):
                found.append(f"{MODULES[name].relative_to(ROOT.parent)}:{node.lineno} "
                             f"uses {node.value.id}.{node.attr}")
    assert not found, found
