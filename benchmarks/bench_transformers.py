"""Transformers on text: runs studies/text.yaml (resumable) and prints MiniLM's and the small BERT's figures.

all-MiniLM-L6-v2 fine-tuned on Debian's fortunes quotes (8 topics, 64 tokens) and the zoo's 2-layer BERT: int8
(ONNX Runtime dynamic, static auto, NNCF on OpenVINO), bf16 (refused on CPUs without it), half the heads pruned,
a 3-layer distilled student, and the hybrids. Each candidate is timed against ONNX Runtime fp32 at batch 1 and 32,
one thread, on the faster of ONNX Runtime and OpenVINO at batch 32; its sentence embeddings are compared with the
fp32 model's on the 941 test quotes (cosine, top-10 neighbours kept). Then the same int8 paths on the pretrained
encoder itself, not fine-tuned (its sentence embeddings as sentence-transformers serves them; the untrained head's
accuracy means nothing there). Saves benchmarks/results/transformers.json.

    .venv/bin/python benchmarks/bench_transformers.py [--out runs/text]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import compressbench as cb

STUDY = Path(__file__).parent.parent / "studies" / "text.yaml"
RESULTS = Path(__file__).parent / "results" / "transformers.json"
PRETRAINED_RECIPES = {
    "quant.dynamic": [{"technique": "quant.dynamic"}],
    "quant.dynamic per-channel": [{"technique": "quant.dynamic", "per_channel": True}],
    "quant.nncf": [{"technique": "quant.nncf", "max_accuracy_drop_pt": None}],  # no accuracy to control
}


def row_of(run) -> dict:
    result = run.result
    embedding = result.candidate.embedding or {}
    return {
        "model": run.model,
        "recipe": run.recipe,
        "runtime": result.candidate.runtime.get("runtime"),
        "precision": result.candidate.runtime.get("precision"),
        "baseline_accuracy": result.baseline.accuracy,
        "accuracy": result.candidate.accuracy,
        "accuracy_drop_pt": result.accuracy_drop_pt,
        "speedup": result.speedup,
        "baseline_latency_ms": result.baseline.latency_ms,
        "size_ratio": result.size_ratio,
        "params": [result.baseline.params, result.candidate.params],
        "cosine_mean": embedding.get("cosine_mean"),
        "cosine_min": embedding.get("cosine_min"),
        "top_k_agreement": embedding.get("top_k_agreement"),
        "control_accuracy": result.control.accuracy if result.control else None,
        "flags": result.flags,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/text", help="study folder (runs already stored there are reused)")
    args = parser.parse_args()
    counts = cb.run_study(STUDY, args.out)
    print(f"study: {counts}")
    runs = cb.stored_runs(args.out)
    rows, failed, environment = [], [], {}
    for run in runs:
        if run.status != "ok":
            failed.append({"model": run.model, "recipe": run.recipe, "error": (run.error or "").splitlines()[-1:]})
            continue
        rows.append(row_of(run))
        environment = run.result.environment
    print(f"CPU: {environment.get('cpu', {}).get('model')} flags {environment.get('cpu', {}).get('flags')}")
    print(f"{'model':11} {'recipe':24} {'runtime':11} {'acc':>6} {'drop':>6} {'b1':>6} {'b32':>6} "
          f"{'cos':>7} {'cos min':>7} {'top10':>6} {'size':>6}")  # fmt: skip
    for row in rows:
        cosine = "" if row["cosine_mean"] is None else f"{row['cosine_mean']:.4f}"
        minimum = "" if row["cosine_min"] is None else f"{row['cosine_min']:.4f}"
        top = "" if row["top_k_agreement"] is None else f"{row['top_k_agreement']:.3f}"
        print(
            f"{row['model']:11} {row['recipe']:24} {row['runtime']:11} {row['accuracy']:6.4f} "
            f"{row['accuracy_drop_pt']:+6.2f} {row['speedup']['1']:5.2f}x {row['speedup']['32']:5.2f}x "
            f"{cosine:>7} {minimum:>7} {top:>6} {row['size_ratio']:5.2f}x"
        )
    for run in failed:
        print(f"{run['model']:11} {run['recipe']:24} not run: {' '.join(run['error'])}")
    pretrained = pretrained_fidelity(Path(args.out) / "pretrained.db")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    document = {"environment": environment, "rows": rows, "not_run": failed, "pretrained_encoder": pretrained}
    RESULTS.write_text(json.dumps(document, indent=1))
    print(f"saved {RESULTS}")


def pretrained_fidelity(store: Path) -> list[dict]:
    """The int8 paths on MiniLM as packaged (no fine-tuning): how far its sentence embeddings move."""
    spec = cb.load_study(STUDY)
    measure = spec.measure
    rows = []
    print("pretrained all-MiniLM-L6-v2 (not fine-tuned): sentence embeddings, int8 vs fp32")
    for name, steps in PRETRAINED_RECIPES.items():
        result = cb.compress("fortunes", "minilm", {"name": name, "steps": steps},
                             training=cb.TrainConfig(epochs=0), measure=measure, store=store)  # fmt: skip
        embedding = result.candidate.embedding
        rows.append({"recipe": name, "runtime": result.candidate.runtime["runtime"], "speedup": result.speedup,
                     **{k: embedding[k] for k in ("cosine_mean", "cosine_min", "top_k_agreement")}})  # fmt: skip
        print(f"  {name:26} {rows[-1]['runtime']:11} b1 {result.speedup['1']:.2f}x b32 {result.speedup['32']:.2f}x "
              f"cosine {embedding['cosine_mean']:.4f} (min {embedding['cosine_min']:.4f}) "
              f"top-10 kept {embedding['top_k_agreement']:.3f}")  # fmt: skip
    return rows


if __name__ == "__main__":
    main()
