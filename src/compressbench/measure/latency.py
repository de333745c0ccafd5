"""Latency of several sessions measured side by side: time-based warm-up, interleaved timed blocks, percentiles.

Interleaving (baseline block, candidate block, baseline block, ...) makes a ratio survive a noisy machine:
both see the same slow and fast moments. Absolute figures are recorded but only ratios should be compared; the
median of each block is kept too, so a speed-up gets its confidence interval from the paired blocks
(`ranking.intervals.speedup_interval`).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from compressbench.machine_lock import timing_slot
from compressbench.ranking.intervals import log_half_width
from compressbench.runtime import Session
from compressbench.runtime.base import run_many

# With a target width, timing stops at this many times the minimum number of blocks whatever the width reached.
ADAPTIVE_LIMIT = 4
# A concurrent block serves at least this many batches per request in flight (a session's `concurrency`: OpenVINO's
# infer requests, ONNX Runtime's parallel sessions): each block starts with an empty queue and ends draining it,
# about one batch's time on one stream, a few percent of a block of 4 rounds.
CONCURRENT_ROUNDS = 4


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
    sessions: Sequence[Session], inputs: np.ndarray, settings: LatencySettings, *, concurrent: bool = False
) -> list[dict[int, LatencyStats]]:
    """For each batch size, warm every session up, then time them in interleaved blocks of calls.

    `inputs` are real samples, repeated when a batch is larger than they are. Returns, per session, its stats
    by batch size. Holds the machine's timing slot (`compressbench.machine_lock`) throughout. `concurrent`: each
    block serves its calls as a throughput server does (`runtime.base.run_many`: parallel sessions, OpenVINO's
    asynchronous streams), and a call's time is the block's wall time per batch (so batch / time is throughput).
    """
    with timing_slot():
        return _interleaved(sessions, inputs, settings, concurrent)


def _interleaved(
    sessions: Sequence[Session], inputs: np.ndarray, settings: LatencySettings, concurrent: bool = False
) -> list[dict[int, LatencyStats]]:
    results: list[dict[int, LatencyStats]] = [{} for _ in sessions]
    for batch in settings.batch_sizes:
        x = np.ascontiguousarray(np.resize(inputs, (batch, *inputs.shape[1:])))  # float32, or the data's int64
        calls_per_block = []
        for session in sessions:
            per_call = (_warm_up_concurrent if concurrent else _warm_up)(session, x, settings.warmup_s)
            least = CONCURRENT_ROUNDS * _concurrency(session) if concurrent else 1
            calls_per_block.append(max(least, int(settings.block_s / max(per_call, 1e-7))))
        blocks: list[list[list[float]]] = [[] for _ in sessions]
        limit = settings.blocks if settings.target_half_width is None else ADAPTIVE_LIMIT * settings.blocks
        while len(blocks[0]) < limit:
            for i, session in enumerate(sessions):
                timed = _timed_concurrently if concurrent else _timed_calls
                blocks[i].append(timed(session, x, calls_per_block[i]))
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


def _warm_up(session: Session, x: np.ndarray, seconds: float) -> float:
    """Run until `seconds` have passed (at least 3 calls); return the mean seconds per call of the last half."""
    started = time.perf_counter()
    durations = []
    while len(durations) < 3 or time.perf_counter() - started < seconds:
        t0 = time.perf_counter()
        session.run(x)
        durations.append(time.perf_counter() - t0)
    return float(np.mean(durations[len(durations) // 2 :]))


def _concurrency(session: Session) -> int:
    """How many batches the session serves at once (1 for one served after another)."""
    return int(getattr(session, "concurrency", 1))


def _warm_up_concurrent(session: Session, x: np.ndarray, seconds: float) -> float:
    """Serve rounds of `CONCURRENT_ROUNDS` batches per request in flight until `seconds` have passed (at least two
    rounds: the first compiles and fills the queue); the last round's wall seconds per batch."""
    started, rounds = time.perf_counter(), 0
    while rounds < 2 or time.perf_counter() - started < seconds:
        calls = CONCURRENT_ROUNDS * _concurrency(session)  # known once the first round opened its queue
        per_call = run_many(session, x, calls) / calls
        rounds += 1
    return per_call


def _timed_concurrently(session: Session, x: np.ndarray, calls: int) -> list[float]:
    """`calls` batches served concurrently: each counted at the block's wall seconds per batch."""
    return [run_many(session, x, calls) / calls] * calls


def _timed_calls(session: Session, x: np.ndarray, calls: int) -> list[float]:
    times = []
    for _ in range(calls):
        t0 = time.perf_counter()
        session.run(x)
        times.append(time.perf_counter() - t0)
    return times
