"""Pruning on Fashion-MNIST, measured side by side with the fp32 baseline on ONNX Runtime (1 thread, batch 1 and 256).

- mlp + prune.magnitude 90% (gradual AGP, fine-tuned): accuracy drop, compressed-size ratio, latency change
- lenet5 + prune.channels 50% (fine-tuned): speed-up and accuracy drop
- resnet + prune.channels 50% (fine-tuned): speed-up and accuracy drop
- resnet: sensitivity-guided per-group ratios vs one uniform ratio at the same MACs, over fine-tuning seeds

Baselines come from the cache (`$COMPRESSBENCH_CACHE`) when trained before with the same settings; the ResNet
baseline is the default recipe cut to 4 epochs. Prints one line per figure and saves JSON to
benchmarks/results/pruning.json.

    COMPRESSBENCH_PROGRESS=off .venv/bin/python benchmarks/bench_pruning.py [--only mlp,lenet5,resnet,sensitivity]
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import time
from pathlib import Path

import torch

import compressbench as cb
import compressbench.bench as bench

RESULTS = Path(__file__).parent / "results" / "pruning.json"
DATASET = cb.DatasetConfig(name="fashion-mnist")
RESNET_EPOCHS = 4

MLP_RECIPE = {
    "name": "magnitude-90-agp",
    "steps": [
        {
            "technique": "prune.magnitude",
            "sparsity": 0.9,
            "schedule": "gradual",
            "scope": "layer",
            "fine_tune_epochs": 10,
            "fine_tune_lr": 1e-3,
            "ramp": 0.5,
        },
    ],
}
LENET_RECIPE = {
    "name": "channels-50",
    "steps": [
        {"technique": "prune.channels", "ratio": 0.5, "fine_tune_epochs": 4, "fine_tune_lr": 1e-3},
    ],
}


def resnet_recipe(epochs: int) -> dict:
    return {
        "name": f"channels-50-ft{epochs}",
        "steps": [
            {"technique": "prune.channels", "ratio": 0.5, "fine_tune_epochs": epochs, "fine_tune_lr": 0.02},
        ],
    }


def training_for(model: str):
    training = cb.default_training(model)
    if model == "resnet":
        training = training.model_copy(update={"epochs": RESNET_EPOCHS})
    return training


def side_by_side(model: str, recipe: dict, cache: cb.Cache, latency: cb.LatencySettings) -> dict:
    started = time.perf_counter()
    result = cb.compress(
        DATASET, model, recipe, training=training_for(model), measure=cb.MeasureSettings(latency=latency), cache=cache
    )
    base, cand = result.baseline, result.candidate
    row = {
        "model": model,
        "recipe": recipe,
        "baseline_accuracy": base.accuracy,
        "candidate_accuracy": cand.accuracy,
        "accuracy_drop_pt": result.accuracy_drop_pt,
        "speedup": result.speedup,
        "latency_ms": {"baseline": base.latency_ms, "candidate": cand.latency_ms},
        "macs": [base.macs, cand.macs],
        "params": [base.params, cand.params],
        "nonzero_params": [base.nonzero_params, cand.nonzero_params],
        "file_bytes": [base.size_bytes, cand.size_bytes],
        "zstd_bytes": [base.zstd_bytes, cand.zstd_bytes],
        "stored_bytes": [base.stored_bytes, cand.stored_bytes],
        "candidate_storage": cand.storage,
        "compressed_size_ratio": base.zstd_bytes / cand.stored_bytes,
        "flags": result.flags,
        "steps": result.steps,
        "seconds": time.perf_counter() - started,
    }
    print(
        f"{model:7} {recipe['name']:18} acc {base.accuracy:.4f} -> {cand.accuracy:.4f} "
        f"(drop {result.accuracy_drop_pt:+.2f} pt)  speed-up b1 {result.speedup['1']:.2f}x "
        f"b256 {result.speedup['256']:.2f}x  MACs {base.macs / cand.macs:.2f}x fewer  "
        f"params {base.params:,} -> {cand.params:,} (non-zero {cand.nonzero_params:,})  "
        f"compressed {base.zstd_bytes:,} B -> {cand.stored_bytes:,} B ({row['compressed_size_ratio']:.2f}x)  "
        f"[{row['seconds']:.0f} s]",
        flush=True,
    )
    for flag in result.flags:
        print(f"        flag: {flag}", flush=True)
    return row


def sensitivity_vs_uniform(cache: cb.Cache, seeds: list[int], ratio: float, epochs: int) -> dict:
    """Both recipes on the same (cached) ResNet baseline; seeds vary the fine-tuning (order, augmentation)."""
    trained = cb.baseline(DATASET, "resnet", training=training_for("resnet"), cache=cache)
    baseline, data, job = trained.module, trained.data, trained.job
    shape = data.spec.input_shape
    base_accuracy = bench.evaluate(baseline, data.test)
    rows: dict[str, list[dict]] = {"uniform": [], "sensitivity": []}
    for seed in seeds:
        for mode in ("uniform", "sensitivity"):
            started = time.perf_counter()
            options = {
                "technique": "prune.channels",
                "ratio": ratio,
                "ratios": mode,
                "fine_tune_epochs": epochs,
                "fine_tune_lr": 0.02,
            }
            step = cb.load_recipe({"name": mode, "steps": [options]}).steps[0]
            context = bench.Context(
                data=data,
                baseline=baseline,
                model=job.model,
                train_config=job.training,
                seed=seed,
                cache=cache,
                latency=job.measure.latency,
            )
            candidate = step.build().apply(cb.Candidate(module=copy.deepcopy(baseline)), context)
            record = candidate.records[-1]
            rows[mode].append(
                {
                    "seed": seed,
                    "test_accuracy": bench.evaluate(candidate.module, data.test),
                    "macs_kept": bench.count_macs(candidate.module, shape) / bench.count_macs(baseline, shape),
                    "channels": record["channels"],
                    "allocated": record.get("sensitivity", {}).get("allocated"),
                    "seconds": time.perf_counter() - started,
                }
            )
            last = rows[mode][-1]
            print(
                f"resnet  {mode:11} seed {seed}: test acc {last['test_accuracy']:.4f} (baseline {base_accuracy:.4f})"
                f"  MACs kept {last['macs_kept']:.3f}  [{last['seconds']:.0f} s]",
                flush=True,
            )
    summary = {
        "baseline_test_accuracy": base_accuracy,
        "seeds": seeds,
        "ratio": ratio,
        "fine_tune_epochs": epochs,
        "accuracy_from": "torch eval on the test split (exports match torch within 1e-3 logits)",
    }
    for mode, values in rows.items():
        accuracies = [r["test_accuracy"] for r in values]
        summary[mode] = {
            "runs": values,
            "mean_accuracy": statistics.mean(accuracies),
            "spread_pt": (max(accuracies) - min(accuracies)) * 100,
            "stdev_pt": statistics.stdev(accuracies) * 100 if len(accuracies) > 1 else None,
        }
        print(
            f"resnet  {mode:11} mean acc {summary[mode]['mean_accuracy']:.4f} over {len(seeds)} seed(s), "
            f"spread {summary[mode]['spread_pt']:.2f} pt",
            flush=True,
        )
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="mlp,lenet5,resnet,sensitivity", help="comma-separated parts to run")
    parser.add_argument("--resnet-fine-tune-epochs", type=int, default=2)
    parser.add_argument("--seeds", type=int, default=2, help="fine-tuning seeds for sensitivity vs uniform")
    parser.add_argument("--sensitivity-epochs", type=int, default=1, help="fine-tune epochs in that comparison")
    args = parser.parse_args()
    # One training thread: on a 2-core machine shared with other jobs, two OpenMP threads spin and ran 5x slower.
    torch.set_num_threads(1)
    parts = set(args.only.split(","))
    latency = cb.LatencySettings(threads=1, batch_sizes=(1, 256))
    cache = cb.Cache(bench.default_cache_dir())
    report = {"settings": latency.model_dump(), "cache": str(cache.root)}
    if "mlp" in parts:
        report["mlp_magnitude"] = side_by_side("mlp", MLP_RECIPE, cache, latency)
    if "lenet5" in parts:
        report["lenet5_channels"] = side_by_side("lenet5", LENET_RECIPE, cache, latency)
    if "resnet" in parts:
        report["resnet_channels"] = side_by_side("resnet", resnet_recipe(args.resnet_fine_tune_epochs), cache, latency)
    if "sensitivity" in parts:
        report["resnet_sensitivity_vs_uniform"] = sensitivity_vs_uniform(
            cache, list(range(args.seeds)), 0.5, args.sensitivity_epochs
        )
    report["environment"] = bench.environment()
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    # Parts may run as separate processes: merge into what is on disk now, not what was there at the start.
    latest = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {}
    RESULTS.write_text(json.dumps({**latest, **report}, indent=1, default=str))
    print(f"saved {RESULTS}")


if __name__ == "__main__":
    main()
