"""Run jobs here, one after another (`local`), or as Ray tasks across a cluster (`ray`).

On Ray a job is two tasks. The compress phase (train or load the baseline, apply the recipe) runs on any node with
`cpus_per_job` CPUs and as many torch threads. The measure phase runs where `measure_on` says (nodes advertising
that custom resource, e.g. `ray start --resources '{"target-xeon": 1}'`; default: any node) and takes the compress
phase's output straight from Ray's object store: no shared disk is assumed. On each node every task shares one
machine lock (`compressbench.machine_lock`): a recipe step holds it shared and a measure phase exclusively, so no two
timings overlap and no training runs beside a timing. A task whose worker process dies is retried `max_retries`
times by Ray; a job that raises is not retried (a technique that cannot handle a model says so every time). Either
way the failure comes back to the driver, the only writer of the results store, which stores it and goes on.
Ctrl-C cancels what is in flight; what was stored stays, and a re-run resumes from it.

The local executor never imports Ray.
"""

from __future__ import annotations

import os
import socket
import tempfile
import time
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from compressbench import progress
from compressbench.artifacts import pack, unpack
from compressbench.cache import Cache
from compressbench.errors import CompressbenchError
from compressbench.machine_lock import VARIABLE
from compressbench.results import RunResult
from compressbench.runner.job import JobConfig, compress_phase, measure_phase, run_job

RAY_INSTALL = "--executor ray needs Ray: pip install 'compressbench[ray]' (make setup installs it)"


class ExecutorSettings(BaseModel):
    """Where jobs run: here, or on a Ray cluster (started here when `address` is None)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["local", "ray"] = "local"
    address: str | None = Field(None, description="'auto' (a running cluster), 'ray://host:port'; None: start one")
    max_retries: int = Field(2, ge=0, description="Ray: runs again of a task whose worker process died")
    measure_on: str | None = Field(None, description="Ray: the custom resource of the nodes that time")
    cpus_per_job: int = Field(1, ge=1, description="Ray: CPUs (and torch threads) of a compress phase")


@dataclass
class JobOutcome:
    """What one job came back with: a result, or the error it failed with."""

    job: JobConfig
    result: RunResult | None = None
    error: str | None = None
    seconds: float = 0.0
    artifacts: dict[str, Any] = field(default_factory=dict)  # what each measured model's runtime served
    exception: BaseException | None = None  # the error itself, where it can be had (locally; Ray's task error)
    stored: bool = False  # taken from the results store, not run now

    @property
    def label(self) -> str:
        job = self.job
        return f"{job.dataset.name} / {job.model.name} / {job.recipe['name']} / seed {job.seed}"


def run_jobs(
    jobs: Iterable[JobConfig],
    cache: Cache,
    on_done: Callable[[JobOutcome], None],
    settings: ExecutorSettings | None = None,
    keep_artifacts: bool = False,
    measure_every_step: bool = False,
) -> None:
    """Run every job and hand each outcome to `on_done`, in this process, as it arrives. `measure_every_step` (the
    stage-by-stage figures of `run_job`) is for jobs run here: on Ray a job's phases run as separate tasks."""
    settings = settings or ExecutorSettings()
    jobs = list(jobs)
    if not jobs:  # all stored: not even Ray is started
        return
    if settings.kind == "ray":
        if measure_every_step:
            raise CompressbenchError("measure_every_step: the stage-by-stage figures are measured locally, not on Ray")
        _on_ray(jobs, cache, on_done, settings, keep_artifacts)
        return
    for job in jobs:
        started = time.perf_counter()
        artifacts: dict[str, Any] = {}
        try:
            result = run_job(job, cache, measure_every_step=measure_every_step,
                             chosen_artifacts=artifacts if keep_artifacts else None)  # fmt: skip
        except Exception as error:  # a failing job is a result too; the others go on
            on_done(JobOutcome(job, error=_error_text(error), seconds=time.perf_counter() - started, exception=error))
        else:
            on_done(JobOutcome(job, result, seconds=time.perf_counter() - started, artifacts=artifacts))


def _error_text(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}\n{''.join(traceback.format_exception(error, limit=5))}"


def import_ray():
    try:
        import ray
    except ImportError:
        raise CompressbenchError(RAY_INSTALL) from None
    return ray


def node_lock() -> str:
    """The machine lock of the node a task runs on: one file per machine, whichever Ray node process runs it."""
    return str(Path(tempfile.gettempdir()) / "compressbench-machine.lock")


def _compress_task(job: JobConfig, cache_root: str, threads: int):
    import torch

    torch.set_num_threads(threads)
    os.environ[VARIABLE] = node_lock()
    return compress_phase(job, Cache(Path(cache_root)))


def _measure_task(job: JobConfig, prepared, keep_artifacts: bool) -> tuple[RunResult, dict[str, Any]]:
    import ray

    os.environ[VARIABLE] = node_lock()
    artifacts: dict[str, Any] = {}
    result = measure_phase(job, prepared, artifacts if keep_artifacts else None)
    result.environment["node"] = {"ray_node_id": ray.get_runtime_context().get_node_id(),
                                  "hostname": socket.gethostname()}  # fmt: skip
    return result, {name: pack(artifact) for name, artifact in artifacts.items()}


def _baseline_group(job: JobConfig) -> str:
    """What decides a job's baseline: jobs alike in it share one trained model."""
    return job.model_dump_json(include={"dataset", "model", "seed", "training"})


class RayJobs:
    """Jobs in flight on a Ray cluster: `submit` a job, `next` returns the next one done (compress and measure
    phases chained on the cluster: the prepared model goes from one task to the other through the object store)."""

    def __init__(
        self,
        cache: Cache,
        settings: ExecutorSettings,
        keep_artifacts: bool = False,
        on_compressed: Callable[[JobConfig], Iterable[JobConfig]] | None = None,
    ) -> None:
        self.ray = ray = import_ray()
        self.started_here = not ray.is_initialized()
        if self.started_here:
            ray.init(address=settings.address, include_dashboard=False, logging_level="ERROR",
                     runtime_env={"env_vars": {"COMPRESSBENCH_PROGRESS": "off"}})  # fmt: skip
        if settings.measure_on and not any(settings.measure_on in node["Resources"] for node in ray.nodes()):
            self.close()
            raise CompressbenchError(
                f"--measure-on {settings.measure_on}: no node of this cluster advertises it "
                f"(start one with: ray start --address ... --resources '{{\"{settings.measure_on}\": 1}}')"
            )
        self.cache, self.settings, self.keep_artifacts = cache, settings, keep_artifacts
        self.compress = ray.remote(_compress_task).options(num_cpus=settings.cpus_per_job,
                                                           max_retries=settings.max_retries)  # fmt: skip
        on_target = {"resources": {settings.measure_on: 1}} if settings.measure_on else {}
        self.measure = ray.remote(_measure_task).options(num_cpus=1, max_retries=settings.max_retries, **on_target)
        self.pending: dict[Any, tuple[str, JobConfig, float]] = {}
        # Called as each compress phase ends (its measure phase then starts); the jobs it returns are submitted.
        self.on_compressed = on_compressed

    @property
    def slots(self) -> int:
        """How many compress phases the cluster runs at once."""
        return max(1, int(self.ray.cluster_resources().get("CPU", 1)) // self.settings.cpus_per_job)

    def __len__(self) -> int:
        return len(self.pending)

    def submit(self, job: JobConfig) -> None:
        ref = self.compress.remote(job, str(self.cache.root), self.settings.cpus_per_job)
        self.pending[ref] = ("compress", job, time.perf_counter())

    def next(self) -> JobOutcome:
        """Wait for the next job to finish (its measure phase); compress phases ending meanwhile start their measure
        phase."""
        ray = self.ray
        while True:
            (ref,), _ = ray.wait(list(self.pending), num_returns=1)
            phase, job, started = self.pending.pop(ref)
            if phase == "compress":  # a compress failure reaches the measure task as its argument's error
                self.pending[self.measure.remote(job, ref, self.keep_artifacts)] = ("measure", job, started)
                for later in self.on_compressed(job) if self.on_compressed is not None else ():
                    self.submit(later)
                continue
            seconds = time.perf_counter() - started
            try:
                result, artifacts = ray.get(ref)
            except ray.exceptions.RayTaskError as error:  # the job raised: its own error, as locally
                cause = error.cause if isinstance(error.cause, BaseException) else error
                return JobOutcome(job, error=_error_text(cause), seconds=seconds, exception=cause)
            except ray.exceptions.RayError as error:  # its worker died more than max_retries times, or a node left
                text = f"{type(error).__name__}: lost after {self.settings.max_retries} retries: {error}"
                return JobOutcome(job, error=text, seconds=seconds)
            artifacts = {name: unpack(value) for name, value in artifacts.items()}
            return JobOutcome(job, result, seconds=seconds, artifacts=artifacts)

    def cancel(self) -> None:
        progress.log(f"[yellow]interrupted: cancelling {len(self.pending)} Ray tasks; stored runs are kept[/yellow]")
        for ref in self.pending:
            self.ray.cancel(ref, force=True)
        self.pending.clear()

    def close(self) -> None:
        if self.started_here:
            self.ray.shutdown()


def ray_loop(
    cache: Cache,
    settings: ExecutorSettings,
    feed: Callable[[int], Iterable[JobConfig]],
    on_done: Callable[[JobOutcome], None],
    keep_artifacts: bool = False,
    on_compressed: Callable[[JobConfig], Iterable[JobConfig]] | None = None,
) -> None:
    """The one Ray loop: submit what `feed(free slots)` gives, hand each finished job to `on_done`, until nothing is
    in flight and `feed` gives nothing more. Ctrl-C cancels what is in flight (stored runs stay); the cluster this
    started is shut down however the loop ends."""
    cluster = RayJobs(cache, settings, keep_artifacts, on_compressed)
    try:
        while True:
            for job in feed(max(0, cluster.slots - len(cluster))):
                cluster.submit(job)
            if not len(cluster):
                return
            on_done(cluster.next())
    except KeyboardInterrupt:
        cluster.cancel()
        raise
    finally:
        cluster.close()


def _on_ray(
    jobs: list[JobConfig],
    cache: Cache,
    on_done: Callable[[JobOutcome], None],
    settings: ExecutorSettings,
    keep_artifacts: bool,
) -> None:
    """Every job on the cluster at once (Ray queues what does not fit), except that jobs sharing a baseline wait for
    the first of them: it trains (or loads) the baseline into the node's cache."""
    waiting: dict[str, list[JobConfig]] = {}
    first: list[JobConfig] = []
    for job in jobs:
        group = _baseline_group(job)
        if group in waiting:
            waiting[group].append(job)
        else:
            waiting[group] = []
            first.append(job)

    def feed(_free: int) -> list[JobConfig]:
        ready, first[:] = list(first), []
        return ready

    def release(job: JobConfig) -> list[JobConfig]:
        return waiting.pop(_baseline_group(job), [])

    ray_loop(cache, settings, feed, on_done, keep_artifacts, on_compressed=release)
