"""`distill.kd` on Fashion-MNIST: teacher vs student alone vs student distilled, over seeds, on ONNX Runtime.

Three parts, each saved under its own key in benchmarks/results/distillation.json (re-running one part keeps
the others):

- `table`:  a (T, alpha) grid for the MLP (LeNet-300-100 teacher, seed 0 -> 0.25-width student), two student
            seeds, 10 epochs, chosen on validation accuracy; test accuracy printed beside it. alpha = 0 is the
            control.
- `table-default-budget`: the same at the default student budget (twice the teacher's 20 epochs).
- `mlp`:    the whole job path (`distill.kd`, width 0.25) for seeds 0, 1, 2: each seed its own data split, teacher,
            student and control; ONNX Runtime accuracy and latency (1 thread, batch 1 and 256, interleaved).
- `resnet`: ResNet-14 teacher -> 0.5-width student: teacher (seed 0, --resnet-teacher-epochs, default the
            recipe's 15) and students (seeds 0, 1, 2, --student-epochs) train on the seed-0 train split (or its
            first --train-limit images, to scale down) with the ResNet recipe (SGD, cosine, crop + flip);
            validation and test splits are the full ones. Seeds can run as parallel processes (--seeds 1), then
            `--part resnet-combine` summarises them.

    COMPRESSBENCH_CACHE=... python benchmarks/bench_distillation.py --part table --part mlp --part resnet
"""

from __future__ import annotations

import argparse
import copy
import json
import re
import statistics
import time
from pathlib import Path
from typing import Any

import torch

import compressbench as cb
import compressbench.bench as bench

PARTS = ["table", "table-default-budget", "mlp", "resnet", "resnet-combine"]
RESULTS = Path(__file__).parent / "results" / "distillation.json"
LATENCY = cb.LatencySettings(threads=1, batch_sizes=(1, 256))
GRID = [(1.0, 0.5), (2.0, 0.5), (4.0, 0.5), (8.0, 0.5), (4.0, 0.2), (4.0, 0.9)]
# At the default budget (twice the teacher's 20 epochs, early stopping) each student costs 2-4 minutes here.
GRID_DEFAULT_BUDGET = [(1.0, 0.5), (2.0, 0.5), (4.0, 0.5)]


def spread(values: list[float]) -> dict[str, Any]:
    return {
        "values": values,
        "mean": statistics.fmean(values),
        "std": statistics.stdev(values) if len(values) > 1 else 0.0,
        "min": min(values),
        "max": max(values),
    }


def fmt(s: dict[str, Any], scale: float = 100.0) -> str:
    return f"{s['mean'] * scale:.2f} ± {s['std'] * scale:.2f}"


def summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean and spread over seeds of the three accuracies, the paired gain, the gap and the speed-ups."""
    out = {
        key: spread([r[key] for r in rows])
        for key in (
            "teacher_accuracy",
            "alone_accuracy",
            "distilled_accuracy",
            "gain_pt",
            "gap_to_teacher_pt",
            "alone_gap_to_teacher_pt",
        )  # fmt: skip
    }
    out["speedup"] = {b: spread([r["speedup"][b] for r in rows]) for b in rows[0]["speedup"]}
    out["param_ratio"] = rows[0]["param_ratio"]
    return out


def row_from(seed: int, metrics: dict[str, cb.Metrics], record: dict[str, Any]) -> dict[str, Any]:
    teacher, alone, distilled = metrics["baseline"], metrics["control"], metrics["candidate"]
    return {
        "seed": seed,
        "teacher_accuracy": teacher.accuracy,
        "alone_accuracy": alone.accuracy,
        "distilled_accuracy": distilled.accuracy,
        "gain_pt": (distilled.accuracy - alone.accuracy) * 100,
        "gap_to_teacher_pt": (teacher.accuracy - distilled.accuracy) * 100,
        "alone_gap_to_teacher_pt": (teacher.accuracy - alone.accuracy) * 100,
        "speedup": {b: teacher.latency_ms[b] / distilled.latency_ms[b] for b in teacher.latency_ms},
        "latency_ms": {"teacher": teacher.latency_ms, "student": distilled.latency_ms},
        "params": {"teacher": teacher.params, "student": distilled.params},
        "param_ratio": teacher.params / distilled.params,
        "step": record,
    }


def print_rows(label: str, rows: list[dict[str, Any]], result: dict[str, Any]) -> None:
    for r in rows:
        print(
            f"{label} seed {r['seed']}: teacher {r['teacher_accuracy'] * 100:.2f}%  "
            f"alone {r['alone_accuracy'] * 100:.2f}%  distilled {r['distilled_accuracy'] * 100:.2f}%  "
            f"gain {r['gain_pt']:+.2f} pt  "
            f"speed-up b1 {r['speedup']['1']:.2f}x b256 {r['speedup']['256']:.2f}x",
            flush=True,
        )
    print(
        f"{label} over {len(rows)} seeds (mean ± std): teacher {fmt(result['teacher_accuracy'])}%  "
        f"alone {fmt(result['alone_accuracy'])}%  distilled {fmt(result['distilled_accuracy'])}%\n"
        f"{label}   distilled - alone {fmt(result['gain_pt'], 1)} pt (per seed {result['gain_pt']['values']})  "
        f"teacher - distilled {fmt(result['gap_to_teacher_pt'], 1)} pt  "
        f"teacher - alone {fmt(result['alone_gap_to_teacher_pt'], 1)} pt\n"
        f"{label}   student has 1/{result['param_ratio']:.2f} of the teacher's params; ONNX Runtime speed-up "
        f"b1 {fmt(result['speedup']['1'], 1)}x  b256 {fmt(result['speedup']['256'], 1)}x",
        flush=True,
    )


def part_mlp(cache: cb.Cache, seeds: list[int]) -> dict[str, Any]:
    recipe = {"name": "distill.kd-w0.25", "steps": [{"technique": "distill.kd", "width": 0.25}]}
    rows = []
    for seed in seeds:
        started = time.perf_counter()
        result = cb.compress(cb.DatasetConfig(name="fashion-mnist"), "mlp", recipe, seed=seed,
                             measure=cb.MeasureSettings(latency=LATENCY), cache=cache)  # fmt: skip
        metrics = {"baseline": result.baseline, "candidate": result.candidate, "control": result.control}
        row = row_from(seed, metrics, result.steps[-1])
        row["teacher_training"] = result.baseline_training
        row["seconds"] = time.perf_counter() - started
        rows.append(row)
    out = {"setup": "each seed: its own split, LeNet-300-100 teacher (default recipe), 0.25-width student and "
                    "control with the teacher's recipe for twice its epochs (early stopping, patience 4)",
           "rows": rows, **summary(rows)}  # fmt: skip
    print_rows("mlp", rows, out)
    return out


def part_table(cache: cb.Cache, seeds: list[int], epochs: int | None, grid: list[tuple[float, float]]) -> dict:
    trained = cb.baseline(cb.DatasetConfig(name="fashion-mnist"), "mlp", seed=0, cache=cache)
    teacher, data, job = trained.module, trained.data, trained.job
    teacher_test = bench.evaluate(teacher, data.test)
    kd = cb.technique("distill.kd")
    cells = []
    for temperature, alpha in [(1.0, 0.0), *grid]:
        val, test = [], []
        for seed in seeds:
            context = bench.Context(data=data, baseline=teacher, model=job.model, train_config=job.training, seed=seed,
                                 cache=cache, latency=LATENCY)  # fmt: skip
            config = kd.Config(temperature=temperature, alpha=alpha, width=0.25, epochs=epochs)
            candidate = kd(config).apply(cb.Candidate(module=copy.deepcopy(teacher)), context)
            val.append(bench.evaluate(candidate.module, data.val))
            test.append(bench.evaluate(candidate.module, data.test))
        cell = {"temperature": temperature, "alpha": alpha, "val": spread(val), "test": spread(test)}
        cells.append(cell)
        label = "alone (control)" if alpha == 0 else f"T={temperature:g} alpha={alpha:g}"
        print(
            f"table ({epochs or 'default'} epochs) {label:18} val {fmt(cell['val'])}%  test {fmt(cell['test'])}%",
            flush=True,
        )
    best = max(cells[1:], key=lambda c: c["val"]["mean"])
    print(f"table teacher test {teacher_test * 100:.2f}%; best on val: T={best['temperature']:g} "
          f"alpha={best['alpha']:g}", flush=True)  # fmt: skip
    setup = (
        f"mlp teacher seed 0 (test {teacher_test:.4f}) -> 0.25-width student, {epochs or 'default (2 x 20)'} epochs "
        "(cosine, patience 4), "
        f"student seeds {seeds}, torch fp32 accuracy; chosen on val"
    )
    best_on_val = {"temperature": best["temperature"], "alpha": best["alpha"]}
    return {"setup": setup, "teacher_test_accuracy": teacher_test, "cells": cells, "best_on_val": best_on_val}


def part_resnet(
    cache: cb.Cache,
    seeds: list[int],
    train_limit: int | None,
    student_epochs: int,
    teacher_epochs: int,
    threads: tuple[int, int],
) -> dict[str, Any]:
    # The teacher and the students train on the seed-0 train split (its first `train_limit` images when scaled
    # down; val and test are always the full splits), with the ResNet's own recipe (SGD, cosine, crop + flip).
    data_config = cb.DatasetConfig(name="fashion-mnist", train_limit=train_limit)
    teacher_training = cb.default_training("resnet").model_copy(update={"epochs": teacher_epochs})
    torch.set_num_threads(threads[0])  # the teacher trains once (cached); students may run one process per seed
    trained = cb.baseline(data_config, "resnet", seed=0, training=teacher_training, cache=cache)
    teacher, data, job, teacher_meta = trained.module, trained.data, trained.job, trained.meta
    torch.set_num_threads(threads[1])
    print(f"resnet teacher: {teacher_meta.get('val_accuracy')} val, {teacher_meta.get('train_seconds', 0):.0f} s "
          f"(cached: {teacher_meta.get('cached')})", flush=True)  # fmt: skip
    settings = cb.MeasureSettings(latency=LATENCY)
    kd = cb.technique("distill.kd")
    rows = []
    for seed in seeds:
        started = time.perf_counter()
        context = bench.Context(data=data, baseline=teacher, model=job.model, train_config=teacher_training, seed=seed,
                             cache=cache, latency=LATENCY)  # fmt: skip
        technique = kd(kd.Config(width=0.5, epochs=student_epochs))
        candidate = technique.apply(cb.Candidate(module=copy.deepcopy(teacher)), context)
        metrics = cb.measure_models(
            {"baseline": cb.Candidate(module=teacher), "candidate": candidate, **candidate.companions}, data, settings
        )
        row = row_from(seed, metrics, candidate.records[-1])
        row["seconds"] = time.perf_counter() - started
        rows.append(row)
        print(f"resnet seed {seed} done in {row['seconds']:.0f} s: {row['teacher_accuracy']:.4f} / "
              f"{row['alone_accuracy']:.4f} / {row['distilled_accuracy']:.4f}", flush=True)  # fmt: skip
    images = f"the first {train_limit} images" if train_limit else f"all {len(data.train.y):,} images"
    out = {"setup": f"teacher resnet (seed 0) and students (width 0.5, seeds {seeds}) all train on {images} "
                    f"of the seed-0 train split; teacher {teacher_epochs} epochs, students "
                    f"{student_epochs} epochs, the ResNet recipe (SGD 0.1 Nesterov, cosine, crop + flip, teacher run "
                    "on each augmented batch); full val (6,000) and test (10,000) splits",
           "teacher_training": {k: v for k, v in teacher_meta.items() if k != "identity"},
           "train_limit": train_limit, "student_epochs": student_epochs, "teacher_epochs": teacher_epochs,
           "rows": rows, **summary(rows)}  # fmt: skip
    print_rows("resnet", rows, out)
    return out


def combine_resnet() -> dict[str, Any]:
    stored = json.loads(RESULTS.read_text())
    parts = sorted(k for k in stored if k.startswith("resnet-seeds-"))
    rows = sorted((row for k in parts for row in stored[k]["rows"]), key=lambda r: r["seed"])
    first = stored[parts[0]]
    out = {**{k: first[k] for k in ("setup", "teacher_training", "train_limit", "student_epochs", "teacher_epochs")},
           "rows": rows, **summary(rows), "combined_from": parts}  # fmt: skip
    seeds = ", ".join(str(r["seed"]) for r in rows)
    out["setup"] = re.sub(r"seeds \[[^\]]*\]", f"seeds [{seeds}] (one process each)", out["setup"])
    print_rows("resnet", rows, out)
    return out


def main() -> None:
    torch.set_num_threads(1)  # a shared 2-core machine: one thread per process avoids oversubscription
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--part",
        action="append",
        choices=PARTS,
        help="repeatable; default all",
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--table-seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--table-epochs", type=int, default=10, help="students' epochs in the (T, alpha) table")
    parser.add_argument(
        "--train-limit", type=int, default=0, help="resnet teacher's and students' train images (0: all)"
    )
    parser.add_argument("--student-epochs", type=int, default=8, help="resnet students' epochs")
    parser.add_argument("--resnet-teacher-epochs", type=int, default=15, help="the ResNet recipe's epochs")
    parser.add_argument("--teacher-threads", type=int, default=1, help="torch threads while the teacher trains")
    parser.add_argument("--student-threads", type=int, default=1, help="torch threads while the students train")
    args = parser.parse_args()
    cache = cb.Cache(bench.default_cache_dir())
    for part in args.part or PARTS:
        started = time.perf_counter()
        saved: dict[str, Any] = {}
        if part == "table":
            saved["table"] = part_table(cache, args.table_seeds, args.table_epochs, GRID)
        elif part == "table-default-budget":
            saved[part] = part_table(cache, args.table_seeds, None, GRID_DEFAULT_BUDGET)
        elif part == "mlp":
            saved["mlp"] = part_mlp(cache, args.seeds)
        elif part == "resnet":
            # Seeds may run in parallel processes (--seeds 1); `resnet-combine` then summarises them all.
            key = "resnet" if args.seeds == [0, 1, 2] else "resnet-seeds-" + "-".join(map(str, args.seeds))
            part = key
            saved[key] = part_resnet(
                cache,
                args.seeds,
                args.train_limit or None,
                args.student_epochs,
                args.resnet_teacher_epochs,
                (args.teacher_threads, args.student_threads),
            )
        else:
            part = "resnet"
            saved["resnet"] = combine_resnet()
        saved[part]["seconds"] = time.perf_counter() - started
        saved["latency_settings"] = LATENCY.model_dump(mode="json")
        saved["environment"] = bench.environment()
        # Read just before writing: parts may run in parallel processes; each replaces only its own key.
        merged = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {}
        merged.update(saved)
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps(merged, indent=1, default=str))
        print(f"saved {RESULTS} ({part}, {saved[part]['seconds']:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
