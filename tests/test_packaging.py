"""The declared dependencies are what the package imports at run time: no more, no less."""

import ast
import functools
import importlib.metadata
import sys
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

REPO = Path(__file__).resolve().parents[1]
PACKAGE_DIRS = ("guides", "models", "train")


def _imports() -> dict[str, set[str]]:
    """Every third-party top-level module the package's source imports (at any depth), with the files."""
    found: dict[str, set[str]] = {}
    for root in PACKAGE_DIRS:
        for path in (REPO / root).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                else:
                    continue
                for name in names:
                    top = name.split(".")[0]
                    if top not in sys.stdlib_module_names and top != "infodropout":
                        found.setdefault(top, set()).add(str(path.relative_to(REPO)))
    return found


@functools.cache
def _installed() -> dict[str, list[str]]:
    return importlib.metadata.packages_distributions()


def _distribution(module: str) -> str:
    """The distribution that installs ``module`` (its own name where it is not installed here)."""
    return canonicalize_name(_installed().get(module, [module])[0])


def _declared():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    core = [Requirement(r) for r in project["dependencies"]]
    extras = {k: [Requirement(r) for r in v] for k, v in project["optional-dependencies"].items() if k != "test"}
    return core, extras


def test_the_core_dependencies_are_the_modules_the_package_imports():
    core, extras = _declared()
    imported = {_distribution(m): files for m, files in _imports().items()}
    optional = {canonicalize_name(r.name) for reqs in extras.values() for r in reqs}
    declared = {canonicalize_name(r.name) for r in core}  # on some Python (a marker) or every one
    active = {canonicalize_name(r.name) for r in core if r.marker is None or r.marker.evaluate()}
    missing = {d: sorted(f) for d, f in imported.items() if d not in declared and d not in optional}
    assert not missing, f"imported but not declared in [project] dependencies (or an extra): {missing}"
    unused = active - set(imported)
    assert not unused, f"declared in [project] dependencies but imported nowhere in the package: {sorted(unused)}"


def test_scikit_learn_is_a_runtime_dependency_for_the_bundled_digits():
    core, _ = _declared()
    assert "scikit-learn" in {canonicalize_name(r.name) for r in core}
    assert "train/data/registry.py" in _imports()["sklearn"]


def test_a_dependency_for_another_python_is_declared_with_its_marker():
    core, _ = _declared()
    tomli = [r for r in core if r.name == "tomli"]
    assert tomli and tomli[0].marker is not None and "python_version" in str(tomli[0].marker)
    assert "train/config.py" in _imports()["tomli"]  # the fallback for Python 3.10


def test_every_package_of_the_source_is_installed():
    """pyproject's package list holds every folder of guides/, models/ and train/ that is a package, so a
    non-editable install misses none of them."""
    declared = set(tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = set()
    for root in PACKAGE_DIRS:
        for init in (REPO / root).rglob("__init__.py"):
            parts = init.parent.relative_to(REPO / root).parts
            found.add(".".join(("infodropout", root, *parts)))
    assert found == declared
