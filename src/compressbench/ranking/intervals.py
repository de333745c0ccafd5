"""A speed-up's 95% interval from paired timing blocks: the statistics every measured speed-up and every summary over
seeds share (`measure.latency` times the blocks; `ranking.summary` pools them over seeds)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def log_half_width(
    baseline_blocks: Sequence[float], candidate_blocks: Sequence[float], confidence: float = 0.95
) -> float:
    """Half the width of the speed-up's `confidence` interval on the log scale: t(n-1) x sd / sqrt(n) of the paired
    blocks' log ratios."""
    from scipy import stats  # a second of import time, paid only where an interval is computed

    logs = np.log(np.asarray(baseline_blocks, dtype=float) / np.asarray(candidate_blocks, dtype=float))
    return float(stats.t.ppf(0.5 + confidence / 2, len(logs) - 1) * logs.std(ddof=1) / np.sqrt(len(logs)))


def speedup_interval(
    speedup: float, baseline_blocks: Sequence[float], candidate_blocks: Sequence[float], confidence: float = 0.95
) -> tuple[float, float] | None:
    """A `confidence` interval around a measured `speedup` (the ratio of the two medians over all calls) from the
    paired block medians of the same pass.

    Block i of both ran in the same round, so each pair shares the machine's state of that moment, and the spread of
    the per-block log ratios is the ratio's uncertainty: the interval is speedup x exp(± t x sd / sqrt(n)), a
    t-interval on the log scale (where a ratio is symmetric). It is put around the ratio of medians, not around the
    blocks' mean log ratio, which one slow block can pull past the median's estimate (a robust point, an interval
    that contains it). None with fewer than two pairs, where no spread can be estimated.
    """
    if len(baseline_blocks) != len(candidate_blocks):
        raise ValueError(f"{len(baseline_blocks)} baseline blocks vs {len(candidate_blocks)} candidate blocks")
    if len(baseline_blocks) < 2:
        return None
    half = log_half_width(baseline_blocks, candidate_blocks, confidence)
    return float(speedup * np.exp(-half)), float(speedup * np.exp(half))
