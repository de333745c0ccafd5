"""Latency of several sessions measured side by side: time-based warm-up, interleaved timed blocks, percentiles.

Interleaving (baseline block, candidate block, baseline block, ...) makes a ratio survive a noisy machine:
both see the same slow and fast moments. Absolute figures are recorded but only ratios should be compared; the
median of each block is kept too, so a speed-up gets its confidence interval from the paired blocks
(`speedup_interval`).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from compressbench.machine_lock import timing_slot
from compressbench.runtime import Session

# With a target width, timing stops at this many times the minimum number of blocks whatever the width reached.
ADAPTIVE_LIMIT = 4


class LatencySettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    batch_sizes: tuple[int, ...] = (1, 256)
    warmup_s: float = Field(1.0, ge=0, description="run each session for this long before timing")
    blocks: int = Field(15, ge=1, description="timed blocks per session, interleaved between sessions")
    block_s: float = Field(0.2, gt=0, description="target duration of one timed block")
    threads: int = Field(1, ge=1, description="intra-op threads of every session")
    target_half_width: float | None = Field(
        None, gt=0, lt=1, description="after `blocks`, keep timing rounds of blocks (up to 4 x `blocks`) until every "
        "session's 95% speed-up interval against the first session is within ± this (0.05: ±5%); None: `blocks` only",
    )  # fmt: skip

    def with_batch(self, batch: int) -> LatencySettings:
        """These settings, also timing `batch` (the batch size that matters)."""
        return self.model_copy(update={"batch_sizes": tuple(sorted({*self.batch_sizes, batch}))})


@dataclass(frozen=True)
class LatencyStats:
    """Milliseconds per call (one call = one batch): median and the 10th/90th percentiles over all timed calls, and
    the median of each timed block in the order the blocks ran (block i of every session ran in the same round)."""

    batch: int
    p50_ms: float
    p10_ms: float
    p90_ms: float
    calls: int
    blocks: int
    threads: int
    block_ms: tuple[float, ...] = ()


def measure_latency_interleaved(
    sessions: Sequence[Session], inputs: np.ndarray, settings: LatencySettings
) -> list[dict[int, LatencyStats]]:
    """For each batch size, warm every session up, then time them in interleaved blocks of calls.

    `inputs` are real samples, repeated when a batch is larger than they are. Returns, per session, its stats
    by batch size. Holds the machine's timing slot (`compressbench.machine_lock`) throughout.
    """
    with timing_slot():
        return _interleaved(sessions, inputs, settings)


def _interleaved(
    sessions: Sequence[Session], inputs: np.ndarray, settings: LatencySettings
) -> list[dict[int, LatencyStats]]:
    results: list[dict[int, LatencyStats]] = [{} for _ in sessions]
    for batch in settings.batch_sizes:
        x = np.ascontiguousarray(np.resize(inputs, (batch, *inputs.shape[1:])))  # float32, or the data's int64
        calls_per_block = []
        for session in sessions:
            per_call = _warm_up(session, x, settings.warmup_s)
            calls_per_block.append(max(1, int(settings.block_s / max(per_call, 1e-7))))
        blocks: list[list[list[float]]] = [[] for _ in sessions]
        limit = settings.blocks if settings.target_half_width is None else ADAPTIVE_LIMIT * settings.blocks
        while len(blocks[0]) < limit:
            for i, session in enumerate(sessions):
                blocks[i].append(_timed_calls(session, x, calls_per_block[i]))
            if len(blocks[0]) >= settings.blocks and _precise_enough(blocks, settings.target_half_width):
                break
        for i, timed in enumerate(blocks):
            ms = np.concatenate(timed) * 1e3
            results[i][batch] = LatencyStats(
                batch,
                float(np.median(ms)),
                float(np.percentile(ms, 10)),
                float(np.percentile(ms, 90)),
                len(ms),
                len(timed),
                settings.threads,
                tuple(float(np.median(block) * 1e3) for block in timed),
            )
    return results


def _precise_enough(blocks: list[list[list[float]]], target: float | None) -> bool:
    """Whether every session's speed-up against the first (the baseline) is already within ±`target` (95%)."""
    if target is None:
        return True
    medians = [[float(np.median(block)) for block in timed] for timed in blocks]
    return all(log_half_width(medians[0], other) <= np.log1p(target) for other in medians[1:])


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


def _warm_up(session: Session, x: np.ndarray, seconds: float) -> float:
    """Run until `seconds` have passed (at least 3 calls); return the mean seconds per call of the last half."""
    started = time.perf_counter()
    durations = []
    while len(durations) < 3 or time.perf_counter() - started < seconds:
        t0 = time.perf_counter()
        session.run(x)
        durations.append(time.perf_counter() - t0)
    return float(np.mean(durations[len(durations) // 2 :]))


def _timed_calls(session: Session, x: np.ndarray, calls: int) -> list[float]:
    times = []
    for _ in range(calls):
        t0 = time.perf_counter()
        session.run(x)
        times.append(time.perf_counter() - t0)
    return times
