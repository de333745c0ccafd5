"""Search: the fastest (or smallest) model within an accuracy budget, found by Optuna in the time given.

A trial is a recipe drawn from the search space (which families in which order, each step's parameters) and run as an
ordinary job: the same key, measurement and results store as a study's, so a recipe seen before comes from the
store, a killed search resumes with its trials, and a pruned, fine-tuned model that several trials quantize is
computed once (the prefix cache). NSGA-II minimises (latency at the batch that matters or stored size, accuracy
drop) by default, TPE the objective alone; the accuracy budget is a constraint, so infeasible trials are kept and
shown but never chosen. The model's fixed recipes are enqueued first, so a search never ends worse than they do.
"""

from __future__ import annotations

import fcntl
import multiprocessing
import os
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from compressbench import progress
from compressbench.cache import Cache, default_cache_dir
from compressbench.data import DatasetConfig
from compressbench.errors import CompressbenchError
from compressbench.machine_lock import VARIABLE
from compressbench.measure.compare import MeasureSettings
from compressbench.measure.latency import LatencySettings
from compressbench.models import ModelConfig, is_onnx_model
from compressbench.reporting.search import feasible as _feasible
from compressbench.reporting.search import figure_of as _figure
from compressbench.reporting.search import write_search_report
from compressbench.results import RunResult
from compressbench.runner.executors import ExecutorSettings, RayJobs
from compressbench.runner.job import JobConfig, make_job, run_job
from compressbench.runtime import installed_runtimes
from compressbench.store import Store

Objective = Literal["latency", "size"]
STUDY_NAME = "search"
STUDENT_WIDTHS = (0.25, 0.5, 0.75)
CALIBRATIONS = ("minmax", "percentile")
# Which layers an int8 step keeps in float: its own choice by measured speed within the budget ("auto"), none, or
# the first and last weighted layers (where int8 costs most accuracy in most networks).
FLOAT_LAYERS = ("auto", "none", "first+last")
# Families in order. Deep compression (magnitude pruning -> weight sharing -> Huffman) shrinks the stored file, not
# the float runtime's time: a plan of the size objective.
LATENCY_PLANS = ("quant", "prune", "prune+quant", "distill", "distill+quant", "distill+prune+quant")
SIZE_PLANS = (*LATENCY_PLANS, "deep-compression", "distill+deep-compression")


@dataclass(frozen=True)
class SearchSpace:
    """What a trial may draw: the plans (families in order) and the int8 techniques installed here."""

    plans: tuple[str, ...]
    quantizers: tuple[str, ...]

    @classmethod
    def for_model(
        cls, trains: bool, runtime: str = "auto", objective: Objective = "latency", plans: Sequence[str] | None = None
    ) -> SearchSpace:
        """The plans of the objective (or those named) for a model with torch code and train data; int8 alone for a
        graph or evaluation data. NNCF when its OpenVINO output can be measured (runtime auto or openvino, and
        OpenVINO installed)."""
        nncf = runtime in ("auto", "openvino") and "openvino" in installed_runtimes()
        quantizers = ("quant.static", "quant.dynamic") + (("quant.nncf",) if nncf else ())
        if plans is None:
            return cls((SIZE_PLANS if objective == "size" else LATENCY_PLANS) if trains else ("quant",), quantizers)
        unknown = [plan for plan in plans if plan not in SIZE_PLANS]
        if unknown or not plans:
            raise CompressbenchError(f"plans: unknown {unknown or 'none given'}; choose from {', '.join(SIZE_PLANS)}")
        if not trains and set(plans) != {"quant"}:
            raise CompressbenchError(
                f"plans: {[p for p in plans if p != 'quant']} need a torch model with a train split; "
                "an ONNX graph or evaluation-only data takes 'quant' alone"
            )
        return cls(tuple(dict.fromkeys(plans)), quantizers)

    def fixed(self) -> dict[str, dict[str, Any]]:
        """The default study's recipes for a model, by their study names, as parameters of this space: the first
        trials of a search."""
        static = {"int8": "quant.static", "calibration": "minmax", "float_layers": "auto"}
        pruned = {"prune_ratio": 0.5, "fine_tune_epochs": 4, "prune_ratios": "uniform"}
        fixed: dict[str, dict[str, Any]] = {}
        if "quant" in self.plans:
            fixed["quant.static"] = {"plan": "quant", **static}
            fixed["quant.dynamic"] = {"plan": "quant", "int8": "quant.dynamic", "float_layers": "none"}
            if "quant.nncf" in self.quantizers:
                fixed["quant.nncf"] = {"plan": "quant", "int8": "quant.nncf"}
        if "prune" in self.plans:
            fixed["prune.channels-50"] = {"plan": "prune", **pruned}
        if "prune+quant" in self.plans:
            fixed["prune+quant"] = {"plan": "prune+quant", **pruned, **static}
        if "distill" in self.plans:
            fixed["distill.kd"] = {"plan": "distill", "student_width": 0.5}
        if "distill+prune+quant" in self.plans:
            fixed["distill+prune+quant"] = {"plan": "distill+prune+quant", "student_width": 0.5, **pruned,
                                            "prune_ratio": 0.25, **static}  # fmt: skip
        if "deep-compression" in self.plans:
            fixed["deep-compression"] = {"plan": "deep-compression", "sparsity": 0.9, "fine_tune_epochs": 4,
                                         "conv_bits": 8, "fc_bits": 5}  # fmt: skip
        return fixed


def suggest_recipe(trial: Any, space: SearchSpace) -> dict[str, Any]:
    """A recipe from the trial's parameters; its name is its content, so the same draw is the same job."""
    plan = trial.suggest_categorical("plan", list(space.plans))
    steps: list[dict[str, Any]] = []
    parts = []
    if plan.startswith("distill"):
        width = trial.suggest_categorical("student_width", list(STUDENT_WIDTHS))
        # The trial is judged against the teacher: the student trained alone (distill.kd's control) is not needed.
        steps.append({"technique": "distill.kd", "width": width, "control": False})
        parts.append(f"distill w{width:g}")
    if "prune" in plan.split("+"):
        ratio = round(trial.suggest_float("prune_ratio", 0.2, 0.7, step=0.05), 2)
        epochs = trial.suggest_int("fine_tune_epochs", 1, 6)
        ratios = trial.suggest_categorical("prune_ratios", ["uniform", "sensitivity"])
        steps.append({"technique": "prune.channels", "ratio": ratio, "ratios": ratios, "fine_tune_epochs": epochs})
        parts.append(f"prune {ratio:.2f} {ratios} ft{epochs}")
    if plan.endswith("deep-compression"):
        sparsity = round(trial.suggest_float("sparsity", 0.5, 0.97, step=0.01), 2)
        epochs = trial.suggest_int("fine_tune_epochs", 1, 6)
        conv_bits, fc_bits = trial.suggest_int("conv_bits", 2, 8), trial.suggest_int("fc_bits", 2, 8)
        # At least 2,000 optimiser steps, as the deep-compression recipe: fewer left small-data models far down.
        steps.append({"technique": "prune.magnitude", "sparsity": sparsity, "schedule": "gradual",
                      "fine_tune_epochs": epochs, "fine_tune_min_steps": 2000})  # fmt: skip
        steps.append({"technique": "quant.weight_sharing", "conv_bits": conv_bits, "fc_bits": fc_bits})
        steps.append({"technique": "encode.huffman"})
        parts.append(f"magnitude {sparsity:.2f} ft{epochs} -> share conv {conv_bits} / fc {fc_bits} bits -> huffman")
    if plan.endswith("quant"):
        quantizer = trial.suggest_categorical("int8", list(space.quantizers))
        step: dict[str, Any] = {"technique": quantizer}
        label = quantizer.removeprefix("quant.")
        if quantizer == "quant.static":
            step["calibration"] = trial.suggest_categorical("calibration", list(CALIBRATIONS))
            label += f" {step['calibration']}"
        if quantizer in ("quant.static", "quant.dynamic"):
            float_layers = trial.suggest_categorical("float_layers", list(FLOAT_LAYERS))
            step["exclude"] = [] if float_layers == "none" else float_layers
            label += f" float:{float_layers}"
        steps.append(step)
        parts.append(label)
    return {"name": "search: " + " -> ".join(parts), "steps": steps}


@dataclass(frozen=True)
class SearchOutcome:
    out: Path
    trials: int
    feasible: int
    best: dict[str, Any] | None  # recipe, steps, speed-up, size ratio, drop of the best feasible trial
    stopped: str  # why the search ended
    leaders: list[dict[str, Any]] = field(default_factory=list)  # the best feasible trials, best first (at most 3)
    best_fixed: dict[str, Any] | None = None  # the best feasible of the enqueued fixed recipes


def search(
    dataset: str | DatasetConfig,
    model: str | ModelConfig,
    *,
    out: Path | str,
    weights: str | None = None,
    max_accuracy_drop: float = 1.0,
    objective: Objective = "latency",
    batch: int = 256,
    trials: int = 20,
    timeout_s: float | None = None,
    goal: float | None = None,
    sampler: Literal["nsga2", "tpe"] = "nsga2",
    plans: Sequence[str] | None = None,
    storage: str | None = None,
    seed: int = 0,
    measure: MeasureSettings | None = None,
    cache: Cache | None = None,
    executor: ExecutorSettings | None = None,
) -> SearchOutcome:
    """Run (or resume) a search of `trials` trials in all in this process; stop early at `timeout_s` or when a
    feasible trial reaches `goal` (a speed-up at `batch`, or a size ratio with objective size). `plans` narrows the
    space to those families in order (default: every plan of the objective). `executor` runs the trials on Ray, as
    many at once as the cluster has room for. Writes search.html and search.md."""
    optuna = _optuna()
    on_ray = executor if executor is not None and executor.kind == "ray" else None
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    storage = storage or f"sqlite:///{out / 'search.db'}"
    latency = LatencySettings().with_batch(batch)
    measure = measure or MeasureSettings(runtime="auto", target_batch=batch, latency=latency)
    model_config = model if isinstance(model, ModelConfig) else ModelConfig(name=model, weights=weights)
    first = make_job(dataset, model_config, "none", seed=seed, measure=measure)  # refusals before any trial
    trains = not is_onnx_model(model_config.name)
    space = SearchSpace.for_model(trains=trains, runtime=measure.runtime, objective=objective, plans=plans)
    described = {"dataset": first.dataset.name, "model": model_config.name, "objective": objective, "batch": batch,
                 "max_accuracy_drop": max_accuracy_drop, "runtime": measure.runtime}  # fmt: skip
    with open(out / "search.lock", "a+") as lock:  # one process at a time creates the schema and the first trials
        fcntl.flock(lock, fcntl.LOCK_EX)
        study = _study(optuna, storage, sampler, seed, space, described, population=max(4, min(50, trials // 4)),
                       heartbeat=on_ray is None)  # fmt: skip
    results = Store(out / "results.db")
    cache = cache or Cache(default_cache_dir())
    if on_ray is None:
        _result(first, results, cache)  # the baseline's own run, stored beside the trials (each measures it too)
    started = time.monotonic()

    def trial_job(trial: Any) -> JobConfig:
        recipe = suggest_recipe(trial, space)
        job = make_job(first.dataset, model_config, recipe, seed=seed, measure=measure)
        trial.set_user_attr("recipe", recipe["name"])
        trial.set_user_attr("steps", recipe["steps"])
        trial.set_user_attr("key", job.key())
        return job

    def record(trial: Any, result: RunResult) -> tuple[float, ...] | float:
        values = _values(result, objective, batch)
        trial.set_user_attr("accuracy_drop_pt", result.accuracy_drop_pt)
        trial.set_user_attr("speedup", result.speedup.get(str(batch)))
        trial.set_user_attr("size_ratio", result.compression_ratio)
        trial.set_user_attr("runtime", result.runtime)
        trial.set_constraint("accuracy_drop_over_budget", result.accuracy_drop_pt - max_accuracy_drop)
        return values if sampler == "nsga2" else values[0]

    def finished_one(study: Any, trial: Any) -> bool:
        """Print the trial's line; whether the search should stop."""
        best = _best(study, objective)
        done = len(_finished(study))
        fixed = f"fixed {trial.user_attrs['fixed']}: " if trial.user_attrs.get("fixed") else ""
        line = f"trial {trial.number} ({done}/{trials}): {fixed}{trial.user_attrs.get('recipe', '?')}: "
        line += trial.state.name
        if "speedup" in trial.user_attrs:
            line += (f", drop {trial.user_attrs['accuracy_drop_pt']:+.2f} pt, {trial.user_attrs['speedup']:.2f}x at "
                     f"batch {batch}, {trial.user_attrs['size_ratio']:.1f}x smaller")  # fmt: skip
        line += f"; best feasible: {_describe(best, batch)}"
        progress.log(line)
        if goal is not None and best is not None and _figure(best, objective) >= goal:
            study.set_user_attr("stopped", f"goal {goal:g}x reached by trial {best.number}")
            return True
        if timeout_s is not None and time.monotonic() - started >= timeout_s:
            study.set_user_attr("stopped", f"timeout after {timeout_s:g} s")
            return True
        return done >= trials

    remaining = trials - len(_finished(study))
    if remaining > 0 and "stopped" not in study.user_attrs:
        if on_ray is not None:
            _optimize_on_ray(study, remaining, first, trial_job, record, finished_one, results, cache, on_ray)
        else:

            def objective_fn(trial: Any) -> tuple[float, ...] | float:
                return record(trial, _result(trial_job(trial), results, cache))

            def callback(study: Any, trial: Any) -> None:
                if finished_one(study, trial):
                    study.stop()

            study.optimize(objective_fn, n_trials=remaining, callbacks=[callback], catch=(CompressbenchError,),
                           gc_after_trial=True)  # fmt: skip
    finished = _finished(study)
    feasible = sorted((t for t in finished if _feasible(t)), key=lambda t: -_figure(t, objective))
    leaders = [{"trial": t.number, **t.user_attrs} for t in feasible[:3]]
    best_fixed = next(({"trial": t.number, **t.user_attrs} for t in feasible if t.user_attrs.get("fixed")), None)
    stopped = study.user_attrs.get("stopped", f"--trials {trials} reached")
    write_search_report(out, storage)
    return SearchOutcome(
        out=out,
        trials=len(finished),
        feasible=len(feasible),
        best=leaders[0] if leaders else None,
        stopped=stopped,
        leaders=leaders,
        best_fixed=best_fixed,
    )


def search_workers(workers: int, **options: Any) -> SearchOutcome:
    """`search(**options)` in `workers` processes on one storage (SQLite here; a PostgreSQL URL spans machines).
    They split the cores (torch threads = cores / workers) and share the machine lock (`compressbench.machine_lock`):
    trainings run side by side, but no timing overlaps another worker's training or timing."""
    if workers <= 1:
        return search(**options)
    if (executor := options.get("executor")) is not None and executor.kind == "ray":
        raise CompressbenchError("--workers: with --executor ray the cluster runs the trials; drop --workers")
    out = Path(options["out"])
    out.mkdir(parents=True, exist_ok=True)
    threads = max(1, (os.cpu_count() or 1) // workers)
    context = multiprocessing.get_context("spawn")
    processes = [context.Process(target=_worker, args=(options, str(out / "machine.lock"), threads))
                 for _ in range(workers)]  # fmt: skip
    for process in processes:
        process.start()
    for process in processes:
        process.join()
    if failed := [p.exitcode for p in processes if p.exitcode != 0]:
        raise CompressbenchError(f"search: {len(failed)} of {workers} workers failed (exit codes {failed})")
    return search(**options)  # every trial is done: this only reads the outcome


def _optimize_on_ray(study, remaining: int, first: JobConfig, trial_job, record, finished_one, results: Store,
                     cache: Cache, executor: ExecutorSettings) -> None:  # fmt: skip
    """Optuna's ask / tell with as many trials in flight as the cluster runs compress phases at once. This process
    is the only one asking, telling and storing; a trial left running by an earlier driver that died is failed and
    asked again with the same parameters."""
    import optuna

    state = optuna.trial.TrialState
    for abandoned in study.get_trials(deepcopy=False, states=(state.RUNNING,)):
        study.tell(abandoned.number, state=state.FAIL)
        study.enqueue_trial(
            abandoned.params, user_attrs={k: v for k, v in abandoned.user_attrs.items() if k == "fixed"}
        )
    cluster = RayJobs(cache, executor)
    running: dict[str, list[Any]] = {}  # job key -> its trials (two trials may draw the same recipe)
    asked, stop = 0, False
    try:
        if not results.has(first.key()):  # the baseline's own run, on the cluster like the trials
            running[first.key()] = []
            cluster.submit(first)
        while True:
            while not stop and asked < remaining and len(running) < cluster.slots:
                trial, asked = study.ask(), asked + 1
                try:
                    job = trial_job(trial)
                except CompressbenchError as error:
                    trial.set_user_attr("error", str(error))
                    stop = finished_one(study, study.tell(trial, state=state.FAIL))
                    continue
                stored = results.get(job.key())
                if stored is not None and stored.status == "ok" and stored.result is not None:
                    stop = finished_one(study, study.tell(trial, record(trial, stored.result)))
                elif job.key() in running:
                    running[job.key()].append(trial)
                else:
                    running[job.key()] = [trial]
                    cluster.submit(job)
            if not running:
                return
            outcome = cluster.next()
            if outcome.result is not None:
                results.put(outcome.job.key(), outcome.job.identity(), result=outcome.result)
            for trial in running.pop(outcome.job.key()):
                if outcome.result is None:
                    trial.set_user_attr("error", (outcome.error or "").splitlines()[0])
                    told = study.tell(trial, state=state.FAIL)
                else:
                    told = study.tell(trial, record(trial, outcome.result))
                stop = finished_one(study, told) or stop
    except KeyboardInterrupt:
        cluster.cancel()
        raise
    finally:
        cluster.close()


def _worker(options: dict[str, Any], lock: str, threads: int) -> None:
    import torch

    os.environ[VARIABLE] = lock
    torch.set_num_threads(threads)
    search(**options)


def _optuna():
    try:
        import optuna
    except ImportError:
        raise CompressbenchError("search needs Optuna: pip install optuna (or make setup)") from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


def _study(
    optuna,
    storage: str,
    sampler: str,
    seed: int,
    space: SearchSpace,
    described: dict[str, Any],
    population: int,
    heartbeat: bool = True,
):
    """Create or load the Optuna study; a new one gets the fixed recipes enqueued as its first trials. A trial whose
    process died (no heartbeat) is failed and queued again with the same parameters when the search resumes.
    NSGA-II's generation is a quarter of the trials (at least 4, at most Optuna's 50): with its default of 50, a
    40-trial search would never leave its random first generation."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)  # heartbeats: stable since 2.8
        # SQLite shared by several worker processes (and their heartbeat threads): wait for a lock, never fail on it.
        engine = {"connect_args": {"timeout": 120}} if storage.startswith("sqlite") else None
        rdb = optuna.storages.RDBStorage(
            storage,
            engine_kwargs=engine,
            **(
                {
                    "heartbeat_interval": int(os.environ.get("COMPRESSBENCH_SEARCH_HEARTBEAT", "30")),
                    "grace_period": int(os.environ.get("COMPRESSBENCH_SEARCH_GRACE", "120")),
                    "heartbeat_stale_trial_callback": optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=2),
                }
                if heartbeat  # ask / tell on Ray: one driver, which re-asks the trials a dead driver left running
                else {}
            ),
        )
    # Constraints come from trial.set_constraint (the accuracy budget): both samplers prefer feasible trials.
    if sampler == "nsga2":
        chosen = optuna.samplers.NSGAIISampler(seed=seed, population_size=population)
        directions = ["minimize", "minimize"]
    else:
        chosen = optuna.samplers.TPESampler(seed=seed)
        directions = ["minimize"]
    study = optuna.create_study(storage=rdb, study_name=STUDY_NAME, sampler=chosen, directions=directions,
                                load_if_exists=True)  # fmt: skip
    if not study.trials:
        for name, params in space.fixed().items():
            study.enqueue_trial(params, user_attrs={"fixed": name}, skip_if_exists=True)
        for name, value in described.items():
            study.set_user_attr(name, value)
    return study


def _result(job, results: Store, cache: Cache) -> RunResult:
    """The job's result from the store, or run now and stored (a failure raises: the trial fails, the search goes
    on)."""
    stored = results.get(job.key())
    if stored is not None and stored.status == "ok" and stored.result is not None:
        return stored.result
    result = run_job(job, cache)
    results.put(job.key(), job.identity(), result=result)
    return result


def _values(result: RunResult, objective: str, batch: int) -> tuple[float, float]:
    """What is minimised: 1 / speed-up at `batch` (or stored bytes relative to fp32 parameters), then the drop."""
    primary = 1 / result.speedup[str(batch)] if objective == "latency" else 1 / result.compression_ratio
    return primary, result.accuracy_drop_pt


def _finished(study) -> list[Any]:
    import optuna

    return [t for t in study.get_trials(deepcopy=False) if t.state == optuna.trial.TrialState.COMPLETE]


def _best(study, objective: str):
    """The best feasible trial on the objective (an over-budget trial is never best)."""
    feasible = [t for t in _finished(study) if _feasible(t)]
    return max(feasible, key=lambda t: _figure(t, objective), default=None)


def _describe(trial, batch: int) -> str:
    if trial is None:
        return "none yet"
    attrs = trial.user_attrs
    return (f"trial {trial.number} {attrs['recipe']} ({attrs['speedup']:.2f}x at batch {batch}, "
            f"{attrs['size_ratio']:.1f}x smaller, drop {attrs['accuracy_drop_pt']:+.2f} pt)")  # fmt: skip


__all__ = ["SearchOutcome", "SearchSpace", "search", "search_workers", "suggest_recipe"]
