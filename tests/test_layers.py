"""The layers of the package, kept honest: every import (function-local ones too) is checked against them."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
PACKAGE = ROOT / "src" / "compressbench"

# (modules under this prefix, may not import modules under these prefixes)
FORBIDDEN = [
    ("compressbench.measure", ("compressbench.techniques", "compressbench.recipes", "compressbench.runner")),
    ("compressbench.runtime", ("compressbench.techniques", "compressbench.measure", "compressbench.runner")),
    ("compressbench.data", ("compressbench.models", "compressbench.training", "compressbench.techniques")),
    ("compressbench.models", ("compressbench.training", "compressbench.techniques", "compressbench.runner")),
    ("compressbench.techniques", ("compressbench.runner", "compressbench.reporting", "compressbench.api")),
    ("compressbench.artifacts", ("compressbench.techniques", "compressbench.runtime", "compressbench.measure")),
    ("compressbench.results", ("compressbench.",)),
    ("compressbench.store", ("compressbench.techniques", "compressbench.runner", "compressbench.measure")),
    ("compressbench.runner", ("compressbench.reporting", "compressbench.api")),
]
# The report reads stored results only: its own package, the store and its types.
REPORT_MAY_IMPORT = ("compressbench.reporting", "compressbench.store", "compressbench.errors")


def imports_of(path: Path) -> set[str]:
    """Every compressbench module a file imports, anywhere in it (a name imported from a package counts as that
    package, since `from compressbench import cli` and `import compressbench.cli` are the same dependency)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names if node.module == "compressbench"}
    return {name for name in found if name == "compressbench" or name.startswith("compressbench.")}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


SOURCES = {module_name(path): imports_of(path) for path in sorted(PACKAGE.rglob("*.py"))}


def under(name: str, prefix: str) -> bool:
    return name == prefix.rstrip(".") or name.startswith(prefix if prefix.endswith(".") else prefix + ".")


@pytest.mark.parametrize(("layer", "forbidden"), FORBIDDEN, ids=[layer for layer, _ in FORBIDDEN])
def test_a_layer_imports_nothing_above_it(layer, forbidden):
    breaches = [
        f"{module} imports {target}"
        for module, targets in SOURCES.items()
        if under(module, layer)
        for target in targets
        if any(under(target, prefix) for prefix in forbidden)
    ]
    assert not breaches


def test_the_report_reads_only_stored_results():
    breaches = [
        f"{module} imports {target}"
        for module, targets in SOURCES.items()
        if under(module, "compressbench.reporting")
        for target in targets
        if not any(under(target, allowed) for allowed in REPORT_MAY_IMPORT)
    ]
    assert not breaches


def test_nothing_imports_the_cli():
    assert not [module for module, targets in SOURCES.items() if "compressbench.cli" in targets]


@pytest.mark.parametrize("path", [PACKAGE / "cli.py", *sorted((ROOT / "benchmarks").glob("*.py"))], ids=str)
def test_the_cli_and_the_benchmarks_use_only_the_public_api(path):
    assert imports_of(path) <= {"compressbench"} | {f"compressbench.{name}" for name in public_names()}


def public_names() -> set[str]:
    import compressbench

    return set(compressbench.__all__) | {"__version__"}
