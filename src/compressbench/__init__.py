"""compressbench: which compression method gives this model the best speed and size for the accuracy I can afford?

The public API (the CLI and the benchmarks use nothing else)::

    import compressbench as cb
    result = cb.compress("fashion-mnist", "mlp", "quant.dynamic")    # train (cached), compress, measure
    print(result.speedup, result.accuracy_drop_pt)                    # a typed RunResult; .to_json() for JSON
    cb.run_study("studies/default.yaml", out="runs/default")         # the whole matrix, resumable
    frame = cb.load_results("runs/default")                           # a pandas DataFrame, one row per run
    cb.report("runs/default"); cb.recommend("runs/default", max_accuracy_drop=1.0)
    cb.compress_model("my.py:build", "my.py:data", weights="w.safetensors", out="compressed/")  # your model

Names are imported on first use, so `import compressbench` stays fast and pulls in no runtime.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

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
    "compress_model": "compressbench.deploy",
    "verify": "compressbench.deploy",
    "CompressOutcome": "compressbench.deploy",
    "search": "compressbench.searching",
    "search_workers": "compressbench.searching",
    "SearchOutcome": "compressbench.searching",
    # config and result types
    "DatasetConfig": "compressbench.data",
    "DataBundle": "compressbench.data",
    "load_dataset": "compressbench.data",
    "ModelConfig": "compressbench.models",
    "build_model": "compressbench.models",
    "TrainConfig": "compressbench.training",
    "MeasureSettings": "compressbench.measure.compare",
    "ExecutorSettings": "compressbench.runner.executors",
    "StudySpec": "compressbench.runner.study",
    "LatencySettings": "compressbench.measure.latency",
    "Recipe": "compressbench.recipes",
    "load_recipe": "compressbench.recipes",
    "RunResult": "compressbench.results",
    "Metrics": "compressbench.results",
    "Candidate": "compressbench.artifacts",
    "Context": "compressbench.techniques",
    "Cache": "compressbench.cache",
    "CompressbenchError": "compressbench.errors",
    # measuring pieces the benchmarks compose
    "export_onnx": "compressbench.runtime",
    "open_session": "compressbench.runtime",
    "measure_accuracy": "compressbench.measure",
    "measure_latency_interleaved": "compressbench.measure",
    "count_macs": "compressbench.measure.size",
    "environment": "compressbench.measure",
    "evaluate": "compressbench.training",
    "default_cache_dir": "compressbench.cache",
    "preprocess": "compressbench.techniques.quant_static",
    "quantize_static_graph": "compressbench.techniques.quant_static",
    "quantize_dynamic_graph": "compressbench.techniques.quant_dynamic",
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
