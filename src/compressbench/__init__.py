"""compressbench: which compression method gives this model the best speed and size for the accuracy I can afford?

The public API::

    import compressbench as cb
    result = cb.compress("fashion-mnist", "mlp", "quant.dynamic")    # train (cached), compress, measure
    print(result["speedup"], result["accuracy_drop_pt"])
    cb.run_study("studies/default.yaml", out="runs/default")         # the whole matrix, resumable
    frame = cb.load_results("runs/default")                           # a pandas DataFrame, one row per run
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    import pandas as pd

    from compressbench.cache import Cache
    from compressbench.data import DatasetConfig
    from compressbench.measure.compare import MeasureSettings
    from compressbench.models import ModelConfig
    from compressbench.recipes import Recipe
    from compressbench.training import TrainConfig


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
) -> dict[str, Any]:
    """Train (or reuse) the baseline, apply `recipe`, measure baseline and candidate side by side.

    With `store`, the run is written to that results database (skipped if already there with the same key).
    """
    from compressbench.cache import Cache, default_cache_dir
    from compressbench.runner.job import make_job, run_job
    from compressbench.store import Store

    job = make_job(dataset, model, recipe, seed=seed, training=training, measure=measure)
    results = Store(store) if store else None
    if results and (stored := results.get(job.key())) and stored.status == "ok":
        return stored.result  # type: ignore[return-value]
    result = run_job(job, cache or Cache(default_cache_dir()))
    if results:
        results.put(job.key(), job.identity(), result=result)
    return result


def run_study(spec: Path | str, out: Path | str) -> dict[str, int]:
    """Run a study file; every run lands in `out/results.db`; runs already stored are skipped."""
    from compressbench.runner.study import run_study as _run_study

    return _run_study(spec, out)


def load_results(out: Path | str) -> pd.DataFrame:
    """All stored runs of a study folder (or a results.db path) as a DataFrame."""
    from compressbench.store import Store

    path = Path(out)
    return Store(path if path.suffix == ".db" else path / "results.db").dataframe()


def list_datasets() -> list[str]:
    from compressbench.data import list_datasets as _list

    return _list()


def list_models() -> list[str]:
    from compressbench.models import list_models as _list

    return _list()


def list_techniques() -> list[str]:
    from compressbench.techniques import list_techniques as _list

    return _list()


__all__ = ["compress", "list_datasets", "list_models", "list_techniques", "load_results", "run_study"]
