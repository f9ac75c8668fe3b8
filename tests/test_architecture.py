"""The package's import structure: one-way layers, no cycles, no private reach-ins.

The rules (docs/architecture.md draws them):

* module-level imports only point to the same or a lower layer
  (core <- api <- structure / sensitivity / compat <- export <- cli);
* module-level imports form no cycle;
* no module imports a ``_private`` name from another module, or uses one as
  ``module._name``; a private module of a subpackage is imported only from
  inside that subpackage (shared internals live in top-level ``tfprune/_x.py``
  modules, with public names).

A function may import upward lazily, at its call site (``strip(shrink=True)``
reaching structure, the latency fill reaching export): that is how a lower
layer uses a higher one without a cycle, so lazy imports are exempt from the
layer and cycle rules but not from the private-name rule.

The walk is static (``ast``), so it needs no import of TensorFlow.
"""

import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent / "tfprune"

# Lowest layer first. A module's layer is that of the longest matching prefix.
LAYERS = {
    "core": 0,        # leaf plumbing, schedules, criteria, granularities, wrappers
    "api": 1,         # prune/strip, callbacks, reporting, scoring, recipes
    "analysis": 2,    # structure, sensitivity, compat
    "export": 3,
    "cli": 4,
    "package": 5,     # tfprune/__init__.py re-exports everything
}
PREFIXES = {
    "tfprune": "package",
    "tfprune.api": "api",
    "tfprune.callbacks": "api",
    "tfprune.reporting": "api",
    "tfprune.scoring": "api",
    "tfprune.recipes": "api",
    "tfprune.finetune": "api",
    "tfprune.lottery": "api",
    "tfprune.distill": "api",
    "tfprune.calibration": "api",
    "tfprune.structure": "analysis",
    "tfprune.sensitivity": "analysis",
    "tfprune.compat": "analysis",
    "tfprune.export": "export",
    "tfprune.hardware": "export",
    "tfprune.cli": "cli",
}


def _module_name(path):
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules():
    return {_module_name(p): p for p in sorted(ROOT.rglob("*.py"))}


MODULES = _modules()


def _layer(module):
    best = None
    for prefix in PREFIXES:
        if module == prefix or module.startswith(prefix + "."):
            if best is None or len(prefix) > len(best):
                best = prefix
    if best == "tfprune" and module != "tfprune":
        return LAYERS["core"]       # every other top-level module is core
    return LAYERS[PREFIXES[best]]


def _package(module, path):
    return module if path.name == "__init__.py" else module.rpartition(".")[0]


def _resolve(node, module, path):
    """The tfprune modules (and private names) one import statement names."""
    found = []     # (target module, imported name or None)
    if isinstance(node, ast.Import):
        for alias in node.names:
            if alias.name.split(".")[0] == "tfprune":
                found.append((alias.name, None))
        return found
    base = node.module or ""
    if node.level:
        pkg = _package(module, path).split(".")
        pkg = pkg[:len(pkg) - node.level + 1]
        base = ".".join(pkg + ([base] if base else []))
    if base.split(".")[0] != "tfprune":
        return found
    for alias in node.names:
        sub = f"{base}.{alias.name}"
        found.append((sub, None) if sub in MODULES else (base, alias.name))
    return found


class _Imports(ast.NodeVisitor):
    """Every tfprune import of one module, with whether it runs at import time."""

    def __init__(self, module, path):
        self.module, self.path = module, path
        self.depth = 0
        self.edges = []          # (target, name, lazy, lineno)
        self.aliases = {}        # local name -> tfprune module
        self.attributes = []     # (module, attribute, lineno)

    def _function(self, node):
        self.depth += 1
        self.generic_visit(node)
        self.depth -= 1

    visit_FunctionDef = visit_AsyncFunctionDef = visit_Lambda = _function

    def _import(self, node):
        for target, name in _resolve(node, self.module, self.path):
            self.edges.append((target, name, self.depth > 0, node.lineno))
        for alias in node.names:
            local = alias.asname or alias.name.split(".")[0]
            if isinstance(node, ast.ImportFrom):
                targets = _resolve(node, self.module, self.path)
                for target, name in targets:
                    if name is None and target.endswith("." + alias.name):
                        self.aliases[local] = target
            elif alias.asname and alias.name in MODULES:
                self.aliases[local] = alias.name

    visit_Import = visit_ImportFrom = _import

    def visit_Attribute(self, node):
        if isinstance(node.value, ast.Name) and node.attr.startswith("_") \
                and not node.attr.startswith("__"):
            self.attributes.append((node.value.id, node.attr, node.lineno))
        self.generic_visit(node)


def _scan():
    scans = {}
    for module, path in MODULES.items():
        visitor = _Imports(module, path)
        visitor.visit(ast.parse(path.read_text(), str(path)))
        scans[module] = visitor
    return scans


SCANS = _scan()


def _where(module, lineno):
    return f"{MODULES[module].relative_to(ROOT.parent)}:{lineno}"


def test_the_walk_sees_the_package():
    assert {"tfprune.api", "tfprune.structure.surgery", "tfprune.export"} <= set(MODULES)
    assert any(edges for edges in (s.edges for s in SCANS.values()))


def test_module_level_imports_point_down():
    bad = []
    for module, scan in SCANS.items():
        for target, _, lazy, lineno in scan.edges:
            if not lazy and target in MODULES and _layer(target) > _layer(module):
                bad.append(f"{_where(module, lineno)}: {module} imports {target} (a higher layer)")
    assert not bad, "\n".join(bad)


def _cycles(graph):
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
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


def test_no_import_cycles():
    graph = {}
    for module, scan in SCANS.items():
        for target, _, lazy, _ in scan.edges:
            # Importing a submodule initialises its parent package first;
            # that is Python's doing, not an edge of ours.
            if not lazy and target in MODULES and target != module \
                    and not module.startswith(target + "."):
                graph.setdefault(module, set()).add(target)
    assert not _cycles(graph), f"import cycles: {_cycles(graph)}"


def test_no_private_names_across_modules():
    bad = []
    for module, scan in SCANS.items():
        package = _package(module, MODULES[module])
        for target, name, _, lineno in scan.edges:
            if name is not None and name.startswith("_") and not name.startswith("__"):
                bad.append(f"{_where(module, lineno)}: imports {name} from {target}")
            leaf = target.rsplit(".", 1)
            private_module = len(leaf) == 2 and leaf[1].startswith("_") and target in MODULES
            if private_module and leaf[0] != "tfprune" and not (
                    package == leaf[0] or package.startswith(leaf[0] + ".")):
                bad.append(f"{_where(module, lineno)}: imports {target}, private to {leaf[0]}")
        for local, attribute, lineno in scan.attributes:
            if local in scan.aliases:
                bad.append(f"{_where(module, lineno)}: uses {scan.aliases[local]}.{attribute}")
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize("module", sorted(MODULES))
def test_modules_stay_small(module):
    """One job per module: split a module before it passes ~350 lines."""
    lines = MODULES[module].read_text().count("\n")
    assert lines <= 380, f"{module} has {lines} lines"


def test_no_function_shadows_its_module():
    """``tp.structure.graph`` must not be both a function and a module."""
    bad = []
    for module, path in MODULES.items():
        if path.name != "__init__.py":
            continue
        for target, name, lazy, lineno in SCANS[module].edges:
            if name is not None and not lazy and f"{module}.{name}" in MODULES:
                bad.append(f"{_where(module, lineno)}: {name} is a function and a module")
    assert not bad, "\n".join(bad)
