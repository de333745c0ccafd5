"""The rule that chooses: per (dataset, model), the recipe that best meets an objective within an accuracy budget;
for a search trial, whether it is within the budget and its figure on the objective. The report, compress and the
search all call these, so they can never disagree on what wins."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from compressbench.ranking.summary import RecipeSummary, by_model

Objective = Literal["latency", "size", "memory"]
# Results stored before speed-up intervals were measured have none: for them a speed-up counts only from this
# threshold, the run-to-run spread of interleaved medians here (a 0.95-1.05x band).
MIN_SPEEDUP = 1.05
NO_MECHANISM = "no speed change expected (dense-served)"


def speed_floor(summary: RecipeSummary, batch: str) -> float | None:
    """The lower end of the speed-up's 95% interval at `batch` (for an older result without one, the speed-up over
    `MIN_SPEEDUP`); None when the served model does the baseline's work, so no speed-up can be credited to it."""
    if batch not in summary.speedup or summary.speed_mechanism == []:
        return None
    if batch in summary.speedup_ci:
        return summary.speedup_ci[batch][0]
    return summary.speedup[batch].mean / MIN_SPEEDUP


def credited_speedup(summary: RecipeSummary, batch: str, floor: float = 1.0) -> float | None:
    """The speed-up at `batch` that a recommendation or a verdict may credit: the measured one when the served model
    does less or cheaper work than the baseline (`speed_mechanism`) and the lower end of its interval is above
    `floor`; None otherwise."""
    lowest = speed_floor(summary, batch)
    return summary.speedup[batch].mean if lowest is not None and lowest > floor else None


def speed_words(summary: RecipeSummary, batch: str) -> str:
    """The speed-up at `batch` with its interval, and why it is not credited when it is not: "2.87x [2.80, 2.93]"."""
    figure = f"{summary.speedup[batch].mean:.2f}x"
    if batch in summary.speedup_ci:
        low, high = summary.speedup_ci[batch]
        figure += f" [{low:.2f}, {high:.2f}]"
    if summary.speed_mechanism == []:
        return f"{figure}, {NO_MECHANISM}"
    if credited_speedup(summary, batch) is None:
        return f"{figure}, not distinguishable from 1x"
    return figure


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
    """Within `max_accuracy_drop` points (the mean over seeds and the worst seed both), the fastest (or smallest)
    recipe and the runner-up.

    For latency, a recipe qualifies only with a speed-up that can be credited (`credited_speedup`: a mechanism, and
    an interval whose lower end is above 1), so a model served dense is never recommended for speed. The uncompressed
    model on the fastest runtime measured (the recipe "none" moved off the baseline's runtime: "runtime only") is a
    candidate like any other, and it sets the floor: a compressed recipe then qualifies only when the lower end of
    its interval is above that move's speed-up, so the answer is never slower than simply serving the model
    elsewhere. With nothing qualifying the answer is to keep the baseline. For size, the figure is stored bytes
    (compression ratio).
    """
    answers = []
    key = str(batch)
    for (dataset, model), group in by_model(summaries).items():
        within = [s for s in group if s.usable and s.accuracy_drop_pt.high <= max_accuracy_drop]
        compressed = [s for s in within if s.recipe != "none"]
        moved = next((s for s in within if s.runtime_only and credited_speedup(s, key) is not None), None)
        if objective == "latency":
            floor = moved.speedup[key].mean if moved else 1.0
            eligible = [s for s in compressed if credited_speedup(s, key, floor) is not None]
            ranked = sorted([*eligible, *([moved] if moved else [])], key=lambda s: -s.speedup[key].mean)
        elif objective == "memory":
            eligible = [s for s in compressed if s.footprint and s.baseline_footprint
                        and s.footprint["peak_rss_mb"] < s.baseline_footprint["peak_rss_mb"]]  # fmt: skip
            ranked = sorted(eligible, key=lambda s: s.footprint["peak_rss_mb"])
        else:
            eligible = [s for s in compressed if s.compression_ratio > 1.0]
            ranked = sorted(eligible, key=lambda s: -s.compression_ratio)
        if not ranked:
            why = f"keep the baseline: no compressed recipe stays within {max_accuracy_drop:g} points in every seed" + (
                f" and runs faster at batch {batch} by less or cheaper work, with the lower end of its 95% interval "
                "above 1x (a model served dense does the baseline's work: any speed-up it shows is timing noise)"
                if objective == "latency"
                else " and peaks lower in memory than the baseline in a fresh process (where it was probed)"
                if objective == "memory"
                else ""
            )
            answers.append(Recommendation(dataset, model, None, None, why))
            continue
        best = ranked[0]
        answers.append(Recommendation(dataset, model, best, ranked[1] if len(ranked) > 1 else None,
                                      _why(best, moved, objective, batch, max_accuracy_drop)))  # fmt: skip
    return answers


def _why(best: RecipeSummary, moved: RecipeSummary | None, objective: str, batch: int, budget: float) -> str:
    key = str(batch)
    if objective == "memory":
        mine, base = best.footprint or {}, best.baseline_footprint or {}
        figure = (f"peak memory {mine.get('peak_rss_mb', 0):.0f} MB vs the baseline's "
                  f"{base.get('peak_rss_mb', 0):.0f} MB (the model's own {mine.get('model_rss_mb', 0):.0f} MB; "
                  f"load {mine.get('load_s', 0):.2f} s)")  # fmt: skip
    elif objective != "latency":
        figure = f"{best.compression_ratio:.1f}x smaller than fp32 parameters"
    elif best.runtime_only:
        return (f"runtime only: the model unchanged on {best.runtime} runs {speed_words(best, key)} faster at batch "
                f"{batch} than on {best.baseline_runtime}, and no compression within {budget:g} points gains more "
                "beyond its interval")  # fmt: skip
    else:
        figure = f"{speed_words(best, key)} faster at batch {batch}"
        notes = [", ".join(best.speed_mechanism)] if best.speed_mechanism else []
        if moved is not None:
            notes.append(f"{best.speedup[key].mean / moved.speedup[key].mean:.2f}x over the uncompressed model on "
                         f"{moved.runtime}")  # fmt: skip
        if notes:
            figure += f" ({'; '.join(notes)})"
    drop = best.accuracy_drop_pt
    seeds = f", worst of {drop.n} seeds {drop.high:+.2f} pt" if drop.n > 1 else ""
    return f"{figure}, accuracy drop {drop.mean:+.2f} pt{seeds} (budget {budget:g})"


def feasible(trial: Any) -> bool:
    """A search trial within the accuracy budget: every constraint Optuna holds for it is zero or less."""
    return bool(trial.constraints) and all(value <= 0 for value in trial.constraints.values())


def figure_of(trial: Any, objective: str) -> float:
    """A search trial's figure on the objective: its speed-up, or how many times smaller it stores."""
    return trial.user_attrs["speedup"] if objective == "latency" else trial.user_attrs["size_ratio"]
