"""The rule that chooses: per (dataset, model), the recipe that best meets an objective within an accuracy budget;
for a search trial, whether it is within the budget and its figure on the objective. The report, compress and the
search all call these, so they can never disagree on what wins."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from compressbench.ranking.summary import RecipeSummary, by_model

Objective = Literal["latency", "size"]
# Interleaved medians of one candidate differ by up to about 5% from run to run here (a 0.95-1.05x band), so a
# smaller speed-up is noise, not a reason to deploy a compressed model.
MIN_SPEEDUP = 1.05


@dataclass(frozen=True)
class Recommendation:
    dataset: str
    model: str
    best: RecipeSummary | None
    runner_up: RecipeSummary | None
    reason: str

    @staticmethod
    def label(choice: RecipeSummary | None) -> str | None:
        """The recipe and the runtime it was measured on: the two are recommended together."""
        return f"{choice.recipe} on {choice.runtime}" if choice else None


def recommend(
    summaries: list[RecipeSummary], max_accuracy_drop: float = 1.0, objective: Objective = "latency", batch: int = 256
) -> list[Recommendation]:
    """Within `max_accuracy_drop` points (mean over seeds), the fastest (or smallest) recipe and the runner-up.

    For latency, only recipes measurably faster than the baseline qualify (speed-up of at least `MIN_SPEEDUP` at
    `batch`, beyond timing noise): otherwise the answer is to keep the baseline. For size, the figure is stored bytes
    (compression ratio).
    """
    groups = by_model(summaries)
    answers = []
    for (dataset, model), group in groups.items():
        compressed = [s for s in group if s.recipe != "none"]
        eligible = [s for s in compressed if s.usable and s.accuracy_drop_pt.mean <= max_accuracy_drop]
        if objective == "latency":
            eligible = [s for s in eligible if str(batch) in s.speedup and s.speedup[str(batch)].mean >= MIN_SPEEDUP]
            ranked = sorted(eligible, key=lambda s: -s.speedup[str(batch)].mean)
        else:
            eligible = [s for s in eligible if s.compression_ratio > 1.0]
            ranked = sorted(eligible, key=lambda s: -s.compression_ratio)
        if not ranked:
            why = f"keep the baseline: no compressed recipe stays within {max_accuracy_drop:g} points" + (
                f" and runs at least {MIN_SPEEDUP:g}x faster at batch {batch} (smaller gains are timing noise)"
                if objective == "latency"
                else ""
            )
            answers.append(Recommendation(dataset, model, None, None, why))
            continue
        best = ranked[0]
        figure = (
            f"{best.speedup[str(batch)].mean:.2f}x faster at batch {batch}"
            if objective == "latency"
            else f"{best.compression_ratio:.1f}x smaller than fp32 parameters"
        )
        why = f"{figure}, accuracy drop {best.accuracy_drop_pt.mean:+.2f} pt (budget {max_accuracy_drop:g})"
        answers.append(Recommendation(dataset, model, best, ranked[1] if len(ranked) > 1 else None, why))
    return answers


def feasible(trial: Any) -> bool:
    """A search trial within the accuracy budget: every constraint Optuna holds for it is zero or less."""
    return bool(trial.constraints) and all(value <= 0 for value in trial.constraints.values())


def figure_of(trial: Any, objective: str) -> float:
    """A search trial's figure on the objective: its speed-up, or how many times smaller it stores."""
    return trial.user_attrs["speedup"] if objective == "latency" else trial.user_attrs["size_ratio"]
