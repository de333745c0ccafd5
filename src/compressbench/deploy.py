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
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import onnx
from torch import nn

from compressbench import __version__, progress
from compressbench.artifacts import ONNX, OPENVINO, TORCH, kind_of
from compressbench.cache import Cache, default_cache_dir
from compressbench.data import DatasetConfig, load_dataset
from compressbench.errors import CompressbenchError
from compressbench.files import read_yaml_mapping
from compressbench.measure.compare import MeasureSettings
from compressbench.measure.environment import cpu_info
from compressbench.measure.latency import LatencySettings
from compressbench.models import ModelConfig, is_onnx_model, register_instance
from compressbench.recipes import load_recipe
from compressbench.reporting.recommend import recommend
from compressbench.reporting.summary import summarise_runs
from compressbench.runner.executors import ExecutorSettings, JobOutcome, run_jobs
from compressbench.runner.job import JobConfig, check_train_split, make_job
from compressbench.runtime import installed_runtimes
from compressbench.searching import LATENCY_PLANS, SIZE_PLANS, search
from compressbench.store import Store
from compressbench.weights import file_sha256

Objective = Literal["latency", "size"]
# The shortlist `--recipes auto` tries. Post-training recipes fit any input; the training ones need a train split
# and the model's torch code (distillation also a factory that builds a narrower student).
POST_TRAINING = ["none", "quant.dynamic", "quant.static"]
NNCF = "quant.nncf"
BF16 = "precision.bf16"
TRAINING = [
    {"name": "prune.channels-30", "steps": [{"technique": "prune.channels", "ratio": 0.3}]},
    {"name": "prune.channels-50", "steps": [{"technique": "prune.channels", "ratio": 0.5}]},
    "prune+quant",
]
# The student trains 10 epochs (and its control as long): the default, twice the teacher's, is 40 for a user model.
DISTILL = {"name": "distill.kd-half", "steps": [{"technique": "distill.kd", "width": 0.5, "epochs": 10}]}
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
    latency: LatencySettings | None = None,
    cache: Cache | None = None,
    search_trials: int = 20,
    search_timeout_s: float | None = None,
    executor: ExecutorSettings | None = None,
) -> CompressOutcome:
    """Try the recipes on the user's trained model and write the winner to `out` (see the module docstring).

    `model` is a factory reference (`file.py:build`, with `weights`), an ONNX file (graph techniques only), or a
    module whose weights are loaded; `data` a
    loader reference returning the inputs exactly as the model takes them (x_test / y_test; x_train / y_train to
    fine-tune). `recipes` is "auto", a list of recipe names / dicts, a YAML file with a `recipes:` list, or
    "search": an Optuna search of `search_trials` trials (or `search_timeout_s`) over the plans this input allows,
    whose three best feasible recipes are then run as the shortlist (their trained prefixes come from the cache).
    `executor` runs the jobs (and the search's trials) on Ray instead of here.
    """
    out = Path(out)
    if out.exists():
        raise CompressbenchError(f"--out {out}: already exists; choose a new folder (nothing is overwritten)")
    work = out.with_name(out.name + ".partial")
    model_config, instance = _model_config(model, weights, work)
    dataset = DatasetConfig(name=data, as_given=True)
    bundle = load_dataset(dataset, seed)
    measure = MeasureSettings(
        runtime=runtime,
        target_batch=batch,
        latency=(latency or LatencySettings()).with_batch(batch),
    )
    trainable = len(bundle.train) > 0 and not is_onnx_model(model_config.name)
    distillable = instance is None and not is_onnx_model(model_config.name)
    cache = cache or Cache(default_cache_dir())
    searched = None
    if recipes == "search":
        if fine_tune_epochs is not None:
            raise CompressbenchError("fine_tune_epochs: the search chooses fine-tuning epochs; drop it with 'search'")
        searched = search(dataset, model_config, out=work / "search", max_accuracy_drop=max_accuracy_drop,
                          objective=objective, batch=batch, trials=search_trials, timeout_s=search_timeout_s,
                          plans=_search_plans(objective, trainable, distillable), seed=seed, measure=measure,
                          cache=cache, executor=executor)  # fmt: skip
        shortlist = [BASELINE, *({"name": t["recipe"], "steps": t["steps"]} for t in searched.leaders)]
    else:
        shortlist = _shortlist(recipes, has_train=trainable, distillable=distillable)
        shortlist = [_with_fine_tune_epochs(recipe, fine_tune_epochs) for recipe in shortlist]
    jobs = [make_job(dataset, model_config, recipe, seed=seed, measure=measure) for recipe in shortlist]
    for job in jobs:  # every refusal before anything runs
        check_train_split(load_recipe(job.recipe), bundle)
    store = Store(work / "results.db")
    started = time.perf_counter()
    todo = [job for job in jobs if not _stored(job, store, work)]
    with progress.bar("compress", len(jobs)) as bar:
        if bar is not None:
            bar.update(bar.task_ids[0], advance=len(jobs) - len(todo))

        def stored(outcome: JobOutcome) -> None:
            _store(outcome, store, work)
            if bar is not None:
                bar.update(bar.task_ids[0], advance=1)

        run_jobs(todo, cache, stored, executor, keep_artifacts=True)
    runs = [run for run in store.runs() if run.key in {job.key() for job in jobs}]
    failed = {run.recipe: (run.error or "").splitlines()[0] for run in runs if run.status == "failed"}
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
    )
    if searched is not None:
        manifest["search"] = {"trials": searched.trials, "within_budget": searched.feasible,
                              "stopped": searched.stopped, "shortlist": [t["recipe"] for t in searched.leaders],
                              "report": "search/search.html"}  # fmt: skip
    return CompressOutcome(_finish(work, out, winner, manifest), manifest)


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
    if is_onnx_model(model):
        if weights is not None:
            raise CompressbenchError(f"weights: {model} is an ONNX model, which holds its weights; drop --weights")
        return ModelConfig(name=model), None
    if weights is None:
        raise CompressbenchError(
            f"model {model!r}: --weights is required (compress takes a trained model and never trains it from scratch)"
        )
    return ModelConfig(name=model, weights=str(weights)), None


def _shortlist(recipes: str | list, *, has_train: bool, distillable: bool) -> list[str | dict]:
    """The recipes to try: 'auto' (what fits the input), a YAML file with `recipes:`, or the given list. The
    baseline ("none") is always first: every candidate is judged against it."""
    if recipes == "auto":
        chosen: list[str | dict] = list(POST_TRAINING)
        if "openvino" in installed_runtimes():
            chosen.append(NNCF)
        if has_train:
            chosen += TRAINING + ([DISTILL] if distillable else [])
        if {"avx512_bf16", "amx_bf16"} & set(cpu_info()["flags"]):
            chosen.append(BF16)
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
    return chosen if BASELINE in names else [BASELINE, *chosen]


def _search_plans(objective: str, trainable: bool, distillable: bool) -> list[str]:
    """The plans a search may draw for this input: int8 alone without a train split or torch code, no
    distillation without a factory to build a narrower student."""
    if not trainable:
        return ["quant"]
    plans = SIZE_PLANS if objective == "size" else LATENCY_PLANS
    return [plan for plan in plans if distillable or not plan.startswith("distill")]


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


def _stored(job: JobConfig, store: Store, work: Path) -> bool:
    """Whether the job is stored with its artifact (or stored as failed): a re-run does not run it again."""
    stored = store.get(job.key())
    return stored is not None and (
        stored.status == "failed" or (work / "artifacts" / job.key() / "artifact.json").is_file()
    )


def _store(outcome: JobOutcome, store: Store, work: Path) -> None:
    """Store one job's outcome with the artifact it served; a failure is stored and the others go on, except the
    baseline's: the user's model itself cannot be measured, so nothing else can be judged."""
    job, result = outcome.job, outcome.result
    key, label = job.key(), job.recipe["name"]
    if result is None:
        if label == BASELINE:
            raise outcome.exception or CompressbenchError(f"your model could not be measured: {outcome.error}")
        store.put(key, job.identity(), error=outcome.error)
        progress.log(f"[red]failed[/red] {label}: {(outcome.error or '').splitlines()[0]}")
        return
    artifact = outcome.artifacts["candidate"]
    _write_artifact(served_for_openvino(artifact) if result.runtime == "openvino" else artifact,
                    work / "artifacts" / key)  # fmt: skip
    store.put(key, job.identity(), result=result)
    speed = " ".join(f"b{b} {s:.2f}x" for b, s in result.speedup.items())
    progress.log(
        f"[green]ok[/green] {label} on {result.runtime}: accuracy {result.candidate.accuracy:.4f} "
        f"(drop {result.accuracy_drop_pt:+.2f} pt), speed-up {speed}, {result.size_ratio:.2f}x smaller file"
    )


def _write_artifact(artifact: Any, folder: Path) -> None:
    """The artifact as it was served: an ONNX graph as model.onnx; on OpenVINO its IR (model.xml + .bin; an ONNX
    graph converted by the same read_model the measurement used); a torch module as safetensors."""
    folder.mkdir(parents=True, exist_ok=True)
    kind = kind_of(artifact).name
    if kind == ONNX:
        onnx.save(artifact, folder / "model.onnx")
        files = ["model.onnx"]
    elif kind == OPENVINO:
        import openvino as ov

        ov.save_model(artifact, folder / "model.xml", compress_to_fp16=False)
        files = ["model.xml", "model.bin"]
    else:
        (folder / "model.safetensors").write_bytes(kind_of(artifact).serialise(artifact))
        files = ["model.safetensors"]
    (folder / "artifact.json").write_text(json.dumps({"kind": kind, "files": files}))


def served_for_openvino(artifact: Any) -> Any:
    """What OpenVINO ran: an ONNX graph is converted on load, so its IR is that conversion."""
    from compressbench.runtime.openvino import onnx_to_openvino

    return onnx_to_openvino(artifact) if kind_of(artifact).name == ONNX else artifact


def _manifest(winner, by_recipe, choice, failed, *, settings, model_config, bundle_notes, seconds) -> dict[str, Any]:
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
            "runner_up": {"recipe": runner_up.recipe, "runtime": runner_up.runtime} if runner_up else None,
            **settings,
        },
        "recipe": winner.config["recipe"],
        "input": {
            "model": model_config.name,
            "weights": model_config.weights,
            "weights_sha256": result.baseline_training.get("weights_sha256"),
            "data": winner.dataset,
        },  # fmt: skip
        "preprocessing": (
            "none: the artifact takes inputs exactly as the data loader returns them (float32); the tool "
            "normalised nothing"
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
        "accuracy_drop_pt": result.accuracy_drop_pt,
        "size_ratio": result.size_ratio,
        "candidates": {
            name: {
                "accuracy_drop_pt": run.result.accuracy_drop_pt,
                "speedup": run.result.speedup,
                "size_ratio": run.result.size_ratio,
                "runtime": run.result.runtime,
                "flags": run.result.flags,
            }
            for name, run in by_recipe.items()
        },  # fmt: skip
        "failed": failed,
        "measurement": result.measurement,
        "environment": result.environment,
        "wall_seconds": seconds,
        "key": winner.key,
    }


def _figures(metrics) -> dict[str, Any]:
    keep = ("accuracy", "accuracy_ci", "test_samples", "latency_ms", "latency", "runtime", "size_bytes", "params",
            "runtimes")  # fmt: skip
    return {k: v for k, v in metrics.to_json().items() if k in keep}


def _finish(work: Path, out: Path, winner, manifest: dict[str, Any]) -> Path:
    """Assemble the output in a temporary folder and rename it into place: all of it, or nothing."""
    from compressbench.reporting import write_report

    source = work / "artifacts" / winner.key
    described = json.loads((source / "artifact.json").read_text())
    staging = out.with_name(f".{out.name}.staging")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    for name in described["files"]:
        shutil.copy2(source / name, staging / name)
    manifest["artifact"] = {
        "kind": described["kind"],
        "runtime": manifest["choice"]["runtime"],
        "files": {name: file_sha256(staging / name) for name in described["files"]},
        "inputs": _io(staging, described),
    }
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


def _io(folder: Path, described: dict[str, Any]) -> dict[str, Any]:
    """Input and output names, shapes (a name for a dynamic axis) and element types of the artifact."""
    if described["kind"] == ONNX:
        graph = onnx.load(folder / "model.onnx").graph

        def describe(values) -> list[dict[str, Any]]:
            return [
                {
                    "name": v.name,
                    "shape": [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim],
                    "dtype": onnx.helper.tensor_dtype_to_np_dtype(v.type.tensor_type.elem_type).name,
                }
                for v in values
            ]

        initializers = {i.name for i in graph.initializer}
        return {
            "inputs": describe([v for v in graph.input if v.name not in initializers]),
            "outputs": describe(graph.output),
        }
    if described["kind"] == OPENVINO:
        import openvino as ov

        model = ov.Core().read_model(folder / "model.xml")

        def ports(values) -> list[dict[str, Any]]:
            return [
                {"name": p.any_name, "shape": str(p.partial_shape), "dtype": p.element_type.get_type_name()}
                for p in values
            ]

        return {"inputs": ports(model.inputs), "outputs": ports(model.outputs)}
    return {"inputs": "the torch module's forward(x), x float32 as the loader returns it", "outputs": "logits"}


def verify(folder: Path | str, data: str | None = None, threads: int | None = None) -> dict[str, Any]:
    """Check the artifact's SHA-256 against its manifest and measure its accuracy and latency here again."""
    from compressbench.measure.accuracy import measure_accuracy
    from compressbench.measure.latency import measure_latency_interleaved
    from compressbench.runtime import open_session

    folder = Path(folder)
    manifest_path = folder / "manifest.json"
    if not manifest_path.is_file():
        raise CompressbenchError(f"{folder}: no manifest.json (not a compress output folder)")
    manifest = json.loads(manifest_path.read_text())
    for name, expected in manifest["artifact"]["files"].items():
        if not (folder / name).is_file():
            raise CompressbenchError(f"{folder / name}: missing (the manifest lists it)")
        if (actual := file_sha256(folder / name)) != expected:
            raise CompressbenchError(
                f"{folder / name}: SHA-256 {actual[:16]}... differs from the manifest's {expected[:16]}...: "
                "not the artifact that was measured"
            )
    kind, runtime = manifest["artifact"]["kind"], manifest["artifact"]["runtime"]
    if kind == TORCH:
        raise CompressbenchError(f"{folder}: a torch module needs its code to run; verify checks graph artifacts")
    artifact = onnx.load(folder / "model.onnx") if kind == ONNX else _read_ir(folder / "model.xml")
    settings = manifest["measurement"]
    latency = LatencySettings(**{**settings["latency"], **({"threads": threads} if threads else {})})
    bundle = load_dataset(DatasetConfig(name=data or manifest["input"]["data"], as_given=True),
                          manifest["evaluation"].get("seed") or 0)  # fmt: skip
    session = open_session(artifact, runtime, latency.threads, manifest["compressed"]["runtime"].get(
        "requested_precision", "fp32"))  # fmt: skip
    accuracy = measure_accuracy(session, bundle.test)
    timed = measure_latency_interleaved([session], bundle.test.x[: settings["latency_samples"]], latency)[0]
    here = cpu_info()
    return {
        "sha256": "matches the manifest",
        "cpu": {
            "here": here["model"],
            "manifest": manifest["environment"]["cpu"]["model"],
            "same_cpu": here["model"] == manifest["environment"]["cpu"]["model"],
        },  # fmt: skip
        "accuracy": {
            "here": accuracy.accuracy,
            "manifest": manifest["compressed"]["accuracy"],
            "test_samples": accuracy.samples,
        },  # fmt: skip
        "latency_ms": {
            str(b): {"here": s.p50_ms, "manifest": manifest["compressed"]["latency_ms"].get(str(b))}
            for b, s in timed.items()
        },
        "runtime": runtime,
    }


def _read_ir(path: Path) -> Any:
    import openvino as ov

    return ov.Core().read_model(path)


__all__ = ["CompressOutcome", "compress_model", "verify"]
