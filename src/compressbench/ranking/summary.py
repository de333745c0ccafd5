"""Aggregate stored runs per (dataset, model, recipe): mean and spread over seeds of every headline figure."""

from __future__ import annotations

import statistics
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from compressbench.ranking.intervals import speedup_interval
from compressbench.results import Metrics
from compressbench.store import Run, RunResult


@dataclass
class Stat:
    mean: float
    spread: float  # sample standard deviation over seeds; 0 with one seed
    n: int
    high: float  # the largest value over seeds: for an accuracy drop, the worst seed

    @classmethod
    def of(cls, values: list[float]) -> Stat:
        spread = statistics.stdev(values) if len(values) > 1 else 0.0
        return cls(statistics.fmean(values), spread, len(values), max(values))


@dataclass
class RecipeSummary:
    dataset: str
    model: str
    recipe: str
    families: set[str]
    seeds: list[int]
    accuracy: Stat
    baseline_accuracy: Stat
    accuracy_ci: tuple[float, float]  # of the first seed's run: the test-set uncertainty of one measurement
    accuracy_drop_pt: Stat
    latency_ms: dict[str, Stat]
    # The baseline as timed in the same interleaved passes as the candidate (each run times its own).
    baseline_latency_ms: dict[str, Stat]
    # Mean is the ratio of the two mean latencies above (so a table row divides to its printed figure); spread is
    # over the seeds' own ratios.
    speedup: dict[str, Stat]
    size_bytes: int
    stored_bytes: int
    size_ratio: float
    compression_ratio: float
    params: int
    macs: int
    runtime: str
    flags: list[str] = field(default_factory=list)
    baseline_runtime: str = "onnxruntime"  # where the baseline every speed-up is against was timed
    control: dict[str, Any] | None = None  # the distillation control (student alone), when the recipe has one
    fine_tune_steps: int | None = None  # optimiser steps of fine-tuning in all (first seed); None: none recorded
    # The test accuracy this baseline should reach (the shipped baseline of the same zoo model and data), when known.
    reference_accuracy: float | None = None
    # Per batch size, the 95% interval of `speedup` from every seed's paired timing blocks pooled (`_interval`); a
    # batch size is missing when a run stored no interval (results written before intervals were measured).
    speedup_ci: dict[str, tuple[float, float]] = field(default_factory=dict)
    # Less or cheaper work than the baseline that every seed's served model does (runner: measure.speed_mechanism);
    # None for results stored before it was recorded.
    speed_mechanism: list[str] | None = None
    stored_form: str | None = None  # what `stored_bytes` is: an artifact kind ("onnx-encoded", "onnx-zstd", ...)
    # The served artifact's and the baseline's peak memory, load time and first calls in a fresh process (first seed;
    # measure.footprint); None where the run did not probe them.
    footprint: dict[str, Any] | None = None
    baseline_footprint: dict[str, Any] | None = None

    @property
    def runtime_only(self) -> bool:
        """The uncompressed model served on another runtime than the baseline's: a move, not a compression."""
        return self.recipe == "none" and self.runtime != self.baseline_runtime

    @property
    def usable(self) -> bool:
        """Not broken: finite outputs and accuracy above collapse (speed flags alone do not make a run unusable)."""
        return not any("non-finite" in f or "collapsed" in f for f in self.flags)


def summarise_runs(runs: list[Run]) -> list[RecipeSummary]:
    groups: dict[tuple[str, str, str], list[Run]] = defaultdict(list)
    for run in runs:
        if run.status == "ok" and run.result:
            groups[(run.dataset, run.model, run.recipe)].append(run)
    summaries = []
    for (dataset, model, recipe), members in sorted(groups.items()):
        members.sort(key=lambda r: r.seed)
        results = [r.result for r in members if r.result]
        first = results[0]
        batches = list(first.speedup)
        flags = sorted({flag for r in results for flag in r.flags})
        controls = [r.control.accuracy for r in results if r.control]
        latency = {b: Stat.of([r.candidate.latency_ms[b] for r in results]) for b in batches}
        baseline_latency = {b: Stat.of([r.baseline.latency_ms[b] for r in results]) for b in batches}
        summaries.append(
            RecipeSummary(
                dataset=dataset,
                model=model,
                recipe=recipe,
                families=members[0].families,
                seeds=[r.seed for r in members],
                accuracy=Stat.of([r.candidate.accuracy for r in results]),
                baseline_accuracy=Stat.of([r.baseline.accuracy for r in results]),
                accuracy_ci=(first.candidate.accuracy_ci[0], first.candidate.accuracy_ci[1]),
                accuracy_drop_pt=Stat.of([r.accuracy_drop_pt for r in results]),
                latency_ms=latency,
                baseline_latency_ms=baseline_latency,
                speedup=(
                    speedup := {
                        b: _ratio(baseline_latency[b], latency[b], [r.speedup[b] for r in results]) for b in batches
                    }
                ),
                speedup_ci=_interval(results, {b: s.mean for b, s in speedup.items()}),
                speed_mechanism=_common_mechanism(results),
                stored_form=first.candidate.stored_form,
                footprint=_probed(first.candidate.footprint),
                baseline_footprint=_probed(first.baseline.footprint),
                size_bytes=first.candidate.size_bytes,
                stored_bytes=first.candidate.stored_bytes,
                size_ratio=first.size_ratio,
                compression_ratio=first.compression_ratio,
                params=first.candidate.params,
                macs=first.candidate.macs,
                runtime=first.runtime,
                baseline_runtime=first.baseline.runtime["runtime"],
                flags=flags,
                control={"accuracy": Stat.of(controls)} if controls else None,
                fine_tune_steps=_fine_tune_steps(first.steps),
                reference_accuracy=first.baseline_training.get("reference_accuracy"),
            )
        )
    return summaries


def _ratio(baseline: Stat, candidate: Stat, per_seed: list[float]) -> Stat:
    """A speed-up over seeds: the ratio of the mean latencies, with the spread of the seeds' own ratios."""
    return Stat(baseline.mean / candidate.mean, Stat.of(per_seed).spread, len(per_seed), max(per_seed))


def _interval(results: list[RunResult], speedup: dict[str, float]) -> dict[str, tuple[float, float]]:
    """Per batch size, the 95% interval of the speed-up over seeds: the t-interval of every seed's paired blocks
    pooled (each seed's run timed its own candidate against its own baseline in the same rounds), around the ratio of
    the mean latencies. Where a run kept no blocks (stored before blocks were), the interval spanning every seed's own;
    a batch size is missing when a run stored neither."""
    intervals = {}
    for b, value in speedup.items():
        blocks = [(_blocks(r.baseline, b), _blocks(r.candidate, b)) for r in results]
        if all(base and cand for base, cand in blocks):
            pooled = speedup_interval(value, [t for base, _ in blocks for t in base],
                                      [t for _, cand in blocks for t in cand])  # fmt: skip
            if pooled:
                intervals[b] = pooled
        elif all(b in r.speedup_ci for r in results):
            intervals[b] = (min(r.speedup_ci[b][0] for r in results), max(r.speedup_ci[b][1] for r in results))
    return intervals


def _probed(footprint: dict[str, Any] | None) -> dict[str, Any] | None:
    return footprint if footprint and "peak_rss_mb" in footprint else None


def _blocks(metrics: Metrics, batch: str) -> list[float]:
    return list(((metrics.latency or {}).get(batch) or {}).get("block_ms", ()))


def _common_mechanism(results: list[RunResult]) -> list[str] | None:
    """The speed mechanisms every seed's run found (a mechanism one seed lacks is not one the recipe has)."""
    if any("speed_mechanism" not in r.model_fields_set for r in results):
        return None
    return [m for m in results[0].speed_mechanism if all(m in r.speed_mechanism for r in results[1:])]


def _fine_tune_steps(records: list[dict[str, Any]]) -> int | None:
    steps = [int(record["fine_tune_steps"]) for record in records if "fine_tune_steps" in record]
    return sum(steps) if steps else None


def by_model(summaries: list[RecipeSummary]) -> dict[tuple[str, str], list[RecipeSummary]]:
    """The summaries of each (dataset, model), in sorted order: the unit every table, verdict and answer is about."""
    groups: dict[tuple[str, str], list[RecipeSummary]] = defaultdict(list)
    for summary in summaries:
        groups[(summary.dataset, summary.model)].append(summary)
    return dict(sorted(groups.items()))
