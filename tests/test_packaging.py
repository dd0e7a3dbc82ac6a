"""What the code imports is what setup.cfg declares: a plain ``pip install .`` runs ingest and trainer, and the
``bench`` extra runs the tools (a package that is only there by luck, pulled in by another, is a bug)."""

from __future__ import annotations

import ast
import importlib.metadata
import pathlib
import re
import sys

import pytest
from packaging.requirements import Requirement
from setuptools.config.setupcfg import read_configuration

ROOT = pathlib.Path(__file__).resolve().parent.parent
OWN = {"store", "ingest", "trainer", "tools", "tests"}
# Keras backends other than TensorFlow: a user's choice (KERAS_BACKEND), imported only under that backend.
BACKENDS = {"jax", "torch"}


def _declared(requirements) -> set[str]:
    """Distribution names, counting ``dask[distributed]`` as declaring ``distributed`` too."""
    parsed = [Requirement(r) for r in requirements]
    return {_norm(r.name) for r in parsed} | {_norm(e) for r in parsed for e in r.extras}


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _guarded(tree: ast.AST) -> set[int]:
    """Imports inside ``try: ... except ImportError`` (optional by design: the code works without them)."""
    guarded = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Try) and any(_catches_import_error(h.type) for h in node.handlers):
            guarded |= {id(n) for stmt in node.body for n in ast.walk(stmt)}
    return guarded


def _catches_import_error(kind) -> bool:
    names = kind.elts if isinstance(kind, ast.Tuple) else [kind]
    return any(isinstance(n, ast.Name) and n.id in ("ImportError", "ModuleNotFoundError") for n in names)


def _imports(package: str) -> dict[str, str]:
    """Third-party top-level modules imported anywhere in ``package`` (unless guarded) -> one file importing it."""
    found = {}
    for path in sorted((ROOT / package).rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        guarded = _guarded(tree)
        for node in ast.walk(tree):
            if id(node) in guarded:
                continue
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top not in sys.stdlib_module_names and top not in OWN:
                    found.setdefault(top, str(path.relative_to(ROOT)))
    return found


@pytest.fixture(scope="module")
def options():
    return read_configuration(str(ROOT / "setup.cfg"))["options"]


@pytest.mark.parametrize("package, extras", [("store", ["cloud"]), ("ingest", ["cloud", "dask"]),
                                             ("trainer", []), ("tools", ["cloud", "dask", "bench"])])
def test_every_import_is_declared(options, package, extras):
    declared = _declared(options["install_requires"])
    for extra in extras:
        declared |= _declared(options["extras_require"][extra])
    distributions = importlib.metadata.packages_distributions()
    undeclared = {module: where for module, where in _imports(package).items() if module not in BACKENDS
                  and not {_norm(d) for d in distributions.get(module, [module])} & declared}
    assert not undeclared, f"imported but not declared in setup.cfg: {undeclared}"


def test_the_test_extra_includes_the_bench_extra(options):
    extras = options["extras_require"]
    assert _declared(extras["bench"]) <= _declared(extras["test"])


@pytest.mark.parametrize("package", ["ingest", "trainer", "tools"])
def test_other_packages_use_only_the_store_api(package):
    """ingest, trainer and tools import only names that ``store/__init__.py`` exports (issue 13), so the store's
    modules can change behind its API; tests may import the internals they test."""
    import store

    wrong = []
    for path in sorted((ROOT / package).rglob("*.py")):
        where = path.relative_to(ROOT)
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").split(".")[0] == "store":
                if node.module != "store":
                    wrong.append(f"{where}:{node.lineno}: from {node.module} import ... (import from store)")
                wrong += [f"{where}:{node.lineno}: {a.name} is not in store.__all__" for a in node.names
                          if a.name not in store.__all__]
            elif isinstance(node, ast.Import):
                wrong += [f"{where}:{node.lineno}: import {a.name} (import names from store)" for a in node.names
                          if a.name.split(".")[0] == "store"]
    assert not wrong, "\n".join(wrong)
    assert all(hasattr(store, name) for name in store.__all__)
