"""Check a folder `compress` handed back: the artifact's SHA-256 against its manifest, then its accuracy and latency
measured here again, on the runtime and settings the manifest records; and decode a stored form (`model.cbw`,
`model.onnx.zst`) back into the `model.onnx` a runtime loads."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import compressbench.intake  # noqa: F401 (the file and folder data sources)
from compressbench.artifacts import read_artifact
from compressbench.data import DatasetConfig, load_dataset
from compressbench.errors import CompressbenchError
from compressbench.measure.accuracy import measure_accuracy
from compressbench.measure.environment import cpu_info
from compressbench.measure.latency import LatencySettings, measure_latency_interleaved
from compressbench.runtime import open_session
from compressbench.runtime.stored import decode_stored
from compressbench.weights import file_sha256


def verify(folder: Path | str, data: str | None = None, threads: int | None = None) -> dict[str, Any]:
    """Check the artifact's SHA-256 against its manifest and measure its accuracy and latency here again."""
    folder = Path(folder)
    manifest_path = folder / "manifest.json"
    if not manifest_path.is_file():
        raise CompressbenchError(f"{folder}: no manifest.json (not a compress output folder)")
    manifest = json.loads(manifest_path.read_text())
    for name, expected in manifest["artifact"]["files"].items():
        if not (folder / name).is_file():
            raise CompressbenchError(f"{folder / name}: missing (the manifest lists it)")
        if (actual := file_sha256(folder / name)) != expected:
            raise CompressbenchError(
                f"{folder / name}: SHA-256 {actual[:16]}... differs from the manifest's {expected[:16]}...: "
                "not the artifact that was measured"
            )
    runtime = manifest["artifact"]["runtime"]
    artifact = read_artifact(folder, manifest["artifact"]["kind"])
    settings = manifest["measurement"]
    latency = LatencySettings(**{**settings["latency"], **({"threads": threads} if threads else {})})
    # The data read as compress read it: the same file or loader (or `data` in its place), the same preprocessing.
    recorded = manifest["input"].get("dataset") or {"name": manifest["input"]["data"], "as_given": True}
    dataset = DatasetConfig(**{**recorded, **({"name": data} if data else {})})
    bundle = load_dataset(dataset, manifest["evaluation"].get("seed") or 0)
    # The session as it was measured (manifests before `artifact.session` existed: the latency defaults).
    session_settings = manifest["artifact"].get("session") or {
        "precision": manifest["compressed"]["runtime"].get("requested_precision", "fp32"), "options": {},
        "serving": "latency",
    }  # fmt: skip
    session = open_session(artifact, runtime, latency.threads, session_settings["precision"],
                           session_settings["options"] or None)  # fmt: skip
    accuracy = measure_accuracy(session, bundle.test)
    timed = measure_latency_interleaved([session], bundle.test.x[: settings["latency_samples"]], latency,
                                        concurrent=session_settings["serving"] == "throughput")[0]  # fmt: skip
    here = cpu_info()
    return {
        "sha256": "matches the manifest",
        "cpu": {
            "here": here["model"],
            "manifest": manifest["environment"]["cpu"]["model"],
            "same_cpu": here["model"] == manifest["environment"]["cpu"]["model"],
        },  # fmt: skip
        "accuracy": {
            "here": accuracy.accuracy,
            "manifest": manifest["compressed"]["accuracy"],
            "test_samples": accuracy.samples,
        },  # fmt: skip
        "latency_ms": {
            str(b): {"here": s.p50_ms, "manifest": manifest["compressed"]["latency_ms"].get(str(b))}
            for b, s in timed.items()
        },
        "runtime": runtime,
        "session": {**session_settings, "threads": latency.threads},
    }


def decode(path: Path | str, out: Path | str | None = None) -> Path:
    """Write the ONNX graph of a stored form (a `compress --objective size` folder, or a `.cbw` / `.onnx.zst` file)
    to `out` (default: `model.onnx` beside it) and return that path. Every tensor comes back bit for bit."""
    path = Path(path)
    target = Path(out) if out is not None else (path if path.is_dir() else path.parent) / "model.onnx"
    if target.exists():
        raise CompressbenchError(f"{target}: already exists; give another --out (nothing is overwritten)")
    graph = decode_stored(path)
    target.write_bytes(graph.SerializeToString())
    return target


__all__ = ["decode", "verify"]
