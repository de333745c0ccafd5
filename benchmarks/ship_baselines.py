"""Train the zoo's baselines afresh and ship them in the package (`src/compressbench/baselines/`).

Each is trained exactly as `compressbench run --dataset D --model M` would train it (the dataset's default split,
the family's own training settings, seed 0), so the shipped file carries the same cache key a local training has.
Its metadata names that training config, the command that reproduces it, the accuracy it reached on the validation
and test splits, the training time and the machine.

    .venv/bin/python benchmarks/ship_baselines.py                 # all pairs (about 25 minutes on 2 cores)
    .venv/bin/python benchmarks/ship_baselines.py digits/lenet5   # some
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import compressbench as cb
import compressbench.bench as bench

PAIRS = [
    ("digits", "mlp"),
    ("digits", "lenet5"),
    ("digits", "resnet"),
    ("mnist1d", "mlp"),
    ("mnist1d", "conv1d"),
    ("fashion-mnist", "mlp"),
    ("fashion-mnist", "lenet5"),
    ("fashion-mnist", "resnet"),
]
DESTINATION = Path(__file__).resolve().parents[1] / "src" / "compressbench" / "baselines"


def ship(dataset: str, model: str, scratch: Path) -> str:
    cache = cb.Cache(scratch, shipped=None)
    started = time.perf_counter()
    trained = cb.baseline(dataset, model, cache=cache, retrain_baselines=True)
    accuracy = bench.evaluate(trained.module, trained.data.test)
    environment = bench.environment()
    cache.ship(
        trained.meta["key"],
        DESTINATION,
        dataset=dataset,
        model=model,
        command=f"python benchmarks/ship_baselines.py {dataset}/{model}",
        reproduce=f"compressbench run --dataset {dataset} --model {model} --retrain-baselines",
        test_accuracy_torch=accuracy,
        wall_seconds=time.perf_counter() - started,
        machine={"cpu": environment["cpu"], "versions": environment["versions"]},
        trained_on=time.strftime("%Y-%m-%d"),
    )
    return (
        f"{dataset}/{model}: val {trained.meta['val_accuracy']:.4f}, test {accuracy:.4f} (torch), "
        f"{trained.meta['epochs_run']} epochs in {trained.meta['train_seconds']:.0f} s -> {trained.meta['key']}"
    )


def main(selected: list[str]) -> None:
    pairs = [p for p in PAIRS if not selected or "/".join(p) in selected]
    with tempfile.TemporaryDirectory() as scratch:
        for dataset, model in pairs:
            print(ship(dataset, model, Path(scratch)), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
