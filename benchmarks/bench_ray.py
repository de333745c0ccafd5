"""One fixed set of jobs, run here (one process, torch on every core) and on Ray (a local cluster of this machine's
cores, one CPU and one torch thread per compress phase), each from an empty cache; then the plan for N workers from
the measured job durations.

    .venv/bin/python benchmarks/bench_ray.py      # about 5 minutes on 2 cores; run it on a quiet machine

The jobs: the MLP and LeNet-5 on digits (shipped baselines), each with the baseline, int8 dynamic and static,
magnitude 80%, channels 50% and prune+quant: 12 jobs. Writes benchmarks/results/ray.json.
The plan: a job is the unit of work, so N workers need at least the longest job and at least the sum / N; measure
phases are serialised per machine (the machine lock), so their sum bounds one machine whatever its workers.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path

import compressbench as cb

RESULTS = Path(__file__).resolve().parent / "results" / "ray.json"
SPEC = {
    "name": "ray-bench",
    "datasets": [{"name": "digits"}],
    "models": [{"name": "mlp"}, {"name": "lenet5"}],
    "recipes": [
        "none",
        "quant.dynamic",
        "quant.static",
        {"name": "prune.magnitude-80", "steps": [{"technique": "prune.magnitude", "sparsity": 0.8}]},
        {"name": "prune.channels-50", "steps": [{"technique": "prune.channels", "ratio": 0.5}]},
        "prune+quant",
    ],  # fmt: skip
    "seeds": [0],
    "measure": {"latency": {"warmup_s": 0.3, "blocks": 6, "block_s": 0.1, "batch_sizes": [1, 256]}},
}


def timed(folder: Path, executor: cb.ExecutorSettings) -> tuple[float, list[cb.RunResult]]:
    started = time.perf_counter()
    counts = cb.run_study(cb.StudySpec(**SPEC), folder, cache=cb.Cache(folder / "cache"), executor=executor)
    wall = time.perf_counter() - started
    if counts["failed"]:
        raise SystemExit(f"{counts['failed']} jobs failed: see {folder / 'results.db'}")
    return wall, [run.result for run in cb.stored_runs(folder)]


def plan(results: list[cb.RunResult], workers: int) -> float:
    """The least wall time N workers could take: the longest job, the work shared by N, and (on one machine) the
    measure phases, which run one at a time."""
    jobs = [r.phase_seconds["compress"] + r.phase_seconds["measure"] for r in results]
    return max(max(jobs), sum(jobs) / workers)


def main() -> None:
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    with tempfile.TemporaryDirectory() as scratch:
        local_wall, local = timed(Path(scratch) / "local", cb.ExecutorSettings())
        ray_wall, on_ray = timed(Path(scratch) / "ray", cb.ExecutorSettings(kind="ray"))
    cores = os.cpu_count() or 1
    compress = [r.phase_seconds["compress"] for r in on_ray]
    measure = [r.phase_seconds["measure"] for r in on_ray]
    longest = max(on_ray, key=lambda r: r.phase_seconds["compress"] + r.phase_seconds["measure"])
    summary = {
        "cpu": local[0].environment["cpu"],
        "cores": cores,
        "jobs": len(local),
        "local_wall_s": round(local_wall, 1),
        "ray_wall_s": round(ray_wall, 1),
        "ray_workers": cores,
        "speedup": round(local_wall / ray_wall, 2),
        "ray_compress_s": {"sum": round(sum(compress), 1), "max": round(max(compress), 1)},
        "ray_measure_s": {"sum": round(sum(measure), 1), "max": round(max(measure), 1)},
        "longest_job": f"{longest.model} / {longest.dataset} / {longest.recipe}",
        # One worker per core, one core a job: N workers on N / cores machines, each machine timing one job at once.
        "plan_s": {n: round(max(plan(on_ray, n), sum(measure) / max(1, n // cores)), 1) for n in (1, 2, 4, 8, 16, 24)},
    }
    RESULTS.write_text(json.dumps(summary, indent=1) + "\n")
    print(json.dumps(summary, indent=1))
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
