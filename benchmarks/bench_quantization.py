"""Quantization on Fashion-MNIST: int8 speed, accuracy and size against ONNX Runtime fp32, side by side.

Sections (all by default; `--only a,b` runs some and merges them into the saved JSON):
- types:       activation / weight types and reduce_range for static int8 on mlp and resnet (evidence for defaults)
- mlp:         mlp int8 (quant.dynamic, quant.static auto)
- resnet:      resnet quant.static (auto, the default)
- lenet5:      lenet5 with auto (quant.static, quant.dynamic) — must never be slower than fp32
- calibration: calibration method x calibration size (test accuracy, activation scales), for resnet by the issue
- qat:         PTQ (quant.static, every layer) vs QAT accuracy for mlp, lenet5, resnet
- sharing:     mlp weight sharing 5-bit + Huffman: size vs fp32 parameter bytes, by part

ONNX Runtime, 1 intra-op thread, batch 1 and 256, baseline and candidate interleaved in one process. Baselines
come from the cache (`COMPRESSBENCH_CACHE`): mlp and lenet5 with their default training, resnet 4 epochs.

    COMPRESSBENCH_CACHE=... .venv/bin/python benchmarks/bench_quantization.py [--only mlp,lenet5]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import onnx

import compressbench as cb
import compressbench.bench as bench

os.environ.setdefault("COMPRESSBENCH_PROGRESS", "off")
RESULTS = Path(__file__).parent / "results" / "quantization.json"
DATASET = cb.DatasetConfig(name="fashion-mnist")
LATENCY = cb.LatencySettings(threads=1, batch_sizes=(1, 256))
MEASURE = cb.MeasureSettings(latency=LATENCY)
MODELS = ["mlp", "lenet5", "resnet"]
EVERY_LAYER = {"op_types": ["Conv", "MatMul", "Gemm", "Relu", "MaxPool", "Add", "GlobalAveragePool", "Flatten"],
               "exclude": []}  # fmt: skip


def training(model: str):
    config = cb.default_training(model)
    return config.model_copy(update={"epochs": 4}) if model == "resnet" else config


def run(model: str, steps: list[dict[str, Any]], name: str) -> dict[str, Any]:
    started = time.perf_counter()
    result = cb.compress(DATASET, model, {"name": name, "steps": steps}, training=training(model), measure=MEASURE)
    base, cand = result.baseline, result.candidate
    row = {
        "model": model, "recipe": name, "steps": steps,
        "speedup": result.speedup,
        # Ratio of the 10th-percentile call times: closer to an uncontended machine when neighbours load the CPU.
        "speedup_p10": {b: base.latency[b]["p10_ms"] / cand.latency[b]["p10_ms"] for b in result.speedup},
        "fp32_accuracy": base.accuracy,
        "accuracy": cand.accuracy, "accuracy_drop_pt": result.accuracy_drop_pt,
        "size_ratio": result.size_ratio, "compression_ratio": result.compression_ratio,
        "fp32_ms": base.latency_ms, "candidate_ms": cand.latency_ms,
        "storage": cand.storage, "stored_bytes": cand.stored_bytes,
        "fp32_param_bytes": base.params * 4, "flags": result.flags,
        "records": result.steps, "seconds": time.perf_counter() - started,
    }  # fmt: skip
    chosen = next((r.get("chosen") for r in reversed(result.steps) if "chosen" in r), None)
    print(
        f"{model:7} {name:34} b1 {row['speedup']['1']:.2f}x  b256 {row['speedup']['256']:.2f}x  "
        f"(p10 ratio b1 {row['speedup_p10']['1']:.2f}x b256 {row['speedup_p10']['256']:.2f}x)  "
        f"acc {row['fp32_accuracy']:.4f} -> {row['accuracy']:.4f} ({row['accuracy_drop_pt']:+.2f} pt drop)  "
        f"file {row['size_ratio']:.2f}x smaller" + (f"  chosen: {chosen}" if chosen else ""),
        flush=True,
    )
    for flag in row["flags"]:
        print(f"        flag: {flag}", flush=True)
    return row


def section_types() -> list[dict]:
    rows = []
    for model in [m for m in MODELS if m in ("mlp", "resnet")]:
        for act, weight, reduce in (("uint8", "int8", False), ("uint8", "int8", True), ("int8", "int8", False),
                                    ("uint8", "uint8", False)):  # fmt: skip
            step = {"technique": "quant.static", **EVERY_LAYER, "activation_type": act, "weight_type": weight,
                    "reduce_range": reduce}  # fmt: skip
            label = f"static {act[0].upper()}8{weight[0].upper()}8" + (" reduce_range" if reduce else "")
            rows.append(run(model, [step], label.replace("I8", "S8").replace("U8I8", "U8S8")))
    return rows


def section_mlp() -> list[dict]:
    rows = [
        run("mlp", [{"technique": "quant.dynamic"}], "quant.dynamic (MatMul/Gemm)"),
        run("mlp", [{"technique": "quant.static"}], "quant.static (auto)"),
    ]
    return rows + denormal_check("mlp")


class FlushedSession:
    """ONNX Runtime fp32 as compressbench opens it, plus `session.set_denormal_as_zero` (flush denormals)."""

    def __init__(self, graph: onnx.ModelProto, flush: bool) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads, options.inter_op_num_threads = 1, 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.log_severity_level = 3
        if flush:
            options.add_session_config_entry("session.set_denormal_as_zero", "1")
        self._session = ort.InferenceSession(graph.SerializeToString(), options, providers=["CPUExecutionProvider"])
        self.info = {"denormal_as_zero": flush}

    def run(self, x: np.ndarray) -> np.ndarray:
        return self._session.run(None, {"x": x})[0]


def denormal_check(model: str) -> list[dict]:
    """The trained fp32 baseline with and without flushing denormals, and dynamic int8, interleaved: how much of the
    int8 speed-up is the fp32 kernels slowing down on denormal intermediate values."""
    trained = cb.baseline(DATASET, model, training=training(model))
    baseline, data = trained.module, trained.data
    fp32 = bench.export_onnx(baseline, data.spec.input_shape)
    int8 = bench.quantize_dynamic_graph("bench", fp32, ["MatMul", "Gemm"], [], False, "int8")
    sessions = [FlushedSession(fp32, False), FlushedSession(fp32, True), FlushedSession(int8, False)]
    plain, flushed, dynamic = bench.measure_latency_interleaved(sessions, data.test.x[:256], LATENCY)
    row = {"model": model, "recipe": "denormal check", "fp32_ms": {b: s.p50_ms for b, s in plain.items()},
           "fp32_flushed_ms": {b: s.p50_ms for b, s in flushed.items()},
           "int8_dynamic_ms": {b: s.p50_ms for b, s in dynamic.items()}}  # fmt: skip
    print(
        f"{model:7} denormal check: fp32 flush-to-zero vs plain fp32 b1 {plain[1].p50_ms / flushed[1].p50_ms:.2f}x "
        f"b256 {plain[256].p50_ms / flushed[256].p50_ms:.2f}x;  dynamic int8 vs fp32 flush-to-zero "
        f"b1 {flushed[1].p50_ms / dynamic[1].p50_ms:.2f}x b256 {flushed[256].p50_ms / dynamic[256].p50_ms:.2f}x",
        flush=True,
    )
    return [row]


def section_resnet() -> list[dict]:
    return [run("resnet", [{"technique": "quant.static"}], "quant.static (auto)")]


def section_lenet5() -> list[dict]:
    return [
        run("lenet5", [{"technique": "quant.static"}], "quant.static (auto)"),
        run("lenet5", [{"technique": "quant.dynamic", "op_types": "auto", "exclude": "auto"}], "quant.dynamic (auto)"),
    ]


def section_calibration() -> list[dict]:
    return [row for model in MODELS for row in calibration_ablation(model)]


def calibration_ablation(model: str) -> list[dict]:
    """Test accuracy of static int8 (every layer, per-channel U8S8) by calibration method and size."""
    trained = cb.baseline(DATASET, model, training=training(model))
    baseline, data = trained.module, trained.data
    graph, _ = bench.preprocess("bench", bench.export_onnx(baseline, data.spec.input_shape))
    fp32 = bench.measure_accuracy(bench.open_session(graph, "onnxruntime"), data.test).accuracy
    rows = []
    for method in ("minmax", "percentile", "entropy"):
        for size in (64, 512):
            started = time.perf_counter()
            quantized = bench.quantize_static_graph(
                "bench", graph, data.calibration.x[:size], op_types=None, exclude=[], per_channel=True,
                activation_type="uint8", weight_type="int8", reduce_range=False, calibration_method=method,
            )  # fmt: skip
            seconds = time.perf_counter() - started
            accuracy = bench.measure_accuracy(bench.open_session(quantized, "onnxruntime"), data.test).accuracy
            scales = activation_scales(quantized)
            row = {"model": model, "method": method, "calibration_samples": size, "fp32_accuracy": fp32,
                   "accuracy": accuracy, "accuracy_drop_pt": (fp32 - accuracy) * 100, "quantize_seconds": seconds,
                   "median_activation_scale": float(np.median(scales)), "input_scale": scales[0]}  # fmt: skip
            rows.append(row)
            print(
                f"{model:7} calibration {method:10} n={size:3}  acc {fp32:.4f} -> {accuracy:.4f} "
                f"({row['accuracy_drop_pt']:+.2f} pt drop)  "
                f"median activation scale {row['median_activation_scale']:.5f}  "
                f"input scale {row['input_scale']:.5f}  quantized in {seconds:.1f} s",
                flush=True,
            )
    return rows


def activation_scales(graph: onnx.ModelProto) -> list[float]:
    """Scales of the activation QuantizeLinear nodes (graph order; the first is the model input's)."""
    initializers = {i.name: onnx.numpy_helper.to_array(i) for i in graph.graph.initializer}
    return [float(initializers[n.input[1]]) for n in graph.graph.node if n.op_type == "QuantizeLinear"]


def section_qat() -> list[dict]:
    rows = []
    for model in MODELS:
        rows.append(run(model, [{"technique": "quant.static", **EVERY_LAYER}], "PTQ quant.static (every layer)"))
        rows.append(run(model, [{"technique": "quant.qat"}], "QAT quant.qat (1 epoch, 20k samples)"))
    return rows


def section_sharing() -> list[dict]:
    steps = [{"technique": "quant.weight_sharing", "fc_bits": 5, "conv_bits": 8}, {"technique": "encode.huffman"}]
    row = run("mlp", steps, "weight sharing 5-bit + huffman")
    fp32 = row["fp32_param_bytes"]
    fixed = row["records"][0]["storage"]
    row["size_ratio_vs_fp32_params"] = fp32 / row["stored_bytes"]
    row["size_ratio_without_huffman"] = fp32 / sum(fixed.values())
    print(
        f"mlp     fp32 params {fp32} B -> shared 5-bit {sum(fixed.values())} B "
        f"({row['size_ratio_without_huffman']:.2f}x) -> + huffman {row['stored_bytes']} B "
        f"({row['size_ratio_vs_fp32_params']:.2f}x)",
        flush=True,
    )
    print(f"        parts without huffman: {fixed}", flush=True)
    print(f"        parts with huffman:    {row['storage']}", flush=True)
    return [row]


SECTIONS = {"types": section_types, "mlp": section_mlp, "resnet": section_resnet, "lenet5": section_lenet5,
            "calibration": section_calibration, "qat": section_qat, "sharing": section_sharing}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default=",".join(SECTIONS), help=f"comma-separated sections of {list(SECTIONS)}")
    parser.add_argument("--models", default=",".join(MODELS), help="models of the types, calibration and qat sections")
    args = parser.parse_args()
    MODELS[:] = args.models.split(",")
    saved = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {}
    for name in args.only.split(","):
        print(f"== {name}", flush=True)
        rows = SECTIONS[name]()
        # Rows of other models (an earlier `--models` run) are kept; a re-measured row replaces its old one.
        key = lambda row: (row.get("model"), row.get("recipe"), row.get("method"), row.get("calibration_samples"))  # noqa: E731
        new = {key(row) for row in rows}
        old = [row for row in saved.setdefault("sections", {}).get(name, []) if key(row) not in new]
        saved["sections"][name] = old + rows
        saved.update({"settings": LATENCY.model_dump(), "environment": bench.environment()})
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps(saved, indent=1, default=str))
    print(f"saved {RESULTS}")


if __name__ == "__main__":
    main()
