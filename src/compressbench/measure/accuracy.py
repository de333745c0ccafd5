"""Top-1 accuracy of a model as its runtime executes it, with a 95% Wilson score interval."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from compressbench.data import Split
from compressbench.runtime import Session


@dataclass(frozen=True)
class AccuracyResult:
    accuracy: float
    ci_low: float
    ci_high: float
    samples: int
    finite: bool  # False when the runtime produced NaN/inf logits (a broken quantization, say)


def wilson_interval(correct: int, total: int, z: float = 1.959964) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion; well-behaved near 0 and 1, unlike the normal approximation."""
    if total == 0:
        return (0.0, 1.0)
    p = correct / total
    denominator = 1 + z**2 / total
    centre = (p + z**2 / (2 * total)) / denominator
    half = z * math.sqrt(p * (1 - p) / total + z**2 / (4 * total**2)) / denominator
    return (max(0.0, centre - half), min(1.0, centre + half))


COLLAPSE_MARGIN_PT = 2.0


def collapse_flag(accuracy: float, labels: np.ndarray, margin_pt: float = COLLAPSE_MARGIN_PT) -> str | None:
    """A flag when `accuracy` is within `margin_pt` points of always answering the most common class of `labels`:
    the model has stopped telling the classes apart. Relative to the data, so a two-class problem at 90% is fine
    (a threshold of twice chance would flag every two-class run)."""
    if len(labels) == 0:
        return None
    majority = float(np.bincount(labels).max() / len(labels))
    if accuracy > majority + margin_pt / 100:
        return None
    return (
        f"accuracy collapsed ({accuracy * 100:.1f}%, within {margin_pt:g} pt of always answering the most common "
        f"class: {majority * 100:.1f}%)"
    )


def measure_accuracy(session: Session, split: Split, batch_size: int = 256) -> AccuracyResult:
    correct, finite = 0, True
    for start in range(0, len(split), batch_size):
        logits = session.run(split.x[start : start + batch_size])
        finite &= bool(np.isfinite(logits).all())
        correct += int((logits.argmax(1) == split.y[start : start + batch_size]).sum())
    low, high = wilson_interval(correct, len(split))
    return AccuracyResult(correct / len(split), low, high, len(split), finite)
