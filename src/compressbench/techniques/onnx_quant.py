"""What the ONNX Runtime quantization techniques share: calibration data, layer names, checks and `auto` selection.

`auto` builds candidate int8 graphs that differ in what they quantize, measures each on the runtime (latency
interleaved with fp32, accuracy on the validation split), and keeps the fastest one within the accuracy budget.
fp32 itself is always a candidate, so `auto` never returns a model slower than fp32 as far as it can measure.
"""

from __future__ import annotations

import contextlib
import io
import logging
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from compressbench.artifacts import ONNX
from compressbench.data import DataBundle, Split
from compressbench.errors import CompressbenchError, raised_with
from compressbench.measure.accuracy import collapse_flag, measure_accuracy
from compressbench.measure.latency import LatencySettings, measure_latency_interleaved
from compressbench.progress import quiet_root_logger
from compressbench.runtime import export_onnx, installed_runtimes, open_session
from compressbench.runtime import runtimes as runtime_registry
from compressbench.runtime.onnxruntime import graph_feeds
from compressbench.techniques.base import Candidate, Context

WEIGHTED_OPS = ("Conv", "MatMul", "Gemm")
INT8_OPS = frozenset(
    {"QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear", "MatMulInteger", "ConvInteger", "QLinearConv",
     "QLinearMatMul", "QGemm", "MatMulIntegerToFloat", "DynamicQuantizeMatMul"}
)  # fmt: skip
FP32 = "fp32 (nothing quantized)"


def float_graph(step: str, candidate: Candidate, context: Context) -> onnx.ModelProto:
    """The float graph a graph technique starts from: the module's ONNX export, or a user's ONNX model as given (a
    graph an earlier step already quantized is refused rather than silently quantized from the original)."""
    if candidate.module is not None:
        return export_onnx(candidate.module, context.data.spec.input_shape, input_dtype=context.data.spec.input_dtype)
    if candidate.artifact is not candidate.float_graph:
        raise CompressbenchError(f"{step}: an earlier step already transformed this ONNX model; put {step} first")
    return candidate.float_graph


def calibration_inputs(step: str, data: DataBundle, samples: int) -> np.ndarray:
    """The first `samples` calibration inputs, checked: present, finite, and shaped like the model's input."""
    x = data.calibration.x
    if len(x) == 0:
        raise CompressbenchError(f"{step}: field 'calibration_samples': the dataset's calibration split is empty")
    if tuple(x.shape[1:]) != tuple(data.spec.input_shape):
        raise CompressbenchError(
            f"{step}: field 'calibration_samples': calibration inputs have shape {tuple(x.shape[1:])}, "
            f"the model takes {tuple(data.spec.input_shape)}"
        )
    x = np.ascontiguousarray(x[:samples])
    if not np.isfinite(x).all():
        raise CompressbenchError(f"{step}: field 'calibration_samples': calibration inputs contain NaN or inf")
    return x


class ArrayReader:
    """An ONNX Runtime `CalibrationDataReader` over a numpy array, in batches of each graph input's type (the zoo's
    token ids arrive as float32 and a text model's graph takes int64; several inputs are fed by name)."""

    def __init__(self, x: np.ndarray, graph: onnx.ModelProto, batch: int = 64) -> None:
        initializers = {t.name for t in graph.graph.initializer}
        inputs = [(v.name, onnx.helper.tensor_dtype_to_np_dtype(v.type.tensor_type.elem_type))
                  for v in graph.graph.input if v.name not in initializers]  # fmt: skip
        self._feeds = [graph_feeds(x[i : i + batch], inputs) for i in range(0, len(x), batch)]
        self._next = 0

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self._next >= len(self._feeds):
            return None
        self._next += 1
        return self._feeds[self._next - 1]

    def rewind(self) -> None:
        self._next = 0

    def __len__(self) -> int:
        return len(self._feeds)


def module_path(node_name: str) -> str:
    """The torch module path behind a TorchScript-exported node name: '/blocks/blocks.2/shortcut/shortcut.0/Conv'
    -> 'blocks.2.shortcut.0'."""
    path: list[str] = []
    for part in node_name.strip("/").split("/")[:-1]:
        if path and part.startswith(path[-1] + "."):
            path[-1] = part
        else:
            path.append(part)
    return ".".join(path)


def weighted_nodes(graph: onnx.ModelProto) -> list[str]:
    """Names of the Conv/MatMul/Gemm nodes, in graph order: the layers a user may keep in float."""
    return [node.name for node in graph.graph.node if node.op_type in WEIGHTED_OPS]


def resolve_exclude(step: str, graph: onnx.ModelProto, names: list[str] | str) -> list[str]:
    """Node names for `exclude` entries given as node names or torch module paths, or "first+last" (the first and
    last weighted layers, the two that int8 costs most accuracy in most networks); unknown ones are an error."""
    if names == "first+last":
        return first_and_last(graph)
    layers = weighted_nodes(graph)
    all_nodes = {node.name for node in graph.graph.node}
    resolved: list[str] = []
    for name in names:
        matches = [name] if name in all_nodes else [n for n in layers if module_path(n) == name]
        if not matches:
            choices = ", ".join(f"{n} ({module_path(n)})" for n in layers)
            raise CompressbenchError(f"{step}: field 'exclude': no layer {name!r} in this model (layers: {choices})")
        resolved += matches
    return resolved


def first_and_last(graph: onnx.ModelProto) -> list[str]:
    layers = weighted_nodes(graph)
    return list(dict.fromkeys([layers[0], layers[-1]])) if layers else []


def quantize_with(step: str, build: Callable[[Path], None]) -> onnx.ModelProto:
    """Run an ONNX Runtime quantizer call that writes to a file; errors become one CompressbenchError line.

    The quantizer logs advice through the root logger, its pre-processing logs a whole traceback at ERROR when graph
    optimisation fails, and its histogram calibrators print to stdout: all are muted (stdout must stay clean for
    `run --json`; the cause travels in the raised error, into the step's record or the stored failure). It runs in
    a temporary folder: the pre-processing writes `sym_shape_infer_temp.onnx` and the quantizer a large graph's
    weights (`<uuid>.data`) into the working directory, and leaves them there when it fails."""
    with tempfile.TemporaryDirectory() as folder:
        target = Path(folder) / "int8.onnx"
        try:
            with quiet_root_logger(logging.CRITICAL), contextlib.redirect_stdout(io.StringIO()), \
                    contextlib.chdir(folder):  # fmt: skip
                build(target)
        except CompressbenchError:
            raise
        except Exception as error:
            message = str(error).strip() or "(no message)"
            raise CompressbenchError(
                f"{step}: ONNX Runtime's quantizer failed{failing_node(error)}: {type(error).__name__}: {message}"
            ) from error
        return onnx.load(target)


def failing_node(error: BaseException) -> str:
    """' at node X (op, layer Y)' for the ONNX node the quantizer was handling when it raised (the innermost frame
    holding a `node`), so a failure names the layer behind it; empty when none is found."""
    nodes = [value for value in raised_with(error) if isinstance(value, onnx.NodeProto)]
    if not nodes:
        return ""
    node = nodes[-1]
    layer = module_path(node.name)
    return f" at node {node.name!r} ({node.op_type}{f', layer {layer}' if layer else ''})"


def fresh(graph: onnx.ModelProto) -> onnx.ModelProto:
    """A copy for the quantizer: given a ModelProto, ONNX Runtime's quantizer moves its weights to external data
    in place, which breaks the next use of the same proto."""
    copy = onnx.ModelProto()
    copy.CopyFrom(graph)
    return copy


def int8_op_counts(graph: onnx.ModelProto) -> dict[str, int]:
    counts: dict[str, int] = {}
    for node in graph.graph.node:
        if node.op_type in INT8_OPS:
            counts[node.op_type] = counts.get(node.op_type, 0) + 1
    return counts


def quantized_layers(graph: onnx.ModelProto) -> int:
    """Weighted layers that run in int8: integer kernels, or (QDQ) Conv/MatMul/Gemm fed by a DequantizeLinear weight."""
    integer = sum(1 for n in graph.graph.node if n.op_type in ("MatMulInteger", "ConvInteger", "QLinearConv"))
    dequantized = {out for n in graph.graph.node if n.op_type == "DequantizeLinear" for out in n.output}
    qdq = sum(
        1
        for n in graph.graph.node
        if n.op_type in WEIGHTED_OPS and len(n.input) > 1 and n.input[1] in dequantized and n.input[0] in dequantized
    )
    return integer + qdq


def subset(split: Split, samples: int) -> Split:
    return Split(split.x[:samples], split.y[:samples])


def selection_latency(settings: LatencySettings) -> LatencySettings:
    """A shorter version of the job's latency settings for choosing between variants (the final figure is re-measured
    by the job at full length)."""
    return settings.model_copy(
        update={"warmup_s": min(settings.warmup_s, 0.3), "blocks": min(settings.blocks, 6),
                "block_s": min(settings.block_s, 0.1)}
    )  # fmt: skip


@dataclass
class Selection:
    chosen: str
    graph: onnx.ModelProto
    table: list[dict[str, Any]]
    why: str


def select_fastest(
    fp32: onnx.ModelProto,
    variants: dict[str, onnx.ModelProto],
    data: DataBundle,
    latency: LatencySettings,
    *,
    max_drop_pt: float,
    min_speedup: float,
    samples: int,
    runtimes: Sequence[str] = ("onnxruntime",),
) -> Selection:
    """Measure fp32 and every variant side by side on each of `runtimes` (those that will serve the candidate); keep
    the fastest variant (by its worst speed-up over the batch sizes, each graph on its fastest runtime) whose
    validation accuracy is within `max_drop_pt` of fp32 and whose worst speed-up is at least `min_speedup`;
    otherwise keep fp32. Choosing on ONNX Runtime alone would keep a pruned ResNet in fp32 that OpenVINO runs 2.5-3x
    faster in int8."""
    graphs = {FP32: fp32, **variants}
    serving = [r for r in runtimes if r in installed_runtimes() and runtime_registry.get(r).serves(ONNX)]
    serving = serving or ["onnxruntime"]
    sessions, unservable = {}, {}
    for name, graph in graphs.items():
        for runtime in serving:
            try:
                sessions[(name, runtime)] = open_session(graph, runtime, latency.threads)
            except CompressbenchError as error:  # one runtime cannot compile one variant: judged on the others
                if name == FP32 and runtime == serving[0]:
                    raise
                unservable.setdefault(name, {})[runtime] = str(error).splitlines()[0]
    graphs = {name: g for name, g in graphs.items() if any((name, r) in sessions for r in serving)}
    val = subset(data.val, samples)
    stats = dict(
        zip(sessions, measure_latency_interleaved(list(sessions.values()), val.x[:256], selection_latency(latency)),
            strict=True)
    )  # fmt: skip
    batches = list(stats[(FP32, serving[0])])

    def fastest(name: str) -> dict[int, tuple[float, str]]:
        return {b: min((stats[(name, r)][b].p50_ms, r) for r in serving if (name, r) in stats) for b in batches}

    fp32_best = fastest(FP32)
    table = []
    for name in graphs:
        accuracy = measure_accuracy(next(sessions[(name, r)] for r in serving if (name, r) in sessions), val)
        best = fastest(name)
        table.append(
            {"variant": name, "val_accuracy": accuracy.accuracy, "finite": accuracy.finite,
             "speedup": {str(b): fp32_best[b][0] / best[b][0] for b in batches},
             "runtime": {str(b): best[b][1] for b in batches},
             **({"cannot_run_on": unservable[name]} if name in unservable else {})}
        )  # fmt: skip
    table += [{"variant": name, "cannot_run_on": causes} for name, causes in unservable.items() if name not in graphs]
    base_accuracy = table[0]["val_accuracy"]
    measured = [row for row in table[1:] if "speedup" in row]
    eligible = [
        row
        for row in measured
        if row["finite"]
        and (base_accuracy - row["val_accuracy"]) * 100 <= max_drop_pt
        and min(row["speedup"].values()) >= min_speedup
    ]
    if not eligible:
        reasons = "; ".join(
            f"{r['variant']}: worst speed-up {min(r['speedup'].values()):.2f}x, "
            f"val accuracy {(r['val_accuracy'] - base_accuracy) * 100:+.2f} pt"
            for r in measured
        )
        why = (
            f"no int8 variant was at least {min_speedup:.2f}x faster than fp32 at every batch size within "
            f"{max_drop_pt} pt of its validation accuracy ({reasons}); kept fp32"
        )
        return Selection(FP32, fp32, table, why)
    best = max(eligible, key=lambda r: min(r["speedup"].values()))
    why = (
        f"fastest within {max_drop_pt} pt of fp32 validation accuracy: worst speed-up "
        f"{min(best['speedup'].values()):.2f}x, val accuracy {(best['val_accuracy'] - base_accuracy) * 100:+.2f} pt"
    )
    return Selection(best["variant"], graphs[best["variant"]], table, why)


def check_outputs(step: str, graph: onnx.ModelProto, data: DataBundle, samples: int = 512) -> dict[str, Any]:
    """Validation accuracy of the quantized graph on a few samples; NaN outputs or collapse become flags."""
    checked = subset(data.val, samples)
    accuracy = measure_accuracy(open_session(graph, "onnxruntime", 1), checked)
    flags = []
    if not accuracy.finite:
        flags.append(f"{step}: the quantized model outputs NaN or inf")
    if collapsed := collapse_flag(accuracy.accuracy, checked.y):
        flags.append(f"{step}: {collapsed} on validation after quantization")
    return {"val_accuracy": accuracy.accuracy, "flags": flags}


def dedupe(variants: dict[str, onnx.ModelProto]) -> dict[str, onnx.ModelProto]:
    """Drop variants whose graph is identical to an earlier one (e.g. 'all ops' on a model with only Gemm)."""
    seen: dict[bytes, str] = {}
    kept = {}
    for name, graph in variants.items():
        key = graph.graph.SerializeToString()
        if key not in seen:
            seen[key] = name
            kept[name] = graph
    return kept


def take_int8_variant(
    step: str,
    candidate: Candidate,
    fp32: onnx.ModelProto,
    variants: dict[str, onnx.ModelProto],
    config: Any,
    context: Context,
    record: dict[str, Any],
) -> None:
    """Put the chosen int8 variant (or, with `auto`, the fastest within budget, possibly fp32) into the candidate,
    check its outputs, and append `record` with what was chosen and why. `config` carries `op_types`, `exclude`,
    `max_accuracy_drop_pt`, `min_speedup` and `selection_samples` (quant.static and quant.dynamic both do)."""
    auto = config.op_types == "auto" or config.exclude == "auto"
    if not variants and not auto:
        raise CompressbenchError(
            f"{step}: op_types {config.op_types} matched no node to quantize in this model (exclude {config.exclude})"
        )
    if auto:
        selection = select_fastest(
            fp32, variants, context.data, context.latency, max_drop_pt=config.max_accuracy_drop_pt,
            min_speedup=config.min_speedup, samples=config.selection_samples, runtimes=context.runtimes,
        )  # fmt: skip
        chosen, candidate.artifact = selection.chosen, selection.graph
        record.update({"chosen": chosen, "why": selection.why, "variants": selection.table})
        if chosen == FP32:
            candidate.flags.append(f"{step} auto: no int8 variant beat fp32 here; the model stays fp32")
    else:
        chosen, candidate.artifact = next(iter(variants.items()))
        record["chosen"] = chosen
    record["int8_ops"] = int8_op_counts(candidate.artifact)
    record["quantized_layers"] = quantized_layers(candidate.artifact)
    if chosen != FP32:
        record["float_layers"] = float_layers(candidate.artifact)
        if flag := unquantizable_flag(step, candidate.artifact, record["float_layers"]):
            candidate.flags.append(flag)
        check = check_outputs(step, candidate.artifact, context.data)
        record["val_accuracy"] = check["val_accuracy"]
        candidate.flags += check["flags"]
    candidate.records.append(record)


def float_layers(graph: onnx.ModelProto) -> dict[str, dict[str, Any]]:
    """The nodes of a quantized graph whose weights (float initializers of two or more dimensions) stayed float:
    excluded layers, and ops the quantizer has no int8 kernel for (a GRU, an LSTM), with their weight counts."""
    floats = {t.name: int(np.prod(t.dims)) for t in graph.graph.initializer
              if t.data_type == onnx.TensorProto.FLOAT and len(t.dims) >= 2}  # fmt: skip
    layers = {}
    for node in graph.graph.node:
        weights = sum(floats[name] for name in node.input if name in floats)
        if weights and node.op_type not in ("DequantizeLinear", "QuantizeLinear"):
            why = "excluded (kept in float)" if node.op_type in WEIGHTED_OPS else f"no int8 kernel for {node.op_type}"
            layers[node.name] = {"op": node.op_type, "weights": weights, "why": why}
    return layers


def unquantizable_flag(step: str, graph: onnx.ModelProto, layers: dict[str, dict[str, Any]]) -> str | None:
    """A flag when ops the quantizer cannot handle hold more than a tenth of the weights: the int8 model is then
    mostly float, whatever the step's name says (layers excluded on purpose are not flagged)."""
    left = {name: entry for name, entry in layers.items() if entry["op"] not in WEIGHTED_OPS}
    total = sum(int(np.prod(t.dims)) for t in graph.graph.initializer if len(t.dims) >= 2)
    weights = sum(entry["weights"] for entry in left.values())
    if not total or weights <= 0.1 * total:
        return None
    ops = ", ".join(sorted({entry["op"] for entry in left.values()}))
    return (
        f"{step}: {weights:,} of {total:,} weights ({weights / total:.0%}) stay float in layers it has no int8 kernel "
        f"for ({ops}); only the rest is int8"
    )
