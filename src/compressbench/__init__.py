"""compressbench: which compression method gives this model the best speed and size for the accuracy I can afford?

The public API (the CLI and the benchmarks use nothing else)::

    import compressbench as cb
    result = cb.compress("fashion-mnist", "mlp", "quant.dynamic")    # train (cached), compress, measure
    print(result.speedup, result.accuracy_drop_pt)                    # a typed RunResult; .to_json() for JSON
    cb.run_study("studies/default.yaml", out="runs/default")         # the whole matrix, resumable
    frame = cb.load_results("runs/default")                           # a pandas DataFrame, one row per run
    cb.report("runs/default"); cb.recommend("runs/default", max_accuracy_drop=1.0)
    cb.compress_model("my.py:build", "my.py:data", weights="w.safetensors", out="compressed/")  # your model

Names are imported on first use, so `import compressbench` stays fast and pulls in no runtime. The pieces the
benchmarks compose by hand (export, sessions, interleaved timing, the int8 graph quantizers) are in the unstable
`compressbench.bench`, not here.
"""

from __future__ import annotations

import importlib
from typing import Any

from compressbench.version import __version__ as __version__

_EXPORTS = {
    # verbs
    "compress": "compressbench.api",
    "baseline": "compressbench.api",
    "measure_models": "compressbench.api",
    "technique": "compressbench.api",
    "run_study": "compressbench.api",
    "load_study": "compressbench.api",
    "stored_runs": "compressbench.api",
    "load_results": "compressbench.api",
    "report": "compressbench.api",
    "recommend": "compressbench.api",
    "sensitivity": "compressbench.api",
    "names": "compressbench.api",
    "describe": "compressbench.api",
    "default_training": "compressbench.api",
    "download_dataset": "compressbench.api",
    "Baseline": "compressbench.api",
    "compress_model": "compressbench.workflows.compress_model",
    "verify": "compressbench.workflows.verify",
    "decode": "compressbench.workflows.verify",
    "CompressOutcome": "compressbench.workflows.compress_model",
    "search": "compressbench.workflows.search",
    "search_workers": "compressbench.workflows.search",
    "SearchOutcome": "compressbench.workflows.search",
    # config and result types
    "DatasetConfig": "compressbench.data",
    "DataSpec": "compressbench.data",
    "DataBundle": "compressbench.data",
    "ModelConfig": "compressbench.models",
    "TrainConfig": "compressbench.training",
    "MeasureSettings": "compressbench.measure.compare",
    "ExecutorSettings": "compressbench.runner.executors",
    "StudySpec": "compressbench.workflows.study",
    "LatencySettings": "compressbench.measure.latency",
    "Recipe": "compressbench.recipes",
    "load_recipe": "compressbench.recipes",
    "RunResult": "compressbench.results",
    "Metrics": "compressbench.results",
    "Candidate": "compressbench.artifacts",
    "Cache": "compressbench.cache",
    "CompressbenchError": "compressbench.errors",
    "NO_MECHANISM": "compressbench.ranking",
}


def list_datasets() -> list[str]:
    return __getattr__("names")("datasets")


def list_models() -> list[str]:
    return __getattr__("names")("models")


def list_techniques() -> list[str]:
    return __getattr__("names")("techniques")


def list_recipes() -> list[str]:
    return __getattr__("names")("recipes")


def list_runtimes() -> list[str]:
    return __getattr__("names")("runtimes")


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'compressbench' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])


__all__ = [*_EXPORTS, "list_datasets", "list_models", "list_recipes", "list_runtimes", "list_techniques"]
