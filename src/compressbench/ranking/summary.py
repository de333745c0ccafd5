"""Aggregate stored runs per (dataset, model, recipe): mean and spread over seeds of every headline figure."""

from __future__ import annotations

import statistics
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from compressbench.store import Run


@dataclass
class Stat:
    mean: float
    spread: float  # sample standard deviation over seeds; 0 with one seed
    n: int

    @classmethod
    def of(cls, values: list[float]) -> Stat:
        return cls(statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0, len(values))


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
                latency_ms={b: Stat.of([r.candidate.latency_ms[b] for r in results]) for b in batches},
                speedup={b: Stat.of([r.speedup[b] for r in results]) for b in batches},
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


def _fine_tune_steps(records: list[dict[str, Any]]) -> int | None:
    steps = [int(record["fine_tune_steps"]) for record in records if "fine_tune_steps" in record]
    return sum(steps) if steps else None


def by_model(summaries: list[RecipeSummary]) -> dict[tuple[str, str], list[RecipeSummary]]:
    """The summaries of each (dataset, model), in sorted order: the unit every table, verdict and answer is about."""
    groups: dict[tuple[str, str], list[RecipeSummary]] = defaultdict(list)
    for summary in summaries:
        groups[(summary.dataset, summary.model)].append(summary)
    return dict(sorted(groups.items()))
