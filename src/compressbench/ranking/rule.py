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

    For latency, the uncompressed model on the fastest runtime measured (the recipe "none" moved off the baseline's
    runtime: "runtime only") is a candidate like any other, and it sets the floor: a compressed recipe qualifies only
    when it is at least `MIN_SPEEDUP` faster at `batch` than both the baseline and that floor, so the answer is never
    slower than simply serving the model elsewhere, and a step is credited only with what it adds beyond timing
    noise. With nothing qualifying the answer is to keep the baseline. For size, the figure is stored bytes
    (compression ratio).
    """
    answers = []
    for (dataset, model), group in by_model(summaries).items():
        within = [s for s in group if s.usable and s.accuracy_drop_pt.mean <= max_accuracy_drop]
        compressed = [s for s in within if s.recipe != "none"]
        moved = next((s for s in within if s.runtime_only and str(batch) in s.speedup), None)
        floor = max(1.0, moved.speedup[str(batch)].mean) if moved else 1.0
        if objective == "latency":
            eligible = [s for s in compressed if str(batch) in s.speedup
                        and s.speedup[str(batch)].mean >= MIN_SPEEDUP * floor]  # fmt: skip
            if moved and floor >= MIN_SPEEDUP:
                eligible.append(moved)
            ranked = sorted(eligible, key=lambda s: -s.speedup[str(batch)].mean)
        else:
            eligible = [s for s in compressed if s.compression_ratio > 1.0]
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
        answers.append(Recommendation(dataset, model, best, ranked[1] if len(ranked) > 1 else None,
                                      _why(best, moved, objective, batch, max_accuracy_drop)))  # fmt: skip
    return answers


def _why(best: RecipeSummary, moved: RecipeSummary | None, objective: str, batch: int, budget: float) -> str:
    if objective != "latency":
        figure = f"{best.compression_ratio:.1f}x smaller than fp32 parameters"
    elif best.runtime_only:
        return (f"runtime only: the model unchanged on {best.runtime} runs {best.speedup[str(batch)].mean:.2f}x faster "
                f"at batch {batch} than on {best.baseline_runtime}, and no compression within {budget:g} points "
                f"gains a further {MIN_SPEEDUP:g}x")  # fmt: skip
    else:
        speed = best.speedup[str(batch)].mean
        figure = f"{speed:.2f}x faster at batch {batch}"
        if moved is not None and moved.speedup[str(batch)].mean > 1.0:
            figure += (f" ({speed / moved.speedup[str(batch)].mean:.2f}x over the uncompressed model on "
                       f"{moved.runtime})")  # fmt: skip
    return f"{figure}, accuracy drop {best.accuracy_drop_pt.mean:+.2f} pt (budget {budget:g})"


def feasible(trial: Any) -> bool:
    """A search trial within the accuracy budget: every constraint Optuna holds for it is zero or less."""
    return bool(trial.constraints) and all(value <= 0 for value in trial.constraints.values())


def figure_of(trial: Any, objective: str) -> float:
    """A search trial's figure on the objective: its speed-up, or how many times smaller it stores."""
    return trial.user_attrs["speedup"] if objective == "latency" else trial.user_attrs["size_ratio"]
