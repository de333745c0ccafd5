"""ONNX Runtime fp32 vs PyTorch eager, and `quant.dynamic` int8 vs ONNX Runtime fp32, for every zoo model.

Fashion-MNIST for the image models; conv1d takes 1-D signals, so it runs on MNIST-1D. One intra-op thread,
batch 1 and 256, sessions interleaved in one process. Prints a table and saves JSON to benchmarks/results/.

    .venv/bin/python benchmarks/bench_runtimes.py [--resnet-epochs N]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import compressbench as cb
import compressbench.bench as bench

CASES = [
    ("fashion-mnist", "mlp"),
    ("fashion-mnist", "lenet5"),
    ("fashion-mnist", "resnet"),
    ("mnist1d", "conv1d"),
]
RESULTS = Path(__file__).parent / "results" / "runtimes.json"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--resnet-epochs", type=int, default=None, help="baseline epochs for the ResNet (default 15)")
    parser.add_argument("--models", nargs="+", default=[model for _, model in CASES], help="zoo models to measure")
    args = parser.parse_args()
    latency = cb.LatencySettings(threads=1, batch_sizes=(1, 256))
    measure = cb.MeasureSettings(latency=latency)
    rows = []
    for dataset, model in [case for case in CASES if case[1] in args.models]:
        training = cb.default_training(model)
        if model == "resnet" and args.resnet_epochs:
            training = training.model_copy(update={"epochs": args.resnet_epochs})
        trained = cb.baseline(dataset, model, training=training)
        baseline, data, meta = trained.module, trained.data, trained.meta
        sessions = [
            bench.open_session(bench.export_onnx(baseline, data.spec.input_shape), "onnxruntime"),
            bench.open_session(baseline, "torch"),
        ]
        ort_stats, torch_stats = bench.measure_latency_interleaved(sessions, data.test.x[:256], latency)
        result = cb.compress(dataset, model, "quant.dynamic", training=training, measure=measure)
        row = {
            "dataset": dataset,
            "model": model,
            "baseline_epochs": meta["epochs_run"],
            "ort_fp32_ms": {b: s.p50_ms for b, s in ort_stats.items()},
            "torch_eager_ms": {b: s.p50_ms for b, s in torch_stats.items()},
            "ort_over_torch_speedup": {b: torch_stats[b].p50_ms / ort_stats[b].p50_ms for b in ort_stats},
            "int8_dynamic_speedup": result.speedup,
            "fp32_accuracy": result.baseline.accuracy,
            "int8_accuracy": result.candidate.accuracy,
            "accuracy_drop_pt": result.accuracy_drop_pt,
            "size_ratio": result.size_ratio,
            "quantized_layers": result.steps[0]["quantized_layers"],
        }
        rows.append(row)
        print(
            f"{dataset:13} {model:7} epochs {row['baseline_epochs']:2}  "
            f"ORT fp32 vs torch eager: b1 {row['ort_over_torch_speedup'][1]:.2f}x "
            f"b256 {row['ort_over_torch_speedup'][256]:.2f}x  "
            f"int8 dynamic vs ORT fp32: b1 {result.speedup['1']:.2f}x b256 {result.speedup['256']:.2f}x  "
            f"acc {row['fp32_accuracy']:.4f} -> {row['int8_accuracy']:.4f} ({row['accuracy_drop_pt']:+.2f} pt drop)  "
            f"file {row['size_ratio']:.2f}x smaller",
            flush=True,
        )
    # Rows of models not measured this time (an earlier `--models` run) are kept.
    measured = {row["model"] for row in rows}
    kept = json.loads(RESULTS.read_text())["rows"] if RESULTS.is_file() else []
    rows = [row for row in kept if row["model"] not in measured] + rows
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(
        json.dumps({"settings": latency.model_dump(), "environment": result.environment, "rows": rows}, indent=1)
    )
    print(f"saved {RESULTS}")


if __name__ == "__main__":
    main()
