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
from compressbench.ranking import feasible as _feasible
from compressbench.ranking import figure_of as _figure
from compressbench.reporting.search import write_search_report
from compressbench.results import RunResult
from compressbench.runner.drive import Driver, Policy, drive
from compressbench.runner.executors import ExecutorSettings, JobOutcome, ray_loop
from compressbench.runner.job import JobConfig, make_job
from compressbench.store import Store
from compressbench.workflows.search_space import Objective, SearchSpace, suggest_recipe

STUDY_NAME = "search"
# A search runs a stored failure again (a trial is a fresh draw) and stores successes only: a failed trial is
# recorded in the Optuna study, with its error, not in the results store.
POLICY = Policy(rerun_failed=True, store_failures=False)


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
    serving: Literal["latency", "throughput"] = "latency",
) -> SearchOutcome:
    """Run (or resume) a search of `trials` trials in all in this process; stop early at `timeout_s` or when a
    feasible trial reaches `goal` (a speed-up at `batch`, or a size ratio with objective size). `plans` narrows the
    space to those families in order (default: every plan of the objective). `executor` runs the trials on Ray, as
    many at once as the cluster has room for. `serving` "throughput" times every trial for a throughput server (every
    core, concurrent batches; `MeasureSettings.serving`). Writes search.html and search.md."""
    if objective == "memory":
        raise CompressbenchError(
            "objective memory: not searched (each trial would need a fresh-process probe); use compress --objective "
            "memory, which probes every shortlisted candidate"
        )
    optuna = _optuna()
    on_ray = executor if executor is not None and executor.kind == "ray" else None
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    storage = storage or f"sqlite:///{out / 'search.db'}"
    latency = LatencySettings().with_batch(batch) if serving == "latency" else LatencySettings(batch_sizes=(batch,))
    measure = measure or MeasureSettings(runtime="auto", target_batch=batch, latency=latency, serving=serving)
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
        trial.set_user_attr("speedup_ci", result.speedup_ci.get(str(batch)))
        trial.set_user_attr("speed_mechanism", result.speed_mechanism)
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
    driver = Driver(results, POLICY)
    running: dict[str, list[Any]] = {}  # job key -> its trials (two trials may draw the same recipe)
    asked, stop, baseline_sent = 0, False, False

    def feed(free: int) -> list[JobConfig]:
        """The jobs of newly asked trials, at most `free`; a trial whose job is stored is told at once, one whose job
        is in flight waits for it. The baseline's own run goes first, on the cluster like the trials."""
        nonlocal asked, stop, baseline_sent
        submit = []
        if not baseline_sent:
            baseline_sent = True
            if driver.stored(first) is None:
                running[first.key()] = []
                submit.append(first)
        while not stop and asked < remaining and len(submit) < free:
            trial, asked = study.ask(), asked + 1
            try:
                job = trial_job(trial)
            except CompressbenchError as error:
                trial.set_user_attr("error", str(error))
                stop = finished_one(study, study.tell(trial, state=state.FAIL))
                continue
            if (stored := driver.stored(job)) is not None:
                stop = finished_one(study, study.tell(trial, record(trial, stored.result)))
            elif job.key() in running:
                running[job.key()].append(trial)
            else:
                running[job.key()] = [trial]
                submit.append(job)
        return submit

    def done(outcome: JobOutcome) -> None:
        nonlocal stop
        driver.record(outcome)
        for trial in running.pop(outcome.job.key()):
            if outcome.result is None:
                trial.set_user_attr("error", (outcome.error or "").splitlines()[0])
                told = study.tell(trial, state=state.FAIL)
            else:
                told = study.tell(trial, record(trial, outcome.result))
            stop = finished_one(study, told) or stop

    ray_loop(cache, executor, feed, done)


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


def _result(job: JobConfig, results: Store, cache: Cache) -> RunResult:
    """The job's result, stored or run now (a failure raises one line: the trial fails, the search goes on)."""
    outcome = drive([job], results, cache, POLICY)[0]
    if outcome.result is None:
        raise CompressbenchError((outcome.error or "failed").splitlines()[0])
    return outcome.result


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
