"""The architecture in the import graph, module by module, counting imports inside functions
too: data and models (adaptive.core) -> defenses -> attacks -> defended systems -> studies ->
the harness -> reports -> the command line, never backwards, and no import cycle; and only the
two design packages are installed at the top."""

import ast
from pathlib import Path

import pytest
import tomllib

REPO = Path(__file__).resolve().parents[1]
# The layers, lowest first; a module may import from its own package and from packages of lower
# layers. Packages of one layer are independent of each other.
LAYERS = [
    ["adaptive.core"],
    ["defenses"],
    ["adaptive.attacks"],
    ["adaptive.defense"],
    ["adaptive.diagnostics", "adaptive.evaluations"],
    ["adaptive.sweep"],
    ["adaptive.report"],
    ["adaptive.auditing"],
    ["adaptive"],  # the public face: lazy exports of everything below
    ["adaptive.cli"],
]
PACKAGES = [p for layer in LAYERS for p in layer]


def _package_of(module: str) -> str | None:
    """The most specific package of LAYERS that ``module`` belongs to."""
    best = None
    for name in PACKAGES:
        if (module == name or module.startswith(name + ".")) and (
                best is None or len(name) > len(best)):
            best = name
    return best


def _rank(package: str) -> int:
    return next(i for i, layer in enumerate(LAYERS) if package in layer)


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    out = {}
    for top in ("adaptive", "defenses"):
        for path in sorted((REPO / top).rglob("*.py")):
            out[_module_name(path)] = path
    return out


MODULES = _modules()


def _imports(path: Path, module_level_only: bool = False) -> set[str]:
    """Every module ``path`` imports (``from pkg import sub`` counts as ``pkg.sub`` where
    that is a module), anywhere in the file or only at module level."""
    tree = ast.parse(path.read_text())
    if module_level_only:
        nodes = [sub for node in tree.body
                 if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
                 for sub in ast.walk(node)]
    else:
        nodes = list(ast.walk(tree))
    names = set()
    for sub in nodes:
        if isinstance(sub, ast.Import):
            names |= {a.name for a in sub.names}
        elif isinstance(sub, ast.ImportFrom) and sub.module and sub.level == 0:
            for alias in sub.names:
                full = f"{sub.module}.{alias.name}"
                names.add(full if full in MODULES else sub.module)
    return names


@pytest.mark.parametrize("package", PACKAGES)
def test_dependencies_run_one_way(package):
    for module, path in MODULES.items():
        if _package_of(module) != package:
            continue
        for imported in _imports(path):
            target = _package_of(imported)
            if target is None or target == package:
                continue
            assert _rank(target) < _rank(package), \
                f"{module} imports {imported} ({target}), against the layering"


def _cycles(graph: dict[str, set[str]]) -> list[str]:
    """The import cycles of ``graph`` (module -> modules it imports), one per back edge."""
    state: dict[str, int] = {}
    found: list[str] = []

    def visit(m, stack):
        state[m] = 1
        for n in sorted(graph[m]):
            if state.get(n) == 1:
                found.append(" -> ".join(stack[stack.index(n):] + [n]))
            elif n not in state:
                visit(n, stack + [n])
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m, [m])
    return found


def test_no_import_cycle_at_module_level():
    """No module reaches itself through module-level imports (a cycle there fails or
    half-initialises depending on which module is imported first)."""
    graph = {m: {i for i in _imports(p, module_level_only=True) if i in MODULES and i != m}
             for m, p in MODULES.items()}
    assert not _cycles(graph), "import cycles: " + "; ".join(_cycles(graph))


def test_no_import_cycle_even_inside_functions():
    """Counting the imports inside functions too, no module of one package imports itself
    back (adaptive.core's executor and zoo once did, through function-level imports)."""
    graph = {m: {i for i in _imports(p) if i in MODULES and i != m
                 and _package_of(i) == _package_of(m) and not MODULES[i].name == "__init__.py"}
             for m, p in MODULES.items() if MODULES[m].name != "__init__.py"}
    assert not _cycles(graph), "import cycles: " + "; ".join(_cycles(graph))


@pytest.mark.parametrize("package", PACKAGES)
def test_every_code_folder_is_a_package(package):
    """A folder of modules without __init__.py is dropped from wheels by setuptools."""
    folder = REPO.joinpath(*package.split("."))
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


def test_the_top_of_adaptive_holds_only_packages():
    """Modules are grouped by what they are: nothing loose at the top but the package's face."""
    loose = sorted(p.name for p in (REPO / "adaptive").glob("*.py") if p.name != "__init__.py")
    assert not loose, f"loose modules at the top of adaptive/: {loose}"


MAX_FUNCTION_LINES = 80


def test_no_function_is_longer_than_80_lines():
    """Long functions hide their steps; split them into named ones."""
    long = []
    for module, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    long.append(f"{module}.{node.name} ({lines} lines)")
    assert not long, "functions over 80 lines: " + ", ".join(long)
