"""Deep Compression (Han, Mao & Dally 2016) on Fashion-MNIST, stage by stage: pruning, + weight sharing, + Huffman.

For `mlp` (LeNet-300-100, the paper's 40x on MNIST) and `lenet5`: the recipe runs once on the cached baseline and
the candidate is measured after every stage (`cb.compress(..., measure_every_step=True)`), so every stage has its
measured accuracy on ONNX Runtime next to its stored bytes. Compression = fp32 parameter bytes / stored bytes (the
paper's measure); the runtime model stays float, so latency is reported only to show it does not move. Saves
benchmarks/results/deep_compression.json.

    COMPRESSBENCH_PROGRESS=off .venv/bin/python benchmarks/bench_deep_compression.py [--models mlp lenet5]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import compressbench as cb

RESULTS = Path(__file__).parent / "results" / "deep_compression.json"
DATASET = cb.DatasetConfig(name="fashion-mnist")
LATENCY = cb.LatencySettings(threads=1, batch_sizes=(1, 256))

# The pruning stage as bench_pruning.py tuned it for the MLP (lr 1e-3, ramp 0.5); scope and epochs are arguments.
PRUNE = {
    "technique": "prune.magnitude",
    "schedule": "gradual",
    "fine_tune_lr": 1e-3,
    "ramp": 0.5,
}
SHARE = {"technique": "quant.weight_sharing", "conv_bits": 8, "fc_bits": 5, "fine_tune_epochs": 2}
HUFFMAN = {"technique": "encode.huffman"}
STAGES = ["pruning", "+ sharing", "+ huffman"]


def recipe(sparsity: float, scope: str, epochs: int) -> dict[str, Any]:
    prune = {**PRUNE, "sparsity": sparsity, "scope": scope, "fine_tune_epochs": epochs}
    return {"name": f"deep-compression {scope} {sparsity:g} ft{epochs}", "steps": [prune, SHARE, HUFFMAN]}


def run_stages(model: str, steps: dict[str, Any]) -> list[dict[str, Any]]:
    started = time.perf_counter()
    result = cb.compress(DATASET, model, steps, measure=cb.MeasureSettings(latency=LATENCY), measure_every_step=True)
    print(f"{model}: {result.recipe} in {time.perf_counter() - started:.0f} s", flush=True)
    rows = []
    for name, stage in zip(STAGES, result.stages, strict=True):
        base, cand = stage.baseline, stage.candidate
        row = {
            "model": model,
            "stage": name,
            "baseline_accuracy": base.accuracy,
            "accuracy": cand.accuracy,
            "accuracy_drop_pt": stage.accuracy_drop_pt,
            "fp32_param_bytes": base.params * 4,
            "stored_bytes": cand.stored_bytes,
            "storage": cand.storage,
            "compression": stage.compression_ratio,
            "nonzero_params": cand.nonzero_params,
            "speedup": stage.speedup,
            "records": stage.steps[-1],
        }
        rows.append(row)
        parts = ", ".join(f"{part} {size:,}" for part, size in (cand.storage or {}).items())
        print(
            f"{model:7} {name:10} acc {base.accuracy:.4f} -> {cand.accuracy:.4f} "
            f"(drop {stage.accuracy_drop_pt:+.2f} pt)  fp32 params {row['fp32_param_bytes']:,} B -> stored "
            f"{cand.stored_bytes:,} B ({row['compression']:.1f}x)  speed-up b1 {stage.speedup['1']:.2f}x "
            f"b256 {stage.speedup['256']:.2f}x\n          parts: {parts}",
            flush=True,
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["mlp", "lenet5"])
    parser.add_argument("--sparsity", type=float, default=0.92, help="the pruning stage's target (paper: 92%%)")
    parser.add_argument("--scope", choices=["layer", "global"], default="layer", help="the pruning stage's scope")
    parser.add_argument("--fine-tune-epochs", type=int, default=10, help="the pruning stage's fine-tuning epochs")
    args = parser.parse_args()
    saved = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    epochs = args.fine_tune_epochs
    for model in args.models:
        rows = run_stages(model, recipe(args.sparsity, args.scope, epochs))
        saved[f"{model} {args.scope} {args.sparsity:g} ft{epochs}"] = {
            "dataset": DATASET.name,
            "sparsity": args.sparsity,
            "latency": LATENCY.model_dump(),
            "stages": rows,
        }
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps(saved, indent=1))
    print(f"saved {RESULTS}")


if __name__ == "__main__":
    main()
