"""One job: data -> baseline (cached) -> recipe -> export -> measure side by side -> one result object."""

from __future__ import annotations

import copy
import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import onnx
import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

import compressbench.intake  # noqa: F401 (registers the file and folder sources before any data is loaded)
from compressbench.artifacts import pack, unpack
from compressbench.cache import Cache, shipped_accuracies
from compressbench.data import DataBundle, DatasetConfig, data_source_of, load_dataset
from compressbench.errors import CompressbenchError
from compressbench.hashing import config_hash
from compressbench.imports import is_user_reference, reference_fingerprint
from compressbench.machine_lock import timing_slot, training_slot
from compressbench.measure.accuracy import collapse_flag
from compressbench.measure.compare import (
    MeasureSettings,
    measure_candidates,
    measured_runtimes,
    speed_mechanism,
    verified_export,
)
from compressbench.measure.environment import environment
from compressbench.models import (
    ModelConfig,
    build_model,
    holds_trained_weights,
    is_onnx_model,
    is_zoo_model,
    load_onnx_model,
    model_source_of,
)
from compressbench.prefixes import CHECK_SAMPLES, load_prefix, prefix_key, save_prefix, weights_digest
from compressbench.progress import captured, log
from compressbench.ranking.intervals import speedup_interval
from compressbench.recipes import Recipe, final_form, load_recipe
from compressbench.results import Metrics, RunResult
from compressbench.runtime import serving_runtimes
from compressbench.runtime.export import VERIFY_SAMPLES
from compressbench.techniques import Candidate, Context
from compressbench.training import TrainConfig, default_train_config, train
from compressbench.weights import load_weights, weights_fingerprint

SLOWER_THAN = 0.95
# A drop of LARGE_DROP_PT points or more after fewer than SHORT_FINE_TUNE_STEPS optimiser steps of fine-tuning
# is flagged as a budget too short for the technique (on the zoo, the 1,000+ steps of Fashion-MNIST fine-tunes
# recover to within a point or two).
LARGE_DROP_PT, SHORT_FINE_TUNE_STEPS = 5.0, 1000
# How a user loader's arrays become model inputs; part of a user dataset's run keys, so that runs prepared under
# an earlier rule (one scalar mean / std for tabular inputs) are never taken for current ones.
DATA_PREPARATION = "normalisation auto: per-feature for (N, F) inputs"


class JobConfig(BaseModel):
    """Everything that determines a run's figures; its hash is the run's key in the store."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    dataset: DatasetConfig
    model: ModelConfig
    recipe: dict[str, Any]  # canonical recipe (every default filled in)
    seed: int = Field(0, ge=0)
    # The seed of the baseline and its train / val split when it is not `seed`: several seeds of the compression step
    # (calibration samples, fine-tuning order, a student's initialisation) from one baseline. None: `seed`.
    baseline_seed: int | None = Field(None, ge=0)
    training: TrainConfig
    measure: MeasureSettings = MeasureSettings()

    @property
    def data_seed(self) -> int:
        """The seed the baseline was trained with and the data split by."""
        return self.seed if self.baseline_seed is None else self.baseline_seed

    def identity(self) -> dict[str, Any]:
        identity = self.model_dump(mode="json")
        if self.baseline_seed is None:  # runs stored before compression seeds existed keep their keys
            del identity["baseline_seed"]
        if self.measure.latency.target_half_width is None:  # as those stored before adaptive timing existed
            del identity["measure"]["latency"]["target_half_width"]
        if self.measure.serving == "latency":  # as those stored before serving profiles existed
            del identity["measure"]["serving"]
        if not self.measure.footprint:  # as those stored before the memory probe existed
            del identity["measure"]["footprint"]
        if not self.measure.tune:  # as those stored before latency-profile tuning existed
            del identity["measure"]["tune"]
        if self.model.weights is not None:  # the weights' content, wherever the file lies
            identity["model"]["weights"] = f"sha256:{weights_fingerprint(self.model.weights)}"
        if is_onnx_model(self.model.name):
            identity["model"]["name"] = f"onnx sha256:{weights_fingerprint(self.model.name)}"
        fingerprints = {
            ref: reference_fingerprint(ref) for ref in (self.dataset.name, self.model.name) if is_user_reference(ref)
        }
        if (model_source := model_source_of(self.model.name)) is not None:  # a folder's content, wherever it lies
            fingerprints[self.model.name] = model_source.fingerprint(self.model.name)
        if (data_source := data_source_of(self.dataset.name)) is not None:
            fingerprints[self.dataset.name] = data_source.fingerprint(self.dataset)
        if fingerprints:
            identity["fingerprints"] = fingerprints
        if is_user_reference(self.dataset.name):
            identity["data_preparation"] = DATA_PREPARATION
        return identity

    def key(self) -> str:
        """The hash of the identity; a step's family is derived from its technique, so it is left out (runs stored
        before families were recorded keep their keys)."""
        identity = self.identity()
        identity["recipe"] = {
            **identity["recipe"],
            "steps": [{k: v for k, v in step.items() if k != "family"} for step in identity["recipe"]["steps"]],
        }
        return config_hash(identity)


def make_job(
    dataset: DatasetConfig | str,
    model: ModelConfig | str,
    recipe: Recipe | str | dict,
    *,
    seed: int = 0,
    baseline_seed: int | None = None,
    training: TrainConfig | None = None,
    measure: MeasureSettings | None = None,
) -> JobConfig:
    check_type(
        "dataset", dataset, (str, DatasetConfig), "a dataset name, a 'file.py:function' loader or a DatasetConfig"
    )
    check_type("model", model, (str, ModelConfig), "a zoo model name, a 'file.py:function' factory or a ModelConfig")
    check_type("recipe", recipe, (str, dict, Recipe), "a recipe name, a YAML file, a dict or a Recipe")
    dataset = DatasetConfig(name=dataset) if isinstance(dataset, str) else dataset
    model = ModelConfig(name=model) if isinstance(model, str) else model
    recipe = load_recipe(recipe)
    if is_onnx_model(model.name):
        check_graph_recipe(recipe, model.name)
    if (model.weights is not None or holds_trained_weights(model.name)) and not dataset.as_given:
        # A trained model takes its inputs as its own data pipeline made them: the tool must not re-normalise them.
        dataset = dataset.model_copy(update={"as_given": True})
    measure = measure or MeasureSettings()
    check_servable(recipe, measure.runtime)
    return JobConfig(
        dataset=dataset,
        model=model,
        recipe=recipe.canonical(),
        seed=seed,
        baseline_seed=None if baseline_seed == seed else baseline_seed,
        training=training or default_train_config(model.name),
        measure=measure,
    )


def check_type(field: str, value: object, types: tuple[type, ...], expected: str) -> None:
    """The API's refusal of a wrong type: one line naming the argument, what it takes and what it got."""
    if isinstance(value, types):
        return
    got = type(value).__name__
    if callable(value) and hasattr(value, "__module__") and hasattr(value, "__name__"):
        code = getattr(value, "__code__", None)
        where = code.co_filename if value.__module__ == "__main__" and code else value.__module__
        got = f"the {got} {value.__name__} (pass it by reference, as '{where}:{value.__name__}')"
    raise CompressbenchError(f"{field}: expected {expected}; got {got}")


def check_servable(recipe: Recipe, runtime: str) -> None:
    """Refuse before training when the recipe's output cannot run on the chosen runtime (auto finds one)."""
    kind, precision = final_form(recipe)
    servable = serving_runtimes(kind, precision)
    if runtime != "auto" and runtime not in servable:
        last = recipe.steps[-1].technique.name
        options = " or ".join(servable) or "no single runtime"
        raise CompressbenchError(
            f"recipe {recipe.name!r}: what {last} produces runs on {options}, not {runtime}; "
            f"use --runtime {servable[0] if servable else 'auto'} or --runtime auto"
        )


def check_graph_recipe(recipe: Recipe, path: str) -> None:
    """An ONNX model has no torch code: techniques that train or change the network's structure are refused."""
    if training := [step.technique.name for step in recipe.steps if step.technique.trains]:
        raise CompressbenchError(
            f"recipe {recipe.name!r}: {', '.join(training)} trains or fine-tunes the model, and {path} is an ONNX "
            "graph without its torch code; pass --model file.py:build --weights ... for training techniques, or "
            "choose graph techniques (quant.dynamic, quant.static, quant.nncf, precision.*)"
        )


def check_train_split(recipe: Recipe, data: DataBundle) -> None:
    """Refuse, before anything runs, a recipe that trains when the loader gave evaluation data only."""
    if len(data.train) or not (training := [s.technique.name for s in recipe.steps if s.technique.trains]):
        return
    raise CompressbenchError(
        f"recipe {recipe.name!r}: {', '.join(training)} fine-tunes or trains the model, and dataset "
        f"{data.spec.name!r} has no train split (the loader returned evaluation data only); return x_train / "
        "y_train as well, or choose post-training techniques (quant.dynamic, quant.static, quant.nncf, precision.*)"
    )


def job_data(job: JobConfig) -> DataBundle:
    """The job's data: split as its baseline's was; with a compression seed of its own, calibration drawn by it."""
    data = load_dataset(job.dataset, job.data_seed)
    return data if job.seed == job.data_seed else data.recalibrated(job.seed)


def trained_baseline(job: JobConfig, data: DataBundle, cache: Cache):
    """The job's trained baseline: the user's weights when given (never trained), else from the cache when any
    earlier job trained the same one, else trained here."""
    if is_onnx_model(job.model.name):
        graph = load_onnx_model(job.model.name, data.spec)
        return graph, {"origin": "user ONNX model", "weights_sha256": weights_fingerprint(job.model.name)}
    if (source := model_source_of(job.model.name)) is not None and source.holds_weights and job.model.weights is None:
        module = build_model(job.model, data.spec, seed=job.data_seed)
        return module, {"origin": source.description, "weights_sha256": source.fingerprint(job.model.name)}
    if job.model.weights is not None:
        module = load_weights(build_model(job.model, data.spec, seed=job.data_seed), job.model.weights)
        meta = {"origin": "user weights", "weights": job.model.weights}
        return module, {**meta, "weights_sha256": weights_fingerprint(job.model.weights)}
    identity = {
        "dataset": job.dataset.model_dump(mode="json"),
        "model": job.model.model_dump(mode="json"),
        "training": job.training.model_dump(mode="json"),
        "seed": job.data_seed,
        "fingerprints": job.identity().get("fingerprints", {}),
        **({"data_preparation": DATA_PREPARATION} if is_user_reference(job.dataset.name) else {}),
    }

    def fit(model) -> dict[str, Any]:
        report = train(model, data, job.training, seed=job.data_seed, description=f"baseline {job.model.name}",
                       channels_last=is_zoo_model(model))  # fmt: skip
        return {
            "val_accuracy": report.val_accuracy,
            "epochs_run": report.epochs_run,
            "best_epoch": report.best_epoch,
            "train_seconds": report.seconds,
        }

    return cache.model("baselines", identity, lambda: build_model(job.model, data.spec, seed=job.data_seed), fit)


@dataclass
class Prepared:
    """A job's compress phase done: the baseline and the candidate its measure phase times. It pickles (an OpenVINO
    model travels as its IR), so the measure phase may run in another process or on another node."""

    baseline: nn.Module | onnx.ModelProto
    baseline_meta: dict[str, Any]
    candidate: Candidate
    seconds: float = 0.0  # the compress phase's wall time

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "candidate": _portable(self.candidate, pack)}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update({**state, "candidate": _portable(state["candidate"], unpack)})


def _portable(candidate: Candidate, convert) -> Candidate:
    companions = {name: _portable(companion, convert) for name, companion in candidate.companions.items()}
    artifact = None if candidate.artifact is None else convert(candidate.artifact)
    return dataclasses.replace(candidate, artifact=artifact, companions=companions)


def run_job(
    job: JobConfig, cache: Cache, measure_every_step: bool = False, chosen_artifacts: dict[str, Any] | None = None
) -> RunResult:
    """Run one job end to end and return its result object (the shape `compressbench run --json` prints).

    With `measure_every_step`, the candidate is also measured after each earlier step and those results are kept
    under `"stages"` (one per step, the last being the result itself): a recipe's stage-by-stage breakdown from one
    run of its steps. `chosen_artifacts` receives what each measured model's chosen runtime served ("candidate",
    "baseline", ...), the artifact a deployer would ship.
    """
    stages: list[RunResult] = []
    steps = len(job.recipe["steps"])

    def measure_stage(number: int, prepared: Prepared) -> None:
        if number < steps:
            stages.append(measure_phase(job, prepared))

    prepared = compress_phase(job, cache, after_step=measure_stage if measure_every_step else None)
    result = measure_phase(job, prepared, chosen_artifacts)
    if measure_every_step:
        result.stages = [*stages, result.model_copy()]
    return result


def compress_phase(job: JobConfig, cache: Cache, after_step: Callable[[int, Prepared], None] | None = None) -> Prepared:
    """Train (or load) the baseline and apply the recipe's steps: everything but the measurement. Each step holds
    the machine's work slot (`compressbench.machine_lock`), so no timing of another worker runs beside it.
    `after_step(number, prepared)` is called after each step; with it, no prefix is taken from the cache (every
    step runs here)."""
    started = time.perf_counter()
    data = job_data(job)
    recipe = load_recipe(job.recipe)
    check_train_split(recipe, data)
    log(f"[dim]{job.recipe['name']}: the baseline ({job.model.name}) ...[/dim]")
    with training_slot():
        baseline, baseline_meta = trained_baseline(job, data, cache)
    graph_only = isinstance(baseline, onnx.ModelProto)  # a user's ONNX model: graph techniques only
    if job.measure.runtime != "torch" and not graph_only:
        log(f"[dim]{job.recipe['name']}: export check on {min(len(data.test), VERIFY_SAMPLES)} test inputs "
            f"({time.perf_counter() - started:.0f} s in)[/dim]")  # fmt: skip
        verified_export(baseline, data, job.measure)  # an export that is not the model is refused before any step
    context = Context(
        data=data,
        baseline=None if graph_only else baseline,
        model=job.model,
        train_config=job.training,
        seed=job.seed,
        cache=cache,
        latency=job.measure.latency,
        runtimes=tuple(measured_runtimes(job.measure)),
    )
    candidate, done = starting_candidate(baseline), 0
    check_inputs = torch.from_numpy(data.val.x[:CHECK_SAMPLES])
    digest = "" if graph_only else weights_digest(baseline)

    def key_after(number: int) -> str:
        return prefix_key(job.identity(), job.recipe["steps"][:number], digest)

    # The longest prefix of this recipe an earlier job computed (never when every step is to be measured).
    for number in range(len(recipe.steps) - 1, 0, -1) if not (after_step or graph_only) else ():
        if (cached := load_prefix(cache.root, key_after(number), baseline, check_inputs)) is not None:
            candidate, done = cached, number
            names = " -> ".join(step.technique.name for step in recipe.steps[:number])
            log(f"[dim]steps 1-{number} ({names}): from the prefix cache[/dim]")
            break

    for number, step in enumerate(recipe.steps, start=1):
        if number <= done:
            continue
        log(f"[dim]{job.recipe['name']}: step {number}/{len(recipe.steps)}: {step.technique.name} "
            f"({time.perf_counter() - started:.0f} s in)[/dim]")  # fmt: skip
        with training_slot(), captured(job.recipe["name"]):
            candidate = step.build().apply(candidate, context)
        if candidate.artifact is None and not graph_only:  # the last step too: a longer recipe may follow it
            save_prefix(cache.root, key_after(number), candidate, baseline, check_inputs)
        if after_step is not None:
            after_step(number, Prepared(baseline, baseline_meta, candidate))
    return Prepared(baseline, baseline_meta, candidate, time.perf_counter() - started)


def measure_phase(job: JobConfig, prepared: Prepared, chosen_artifacts: dict[str, Any] | None = None) -> RunResult:
    """Measure the prepared candidate (and its companions) beside the baseline: pure, it never trains. It holds the
    machine's timing slot throughout, so nothing of another worker runs on this machine meanwhile."""
    started = time.perf_counter()
    data = job_data(job)
    candidate = prepared.candidate
    measured = {"baseline": starting_candidate(prepared.baseline, copy_module=False), "candidate": candidate,
                **candidate.companions}  # fmt: skip
    log(f"[dim]{job.recipe['name']}: measuring {len(measured)} models (accuracy on {len(data.test)} inputs, latency at "
        f"batch {', '.join(map(str, job.measure.latency.batch_sizes))})[/dim]")  # fmt: skip
    with timing_slot(), captured(job.recipe["name"]):
        metrics = measure_candidates(measured, data, job.measure, chosen_artifacts)
    result = summarise(job, data, metrics, candidate, prepared.baseline_meta)
    result.phase_seconds = {"compress": prepared.seconds, "measure": time.perf_counter() - started}
    return result


def starting_candidate(baseline: nn.Module | onnx.ModelProto, copy_module: bool = True) -> Candidate:
    """The candidate a recipe starts from: a copy of the baseline module, or a user's ONNX graph as given."""
    if isinstance(baseline, onnx.ModelProto):
        return Candidate(module=None, artifact=baseline, float_graph=baseline)
    return Candidate(module=copy.deepcopy(baseline) if copy_module else baseline)


def summarise(
    job: JobConfig, data: DataBundle, metrics: dict[str, Metrics], candidate: Candidate, baseline_meta: dict
) -> RunResult:
    base, cand = metrics["baseline"], metrics["candidate"]
    speedup = {b: base.latency_ms[b] / cand.latency_ms[b] for b in base.latency_ms}
    intervals = {b: speedup_interval(s, base.latency[b].get("block_ms", ()), cand.latency[b].get("block_ms", ()))
                 for b, s in speedup.items() if base.latency and cand.latency}  # fmt: skip
    flags = list(candidate.flags)
    # Below 0.95x is outside the run-to-run noise of interleaved medians here; between 0.95 and 1.0 is "no change".
    # The recipe "none" is the baseline itself: a different speed is the runtime's (auto), never a slower model.
    if job.recipe["steps"]:
        flags += [f"slower than baseline at batch {b} ({s:.2f}x)" for b, s in speedup.items() if s < SLOWER_THAN]
    if not cand.finite_outputs:
        flags.append("non-finite outputs (NaN or inf) on the runtime")
    if collapsed := collapse_flag(cand.accuracy, data.test.y):
        flags.append(collapsed)
    if short := short_fine_tune_flag((base.accuracy - cand.accuracy) * 100, candidate.records):
        flags.append(short)
    companions = {name: metrics[name] for name in metrics.keys() - {"baseline", "candidate"}}
    return RunResult(
        dataset=job.dataset.name,
        model=job.model.name,
        recipe=job.recipe["name"],
        seed=job.seed,
        baseline=base,
        candidate=cand,
        speedup=speedup,
        speedup_ci={b: list(interval) for b, interval in intervals.items() if interval},
        speed_mechanism=speed_mechanism(base, cand),
        size_ratio=base.size_bytes / cand.size_bytes,
        compression_ratio=base.params * 4 / cand.stored_bytes,
        accuracy_drop_pt=(base.accuracy - cand.accuracy) * 100,
        steps=list(candidate.records),
        flags=flags,
        baseline_training={**baseline_record(job, baseline_meta)},
        data=data_record(data),
        measurement=job.measure.model_dump(mode="json"),
        environment=environment(),
        **companions,
    )


def baseline_record(job: JobConfig, meta: dict[str, Any]) -> dict[str, Any]:
    """How the baseline was trained (or that it was shipped), and the test accuracy the zoo model should reach on
    this data with its family's training (the shipped baseline's), for a standard-size zoo model."""
    record = {k: v for k, v in meta.items() if k != "identity"}
    standard = not is_user_reference(job.model.name) and job.model.width == 1.0 and job.model.depth is None
    if standard and (reference := shipped_accuracies().get((job.dataset.name, job.model.name))) is not None:
        record["reference_accuracy"] = reference
    return record


def short_fine_tune_flag(drop_pt: float, records: list[dict[str, Any]]) -> str | None:
    """A large accuracy drop after a short fine-tune is more likely the budget than the technique: say so."""
    steps = [record["fine_tune_steps"] for record in records if "fine_tune_steps" in record]
    if not steps or drop_pt < LARGE_DROP_PT or sum(steps) >= SHORT_FINE_TUNE_STEPS:
        return None
    return (
        f"accuracy fell {drop_pt:.1f} pt after only {sum(steps):,} fine-tuning optimiser steps in all; a longer "
        "fine-tune (fine_tune_epochs or fine_tune_min_steps) may recover much of it"
    )


def data_record(data: DataBundle) -> dict[str, Any]:
    """What a reader needs to know about the inputs: how they were normalised, and how many samples each split had."""
    return {
        "normalisation": data.spec.normalisation,
        "how": data.notes.get("how", "prepared by the loader (a DataBundle)"),
        **{name: len(data.split(name)) for name in ("train", "val", "test", "calibration")},
    }
