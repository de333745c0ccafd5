"""Compress a trained model brought from outside, as a user would: the Fashion-MNIST ResNet-14 the tool ships (trained
by its own recipe: SGD Nesterov, cosine, crop + flip, 15 epochs), saved as safetensors and passed back in with a
loader that returns the data as that model takes it; then the same model exported to fp32 ONNX and passed as a graph.

    .venv/bin/python benchmarks/bench_compress_model.py            # both parts (about 30 minutes on 2 cores)
    .venv/bin/python benchmarks/bench_compress_model.py --part onnx

Writes benchmarks/results/compress_model.json and prints, per part, the chosen recipe and runtime, its speed-up and
accuracy drop, the runner-up and the wall time of the whole compress.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import textwrap
import time
from pathlib import Path

import torch
from safetensors.torch import save_file

import compressbench as cb

RESULTS = Path(__file__).resolve().parent / "results" / "compress_model.json"
USER_CODE = textwrap.dedent(
    """
    import compressbench as cb


    def build(spec, width=1.0):
        return bench.build_model(cb.ModelConfig(name="resnet", width=width), spec)


    def fashion():
        data = bench.load_dataset("fashion-mnist")  # normalised as the model was trained; taken as given from here on
        return {"x_train": data.train.x, "y_train": data.train.y, "x_test": data.test.x, "y_test": data.test.y}
    """
)


def outcome_line(outcome: cb.CompressOutcome, batch: int) -> dict:
    manifest = outcome.manifest
    choice = manifest["choice"]
    return {
        "chosen": choice["recipe"],
        "runtime": choice["runtime"],
        "why": choice["why"],
        "speedup": manifest["speedup"],
        "accuracy_drop_pt": manifest["accuracy_drop_pt"],
        "baseline_accuracy": manifest["baseline"]["accuracy"],
        "runner_up": choice["runner_up"],
        "candidates": manifest["candidates"],
        "failed": manifest["failed"],
        "wall_seconds": manifest["wall_seconds"],
        "batch": batch,
        "cpu": manifest["environment"]["cpu"],
    }


def main(parts: list[str]) -> None:
    folder = Path(tempfile.mkdtemp(prefix="compress-bench-"))
    (folder / "user.py").write_text(USER_CODE)
    trained = cb.baseline("fashion-mnist", "resnet")  # the shipped one (no training here)
    weights = folder / "resnet.safetensors"
    save_file({k: v.contiguous() for k, v in trained.module.state_dict().items()}, weights)
    results = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {}
    if "torch" in parts:
        started = time.perf_counter()
        outcome = cb.compress_model(
            f"{folder}/user.py:build", f"{folder}/user.py:fashion", weights=weights, out=folder / "out-torch",
            recipes="auto", max_accuracy_drop=1.0, batch=256,
        )  # fmt: skip
        results["torch"] = {**outcome_line(outcome, 256), "command_seconds": time.perf_counter() - started}
        print(json.dumps(results["torch"], indent=1, default=str))
    if "onnx" in parts:
        graph = folder / "resnet.onnx"
        torch.onnx.export(
            trained.module.eval(), (torch.zeros(1, 1, 28, 28),), graph, dynamo=False,
            input_names=["image"], output_names=["logits"], dynamic_axes={"image": {0: "n"}, "logits": {0: "n"}},
        )  # fmt: skip
        started = time.perf_counter()
        outcome = cb.compress_model(
            str(graph), f"{folder}/user.py:fashion", out=folder / "out-onnx", recipes="auto",
            max_accuracy_drop=1.0, batch=256,
        )  # fmt: skip
        results["onnx"] = {**outcome_line(outcome, 256), "command_seconds": time.perf_counter() - started}
        print(json.dumps(results["onnx"], indent=1, default=str))
    RESULTS.write_text(json.dumps(results, indent=1, default=str) + "\n")
    shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", action="append", choices=["torch", "onnx"], help="default: both")
    main(parser.parse_args().part or ["torch", "onnx"])
