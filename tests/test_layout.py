"""The architecture in the import graph, module by module: adaptive.core -> defenses -> the rest
of adaptive, never backwards; and only the two design packages are installed at the top."""

import ast
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# (layer, its folder): each module may import only from its own layer and the layers before it
LAYERS = [("adaptive.core", REPO / "adaptive" / "core"), ("defenses", REPO / "defenses"),
          ("adaptive", REPO / "adaptive")]


def _layer_of(module: str) -> int | None:
    for i, (name, _) in enumerate(LAYERS):
        if module == name or module.startswith(name + "."):
            return i
    return None


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """Modules imported at module level (not inside functions: lazy imports are allowed
    to reach forward, e.g. a CLI command importing its harness on demand)."""
    tree = ast.parse(path.read_text())
    names = set()
    for node in tree.body:
        for sub in ast.walk(node) if not isinstance(node, (ast.FunctionDef,
                                                            ast.AsyncFunctionDef,
                                                            ast.ClassDef)) else []:
            if isinstance(sub, ast.Import):
                names |= {a.name for a in sub.names}
            elif isinstance(sub, ast.ImportFrom) and sub.module and sub.level == 0:
                names.add(sub.module)
    return names


def _modules():
    for path in sorted({p for _, folder in LAYERS for p in folder.rglob("*.py")}):
        yield path, _module_name(path)


@pytest.mark.parametrize("layer", [name for name, _ in LAYERS])
def test_dependencies_run_one_way(layer):
    index = [name for name, _ in LAYERS].index(layer)
    for path, module in _modules():
        if _layer_of(module) != index:
            continue
        for imported in _imports(path):
            target = _layer_of(imported)
            assert target is None or target <= index, \
                f"{module} imports {imported} at module level, against the layering"


@pytest.mark.parametrize("layer", [name for name, _ in LAYERS])
def test_every_code_folder_is_a_package(layer):
    """A folder of modules without __init__.py is dropped from wheels by setuptools."""
    folder = dict(LAYERS)[layer]
    for sub in {p.parent for p in folder.rglob("*.py")}:
        assert (sub / "__init__.py").is_file(), f"{sub.relative_to(REPO)} lacks __init__.py"


def test_only_adaptive_and_defenses_are_installed_at_the_top():
    config = tomllib.loads((REPO / "pyproject.toml").read_text())
    include = config["tool"]["setuptools"]["packages"]["find"]["include"]
    assert sorted({pattern.split(".")[0].rstrip("*") for pattern in include}) == \
        ["adaptive", "defenses"]


def test_the_foundation_is_not_a_top_level_package():
    import importlib.util

    assert importlib.util.find_spec("adaptive.core") is not None
    assert importlib.util.find_spec("core") is None, "a top-level 'core' package is importable"
