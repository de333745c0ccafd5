"""Compress a model the user already trained and hand back the winner, ready to deploy, with its manifest.

The user's model (a factory and its weights, or a module instance) is the baseline as given: never retrained, measured
on the same path as every candidate. Each recipe of the shortlist is an ordinary job in a results store; the winner
is chosen by the recommendation rules (never slower than the baseline for latency, never over the accuracy budget),
and the output folder holds the artifact exactly as it was measured, `manifest.json`, the reports and `results.db`.
Work happens in `<out>.partial/` (a re-run resumes from it) and the finished folder is renamed into place at the end,
so an interrupted compress never leaves a manifest beside a missing or different artifact.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from torch import nn

from compressbench.artifacts import artifact_kinds, kind_of, read_artifact
from compressbench.cache import Cache, default_cache_dir
from compressbench.data import DatasetConfig, data_source_of, load_dataset
from compressbench.errors import CompressbenchError
from compressbench.files import read_yaml_mapping
from compressbench.intake import preprocessing_for
from compressbench.measure.compare import MeasureSettings
from compressbench.measure.latency import LatencySettings
from compressbench.models import ModelConfig, build_model, holds_trained_weights, is_onnx_model, register_instance
from compressbench.progress import log, log_name, third_party_logs
from compressbench.ranking import recommend, summarise_runs
from compressbench.recipes import load_recipe
from compressbench.runner.drive import Policy, drive
from compressbench.runner.executors import ExecutorSettings, JobOutcome
from compressbench.runner.job import check_train_split, make_job
from compressbench.runtime import served_form
from compressbench.runtime.stored import STORED_FORMS
from compressbench.store import Store
from compressbench.techniques import Need
from compressbench.version import __version__
from compressbench.weights import file_sha256
from compressbench.workflows.search import search
from compressbench.workflows.search_space import LATENCY_PLANS, SIZE_PLANS, plan_needs
from compressbench.workflows.shortlists import LeftOut, input_meets
from compressbench.workflows.shortlists import shortlist as table_shortlist

Objective = Literal["latency", "size"]
# `--recipes auto` tries the recipe table's `auto` shortlist (recipe_files/shortlists.yaml), each recipe where the
# input meets its steps' needs (a train split, torch code, a factory taking width=, attention layers, ...).
BASELINE = "none"


@dataclass(frozen=True)
class CompressOutcome:
    out: Path
    manifest: dict[str, Any]

    @property
    def chosen(self) -> str | None:
        """The winning recipe, or None when nothing met the budget and the baseline was handed back."""
        return self.manifest["choice"]["recipe"]


def compress_model(
    model: str | nn.Module,
    data: str,
    *,
    out: Path | str,
    weights: Path | str | None = None,
    recipes: str | list[str | dict] = "auto",
    max_accuracy_drop: float = 1.0,
    objective: Objective = "latency",
    batch: int = 1,
    runtime: str = "auto",
    fine_tune_epochs: int | None = None,
    seed: int = 0,
    batch_sizes: Sequence[int] = (1,),
    latency: LatencySettings | None = None,
    cache: Cache | None = None,
    search_trials: int = 20,
    search_timeout_s: float | None = None,
    executor: ExecutorSettings | None = None,
    text_column: str | None = None,
    label_column: str | None = None,
    sequence_length: int | None = None,
    image: dict[str, Any] | None = None,
    serving: Literal["latency", "throughput"] = "latency",
    footprint: bool = False,
    tune: bool = False,
) -> CompressOutcome:
    """Try the recipes on the user's trained model and write the winner to `out` (see the module docstring).

    `model` is a factory reference (`file.py:build`, with `weights`), an ONNX file (graph techniques only), a Hugging
    Face model folder with a classification head, a timm architecture `timm:name` (with `weights`), or a module
    whose weights are loaded; `data` a loader reference returning the inputs exactly as the model takes them
    (x_test / y_test; x_train / y_train to fine-tune), a CSV / JSONL / Parquet table (`text_column`, `label_column`;
    texts tokenized by the folder's tokenizer to `sequence_length` tokens), a `.npz` file or an image folder
    (preprocessed as timm's data config says, or as `image` declares: size, resize, mean, std, layout, ...).
    `recipes` is "auto", a list of recipe names / dicts, a YAML file with a `recipes:` list, or
    "search": an Optuna search of `search_trials` trials (or `search_timeout_s`) over the plans this input allows,
    whose three best feasible recipes are then run as the shortlist (their trained prefixes come from the cache).
    `executor` runs the jobs (and the search's trials) on Ray instead of here. Latency is timed at `batch` and
    `batch_sizes` (the batch sizes of `latency` are not used); the uncompressed model on each runtime measured is a
    candidate too, and nothing slower than the fastest of them is handed back (`compressbench.ranking.recommend`).
    `serving` "throughput" times batches served concurrently on every core (or `latency.threads`), each runtime's
    session settings tuned; the manifest's `artifact.session` says how to open the artifact as it was measured.
    `footprint` (always with objective "memory") probes every candidate's peak memory, load time and first call in
    a fresh process (`measure.footprint`), into the manifest and the report. `tune` tries each runtime's session
    settings in the latency profile too (`MeasureSettings.tune`), so the manifest's are the fastest measured.
    """
    out = Path(out)
    if out.exists():
        raise CompressbenchError(f"--out {out}: already exists; choose a new folder (nothing is overwritten)")
    work = out.with_name(out.name + ".partial")
    model_config, instance = _model_config(model, weights, work)
    dataset = _dataset(data, model_config, text_column=text_column, label_column=label_column,
                       sequence_length=sequence_length, image=image)  # fmt: skip
    bundle = load_dataset(dataset, seed)
    timing = (latency or LatencySettings()).model_dump(exclude_unset=True)
    measure = MeasureSettings(
        runtime=runtime,
        target_batch=batch,
        latency=LatencySettings(**{**timing, "batch_sizes": timed_batches(batch_sizes, batch)}),
        serving=serving,
        footprint=footprint or objective == "memory",
        tune=tune,
    )
    # What the input offers, for the shortlists that are chosen by it (a model is built once to look for attention).
    meets = _input_meets(model_config, instance, bundle) if recipes in ("auto", "search") else frozenset()
    cache = cache or Cache(default_cache_dir())
    searched = None
    if recipes == "search":
        if fine_tune_epochs is not None:
            raise CompressbenchError("fine_tune_epochs: the search chooses fine-tuning epochs; drop it with 'search'")
        searched = search(dataset, model_config, out=work / "search", max_accuracy_drop=max_accuracy_drop,
                          objective=objective, batch=batch, trials=search_trials, timeout_s=search_timeout_s,
                          plans=_search_plans(objective, meets), seed=seed, measure=measure,
                          cache=cache, executor=executor)  # fmt: skip
        shortlist = [BASELINE, *({"name": t["recipe"], "steps": t["steps"]} for t in searched.leaders)]
    else:
        shortlist, left_out = _shortlist(recipes, meets)
        if left_out:
            log("compress: left out of the auto shortlist: " + "; ".join(str(item) for item in left_out))
        shortlist = [_with_fine_tune_epochs(recipe, fine_tune_epochs) for recipe in shortlist]
    jobs = [make_job(dataset, model_config, recipe, seed=seed, measure=measure) for recipe in shortlist]
    for job in jobs:  # every refusal before anything runs
        check_train_split(load_recipe(job.recipe), bundle)
    store = Store(work / "results.db")
    started = time.perf_counter()

    def keep_artifact(outcome: JobOutcome) -> None:
        _keep_artifact(outcome, work, with_stored_form=objective == "size")

    with third_party_logs(work / "logs"):  # what the libraries print goes to <out>/logs/<recipe>.log
        drive(jobs, store, cache, _policy(work), executor=executor, on_outcome=keep_artifact, title="compress",
              keep_artifacts=True)  # fmt: skip
    runs = [run for run in store.runs() if run.key in {job.key() for job in jobs}]
    failed = {run.recipe: _failure_line(run, work) for run in runs if run.status == "failed"}
    answer = recommend(summarise_runs(runs), max_accuracy_drop, objective, batch)
    if not answer:
        raise CompressbenchError(f"the baseline could not be measured: {failed.get(BASELINE, 'no run stored')}")
    choice = answer[0]
    by_recipe = {run.recipe: run for run in runs if run.status == "ok"}
    winner = by_recipe[choice.best.recipe if choice.best else BASELINE]
    manifest = _manifest(
        winner,
        by_recipe,
        choice,
        failed,
        settings={"max_accuracy_drop": max_accuracy_drop, "objective": objective, "batch": batch},
        model_config=model_config,
        bundle_notes=bundle.notes,
        seconds=time.perf_counter() - started,
        dataset=dataset,
    )
    if searched is not None:
        manifest["search"] = {"trials": searched.trials, "within_budget": searched.feasible,
                              "stopped": searched.stopped, "shortlist": [t["recipe"] for t in searched.leaders],
                              "report": "search/search.html"}  # fmt: skip
    return CompressOutcome(_finish(work, out, winner, manifest), manifest)


def timed_batches(batch_sizes: Sequence[int], batch: int) -> tuple[int, ...]:
    """The batch sizes compress times: the user's batch and those asked for besides it, each a positive integer."""
    if bad := [b for b in batch_sizes if not isinstance(b, int) or b < 1]:
        raise CompressbenchError(f"batch_sizes: {bad} are not positive integers")
    if batch < 1:
        raise CompressbenchError(f"batch: {batch} is not a positive integer")
    return tuple(sorted({*batch_sizes, batch}))


def _dataset(data: str, model: ModelConfig, *, text_column: str | None, label_column: str | None,
             sequence_length: int | None, image: dict[str, Any] | None) -> DatasetConfig:  # fmt: skip
    """The data as the model takes it: a loader's arrays as they are, or a file or folder read with the
    preprocessing the model declares (its tokenizer, timm's data config) or the user gives (`image`)."""
    if data_source_of(data) is None:
        if text_column or label_column or sequence_length or image:
            raise CompressbenchError(f"data {data!r}: --text-column, --label-column, --sequence-length and the image "
                                     "options apply to a data file or folder, not to a loader")  # fmt: skip
        return DatasetConfig(name=data, as_given=True)
    if image is not None and is_onnx_model(model.name) and "size" not in image:
        image = {**graph_image_input(model.name), **image}
    preprocessing = preprocessing_for(model.name, model.weights, sequence_length=sequence_length, image=image)
    if preprocessing is None and is_onnx_model(model.name) and Path(data).is_dir():
        preprocessing = preprocessing_for(model.name, image=graph_image_input(model.name))
    return DatasetConfig(name=str(Path(data).resolve()), as_given=True, text_column=text_column,
                         label_column=label_column, preprocessing=preprocessing)  # fmt: skip


def graph_image_input(path: str) -> dict[str, Any]:
    """An ONNX classifier's image input as its graph fixes it: the size, and the layout (channels first or last)."""
    import onnx

    graph = onnx.load(path, load_external_data=False).graph
    initializers = {i.name for i in graph.initializer}
    value = next(v for v in graph.input if v.name not in initializers)
    dims = [d.dim_value or None for d in value.type.tensor_type.shape.dim]
    if len(dims) == 4 and dims[1] in (1, 3) and dims[2] and dims[3]:
        return {"size": dims[2:], "layout": "NCHW", "channels": "L" if dims[1] == 1 else "RGB"}
    if len(dims) == 4 and dims[3] in (1, 3) and dims[1] and dims[2]:
        return {"size": dims[1:3], "layout": "NHWC", "channels": "L" if dims[3] == 1 else "RGB"}
    raise CompressbenchError(
        f"model {path}: its input {value.name} has shape {dims}, not a fixed image size; give --image-size"
    )


def _model_config(
    model: str | nn.Module, weights: Path | str | None, work: Path
) -> tuple[ModelConfig, nn.Module | None]:
    """The job's model: a factory with its weights file, or a module instance registered in-process under a name
    made from its weights' hash (its state dict saved beside the work, so the run's key is the weights' content)."""
    if isinstance(model, nn.Module):
        from safetensors.torch import save_file

        if weights is not None:
            raise CompressbenchError("weights: pass either a module with its weights loaded, or a factory and weights")
        work.mkdir(parents=True, exist_ok=True)
        path = work / "input-weights.safetensors"
        save_file({k: v.detach().contiguous().clone() for k, v in model.state_dict().items()}, path)
        name = register_instance(model, file_sha256(path))
        return ModelConfig(name=name, weights=str(path)), model
    if not isinstance(model, str):
        raise CompressbenchError(
            f"model: expected 'file.py:function', a .onnx file or an nn.Module; got {type(model).__name__}"
        )
    if holds_trained_weights(model):
        if weights is not None:
            raise CompressbenchError(
                f"weights: {model} holds its weights (an ONNX file or a model folder); drop --weights"
            )
        return ModelConfig(name=str(Path(model).resolve()) if Path(model).is_dir() else model), None
    if weights is None:
        raise CompressbenchError(
            f"model {model!r}: --weights is required (compress takes a trained model and never trains it from scratch)"
        )
    return ModelConfig(name=model, weights=str(weights)), None


def _input_meets(model_config: ModelConfig, instance: nn.Module | None, bundle) -> frozenset[Need]:
    """The needs this input meets (shortlists.input_meets): a factory's model is built once, unweighted, to see its
    layers; an ONNX graph has no torch code."""
    if is_onnx_model(model_config.name):
        return input_meets(None, factory=None, train_split=len(bundle.train) > 0)
    module = instance if instance is not None else build_model(ModelConfig(name=model_config.name), bundle.spec)
    return input_meets(module, factory=None if instance is not None else model_config.name,
                       train_split=len(bundle.train) > 0)  # fmt: skip


def _shortlist(recipes: str | list, meets: frozenset[Need] = frozenset()) -> tuple[list[str | dict], list[LeftOut]]:
    """The recipes to try, and those of `auto` left out (with the need each misses): 'auto' (the table's shortlist,
    where the input `meets` their needs), a YAML file with `recipes:`, or the given list. The baseline ("none") is
    always first: every candidate is judged against it."""
    left_out: list[LeftOut] = []
    if recipes == "auto":
        kept, left_out = table_shortlist("auto", meets)
        chosen: list[str | dict] = [recipe.name for recipe in kept]
    elif isinstance(recipes, str) and recipes.endswith((".yaml", ".yml")):
        document = read_yaml_mapping(Path(recipes), "recipes file")
        if not isinstance(document.get("recipes"), list):
            raise CompressbenchError(f"recipes file {recipes}: field 'recipes': expected a list of recipes")
        chosen = list(document["recipes"])
    elif isinstance(recipes, str):
        chosen = [name.strip() for name in recipes.split(",") if name.strip()]
    else:
        chosen = list(recipes)
    names = [load_recipe(recipe).name for recipe in chosen]
    return (chosen if BASELINE in names else [BASELINE, *chosen]), left_out


def _search_plans(objective: str, meets: frozenset[Need]) -> list[str]:
    """The plans a search may draw for this input: those whose steps' needs it meets (int8 alone without a train
    split or torch code, no distillation without a factory taking width=, no channel pruning of attention)."""
    plans = SIZE_PLANS if objective == "size" else LATENCY_PLANS
    return [plan for plan in plans if plan_needs(plan) <= meets]


def _with_fine_tune_epochs(recipe: str | dict, epochs: int | None) -> str | dict:
    """The recipe with `--fine-tune-epochs` set on every step that fine-tunes (a student's epochs too)."""
    if epochs is None:
        return recipe
    canonical = load_recipe(recipe).canonical()
    steps = [
        {**step, "fine_tune_epochs": epochs}
        if "fine_tune_epochs" in step
        else {**step, "epochs": epochs}
        if step["technique"] == "distill.kd"
        else step
        for step in canonical["steps"]
    ]
    return {**canonical, "steps": [{k: v for k, v in step.items() if k != "family"} for step in steps]}


def _failure_line(run, work: Path) -> str:
    """A failed recipe in one line: the cause, and the log of what the libraries printed meanwhile when there is one
    (its traceback is in results.db)."""
    line = (run.error or "failed").splitlines()[0]
    log = work / "logs" / log_name(run.recipe)
    if log.is_file() and log.stat().st_size:
        line += f" (library output: logs/{log.name})"
    return line


def _policy(work: Path) -> Policy:
    """Compress never runs a stored failure again and stores every failure; a stored success counts only with the
    artifact it served on disk beside it."""
    return Policy(rerun_failed=False, store_failures=True,
                  reuse=lambda run: (work / "artifacts" / run.key / "artifact.json").is_file())  # fmt: skip


def _keep_artifact(outcome: JobOutcome, work: Path, with_stored_form: bool) -> None:
    """Write the artifact a finished job served, before its run is stored; the user's model itself failing stops
    compress (nothing else can be judged without it). Another recipe's failure is stored and the others go on."""
    job, result = outcome.job, outcome.result
    if result is None:
        if job.recipe["name"] == BASELINE:
            raise outcome.exception or CompressbenchError(f"your model could not be measured: {outcome.error}")
        return
    measured = outcome.artifacts["candidate"]  # an ONNX graph stays one until it is handed back (OpenVINO: its IR)
    artifact = served_form(measured, result.runtime)
    folder = work / "artifacts" / job.key()
    folder.mkdir(parents=True, exist_ok=True)
    described = {"kind": kind_of(artifact).name, "files": kind_of(artifact).write(artifact, folder)}
    stored = result.candidate.stored_form
    if with_stored_form and stored in STORED_FORMS:  # the stored form of the graph the size figure counts
        described["stored"] = {"kind": stored, "files": artifact_kinds.get(stored).write(measured, folder)}
    (folder / "artifact.json").write_text(json.dumps(described))


def _manifest(winner, by_recipe, choice, failed, *, settings, model_config, bundle_notes, seconds,
              dataset) -> dict[str, Any]:  # fmt: skip
    result = winner.result
    baseline = result.baseline
    runner_up = choice.runner_up
    return {
        "compressbench": __version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "choice": {
            "recipe": choice.best.recipe if choice.best else None,
            "runtime": result.runtime,
            "why": choice.reason,
            # The model unchanged, served on a faster runtime than the baseline's: a move, not a compression.
            "runtime_only": bool(choice.best and choice.best.runtime_only),
            "runner_up": {"recipe": runner_up.recipe, "runtime": runner_up.runtime} if runner_up else None,
            **settings,
        },
        "recipe": winner.config["recipe"],
        "input": {
            "model": model_config.name,
            "weights": model_config.weights,
            "weights_sha256": result.baseline_training.get("weights_sha256"),
            "data": winner.dataset,
            "dataset": dataset.model_dump(mode="json", exclude_none=True),  # what verify reads the data with
            "classes": bundle_notes.get("classes"),
        },  # fmt: skip
        "preprocessing": bundle_notes.get("preprocessing")
        or (
            "none: the artifact takes inputs exactly as the data loader returns them (float32 values, int64 ids); "
            "the tool normalised nothing"
        ),
        "evaluation": {
            **result.data,
            "samples": bundle_notes.get("calibration"),
            "held_out": bundle_notes.get("held_out"),
            "seed": bundle_notes.get("seed"),
        },  # fmt: skip
        "baseline": _figures(baseline),
        "compressed": _figures(result.candidate),
        "speedup": result.speedup,
        "speedup_ci": result.speedup_ci,
        "speed_mechanism": result.speed_mechanism,
        "accuracy_drop_pt": result.accuracy_drop_pt,
        "size_ratio": result.size_ratio,
        "candidates": {
            name: {
                "accuracy_drop_pt": run.result.accuracy_drop_pt,
                "speedup": run.result.speedup,
                "speedup_ci": run.result.speedup_ci,
                "speed_mechanism": run.result.speed_mechanism,
                "size_ratio": run.result.size_ratio,
                "runtime": run.result.runtime,
                "speedup_same_runtime": _same_runtime_speedup(run.result),
                "flags": run.result.flags,
                "steps": run.result.steps,  # what each step did: pre-processing, format, variants, layers
            }
            for name, run in by_recipe.items()
        },  # fmt: skip
        "failed": failed,
        "measurement": result.measurement,
        "environment": result.environment,
        "wall_seconds": seconds,
        "key": winner.key,
    }


def _same_runtime_speedup(result) -> dict[str, float]:
    """What the steps alone gained: the candidate against the uncompressed model on the candidate's own runtime
    (timed in the same pass when every runtime was compared; else the runtime is the baseline's)."""
    compared = (result.baseline.runtimes or {}).get(result.runtime, {})
    on_runtime = compared.get("latency_ms") or result.baseline.latency_ms
    return {b: on_runtime[b] / ms for b, ms in result.candidate.latency_ms.items() if b in on_runtime}


def _figures(metrics) -> dict[str, Any]:
    keep = ("accuracy", "accuracy_ci", "test_samples", "latency_ms", "latency", "runtime", "size_bytes", "zstd_bytes",
            "encoded_bytes", "stored_bytes", "stored_form", "params", "runtimes", "footprint")  # fmt: skip
    return {k: v for k, v in metrics.to_json().items() if k in keep}


def session_settings(runtime: dict[str, Any], measurement: dict[str, Any]) -> dict[str, Any]:
    """How to open the artifact as it was measured, for a deployment to reproduce (and `verify` to use): the runtime's
    threads, precision and session options (as tuned for the serving profile), and the profile."""
    return {
        "runtime": runtime["runtime"],
        "threads": runtime.get("threads", measurement["latency"]["threads"]),
        "precision": runtime.get("requested_precision", "fp32"),
        "options": runtime.get("options", {}),
        "serving": measurement.get("serving", "latency"),
    }


def _finish(work: Path, out: Path, winner, manifest: dict[str, Any]) -> Path:
    """Assemble the output in a temporary folder and rename it into place: all of it, or nothing."""
    from compressbench.reporting import write_report

    source = work / "artifacts" / winner.key
    described = json.loads((source / "artifact.json").read_text())
    # For size, the stored form the figure counts (with its way back: `compressbench decode`); else the served file.
    if manifest["choice"]["objective"] == "size":
        described = described.get("stored", described)
    staging = out.with_name(f".{out.name}.staging")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    for name in described["files"]:
        shutil.copy2(source / name, staging / name)
    kind = artifact_kinds.get(described["kind"])
    manifest["artifact"] = {
        "kind": described["kind"],
        "description": kind.description,
        "runtime": manifest["choice"]["runtime"],
        "files": {name: file_sha256(staging / name) for name in described["files"]},
        "bytes": sum((staging / name).stat().st_size for name in described["files"]),
        "inputs": kind.describe(read_artifact(staging, described["kind"])),
        "session": session_settings(manifest["compressed"]["runtime"], manifest["measurement"]),
    }
    if described["kind"] in STORED_FORMS:
        manifest["artifact"]["load"] = (
            f"compressbench decode {out} writes model.onnx ({STORED_FORMS[described['kind']]}); verify decodes it"
        )
    (work / "study.json").write_text(
        json.dumps(
            {
                "name": f"compress {manifest['input']['model']}",
                "description": f"Chosen: {manifest['choice']['recipe'] or 'the baseline (none)'} on "
                f"{manifest['choice']['runtime']}: {manifest['choice']['why']}.",
            }
        )  # fmt: skip
    )
    write_report(work, ("html", "md"), manifest["choice"]["max_accuracy_drop"])
    for name in ("report.html", "report.md"):
        shutil.copy2(work / name, staging / name)
    _copy_database(work / "results.db", staging / "results.db")
    for printed in sorted((work / "logs").glob("*.log")):  # what the libraries printed: a file a recipe that did
        if printed.stat().st_size:
            (staging / "logs").mkdir(exist_ok=True)
            shutil.copy2(printed, staging / "logs" / printed.name)
    if (work / "search").is_dir():  # compress --recipes search: the search's own report and trials beside
        (staging / "search").mkdir()
        for name in ("search.html", "search.md"):
            shutil.copy2(work / "search" / name, staging / "search" / name)
        for name in ("search.db", "results.db"):
            _copy_database(work / "search" / name, staging / "search" / name)
    (staging / "manifest.json").write_text(json.dumps(manifest, indent=1, default=str) + "\n")
    staging.rename(out)
    shutil.rmtree(work, ignore_errors=True)
    return out


def _copy_database(source: Path, destination: Path) -> None:
    """A consistent copy of the SQLite store (its write-ahead log folded in)."""
    import sqlite3

    with sqlite3.connect(source) as connection, sqlite3.connect(destination) as copy_to:
        connection.backup(copy_to)


__all__ = ["CompressOutcome", "compress_model"]
