"""The typed result of a run, from the job to the store, the report and the CLI.

`RunResult.to_json()` is the documented `compressbench run --json` object; fields a run did not set (a control
when there is no distillation, the runtimes table when one runtime was asked for) are left out, so results
stored by earlier versions load and render exactly as they were written. This module is a leaf.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict


class Metrics(BaseModel):
    """What was measured of one model on one runtime: accuracy, latency, size, and how."""

    model_config = ConfigDict(extra="allow")

    accuracy: float
    accuracy_ci: list[float]
    test_samples: int | None = None
    finite_outputs: bool = True
    latency_ms: dict[str, float]  # median per call, by batch size
    latency: dict[str, dict[str, Any]] | None = None  # p10 / p50 / p90, calls, blocks by batch size
    runtime: dict[str, Any]  # name, version, threads, the precision it executed
    size_bytes: int  # the deployable file
    zstd_bytes: int | None = None
    encoded_bytes: int | None = None  # compressbench's encoding of an ONNX graph (runtime.stored)
    # The smallest stored form a deployer can ship and load back: an artifact kind (runtime.stored: "onnx-zstd",
    # "onnx-encoded"), or the served kind itself; results stored before it was recorded counted the technique's
    # own encoding, an estimate no file had.
    stored_bytes: int
    stored_form: str | None = None
    storage: dict[str, int] | None = None  # the stored form's bytes by part
    params: int
    nonzero_params: int
    macs: int
    served_ops: dict[str, int] | None = None  # operation types the runtime executes, counted (measure.compare)
    runtimes: dict[str, dict[str, Any]] | None = None  # with runtime auto: every runtime's figures, or why skipped
    runtime_choice: str | None = None
    # Text encoders: sentence-embedding cosine and top-k neighbour agreement against the baseline (measure.embeddings).
    embedding: dict[str, Any] | None = None
    # Peak resident memory, load time and first calls of the served artifact in a fresh process (measure.footprint).
    footprint: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_unset=True)


class RunResult(BaseModel):
    """One run: the baseline and the candidate measured side by side, what each step did, and how it was measured."""

    model_config = ConfigDict(extra="allow")

    dataset: str
    model: str
    recipe: str
    seed: int
    baseline: Metrics
    candidate: Metrics
    speedup: dict[str, float]  # baseline latency / candidate latency, by batch size
    # 95% interval on each speed-up from the paired interleaved blocks (ranking.intervals.speedup_interval).
    speedup_ci: dict[str, list[float]] = {}
    # Why the candidate can be faster than the baseline: less or cheaper work (fewer MACs, a lower precision, another
    # runtime, a different graph). Empty: it does the baseline's work, so a speed-up is timing noise.
    speed_mechanism: list[str] = []
    size_ratio: float
    compression_ratio: float  # fp32 parameter bytes / candidate stored bytes
    accuracy_drop_pt: float
    steps: list[dict[str, Any]] = []
    flags: list[str] = []
    baseline_training: dict[str, Any] = {}
    data: dict[str, Any] = {}  # how the inputs were prepared (normalisation) and the size of each split
    measurement: dict[str, Any] = {}
    environment: dict[str, Any] = {}
    # Wall seconds of the job's two phases where they ran: "compress" (baseline, steps) and "measure".
    phase_seconds: dict[str, float] = {}
    control: Metrics | None = None  # distillation: the same student trained alone
    stages: list[RunResult] | None = None  # measure_every_step: the figures after each step

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_unset=True)

    @property
    def runtime(self) -> str:
        """The runtime the candidate's headline figures come from."""
        return self.candidate.runtime["runtime"]

    @property
    def size_change(self) -> str:
        """The deployable file against the baseline's, in words: "3.57x smaller", or "1.70x larger" below 1."""
        return size_words(self.size_ratio)


def size_words(ratio: float) -> str:
    """A size ratio (baseline bytes / candidate bytes) as a reader says it: never "0.59x smaller"."""
    return f"{ratio:.2f}x smaller" if ratio >= 1 else f"{1 / ratio:.2f}x larger"
