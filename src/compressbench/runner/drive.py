"""The one job driver: take a job's stored run, or run the job and store it, under a policy the workflow states.

Every way of running work (a study, compress-your-model, a search here or on Ray, `cb.compress`) decides "stored, or
run and store" here and nowhere else. A workflow says in one `Policy` whether a failed run is run again, whether a
failure is stored, and what else a stored run needs to count (compress: the artifact it served, on disk).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from contextlib import nullcontext
from dataclasses import dataclass

from compressbench import progress
from compressbench.cache import Cache
from compressbench.results import RunResult
from compressbench.runner.executors import ExecutorSettings, JobOutcome, run_jobs
from compressbench.runner.job import JobConfig
from compressbench.store import Run, Store


@dataclass(frozen=True)
class Policy:
    """What a stored run means to a workflow. `reuse` is an extra condition a stored successful run must meet to be
    taken instead of running the job (None: any stored success counts)."""

    rerun_failed: bool
    store_failures: bool
    reuse: Callable[[Run], bool] | None = None


class Driver:
    """A results store under a policy: `stored` says whether a job is done, `record` stores an outcome. The batch
    form is `drive`; the search's ask / tell loop on Ray uses the two directly."""

    def __init__(self, store: Store, policy: Policy) -> None:
        self.store, self.policy = store, policy

    def stored(self, job: JobConfig) -> Run | None:
        """The stored run that stands for `job`, or None when the job is to run."""
        run = self.store.get(job.key())
        if run is None:
            return None
        if run.status == "failed":
            return None if self.policy.rerun_failed else run
        return run if self.policy.reuse is None or self.policy.reuse(run) else None

    def record(self, outcome: JobOutcome) -> None:
        job = outcome.job
        if outcome.result is not None:
            self.store.put(job.key(), job.identity(), result=outcome.result)
        elif self.policy.store_failures:
            self.store.put(job.key(), job.identity(), error=outcome.error)


def drive(
    jobs: Iterable[JobConfig],
    store: Store,
    cache: Cache,
    policy: Policy,
    *,
    executor: ExecutorSettings | None = None,
    on_outcome: Callable[[JobOutcome], None] | None = None,
    title: str | None = None,
    keep_artifacts: bool = False,
    measure_every_step: bool = False,
) -> list[JobOutcome]:
    """Every job's outcome, in the order given: from the store where the policy takes the stored run, else run (here
    or on Ray, `executor`) and recorded. `on_outcome` sees each job that ran before it is stored (it may write what
    the run served, or raise to stop the whole drive). With a `title`, a progress bar and one line per job."""
    jobs = list(jobs)
    keys = [job.key() for job in jobs]  # a key hashes the job's identity (user files' fingerprints too): once each
    driver = Driver(store, policy)
    outcomes: dict[str, JobOutcome] = {}
    todo: dict[str, JobConfig] = {}
    for key, job in zip(keys, jobs, strict=True):
        if key in outcomes or key in todo:
            continue
        run = driver.stored(job)
        if run is None:
            todo[key] = job
        else:
            outcomes[key] = JobOutcome(job, run.result, run.error, stored=True)
    with progress.bar(title, len(jobs)) if title else nullcontext() as bar:
        if bar is not None:
            bar.update(bar.task_ids[0], advance=len(jobs) - len(todo))
        ran: list[float] = []

        def done(outcome: JobOutcome) -> None:
            if on_outcome is not None:
                on_outcome(outcome)
            driver.record(outcome)
            outcomes[outcome.job.key()] = outcome
            ran.append(outcome.seconds)
            if title:
                progress.log(outcome_line(outcome) + time_left(ran, len(todo) - len(ran)))
            if bar is not None:
                bar.update(bar.task_ids[0], advance=1)

        run_jobs(todo.values(), cache, done, executor, keep_artifacts=keep_artifacts,
                 measure_every_step=measure_every_step)  # fmt: skip
    return [outcomes[key] for key in keys]


def time_left(seconds: list[float], remaining: int) -> str:
    """An estimate of the time the remaining jobs take, from the mean of those that ran (jobs differ: a training
    recipe takes far longer than int8, so it is an estimate, said as one)."""
    if not remaining or not seconds:
        return ""
    left = sum(seconds) / len(seconds) * remaining
    figure = f"{left / 60:.0f} min" if left >= 60 else f"{left:.0f} s"
    return f" [dim](about {figure} left for {remaining} more)[/dim]"


def outcome_line(outcome: JobOutcome) -> str:
    """The one line every workflow prints for a job that ran."""
    if outcome.result is None:
        return f"[red]failed[/red] {outcome.label}: {(outcome.error or '').splitlines()[0]}"
    return f"[green]ok[/green] {outcome.label} in {outcome.seconds:.0f} s: {headline(outcome.result)}"


def headline(result: RunResult) -> str:
    speed = " ".join(f"b{b} {s:.2f}x" for b, s in result.speedup.items())
    return (
        f"on {result.runtime}: accuracy {result.candidate.accuracy:.4f} (drop {result.accuracy_drop_pt:+.2f} pt), "
        f"speed-up {speed}, file {result.size_change}, stored {result.compression_ratio:.1f}x vs fp32 "
        "params"
    )
