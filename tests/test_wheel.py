"""The package as a wheel installs it: built from a copy of the repo, installed into a fresh venv, run outside the repo.

An editable install reads everything from src/, so it hides files the wheel forgets (the built-in recipe YAMLs).
The fresh venv borrows the third-party dependencies of the running environment through a .pth path line, which adds
that site-packages to sys.path without running the .pth files inside it, so the editable install cannot leak in.
"""

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
BUILT_IN_RECIPES = {"deep-compression", "distill+prune+quant", "distill+quant", "prune+quant"}
NOT_SOURCE = shutil.ignore_patterns(
    ".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", ".pytest_cache", ".ruff_cache", "runs"
)


def _env(tmp: Path) -> dict[str, str]:
    """Nothing from the calling environment may put the repo on sys.path or send pip to the network."""
    env = {k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV"}}
    env.update(
        PYTHONNOUSERSITE="1",
        PIP_NO_INDEX="1",
        PIP_DISABLE_PIP_VERSION_CHECK="1",
        COMPRESSBENCH_CACHE=str(tmp / "cache"),
        COMPRESSBENCH_PROGRESS="off",
    )
    return env


def _run(args: list, cwd: Path, env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess:
    result = subprocess.run([str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"{args} failed:\n{result.stdout}\n{result.stderr}"
    return result


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> dict:
    """Build the wheel from a copy of the repo (so build/ and egg-info never land in the tree) and install it."""
    tmp = tmp_path_factory.mktemp("wheel")
    env = _env(tmp)
    source = tmp / "source"
    shutil.copytree(REPO, source, ignore=NOT_SOURCE, symlinks=True)
    wheels = tmp / "wheels"
    pip_wheel = ["-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-w", wheels, source]
    _run([sys.executable, *pip_wheel], cwd=tmp, env=env)
    (wheel,) = wheels.glob("compressbench-*.whl")

    venv = tmp / "venv"
    _run([sys.executable, "-m", "venv", venv], cwd=tmp, env=env)
    python = venv / "bin" / "python"
    # Install before the dependencies are visible, so pip never sees (or touches) the running environment's copy.
    _run([python, "-m", "pip", "install", "--no-deps", "--no-index", wheel], cwd=tmp, env=env)
    site = Path(_run([python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"], tmp, env).stdout.strip())
    borrowed = dict.fromkeys(sysconfig.get_path(key) for key in ("purelib", "platlib"))
    (site / "_compressbench_test_deps.pth").write_text("".join(f"{path}\n" for path in borrowed))
    return {"tmp": tmp, "env": env, "wheel": wheel, "venv": venv, "python": python, "site": site, "borrowed": borrowed}


def test_the_wheel_carries_the_built_in_recipe_files(installed):
    names = zipfile.ZipFile(installed["wheel"]).namelist()
    assert {f"compressbench/recipe_files/{name}.yaml" for name in BUILT_IN_RECIPES} <= set(names)


def test_the_fresh_venv_imports_the_installed_package_not_the_source_tree(installed):
    code = "import compressbench, json, sys, torch; print(json.dumps([compressbench.__file__, sys.path]))"
    printed = _run([installed["python"], "-c", code], installed["tmp"], installed["env"]).stdout
    module, path = json.loads(printed)
    assert Path(module).is_relative_to(installed["site"]), module
    leaked = [e for e in path if e and e not in installed["borrowed"] and Path(e).resolve().is_relative_to(REPO)]
    assert not leaked, path


def test_the_installed_cli_lists_the_built_in_recipes(installed):
    result = _run([installed["venv"] / "bin" / "compressbench", "list", "recipes"], installed["tmp"], installed["env"])
    for name in BUILT_IN_RECIPES:
        assert name in result.stdout


def test_a_recipe_file_loads_from_the_installed_package(installed):
    code = "from compressbench.recipes import load_recipe; print(load_recipe('deep-compression').name)"
    result = _run([installed["python"], "-c", code], installed["tmp"], installed["env"])
    assert result.stdout.strip() == "deep-compression"


def test_the_installed_cli_runs_a_tiny_comparison_outside_the_repo(installed):
    tmp = installed["tmp"]
    args = [installed["venv"] / "bin" / "compressbench", "run", "--dataset", "digits", "--model", "mlp"]
    args += ["--recipe", "quant.dynamic", "--epochs", "1", "--repeats", "2", "--warmup", "0.1"]
    args += ["--batch-sizes", "1", "--batch", "1", "--out", tmp / "runs", "--json"]
    result = _run(args, tmp, installed["env"], timeout=300)
    assert json.loads(result.stdout)["recipe"] == "quant.dynamic"
