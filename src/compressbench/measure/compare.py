"""Measure several forms of a model side by side on one runtime: accuracy, interleaved latency, size."""

from __future__ import annotations

from typing import Any, Literal

import onnx
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from compressbench.data import DataBundle
from compressbench.measure.accuracy import measure_accuracy
from compressbench.measure.latency import LatencySettings, measure_latency_interleaved
from compressbench.measure.size import measure_size
from compressbench.runtime import export_onnx, open_session, verify_onnx
from compressbench.techniques import Candidate


class MeasureSettings(BaseModel):
    """How candidates are measured; part of every run's identity."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    runtime: Literal["onnxruntime", "torch"] = "onnxruntime"
    latency: LatencySettings = LatencySettings()
    exporter: Literal["torchscript", "dynamo"] = "torchscript"
    verify_atol: float = Field(1e-3, gt=0, description="largest allowed |torch - ONNX| logit difference after export")
    latency_samples: int = Field(256, ge=1, description="test samples used (repeated) as latency inputs")


def deployable(candidate: Candidate, data: DataBundle, settings: MeasureSettings) -> onnx.ModelProto:
    """The ONNX model that would be served: the technique's graph, or the module exported and verified."""
    if candidate.graph is not None:
        return candidate.graph
    proto = export_onnx(candidate.module, data.spec.input_shape, settings.exporter)
    verify_onnx(candidate.module, proto, data.test.x[:64], settings.verify_atol)
    return proto


def measure_candidates(
    candidates: dict[str, Candidate], data: DataBundle, settings: MeasureSettings
) -> dict[str, dict[str, Any]]:
    """Metrics for each named candidate; latency measured in one interleaved pass so ratios are fair."""
    protos = {name: deployable(c, data, settings) for name, c in candidates.items()}
    artifacts: dict[str, onnx.ModelProto | nn.Module] = (
        dict(protos) if settings.runtime == "onnxruntime" else {n: c.module for n, c in candidates.items()}
    )
    if settings.runtime == "torch":
        for name, candidate in candidates.items():
            if candidate.graph is not None:
                artifacts[name] = candidate.graph  # open_session explains why torch cannot run it
    sessions = {name: open_session(a, settings.runtime, settings.latency.threads) for name, a in artifacts.items()}
    latencies = measure_latency_interleaved(
        list(sessions.values()), data.test.x[: settings.latency_samples], settings.latency
    )
    metrics = {}
    for (name, session), latency in zip(sessions.items(), latencies, strict=True):
        candidate = candidates[name]
        accuracy = measure_accuracy(session, data.test)
        size = measure_size(protos[name], candidate.module, data.spec.input_shape)
        metrics[name] = {
            "accuracy": accuracy.accuracy,
            "accuracy_ci": [accuracy.ci_low, accuracy.ci_high],
            "test_samples": accuracy.samples,
            "finite_outputs": accuracy.finite,
            "latency_ms": {str(b): s.p50_ms for b, s in latency.items()},
            "latency": {
                str(b): {
                    "p50_ms": s.p50_ms,
                    "p10_ms": s.p10_ms,
                    "p90_ms": s.p90_ms,
                    "calls": s.calls,
                    "blocks": s.blocks,
                }
                for b, s in latency.items()
            },
            "size_bytes": size.size_bytes,
            "zstd_bytes": size.zstd_bytes,
            "stored_bytes": min(size.zstd_bytes, sum(candidate.storage.values()))
            if candidate.storage
            else size.zstd_bytes,
            "storage": candidate.storage or {"zstd(onnx)": size.zstd_bytes},
            "params": size.params,
            "nonzero_params": size.nonzero_params,
            "macs": size.macs,
            "runtime": session.info,
        }
    return metrics
