"""Measure several forms of a model side by side: accuracy, interleaved latency and size, on one runtime or all.

With `runtime: auto`, every installed runtime that can serve a candidate is measured in the same interleaved
pass, and the candidate keeps the fastest at the batch size that matters (`target_batch`); all are recorded.
The baseline's headline figures are always ONNX Runtime fp32 when it is in the pass.
"""

from __future__ import annotations

import os
from collections import Counter
from typing import Any, Literal

import numpy as np
import onnx
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from torch import nn

from compressbench.artifacts import Candidate, is_onnx, kind_of
from compressbench.data import DataBundle
from compressbench.errors import CompressbenchError
from compressbench.measure.accuracy import measure_accuracy
from compressbench.measure.embeddings import embedding_fidelity, embedding_tensor, sentence_embeddings
from compressbench.measure.latency import LatencySettings, measure_latency_interleaved
from compressbench.measure.size import count_graph_macs, count_graph_params, count_macs, count_params, zstd_size
from compressbench.registry import unknown_name_message
from compressbench.results import Metrics
from compressbench.runtime import Session, export_onnx, installed_runtimes, open_session, runtimes, verify_onnx
from compressbench.runtime.export import VERIFY_SAMPLES
from compressbench.runtime.stored import ENCODED_KIND, ZSTD_KIND, stored_forms

REFERENCE = "onnxruntime"


class MeasureSettings(BaseModel):
    """How candidates are measured; part of every run's identity."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    runtime: str = Field(REFERENCE, description="a registered runtime, or 'auto' for the fastest installed one")
    target_batch: int = Field(256, ge=1, description="with runtime auto: the batch size whose latency decides")
    compare: list[str] | None = Field(
        None, description="with runtime auto: the runtimes to compare (installed ones among them); default: all"
    )
    latency: LatencySettings = LatencySettings()
    exporter: Literal["torchscript", "dynamo"] = "torchscript"
    verify_atol: float = Field(1e-3, gt=0, description="largest allowed |torch - ONNX| logit difference after export")
    latency_samples: int = Field(256, ge=1, description="test samples used (repeated) as latency inputs")
    footprint: bool = Field(
        False, description="also measure each served candidate's peak memory, load time and first call in a fresh "
        "process (measure.footprint; about a second a candidate)",
    )  # fmt: skip
    serving: Literal["latency", "throughput"] = Field(
        "latency", description="latency: one request at a time on `latency.threads` (1); throughput: batches served "
        "concurrently on every core (or `latency.threads`), ONNX Runtime's intra-op threads or parallel sessions, "
        "OpenVINO's THROUGHPUT hint with asynchronous requests, timed as batches per second at `target_batch`",
    )  # fmt: skip
    tune: bool = Field(
        False, description="in the latency profile, also try ONNX Runtime's graph optimisation levels and keep the "
        "fastest per candidate (the throughput profile always tunes its settings)",
    )  # fmt: skip

    @model_validator(mode="after")
    def throughput_on_every_core(self) -> MeasureSettings:
        """The throughput profile's defaults: every core, and the large batch alone (unless set)."""
        if self.serving != "throughput":
            return self
        update: dict[str, Any] = {}
        if "threads" not in self.latency.model_fields_set:
            update["threads"] = os.cpu_count() or 1
        if "batch_sizes" not in self.latency.model_fields_set:
            update["batch_sizes"] = (self.target_batch,)
        if update:
            object.__setattr__(self, "latency", self.latency.model_copy(update=update))
        return self

    @field_validator("runtime")
    @classmethod
    def known_runtime(cls, value: str) -> str:
        if value != "auto" and value not in runtimes:
            raise ValueError(unknown_name_message("runtime", value, [*runtimes.names(), "auto"]))
        return value

    @field_validator("compare")
    @classmethod
    def known_runtimes(cls, value: list[str] | None) -> list[str] | None:
        for name in value or []:
            if name not in runtimes:
                raise ValueError(unknown_name_message("runtime", name, runtimes.names()))
        if value is not None and REFERENCE not in value:
            raise ValueError(f"must include {REFERENCE}, the baseline's reference runtime")
        return value


def served_artifacts(
    candidate: Candidate, runtimes_wanted: list[str], data: DataBundle, settings: MeasureSettings
) -> tuple[dict[str, Any], dict[str, str]]:
    """What each runtime would serve of `candidate` (a module goes to an ONNX-only runtime as its verified export),
    and, for the runtimes that cannot serve it, why."""
    served, skipped = {}, {}
    export: onnx.ModelProto | None = None
    for runtime in runtimes_wanted:
        spec = runtimes.get(runtime)
        if not spec.serves(candidate.kind, candidate.precision):
            skipped[runtime] = spec.why_not(candidate.kind, candidate.precision)
        elif candidate.kind in spec.opens:
            served[runtime] = candidate.served
        else:
            if export is None:
                export = verified_export(candidate.module, data, settings)
            served[runtime] = export
    return served, skipped


def verified_export(module: nn.Module, data: DataBundle, settings: MeasureSettings) -> onnx.ModelProto:
    """The module's ONNX export, refused when it disagrees with the module on a real sample of the test data."""
    export = export_onnx(module, data.spec.input_shape, settings.exporter, data.spec.input_dtype)
    verify_onnx(module, export, data.test.x[:VERIFY_SAMPLES], settings.verify_atol)
    return export


def counted_weights(candidate: Candidate, served: Any, data: DataBundle, settings: MeasureSettings) -> tuple[int, int]:
    """(parameters, non-zeros) of the graph the runtime serves: the weights of the module's verified export (a
    branch the export never took, or batch norm folded into its convolution, holds none), the module's own when
    the runtime runs the module itself; quantizing a graph changes no count, so an int8 graph is counted on the
    float export of its module."""
    if candidate.module is None:
        return count_graph_params(candidate.float_graph)
    if served is candidate.module:
        return count_params(candidate.module)
    return count_graph_params(served if served is not candidate.artifact  # the module's export, as served
                              else verified_export(candidate.module, data, settings))  # fmt: skip


def stored_figures(artifact: Any, payload: bytes) -> dict[str, Any]:
    """The deployable file's zstd bytes, and the stored form a deployer can ship and load back (`runtime.stored`):
    for an ONNX graph the smaller of zstd and compressbench's encoding (its bytes by part under `storage`); for
    another kind the file itself, the one form `compress` hands it back in."""
    if not is_onnx(artifact):
        compressed = zstd_size(payload)
        return {"zstd_bytes": compressed, "stored_bytes": len(payload), "stored_form": kind_of(artifact).name,
                "storage": {"file": len(payload)}}  # fmt: skip
    forms = stored_forms(artifact, payload)  # smallest first
    smallest, size_of = forms[0], {form.kind: form.size for form in forms}
    return {
        "zstd_bytes": size_of[ZSTD_KIND],
        "encoded_bytes": size_of[ENCODED_KIND],
        "stored_bytes": smallest.size,
        "stored_form": smallest.kind,
        "storage": smallest.parts,
    }


def served_ops(artifact: Any) -> dict[str, int] | None:
    """What the runtime executes, as a count of operation types (the artifact kind's `ops`); None for a kind whose
    operations cannot be listed. Two artifacts with the same counts, MACs, precision and runtime do the same work
    whatever their weights hold (a pruned weight served dense still multiplies its zeros)."""
    ops = kind_of(artifact).ops
    return None if ops is None else dict(sorted(Counter(ops(artifact)).items()))


def speed_mechanism(baseline: Metrics, candidate: Metrics) -> list[str]:
    """How the candidate, as served, does less or cheaper work than the baseline, in words; empty when it does the
    same work (the same runtime, precision, MACs and operations: a pruned or weight-shared model served dense)."""
    found = []
    if candidate.macs < baseline.macs:
        found.append(f"{baseline.macs / max(candidate.macs, 1):.2f}x fewer MACs")
    runtime, precision = candidate.runtime.get("runtime"), candidate.runtime.get("precision")
    if precision != baseline.runtime.get("precision"):
        found.append(f"{precision} on {runtime}")
    if runtime != baseline.runtime.get("runtime"):
        found.append(f"served on {runtime}")
    if (
        not found
        and None not in (candidate.served_ops, baseline.served_ops)
        and (candidate.served_ops != baseline.served_ops)
    ):
        changed = sorted(set(candidate.served_ops.items()) ^ set(baseline.served_ops.items()))
        found.append("a different graph (" + ", ".join(dict.fromkeys(op for op, _ in changed)) + ")")
    return found


def session_choices(runtime: str, settings: MeasureSettings) -> list[dict[str, Any]]:
    """The session settings tried for a served candidate, the first being the profile's default.

    Latency: the one request-at-a-time setting each runtime is timed with; with `tune`, ONNX Runtime's lower graph
    optimisation levels too (all of them fuse and pre-pack; the layout changes of "all" do not win everywhere).
    OpenVINO on one thread has one stream and nothing more to choose. Throughput: ONNX Runtime's threads in one
    session, split over parallel sessions, or given to independent nodes (parallel execution mode), and a lower
    optimisation level; OpenVINO's THROUGHPUT hint with the streams it picks or one per thread, and its LATENCY
    hint (one stream over every thread). A lower inference precision (bf16) is never a session setting here: it
    changes the outputs, so it is a candidate of its own (`precision.bf16`) judged against the accuracy budget."""
    threads = settings.latency.threads
    if settings.serving == "latency":
        tuned = settings.tune and runtime == "onnxruntime"
        return [{}, {"optimization": "extended"}, {"optimization": "basic"}] if tuned else [{}]
    if runtime == "onnxruntime":
        split = [{"parallel_sessions": threads}, {"parallel_sessions": 1, "execution_mode": "parallel"}]
        return [{"parallel_sessions": 1}, *(split if threads > 1 else []),
                {"parallel_sessions": 1, "optimization": "extended"}]  # fmt: skip
    if runtime == "openvino":
        split = [{"hint": "THROUGHPUT", "streams": threads}, {"hint": "LATENCY"}]
        return [{"hint": "THROUGHPUT"}, *(split if threads > 1 else [])]
    return [{}]


def tuned_session(artifact: Any, runtime: str, precision: str, data: DataBundle, settings: MeasureSettings) -> Session:
    """A session with the best of `session_choices`, found in a short interleaved pass at the target batch (a
    bounded budget: 3 blocks of 0.1 s each); what was tried and what each gave is in its `info["tuning"]`."""
    choices = session_choices(runtime, settings)
    threads = settings.latency.threads
    if len(choices) == 1:
        return open_session(artifact, runtime, threads, precision, choices[0] or None)
    opened = [open_session(artifact, runtime, threads, precision, options) for options in choices]
    short = settings.latency.model_copy(update={"batch_sizes": (settings.target_batch,), "warmup_s": 0.2,
                                                "blocks": 3, "block_s": 0.1, "target_half_width": None})  # fmt: skip
    timed = measure_latency_interleaved(opened, data.test.x[: settings.latency_samples], short,
                                        concurrent=settings.serving == "throughput")  # fmt: skip
    ms = [stats[settings.target_batch].p50_ms for stats in timed]
    best = int(np.argmin(ms))
    opened[best].info["tuning"] = {
        "tried": [
            {"options": session.info.get("options", options), "batch_ms": round(t, 4)}
            for session, options, t in zip(opened, choices, ms, strict=True)
        ],  # fmt: skip
        "how": f"{short.blocks} interleaved blocks of {short.block_s} s at batch {settings.target_batch}; the "
        "fastest kept",
    }
    return opened[best]


def served_footprint(
    artifact: Any, runtime: str, session: Session, candidate: Candidate, data: DataBundle, settings: MeasureSettings
) -> dict[str, Any]:
    """The served artifact's peak memory, load time and first calls in a fresh process (`measure.footprint`), opened
    with the session settings it was timed with, on one batch of the target size; a runtime the probe cannot serve
    from a file (torch) is recorded as skipped."""
    from compressbench.measure.footprint import CHILD_RUNTIMES, probe_footprint

    if runtime not in CHILD_RUNTIMES:
        return {"skipped": f"{runtime} serves a torch module: its memory includes torch, not probed"}
    x = np.resize(data.test.x[: settings.latency_samples], (settings.target_batch, *data.spec.input_shape))
    probed = probe_footprint(artifact, runtime, x.astype(data.test.x.dtype), threads=settings.latency.threads,
                             precision=candidate.precision, options=session.info.get("options"))  # fmt: skip
    return probed.as_dict()


def measured_runtimes(settings: MeasureSettings) -> list[str]:
    """The runtimes a candidate is measured on: the one asked for, or with auto every installed one compared."""
    if settings.runtime != "auto":
        return [settings.runtime]
    return [name for name in installed_runtimes() if settings.compare is None or name in settings.compare]


def measure_candidates(
    candidates: dict[str, Candidate],
    data: DataBundle,
    settings: MeasureSettings,
    chosen_artifacts: dict[str, Any] | None = None,
) -> dict[str, Metrics]:
    """Metrics for each named candidate; every (candidate, runtime) session is timed in one interleaved pass.
    `chosen_artifacts`, when given, receives each candidate's artifact exactly as served on its chosen runtime."""
    names = measured_runtimes(settings)
    if settings.runtime != "auto" and (problem := runtimes.get(settings.runtime).missing()):
        raise CompressbenchError(problem)
    sessions, served, skipped = {}, {}, {}
    for name, candidate in candidates.items():
        served[name], skipped[name] = served_artifacts(candidate, names, data, settings)
        if settings.runtime != "auto" and skipped[name]:
            raise CompressbenchError(skipped[name][settings.runtime])
        for runtime, artifact in served[name].items():
            try:
                sessions[(name, runtime)] = tuned_session(artifact, runtime, candidate.precision, data, settings)
            except CompressbenchError as error:
                if settings.runtime != "auto":
                    raise
                skipped[name][runtime] = str(error)  # recorded, never a crash of the study
    for name in candidates:
        if not any(key[0] == name for key in sessions):
            raise CompressbenchError(f"no installed runtime can serve {name}: {skipped[name]}")
    keys = list(sessions)
    latencies = measure_latency_interleaved(
        [sessions[k] for k in keys], data.test.x[: settings.latency_samples], settings.latency,
        concurrent=settings.serving == "throughput",
    )  # fmt: skip
    per_runtime: dict[str, dict[str, dict[str, Any]]] = {name: {} for name in candidates}
    for key, latency in zip(keys, latencies, strict=True):
        name, runtime = key
        accuracy = measure_accuracy(sessions[key], data.test)
        per_runtime[name][runtime] = {
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
                    "block_ms": list(s.block_ms),
                }
                for b, s in latency.items()
            },
            "runtime": sessions[key].info,
        }
    metrics = {}
    chosen_served: dict[str, tuple[str, Any]] = {}
    for name, candidate in candidates.items():
        measured = per_runtime[name]
        chosen = _choose(name, measured, settings)
        chosen_served[name] = (chosen, served[name][chosen])
        params, nonzero = counted_weights(candidate, served[name][chosen], data, settings)
        payload = kind_of(served[name][chosen]).serialise(served[name][chosen])
        if chosen_artifacts is not None:
            chosen_artifacts[name] = served[name][chosen]
        figures = {
            **measured[chosen],
            "size_bytes": len(payload),
            **stored_figures(served[name][chosen], payload),
            "params": params,
            "nonzero_params": nonzero,
            "macs": count_macs(candidate.module, data.spec.input_shape, data.spec.torch_dtype)
            if candidate.module is not None
            else count_graph_macs(candidate.float_graph, data.spec.input_shape),
            "served_ops": served_ops(served[name][chosen]),
        }
        if settings.footprint:
            figures["footprint"] = served_footprint(served[name][chosen], chosen, sessions[(name, chosen)], candidate,
                                                    data, settings)  # fmt: skip
        if settings.runtime == "auto":
            figures["runtimes"] = {
                **{rt: {k: m[k] for k in ("accuracy", "latency_ms", "runtime")} for rt, m in measured.items()},
                **{rt: {"skipped": why} for rt, why in skipped[name].items()},
            }
            figures["runtime_choice"] = (
                "reference runtime for the baseline"
                if name == "baseline" and chosen == REFERENCE
                else f"fastest at batch {settings.target_batch} among {', '.join(sorted(measured))}"
            )
        metrics[name] = Metrics(**figures)
    for name, fidelity in embedding_fidelities(candidates, chosen_served, data).items():
        metrics[name].embedding = fidelity
    return metrics


def embedding_fidelities(
    candidates: dict[str, Candidate], served: dict[str, tuple[str, Any]], data: DataBundle
) -> dict[str, dict[str, Any]]:
    """For a text encoder (a baseline with `embed`): each candidate's sentence embeddings on the test split against
    the baseline's, both read from the artifacts as served on their runtimes (`measure.embeddings`)."""
    baseline = candidates.get("baseline")
    if baseline is None or not data.spec.tokens or not hasattr(baseline.module, "embed"):
        return {}
    x = data.test.x
    shape = data.spec.input_shape
    runtime, artifact = served["baseline"]
    tensor = embedding_tensor(baseline.module, shape, data.spec.input_dtype)
    reference = sentence_embeddings(artifact, x, runtime, tensor, baseline.precision)
    fidelities = {}
    for name, candidate in candidates.items():
        if name == "baseline" or not hasattr(candidate.module, "embed"):
            continue
        runtime, artifact = served[name]
        tensor = embedding_tensor(candidate.module, shape, data.spec.input_dtype)
        embeddings = sentence_embeddings(artifact, x, runtime, tensor, candidate.precision)
        if embeddings.shape != reference.shape:
            why = f"embeddings of {embeddings.shape[1]} values, not the baseline's {reference.shape[1]}"
            fidelities[name] = {"comparable": False, "why": why}
        else:
            how = "classifier input of the served artifact, test split, vs the baseline's"
            fidelities[name] = {**embedding_fidelity(reference, embeddings), "runtime": runtime, "how": how}
    return fidelities


def _choose(name: str, measured: dict[str, dict[str, Any]], settings: MeasureSettings) -> str:
    """The runtime a candidate is reported on: the one asked for, or with auto the fastest at the target batch
    (the baseline stays on the reference runtime so every speed-up is against ONNX Runtime fp32)."""
    if settings.runtime != "auto":
        return settings.runtime
    if name == "baseline" and REFERENCE in measured:
        return REFERENCE
    batch = str(settings.target_batch)
    if any(batch not in m["latency_ms"] for m in measured.values()):
        raise CompressbenchError(f"target_batch {batch} is not among the timed batch sizes")
    return min(measured, key=lambda rt: measured[rt]["latency_ms"][batch])
