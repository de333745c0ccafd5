"""The layers of the package, kept honest: every module belongs to one declared layer and imports nothing above it.

Every import is read: absolute and relative, at module level, inside functions and under TYPE_CHECKING. A rule whose
prefix matches no module fails (a rename cannot silently empty it), and mutation tests write a forbidden import, a
cycle and a renamed package into a copy of the package to prove each check bites.
"""

import ast
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
PACKAGE = ROOT / "src" / "compressbench"

# Top to bottom: a module may import its own layer and the layers below it, never one above.
LAYERS = [
    ("cli", ("compressbench.cli",)),
    ("api", ("compressbench", "compressbench.api", "compressbench.bench")),
    ("workflows", ("compressbench.workflows",)),
    ("reporting", ("compressbench.reporting",)),
    ("runner", ("compressbench.runner",)),
    ("recipes", ("compressbench.recipes", "compressbench.techniques", "compressbench.prefixes")),
    ("measuring and training", ("compressbench.measure", "compressbench.training")),
    ("runtimes", ("compressbench.runtime",)),
    ("intake", ("compressbench.intake",)),
    ("models", ("compressbench.models", "compressbench.weights")),
    ("data", ("compressbench.data",)),
    ("ranking", ("compressbench.ranking",)),
    (
        "foundation",
        (
            "compressbench.artifacts",
            "compressbench.results",
            "compressbench.store",
            "compressbench.cache",
            "compressbench.registry",
            "compressbench.errors",
            "compressbench.files",
            "compressbench.hashing",
            "compressbench.imports",
            "compressbench.machine_lock",
            "compressbench.modes",
            "compressbench.progress",
            "compressbench.version",
        ),
    ),  # fmt: skip
]
# Rules within a layer: (modules under this prefix, may not import modules under these prefixes).
FORBIDDEN = [
    ("compressbench.measure", ("compressbench.training",)),  # measurement never trains
    ("compressbench.artifacts", ("compressbench.results", "compressbench.store", "compressbench.cache")),
    ("compressbench.results", ("compressbench.",)),
]
# The report reads stored results only: its own package, the store, the ranking rule and the result types.
REPORT_MAY_IMPORT = ("compressbench.reporting", "compressbench.ranking", "compressbench.store", "compressbench.results",
                     "compressbench.errors")  # fmt: skip


def module_name(path: Path, package: Path) -> str:
    parts = path.relative_to(package.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def read_imports(package: Path) -> dict[str, set[str]]:
    """Every module of the package and the package modules it imports, anywhere in it. `from a.b import c` counts
    as a dependency on the module a.b.c when there is one, else on a.b; relative imports are resolved."""
    paths = {module_name(path, package): path for path in sorted(package.rglob("*.py"))}
    graph = {}
    for name, path in paths.items():
        here = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
        found = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    base = ".".join([*here[: len(here) - node.level + 1], *([node.module] if node.module else [])])
                for alias in node.names:
                    found.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in paths else base)
        graph[name] = {t for t in found if t != name and (t == package.name or t.startswith(package.name + "."))}
    return graph


def under(name: str, prefix: str) -> bool:
    return name == prefix.rstrip(".") or name.startswith(prefix if prefix.endswith(".") else prefix + ".")


def layer_of(name: str) -> int | None:
    """The index of the layer whose longest prefix matches `name` (the root package matches only itself)."""
    matches = [(len(prefix), index) for index, (_, prefixes) in enumerate(LAYERS) for prefix in prefixes
               if name == prefix or (prefix != "compressbench" and under(name, prefix))]  # fmt: skip
    return max(matches)[1] if matches else None


def unplaced(graph: dict[str, set[str]]) -> list[str]:
    return [name for name in graph if layer_of(name) is None]


def empty_rules(graph: dict[str, set[str]]) -> list[str]:
    prefixes = [p for _, ps in LAYERS for p in ps] + [p for p, _ in FORBIDDEN] + list(REPORT_MAY_IMPORT)
    return [prefix for prefix in prefixes if not any(name == prefix or under(name, prefix) for name in graph)]


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    return [f"{module} ({LAYERS[layer_of(module)][0]}) imports {target} ({LAYERS[layer_of(target)][0]})"
            for module, targets in graph.items() for target in targets
            if layer_of(module) is not None and layer_of(target) is not None
            and layer_of(target) < layer_of(module)]  # fmt: skip


def forbidden_imports(graph: dict[str, set[str]]) -> list[str]:
    breaches = [f"{module} imports {target}" for layer, forbidden in FORBIDDEN
                for module, targets in graph.items() if under(module, layer)
                for target in targets if any(under(target, prefix) for prefix in forbidden)]  # fmt: skip
    breaches += [f"{module} (the report) imports {target}" for module, targets in graph.items()
                 if under(module, "compressbench.reporting")
                 for target in targets if not any(under(target, allowed) for allowed in REPORT_MAY_IMPORT)]  # fmt: skip
    return breaches


def unit(name: str) -> str:
    """A top-level package or module: a package's own modules may import each other both ways (a registry in its
    `__init__` that its plug-in modules register with), so cycles are looked for between units."""
    return ".".join(name.split(".")[:2])


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    edges: dict[str, set[str]] = {}
    for module, targets in graph.items():
        edges.setdefault(unit(module), set()).update(unit(t) for t in targets if unit(t) != unit(module))
    found, state = [], {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = "open"
        for target in sorted(edges.get(node, ())):
            if state.get(target) == "open":
                found.append([*path[path.index(target) :], target])
            elif target not in state:
                visit(target, [*path, target])
        state[node] = "done"

    for node in sorted(edges):
        if node not in state:
            visit(node, [node])
    return found


GRAPH = read_imports(PACKAGE)


def test_every_module_belongs_to_a_declared_layer():
    assert not unplaced(GRAPH)


def test_every_rule_names_modules_that_exist():
    assert not empty_rules(GRAPH)


def test_no_module_imports_a_layer_above_its_own():
    assert not upward_imports(GRAPH)


def test_the_rules_within_a_layer_hold_and_the_report_reads_only_stored_results():
    assert not forbidden_imports(GRAPH)


def test_there_is_no_import_cycle_between_packages():
    assert not cycles(GRAPH)


def test_nothing_imports_the_cli():
    assert not [module for module, targets in GRAPH.items() if "compressbench.cli" in targets]


@pytest.fixture
def copy_of_package(tmp_path) -> Path:
    copy = tmp_path / "compressbench"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("baselines", "__pycache__", "*.yaml"))
    return copy


def test_a_forbidden_function_local_relative_import_is_caught(copy_of_package):
    accuracy = copy_of_package / "measure" / "accuracy.py"
    accuracy.write_text(accuracy.read_text() + "\n\ndef _sneaky():\n    from ..techniques import base\n")
    assert upward_imports(read_imports(copy_of_package)) == [
        "compressbench.measure.accuracy (measuring and training) imports compressbench.techniques.base (recipes)"
    ]


def test_a_report_reaching_for_a_runtime_is_caught(copy_of_package):
    write = copy_of_package / "reporting" / "write.py"
    write.write_text(write.read_text() + "\n\ndef _sneaky():\n    import compressbench.runtime\n")
    assert forbidden_imports(read_imports(copy_of_package)) == [
        "compressbench.reporting.write (the report) imports compressbench.runtime"
    ]


def test_a_cycle_within_a_layer_is_caught(copy_of_package):
    cache, store = copy_of_package / "cache.py", copy_of_package / "store.py"
    cache.write_text(cache.read_text() + "\n\nif False:\n    from compressbench.store import Store\n")
    store.write_text(store.read_text() + "\n\nif False:\n    from compressbench.cache import Cache\n")
    cycle = ["compressbench.cache", "compressbench.store", "compressbench.cache"]
    assert cycles(read_imports(copy_of_package)) == [cycle]


def test_a_renamed_package_leaves_a_rule_empty_and_its_modules_unplaced(copy_of_package):
    (copy_of_package / "ranking").rename(copy_of_package / "choosing")
    graph = read_imports(copy_of_package)
    assert "compressbench.ranking" in empty_rules(graph)
    assert "compressbench.choosing.rule" in unplaced(graph)


def public_names() -> set[str]:
    import compressbench

    return set(compressbench.__all__) | {"__version__"}


@pytest.mark.parametrize("path", [PACKAGE / "cli.py", *sorted((ROOT / "benchmarks").glob("*.py"))], ids=str)
def test_the_cli_uses_only_the_public_api_and_the_benchmarks_also_the_unstable_bench_module(path):
    allowed = {"compressbench"} | {f"compressbench.{name}" for name in public_names()}
    if path.parent.name == "benchmarks":
        allowed |= {"compressbench.bench"} | {f"compressbench.bench.{name}" for name in _bench_names()}
    imported = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            imported |= {alias.name for alias in node.names if alias.name.startswith("compressbench")}
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("compressbench"):
            imported |= {f"{node.module}.{alias.name}" if node.module == "compressbench" else node.module
                         for alias in node.names}  # fmt: skip
    assert imported <= allowed


def test_the_public_api_has_no_names_that_exist_only_for_the_benchmarks():
    assert not public_names() & set(_bench_names())


def _bench_names() -> list[str]:
    import compressbench.bench

    return compressbench.bench.__all__
