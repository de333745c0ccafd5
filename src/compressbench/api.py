"""The verbs of the public API; `compressbench/__init__.py` exposes them and the CLI and benchmarks call only them."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from torch import nn

from compressbench.artifacts import Candidate
from compressbench.cache import Cache, default_cache_dir
from compressbench.data import DataBundle, DatasetConfig, load_dataset
from compressbench.errors import CompressbenchError
from compressbench.measure.compare import MeasureSettings, measure_candidates
from compressbench.models import ModelConfig
from compressbench.results import Metrics, RunResult
from compressbench.runner.drive import Policy, drive
from compressbench.runner.job import JobConfig, make_job, run_job, trained_baseline
from compressbench.store import Run, Store
from compressbench.training import TrainConfig, default_train_config

if TYPE_CHECKING:
    import pandas as pd

    from compressbench.ranking import Recommendation
    from compressbench.recipes import Recipe
    from compressbench.runner.executors import ExecutorSettings
    from compressbench.techniques import Technique
    from compressbench.techniques.sensitivity import SensitivityCurves
    from compressbench.workflows.study import StudySpec


def compress(
    dataset: str | DatasetConfig,
    model: str | ModelConfig,
    recipe: str | dict | Recipe,
    *,
    seed: int = 0,
    training: TrainConfig | None = None,
    measure: MeasureSettings | None = None,
    cache: Cache | None = None,
    store: Path | str | None = None,
    measure_every_step: bool = False,
    retrain_baselines: bool = False,
) -> RunResult:
    """Train (or reuse) the baseline, apply `recipe`, measure baseline and candidate side by side.

    With `store`, the run is written to that results database (and taken from it when already there with the same
    key). With `measure_every_step`, `result.stages` holds the figures after each step of the recipe. With
    `retrain_baselines`, the baseline is trained afresh (not taken from the cache or the shipped ones) and the run
    is measured again, replacing a stored one.
    """
    job = make_job(dataset, model, recipe, seed=seed, training=training, measure=measure)
    if not store:
        return run_job(job, _cache(cache, retrain_baselines), measure_every_step=measure_every_step)
    # Failures are raised, not stored, and run again next time; a stored run counts unless the baseline is to be
    # retrained or the stages are asked for and it has none.
    policy = Policy(
        rerun_failed=True,
        store_failures=False,
        reuse=lambda run: not retrain_baselines and (bool(run.result.stages) or not measure_every_step),
    )
    outcome = drive([job], Store(store), _cache(cache, retrain_baselines), policy,
                    measure_every_step=measure_every_step)[0]  # fmt: skip
    if outcome.result is None:
        raise outcome.exception or CompressbenchError(outcome.error or f"{job.recipe['name']} failed")
    return outcome.result


@dataclass(frozen=True)
class Baseline:
    """A trained zoo (or user) model with the data it was trained on, as every job of that model starts from."""

    module: nn.Module
    data: DataBundle
    job: JobConfig
    meta: dict[str, Any]


def baseline(
    dataset: str | DatasetConfig,
    model: str | ModelConfig,
    *,
    seed: int = 0,
    training: TrainConfig | None = None,
    cache: Cache | None = None,
    retrain_baselines: bool = False,
) -> Baseline:
    """The trained baseline `compress` would use (trained once, then taken from the cache or the shipped ones)."""
    job = make_job(dataset, model, "none", seed=seed, training=training)
    data = load_dataset(job.dataset, seed)
    module, meta = trained_baseline(job, data, _cache(cache, retrain_baselines))
    return Baseline(module, data, job, meta)


def _cache(cache: Cache | None, retrain_baselines: bool) -> Cache:
    cache = cache or Cache(default_cache_dir())
    return dataclasses.replace(cache, retrain_baselines=True) if retrain_baselines else cache


def measure_models(
    candidates: Mapping[str, Candidate | nn.Module], data: DataBundle, settings: MeasureSettings | None = None
) -> dict[str, Metrics]:
    """Measure named models side by side (one interleaved latency pass); never trains."""
    wrapped = {name: c if isinstance(c, Candidate) else Candidate(module=c) for name, c in candidates.items()}
    return measure_candidates(wrapped, data, settings or MeasureSettings())


def technique(name: str) -> type[Technique]:
    """The registered technique class for `name` (its `Config` validates the step's options)."""
    from compressbench.techniques import techniques

    return techniques.get(name)


def load_study(path: Path | str) -> StudySpec:
    from compressbench.workflows.study import load_study as _load_study

    return _load_study(path)


def run_study(
    spec: StudySpec | Path | str,
    out: Path | str,
    cache: Cache | None = None,
    retrain_baselines: bool = False,
    executor: ExecutorSettings | None = None,
) -> dict[str, int]:
    """Run a study file; every run lands in `out/results.db`; runs already stored are skipped. With
    `retrain_baselines` (or the study's own `retrain_baselines: true`), the baselines of the jobs that run are trained
    afresh rather than taken from the cache or the shipped ones. `executor` runs the jobs on Ray instead of here."""
    from compressbench.workflows.study import load_study as _load_study
    from compressbench.workflows.study import run_study as _run_study

    spec = spec if not isinstance(spec, Path | str) else _load_study(spec)
    return _run_study(spec, out, _cache(cache, retrain_baselines or spec.retrain_baselines), executor)


def _database(out: Path | str) -> Path:
    path = Path(out)
    path = path if path.suffix == ".db" else path / "results.db"
    if not path.is_file():
        raise CompressbenchError(f"no results database at {path}")
    return path


def stored_runs(out: Path | str) -> list[Run]:
    """Every stored run of a study folder (or a results.db path), failed ones included."""
    return Store(_database(out)).runs()


def load_results(out: Path | str) -> pd.DataFrame:
    """All stored runs of a study folder (or a results.db path) as a DataFrame, one row per run."""
    return Store(_database(out)).dataframe()


def report(out: Path | str, formats: tuple[str, ...] = ("html", "md"), max_accuracy_drop: float = 1.0) -> list[Path]:
    """Write report.html (self-contained, offline) and/or report.md next to the study's results; return the paths."""
    from compressbench.reporting import write_report

    return write_report(out, formats, max_accuracy_drop)


def recommend(
    out: Path | str,
    max_accuracy_drop: float = 1.0,
    objective: Literal["latency", "size", "memory"] = "latency",
    batch: int = 256,
) -> list[Recommendation]:
    """Per (dataset, model): the recipe and runtime that best meet the objective within budget, and the runner-up."""
    from compressbench.ranking import recommend as choose
    from compressbench.ranking import summarise_runs

    return choose(summarise_runs(stored_runs(out)), max_accuracy_drop, objective, batch)


def sensitivity(
    dataset: str,
    model: str,
    *,
    technique: Literal["prune.channels", "prune.magnitude"] = "prune.channels",
    ratios: tuple[float, ...] = (0.2, 0.4, 0.6, 0.8),
    importance: str = "l2",
    samples: int = 2000,
    seed: int = 0,
    epochs: int | None = None,
    width: float = 1.0,
    cache: Cache | None = None,
) -> SensitivityCurves:
    """Prune one layer (channel group) of the trained baseline at a time; validation accuracy per ratio (cached)."""
    from compressbench.techniques.sensitivity import layer_sensitivity

    training = default_train_config(model)
    if epochs is not None:
        training = training.model_copy(update={"epochs": epochs, "min_steps": 0})  # exactly those epochs
    cache = cache or Cache(default_cache_dir())
    trained = baseline(dataset, ModelConfig(name=model, width=width), seed=seed, training=training, cache=cache)
    return layer_sensitivity(
        trained.module,
        trained.data,
        technique=technique,
        ratios=ratios,
        importance=importance,
        samples=samples,
        cache=cache,
    )


Listable = Literal["datasets", "models", "techniques", "recipes", "runtimes"]


def names(what: Listable) -> list[str]:
    """The registered names of one kind of plug-in (recipes: built-in recipes and single techniques)."""
    from compressbench.data import list_datasets
    from compressbench.models import list_models
    from compressbench.recipes import list_recipes
    from compressbench.runtime import list_runtimes
    from compressbench.techniques import list_techniques

    listers = {
        "datasets": list_datasets,
        "models": list_models,
        "techniques": list_techniques,
        "recipes": list_recipes,
        "runtimes": list_runtimes,
    }
    if what not in listers:
        raise CompressbenchError(f"cannot list {what!r} (known: {', '.join(listers)})")
    return listers[what]()


def describe(what: Listable, name: str) -> str:
    """One line about a registered plug-in; for a runtime, whether it is installed (or how to install it)."""
    if what == "models":
        from compressbench.models import models

        return models.get(name).description
    if what == "techniques":
        from compressbench.techniques import techniques

        technique = techniques.get(name)
        return f"[{technique.family}] {technique.summary}"
    if what == "runtimes":
        from compressbench.runtime import runtimes

        runtime = runtimes.get(name)
        return f"{runtime.description} [{runtime.missing() or 'installed'}]"
    if name not in names(what):
        raise CompressbenchError(f"unknown {what[:-1]} {name!r}")
    return ""


def default_training(model: str) -> TrainConfig:
    """How `model` is trained to its baseline (its registry entry's settings)."""
    return default_train_config(model)


def download_dataset(name: str) -> Path:
    """Download a dataset that is not bundled (Fashion-MNIST) into the user cache, checksums verified."""
    if name != "fashion-mnist":
        raise CompressbenchError(f"only fashion-mnist is downloaded; {name!r} is bundled or generated locally")
    from compressbench.data.fashion_mnist import download

    return download()
