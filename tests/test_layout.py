"""The architecture in the import graph: core -> defenses -> adaptive, never backwards."""

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
LAYERS = ["core", "defenses", "adaptive"]  # each may import only from layers before it


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("layer", LAYERS)
def test_dependencies_run_one_way(layer):
    forbidden = set(LAYERS[LAYERS.index(layer) + 1:])
    for path in (REPO / layer).rglob("*.py"):
        bad = _imports(path) & forbidden
        assert not bad, f"{path.relative_to(REPO)} imports {bad}, against the layering"


@pytest.mark.parametrize("layer", LAYERS)
def test_every_code_folder_is_a_package(layer):
    """A folder of modules without __init__.py is dropped from wheels by setuptools."""
    for folder in {p.parent for p in (REPO / layer).rglob("*.py")}:
        assert (folder / "__init__.py").is_file(), f"{folder.relative_to(REPO)} lacks __init__.py"
