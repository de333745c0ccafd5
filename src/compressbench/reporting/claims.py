"""The research claims, judged per (dataset, model) on measured figures: holds / does not hold / not measured."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from compressbench.ranking import RecipeSummary, by_model, credited_speedup, speed_words

MINIMAL_LOSS_PT = 1.0  # "minimal accuracy loss", in percentage points


@dataclass(frozen=True)
class Claim:
    key: str
    text: str
    judge: Callable[[list[RecipeSummary]], tuple[str, str]]


# A baseline more than this many points under its reference, or a fine-tune shorter than this many optimiser steps
# (the techniques' default minimum), cannot show that a claim does not hold.
UNDER_REFERENCE_PT = 1.0
FINE_TUNE_FLOOR_STEPS = 300
FAMILY_OF_CLAIM = {"pruning": {"pruning"}, "int8": {"quantization"}, "distillation": {"distillation"}}


@dataclass(frozen=True)
class Verdict:
    claim: str
    dataset: str
    model: str
    # "holds" | "does not hold" | "not measured" | "inconclusive (...)"; with seeds "holds (2 of 3 seeds)"
    verdict: str
    why: str
    conditions: str = ""  # baseline accuracy against its reference, fine-tuning budget, seeds


def _best_speedup(summary: RecipeSummary) -> tuple[str, float]:
    """The batch size where the recipe's credited speed-up is largest, and that speed-up: the recommendation's rule
    (`credited_speedup`), so a model served dense, or a speed-up whose interval reaches 1x, counts as 1x."""
    credited = {batch: credited_speedup(summary, batch) or 1.0 for batch in summary.speedup}
    batch = max(credited, key=lambda b: (credited[b], summary.speedup[b].mean))
    return batch, credited[batch]


def _measured(summary: RecipeSummary, batch: str, speedup: float) -> str:
    """What was measured, when the credited figure is not it."""
    return "" if speedup != 1.0 else f" (measured {speed_words(summary, batch)})"


def _single(group: list[RecipeSummary], family: str) -> list[RecipeSummary]:
    return [s for s in group if s.families == {family} and s.usable]


def pruning(group: list[RecipeSummary]) -> tuple[str, str]:
    runs = _single(group, "pruning")
    if not runs:
        return "not measured", "no pruning recipe ran on this model"
    good = [s for s in runs if s.accuracy_drop_pt.mean <= MINIMAL_LOSS_PT]
    best = max(good or runs, key=lambda s: _best_speedup(s)[1])
    batch, speedup = _best_speedup(best)
    reduction = 1 - 1 / speedup
    figure = (
        f"{best.recipe}: {reduction * 100:+.0f}% inference time saved at batch {batch}"
        f"{_measured(best, batch, speedup)}, drop {best.accuracy_drop_pt.mean:+.2f} pt"
    )
    holds = bool(good) and reduction >= 0.30
    return ("holds" if holds else "does not hold"), figure


def int8(group: list[RecipeSummary]) -> tuple[str, str]:
    runs = _single(group, "quantization")  # int8: weight sharing and reduced precision are families of their own
    if not runs:
        return "not measured", "no int8 recipe ran on this model"
    good = [s for s in runs if s.accuracy_drop_pt.mean <= MINIMAL_LOSS_PT]
    best = max(good or runs, key=lambda s: _best_speedup(s)[1])
    batch, speedup = _best_speedup(best)
    figure = (
        f"{best.recipe}: {(speedup - 1) * 100:+.0f}% faster at batch {batch}{_measured(best, batch, speedup)}, "
        f"drop {best.accuracy_drop_pt.mean:+.2f} pt"
    )
    return ("holds" if good and speedup > 1.40 else "does not hold"), figure


def distillation(group: list[RecipeSummary]) -> tuple[str, str]:
    runs = _single(group, "distillation")
    if not runs:
        return "not measured", "no distillation recipe ran on this model"
    halved = [s for s in runs if s.size_ratio >= 2.0]
    best = min(halved or runs, key=lambda s: s.accuracy_drop_pt.mean)
    figure = f"{best.recipe}: {best.size_ratio:.1f}x smaller, drop {best.accuracy_drop_pt.mean:+.2f} pt"
    if best.control:
        figure += f"; student alone {best.control['accuracy'].mean * 100:.2f}%"
    return ("holds" if halved and best.accuracy_drop_pt.mean <= 2.0 else "does not hold"), figure


def combining(group: list[RecipeSummary]) -> tuple[str, str]:
    usable = [s for s in group if s.usable and s.accuracy_drop_pt.mean <= MINIMAL_LOSS_PT and s.recipe != "none"]
    hybrids = [s for s in usable if len(s.families) >= 2]
    singles = [s for s in usable if len(s.families) == 1]
    if not [s for s in group if len(s.families) >= 2] or not [s for s in group if len(s.families) == 1]:
        return "not measured", "needs both a hybrid and a single-technique recipe on this model"
    if not hybrids:
        return "does not hold", f"no hybrid stays within {MINIMAL_LOSS_PT:g} pt"
    if not singles:
        return "holds", "only hybrids stay within the accuracy budget"
    best_h_speed = max(hybrids, key=lambda s: _best_speedup(s)[1])
    best_s_speed = max(singles, key=lambda s: _best_speedup(s)[1])
    best_h_size = max(hybrids, key=lambda s: s.compression_ratio)
    best_s_size = max(singles, key=lambda s: s.compression_ratio)
    speed_win = _best_speedup(best_h_speed)[1] > _best_speedup(best_s_speed)[1]
    size_win = best_h_size.compression_ratio > best_s_size.compression_ratio
    figure = (
        f"speed: {best_h_speed.recipe} {_best_speedup(best_h_speed)[1]:.2f}x vs {best_s_speed.recipe} "
        f"{_best_speedup(best_s_speed)[1]:.2f}x; size: {best_h_size.recipe} {best_h_size.compression_ratio:.1f}x vs "
        f"{best_s_size.recipe} {best_s_size.compression_ratio:.1f}x (within {MINIMAL_LOSS_PT:g} pt)"
    )
    return ("holds" if speed_win or size_win else "does not hold"), figure


@dataclass(frozen=True)
class HybridComparison:
    dataset: str
    model: str
    hybrid: str
    against: str  # the families' best single technique on the hybrid's own objective
    figure: str
    winner: str


def hybrids_vs_parts(summaries: list[RecipeSummary]) -> list[HybridComparison]:
    """Each hybrid against the best single technique of its own families on the same model, within the budget.

    Speed is compared at the batch size where the hybrid is fastest, size as compression over fp32 parameter bytes;
    a hybrid wins when it beats the best of its parts on speed or on size while staying within the budget.
    """
    groups = by_model(summaries)
    rows = []
    for (dataset, model), group in groups.items():
        for hybrid in (s for s in group if len(s.families) >= 2):
            parts = [
                s
                for s in group
                if len(s.families) == 1 and s.families <= hybrid.families and s.usable
                and s.accuracy_drop_pt.mean <= MINIMAL_LOSS_PT
            ]  # fmt: skip
            label = " + ".join(sorted(hybrid.families))
            if not parts:
                rows.append(HybridComparison(dataset, model, hybrid.recipe, "—", f"no single {label} technique "
                                             f"within {MINIMAL_LOSS_PT:g} pt", "not measured"))  # fmt: skip
                continue
            batch, speed = _best_speedup(hybrid)
            fastest = max(parts, key=lambda s: credited_speedup(s, batch) or 1.0)
            smallest = max(parts, key=lambda s: s.compression_ratio)
            fast_ratio = speed / (credited_speedup(fastest, batch) or 1.0)
            size_ratio = hybrid.compression_ratio / smallest.compression_ratio
            within = hybrid.usable and hybrid.accuracy_drop_pt.mean <= MINIMAL_LOSS_PT
            figure = (
                f"drop {hybrid.accuracy_drop_pt.mean:+.2f} pt vs {fastest.accuracy_drop_pt.mean:+.2f}; "
                f"b{batch} {speed:.2f}x vs {fastest.recipe} {credited_speedup(fastest, batch) or 1.0:.2f}x "
                f"({fast_ratio:.2f}x); "
                f"size {hybrid.compression_ratio:.1f}x vs {smallest.recipe} {smallest.compression_ratio:.1f}x "
                f"({size_ratio:.2f}x)"
            )
            wins = [w for w, r in (("speed", fast_ratio), ("size", size_ratio)) if r > 1.0]
            if not within:
                winner = f"single technique (hybrid drops {hybrid.accuracy_drop_pt.mean:+.2f} pt)"
            elif wins:
                winner = "hybrid on " + " and ".join(wins)
            else:
                winner = "single technique"
            against = fastest.recipe if fastest is smallest else f"{fastest.recipe} / {smallest.recipe}"
            rows.append(HybridComparison(dataset, model, hybrid.recipe, against, figure, winner))
    return rows


CLAIMS = [
    Claim("pruning", "Pruning: up to 30% less inference time with minimal accuracy loss (≤ 1 pt)", pruning),
    Claim("int8", "int8 quantization: over 40% faster with careful calibration (≤ 1 pt)", int8),
    Claim("distillation", "Distillation: within 2% of the original at half the size", distillation),
    Claim("combining", "Combining techniques beats each alone (speed or size, ≤ 1 pt)", combining),
]


def judge_claims(
    summaries: list[RecipeSummary], per_seed: dict[int, list[RecipeSummary]] | None = None
) -> list[Verdict]:
    """Each claim on each (dataset, model), with the conditions it was judged under.

    A "does not hold" from a baseline more than 1 pt under its reference accuracy (recorded with the run: the shipped
    baseline's), or from a fine-tune under the floor, is "inconclusive". With `per_seed` summaries (several seeds),
    the claim is judged in each seed too: it holds when it held in most."""
    groups = by_model(summaries)
    seed_groups = {seed: by_model(group) for seed, group in (per_seed or {}).items()}
    verdicts = []
    for claim in CLAIMS:
        for (dataset, model), group in groups.items():
            verdict, why = claim.judge(group)
            held = [claim.judge(seeds[(dataset, model)])[0] == "holds" for seeds in seed_groups.values()
                    if (dataset, model) in seeds]  # fmt: skip
            if len(held) > 1 and verdict != "not measured":
                word = "holds" if sum(held) > len(held) / 2 else "does not hold"
                verdict = f"{word} ({sum(held)} of {len(held)} seeds)"
                why += f"; held in {sum(held)} of {len(held)} seeds"
            relevant = [s for s in group if s.families & FAMILY_OF_CLAIM.get(claim.key, s.families)]
            reason = _inconclusive(group, relevant)
            if verdict.startswith("does not hold") and reason:
                verdict = f"inconclusive ({reason})"
            verdicts.append(Verdict(claim.key, dataset, model, verdict, why, _conditions(group, relevant)))
    return verdicts


def reference_of(group: list[RecipeSummary]) -> float | None:
    return next((s.reference_accuracy for s in group if s.reference_accuracy is not None), None)


def _inconclusive(group: list[RecipeSummary], relevant: list[RecipeSummary]) -> str:
    baseline, reference = group[0].baseline_accuracy.mean, reference_of(group)
    if reference is not None and (reference - baseline) * 100 > UNDER_REFERENCE_PT:
        return f"under-trained baseline: {baseline * 100:.1f}% vs {reference * 100:.1f}%"
    budgets = [s.fine_tune_steps for s in relevant if s.fine_tune_steps is not None]
    if budgets and min(budgets) < FINE_TUNE_FLOOR_STEPS:
        return f"short fine-tuning budget: {min(budgets)} steps < {FINE_TUNE_FLOOR_STEPS}"
    return ""


def _conditions(group: list[RecipeSummary], relevant: list[RecipeSummary]) -> str:
    first = group[0]
    reference = reference_of(group)
    parts = [
        f"baseline {first.baseline_accuracy.mean * 100:.2f}%"
        + (f" (reference {reference * 100:.2f}%)" if reference is not None else " (no reference)")
    ]
    budgets = sorted({s.fine_tune_steps for s in relevant if s.fine_tune_steps is not None})
    if budgets:
        parts.append(f"fine-tuning {budgets[0]}" + (f"-{budgets[-1]}" if len(budgets) > 1 else "") + " steps")
    seeds = max(len(s.seeds) for s in group)
    spread = max((s.accuracy_drop_pt.spread for s in relevant), default=0.0)
    parts.append(f"{seeds} seed{'s' if seeds > 1 else ''}" + (f", drop spread ±{spread:.2f} pt" if seeds > 1 else ""))
    return "; ".join(parts)
