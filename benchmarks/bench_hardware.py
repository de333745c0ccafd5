"""Each zoo model x {fp32, int8, pruned, pruned+int8} x runtime: speed-ups vs ONNX Runtime fp32, and bf16.

Every variant is measured with `runtime: auto`: ONNX Runtime, OpenVINO and torch in one interleaved pass
(1 thread, batch 1 and 256), so the table holds each runtime's figure and the fastest. int8 is ONNX Runtime's
static QDQ (`quant.static`, auto) for ONNX Runtime and NNCF for OpenVINO. Runs are stored in
benchmarks/results/hardware.db, so an interrupted benchmark resumes. Saves benchmarks/results/hardware.json.

    .venv/bin/python benchmarks/bench_hardware.py [--models mlp lenet5 resnet conv1d] [--resnet-epochs 15]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import compressbench as cb

DATASET = {"mlp": "fashion-mnist", "lenet5": "fashion-mnist", "resnet": "fashion-mnist", "conv1d": "mnist1d"}
PRUNE = {"technique": "prune.channels", "ratio": 0.5}
VARIANTS = {
    "fp32": [],
    "int8 (ORT static)": [{"technique": "quant.static"}],
    "int8 (NNCF)": [{"technique": "quant.nncf"}],
    "pruned": [PRUNE],
    "pruned+int8 (ORT static)": [PRUNE, {"technique": "quant.static"}],
    "pruned+int8 (NNCF)": [PRUNE, {"technique": "quant.nncf"}],
    "bf16": [{"technique": "precision.bf16"}],
}
RESULTS = Path(__file__).parent / "results"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(DATASET))
    parser.add_argument("--resnet-epochs", type=int, default=15, help="baseline epochs of the ResNet (its recipe: 15)")
    args = parser.parse_args()
    measure = cb.MeasureSettings(runtime="auto", target_batch=256, latency=cb.LatencySettings(batch_sizes=(1, 256)))
    rows = []
    for model in args.models:
        training = cb.default_training(model)
        if model == "resnet":
            training = training.model_copy(update={"epochs": args.resnet_epochs})
        for variant, steps in VARIANTS.items():
            recipe = {"name": variant, "steps": steps}
            try:
                result = cb.compress(
                    DATASET[model], model, recipe, training=training, measure=measure, store=RESULTS / "hardware.db"
                )
            except cb.CompressbenchError as error:
                rows.append({"model": model, "variant": variant, "refused": str(error)})
                print(f"{model:7} {variant:26} refused: {error}", flush=True)
                continue
            base = result.baseline.latency_ms
            runtimes = result.candidate.runtimes or {}
            per_runtime = {
                runtime: {b: base[b] / ms for b, ms in figures["latency_ms"].items()}
                for runtime, figures in runtimes.items()
                if "latency_ms" in figures
            }
            row = {
                "model": model,
                "dataset": DATASET[model],
                "variant": variant,
                "best_runtime": result.candidate.runtime["runtime"],
                "best_speedup": result.speedup,
                "accuracy_drop_pt": result.accuracy_drop_pt,
                "speedup_by_runtime": per_runtime,
                "precision_by_runtime": {rt: f["runtime"]["precision"] for rt, f in runtimes.items() if "runtime" in f},
                "skipped": {rt: f["skipped"] for rt, f in runtimes.items() if "skipped" in f},
                "fp32_accuracy": result.baseline.accuracy,
                "accuracy": result.candidate.accuracy,
                "baseline_epochs": training.epochs,
            }
            rows.append(row)
            cells = "  ".join(f"{rt} b1 {s['1']:.2f}x b256 {s['256']:.2f}x" for rt, s in sorted(per_runtime.items()))
            print(
                f"{model:7} {variant:26} best {row['best_runtime']:11} b1 {result.speedup['1']:.2f}x "
                f"b256 {result.speedup['256']:.2f}x  drop {result.accuracy_drop_pt:+.2f} pt  | {cells}",
                flush=True,
            )
    # Models not run this time keep their rows, so the table can be filled one model at a time.
    path = RESULTS / "hardware.json"
    kept = [r for r in json.loads(path.read_text())["rows"] if r["model"] not in args.models] if path.is_file() else []
    RESULTS.mkdir(exist_ok=True)
    path.write_text(json.dumps({"measure": measure.model_dump(), "rows": kept + rows}, indent=1))
    print(f"saved {path}")


if __name__ == "__main__":
    main()
