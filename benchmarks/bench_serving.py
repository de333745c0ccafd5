"""compressbench's timing against the runtimes' own tools: OpenVINO's benchmark_app and a plain ONNX Runtime loop.

Two models: the zoo ResNet-14 on Fashion-MNIST with its shipped baseline weights, and all-MiniLM-L6-v2 as the zoo
builds it for the `fortunes` quotes (untrained head: this is about speed). Each is exported to ONNX (and from it
to an OpenVINO IR kept in fp32) and timed, one measurement at a time, under four profiles:

- OpenVINO latency: 1 stream, 1 thread, one synchronous request; compressbench's median ms per call vs
  benchmark_app's median latency (`-hint none -nstreams 1 -nthreads 1 -nireq 1 -api sync`).
- OpenVINO throughput: the THROUGHPUT hint on 2 threads; compressbench's concurrent timing (batch x 1000 / median
  ms, in samples/s) vs benchmark_app's `-api async` throughput with the same hint and threads (given in a
  `-load_config` file: it refuses `-nthreads` beside `-hint throughput`). Its FPS counts samples (batch x
  iterations / seconds) when it knows the batch axis, which `-layout [N...]` tells it; it is recomputed from its
  count and duration all the same.
- ONNX Runtime latency, 1 thread: compressbench's median ms per call vs a plain `InferenceSession.run` loop.
- ONNX Runtime throughput, 2 parallel sessions of 1 thread: compressbench's concurrent timing vs two plain
  sessions in two Python threads (samples / wall seconds).

Both sides feed the same real batch (benchmark_app reads it from .npy files) and force fp32, and the tool times at
least as long as compressbench's blocks did. Prints a table (ratio = ours / theirs: above 1 is a slower latency or a
higher throughput than the tool's; others = the largest share of the machine's CPU that other processes took while
either side ran, BUSY above 5%) and saves benchmarks/results/serving.json with the commands, the CPU and the
versions.

    .venv/bin/python benchmarks/bench_serving.py [--models resnet,minilm] [--seconds 10]
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import re
import resource
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx

import compressbench as cb
from compressbench.bench import (
    build_model,
    cpu_info,
    environment,
    export_onnx,
    load_dataset,
    measure_latency_interleaved,
    onnx_to_openvino,
    open_session,
)

RESULTS = Path(__file__).parent / "results" / "serving.json"
MODELS = ("resnet", "minilm")
BLOCKS = 10  # compressbench's timed blocks per measurement: `--seconds` is spread over them
WARMUP_S = 1.0
ORT_TYPES = {"tensor(float)": np.float32, "tensor(int64)": np.int64, "tensor(int32)": np.int32}


@dataclass
class Prepared:
    """One model as both sides time it: the ONNX graph, its fp32 IR, the batch, and where they were written."""

    name: str
    batch: int
    proto: onnx.ModelProto
    onnx_path: Path
    ir_path: Path
    x: np.ndarray  # the batch in the loaders' form (float32, token ids too): what compressbench's sessions take
    inputs: list[tuple[str, Any]]  # the graph's inputs and their numpy types
    npy: dict[str, Path]  # each input's batch as benchmark_app reads it


def prepare(name: str, batch: int, folder: Path) -> Prepared:
    import openvino as ov

    if name == "resnet":
        trained = cb.baseline("fashion-mnist", "resnet")  # the shipped weights (or the cache's)
        module, data = trained.module, trained.data
    else:
        try:
            data = load_dataset("fortunes")
        except cb.CompressbenchError as error:
            raise SystemExit(f"bench_serving: minilm needs the fortunes dataset: {error}") from None
        module = build_model("minilm", data.spec, seed=0)
    proto = export_onnx(module, data.spec.input_shape, "torchscript", data.spec.input_dtype)
    folder = folder / name
    folder.mkdir(parents=True)
    onnx_path, ir_path = folder / "model.onnx", folder / "model.xml"
    onnx.save(proto, onnx_path)
    ov.save_model(onnx_to_openvino(proto), ir_path, compress_to_fp16=False)
    x = np.ascontiguousarray(np.resize(data.test.x, (batch, *data.test.x.shape[1:])))
    inputs = [(i.name, ORT_TYPES[i.type]) for i in _ort_inputs(onnx_path)]
    npy = {}
    for name_, dtype in inputs:
        npy[name_] = folder / f"{name_}.npy"
        np.save(npy[name_], feeds(x, inputs)[name_].astype(dtype))
    return Prepared(name, batch, proto, onnx_path, ir_path, x, inputs, npy)


def _ort_inputs(path: Path) -> list[Any]:
    import onnxruntime as ort

    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).get_inputs()


def feeds(x: np.ndarray, inputs: list[tuple[str, Any]]) -> dict[str, np.ndarray]:
    """The batch as the graph's named inputs (several inputs are packed along axis 1, as the zoo's data packs them)."""
    if len(inputs) == 1:
        return {inputs[0][0]: np.ascontiguousarray(x, dtype=inputs[0][1])}
    return {name: np.ascontiguousarray(x[:, i], dtype=dtype) for i, (name, dtype) in enumerate(inputs)}


class Others:
    """How much of the machine other processes took while a measurement ran: the CPU seconds every process used
    (/proc/stat) less this process's and its children's (benchmark_app), as a share of the cores' seconds. A timing
    is only worth comparing when that stays near 0 (the machine is shared; see the README)."""

    def __enter__(self) -> Others:
        self._start = (_machine_busy_s(), _own_busy_s(), time.perf_counter())
        return self

    def __exit__(self, *exc: object) -> None:
        busy, own, wall = (now - then for now, then in zip((_machine_busy_s(), _own_busy_s(), time.perf_counter()),
                                                           self._start, strict=True))  # fmt: skip
        self.share = max(0.0, busy - own) / (wall * (os.cpu_count() or 1))


def _machine_busy_s() -> float:
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")  # guest time is already counted in user


def _own_busy_s() -> float:
    me, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + children.ru_utime + children.ru_stime


# compressbench's side ------------------------------------------------------------------------------------------------


def ours(session: Any, x: np.ndarray, threads: int, seconds: float, concurrent: bool) -> dict[str, Any]:
    """compressbench's figure: the median ms per call over `BLOCKS` blocks (concurrent: wall ms per batch)."""
    settings = cb.LatencySettings(
        batch_sizes=(len(x),), threads=threads, warmup_s=WARMUP_S, blocks=BLOCKS, block_s=seconds / BLOCKS
    )
    started = time.perf_counter()
    (stats,) = measure_latency_interleaved([session], x, settings, concurrent=concurrent)
    wall = time.perf_counter() - started
    s = stats[len(x)]
    # Every block serves the same number of calls, so the blocks' medians give the seconds timed (exactly when
    # concurrent, where a block's calls all count its wall time per batch) and the mean rate over all of them.
    timed_s = sum(s.block_ms) * (s.calls / s.blocks) / 1000
    return {
        "median_ms": s.p50_ms,
        "p10_ms": s.p10_ms,
        "p90_ms": s.p90_ms,
        "calls": s.calls,
        "blocks": s.blocks,
        "block_ms": list(s.block_ms),
        "samples_per_s": len(x) * 1000 / s.p50_ms,
        "samples_per_s_over_all_blocks": len(x) * s.calls / timed_s,
        "timed_s": timed_s,
        "wall_s_with_warm_up": wall,
        "settings": settings.model_dump(),
        "session": dict(session.info),
        "compiled": compiled_properties(session, x),
    }


def compiled_properties(session: Any, x: np.ndarray) -> dict[str, str]:
    """An OpenVINO session's compiled model's settings, as benchmark_app prints its own (step 8)."""
    if not hasattr(session, "compiled_for"):
        return {}
    compiled, _ = session.compiled_for(x.shape)
    names = ("NUM_STREAMS", "INFERENCE_NUM_THREADS", "OPTIMAL_NUMBER_OF_INFER_REQUESTS", "PERFORMANCE_HINT",
             "INFERENCE_PRECISION_HINT", "ENABLE_CPU_PINNING", "ENABLE_HYPER_THREADING")  # fmt: skip
    return {name: str(compiled.get_property(name)) for name in names}


def tool_seconds(seconds: float, our: dict[str, Any]) -> int:
    """The tool times at least as long as compressbench did (whose blocks of a slow model outlast `--seconds`), in
    whole seconds (benchmark_app's -t takes an integer)."""
    return max(1, math.ceil(max(seconds, our["timed_s"])))


# benchmark_app ---------------------------------------------------------------------------------------------------


def benchmark_app_command(model: Prepared, profile: str, seconds: int) -> list[str]:
    tool = Path(sys.executable).parent / "benchmark_app"
    shape = ",".join(f"{name}[{','.join(map(str, arr_shape(model, name)))}]" for name, _ in model.inputs)
    command = [str(tool if tool.is_file() else shutil.which("benchmark_app") or "benchmark_app"),
               "-m", str(model.ir_path), "-d", "CPU", "-shape", shape, "-layout", "[N...]",
               "-i", ",".join(f"{name}:{path}" for name, path in model.npy.items()),
               "-infer_precision", "f32", "-t", str(seconds)]  # fmt: skip
    if profile == "latency":
        return [*command, "-hint", "none", "-nstreams", "1", "-nthreads", "1", "-nireq", "1", "-api", "sync"]
    # benchmark_app refuses -nthreads beside a -hint other than none (its own UI rule), so the THROUGHPUT hint and
    # the 2 threads go in a config file; it keeps a hint the config gives, and its streams and requests then follow
    # the hint's choice (OPTIMAL_NUMBER_OF_INFER_REQUESTS), as compressbench's asynchronous queue does.
    config = model.ir_path.parent / "throughput.json"
    config.write_text(json.dumps({"CPU": THROUGHPUT_CONFIG}))
    return [*command, "-load_config", str(config), "-api", "async"]


THROUGHPUT_CONFIG = {"PERFORMANCE_HINT": "THROUGHPUT", "INFERENCE_NUM_THREADS": "2", "INFERENCE_PRECISION_HINT": "f32"}


def arr_shape(model: Prepared, name: str) -> tuple[int, ...]:
    return tuple(np.load(model.npy[name], mmap_mode="r").shape)


def run_benchmark_app(command: list[str]) -> dict[str, Any]:
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    out = done.stdout + done.stderr

    def number(pattern: str) -> float | None:
        found = re.search(pattern, out)
        if found is None:
            return None
        value = float(found.group(1))
        return value / 1000 if found.lastindex and found.lastindex > 1 and found.group(2) == "us" else value

    parsed = {
        "median_ms": number(r"Median:\s+([\d.]+) (ms|us)"),
        "average_ms": number(r"Average:\s+([\d.]+) (ms|us)"),
        "throughput_fps": number(r"Throughput:\s+([\d.]+) FPS"),
        "iterations": number(r"Count:\s+(\d+) iterations"),
        "duration_ms": number(r"Duration:\s+([\d.]+) ms"),
        "model_batch": number(r"Model batch size: (\d+)"),
        "infer_requests": number(r"\((?:Start|start) inference \w+, (\d+) inference requests"),
        "streams": number(r"NUM_STREAMS: (\d+)"),
        "threads": number(r"INFERENCE_NUM_THREADS: (\d+)"),
        "precision": (m.group(1).strip() if (m := re.search(r"INFERENCE_PRECISION_HINT: (.+)", out)) else None),
        "pinning": (m.group(1).strip() if (m := re.search(r"ENABLE_CPU_PINNING: (.+)", out)) else None),
    }
    if done.returncode != 0 or parsed["median_ms"] is None or parsed["throughput_fps"] is None:
        raise SystemExit(f"benchmark_app failed (exit {done.returncode}):\n{' '.join(command)}\n{out[-3000:]}")
    return {"command": shlex.join(command), **parsed, "output_tail": out[-2500:]}


# the plain ONNX Runtime loop ---------------------------------------------------------------------------------------


def plain_session(path: Path, threads: int) -> Any:
    """An ONNX Runtime session as its documentation sets one up: intra-op threads, one inter-op thread, sequential
    execution, every graph optimisation, the CPU provider."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def plain_latency(model: Prepared, seconds: float) -> dict[str, Any]:
    """Warm up, then `session.run` back to back for `seconds`; the median of the per-call times."""
    session = plain_session(model.onnx_path, 1)
    feed = feeds(model.x, model.inputs)
    deadline = time.perf_counter() + WARMUP_S
    while time.perf_counter() < deadline:
        session.run(None, feed)
    times = []
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        t0 = time.perf_counter()
        session.run(None, feed)
        times.append(time.perf_counter() - t0)
    ms = np.array(times) * 1e3
    return {
        "median_ms": float(np.median(ms)),
        "p10_ms": float(np.percentile(ms, 10)),
        "p90_ms": float(np.percentile(ms, 90)),
        "calls": len(ms),
        "samples_per_s": model.batch * 1000 / float(np.median(ms)),
        "setup": "1 InferenceSession, intra_op 1, inter_op 1, ORT_SEQUENTIAL, ORT_ENABLE_ALL; "
        f"{WARMUP_S:g} s warm-up, then run() for {seconds:g} s, median of the per-call times",
    }


def plain_throughput(model: Prepared, seconds: float, sessions: int = 2) -> dict[str, Any]:
    """`sessions` sessions of one intra-op thread each, each run in its own Python thread (run() releases the GIL):
    warm up together, then each runs until a common deadline; samples over the wall seconds until the last ends."""
    opened = [plain_session(model.onnx_path, 1) for _ in range(sessions)]
    feed = feeds(model.x, model.inputs)
    counts = [0] * sessions
    barrier = threading.Barrier(sessions + 1)

    def serve(i: int) -> None:
        session = opened[i]
        barrier.wait()  # warm-up starts together
        deadline = time.perf_counter() + WARMUP_S
        while time.perf_counter() < deadline:
            session.run(None, feed)
        barrier.wait()  # timing starts together
        deadline = time.perf_counter() + seconds
        while time.perf_counter() < deadline:
            session.run(None, feed)
            counts[i] += 1

    workers = [threading.Thread(target=serve, args=(i,)) for i in range(sessions)]
    for worker in workers:
        worker.start()
    barrier.wait()
    barrier.wait()  # every session warmed up
    started = time.perf_counter()
    for worker in workers:
        worker.join()
    wall = time.perf_counter() - started
    return {
        "samples_per_s": model.batch * sum(counts) / wall,
        "median_ms": wall * 1000 / sum(counts),  # wall ms per batch, as compressbench's concurrent figure
        "calls": sum(counts),
        "wall_s": wall,
        "setup": f"{sessions} InferenceSessions of intra_op 1 (inter_op 1, ORT_SEQUENTIAL, ORT_ENABLE_ALL), one "
        f"Python thread each; {WARMUP_S:g} s warm-up, then run() until {seconds:g} s have passed; "
        "batch x calls / wall seconds",
    }


# the table ---------------------------------------------------------------------------------------------------------


def row(model: Prepared, runtime: str, profile: str, unit: str, our: dict, their: dict, tool: str) -> dict:
    key = "median_ms" if unit == "ms" else "samples_per_s"
    theirs = their[key] if unit == "ms" else their.get("samples_per_s", their.get("throughput_fps"))
    return {
        "model": model.name,
        "batch": model.batch,
        "runtime": runtime,
        "profile": profile,
        "unit": unit,
        "ours": our[key],
        "theirs": theirs,
        "ratio": our[key] / theirs,
        "tool": tool,
        "compressbench": our,
        "reference": their,
    }


def measure(model: Prepared, seconds: float) -> list[dict]:
    """The four profiles, one measurement at a time (never two timings at once)."""
    import openvino as ov

    rows = []
    ir = ov.Core().read_model(model.ir_path)  # the very IR benchmark_app reads

    # (a) OpenVINO latency: 1 stream, 1 thread, one synchronous request.
    session = open_session(ir, "openvino", threads=1, options={"hint": "LATENCY", "streams": 1})
    our = quietly(ours, session, model.x, 1, seconds, concurrent=False)
    del session
    their = quietly(run_benchmark_app, benchmark_app_command(model, "latency", tool_seconds(seconds, our)))
    rows.append(row(model, "openvino", "latency 1 stream 1 thread", "ms", our, their, "benchmark_app"))
    _show(rows[-1])

    # (b) OpenVINO throughput: THROUGHPUT hint, 2 threads, asynchronous requests.
    session = open_session(ir, "openvino", threads=2, options={"hint": "THROUGHPUT"})
    our = quietly(ours, session, model.x, 2, seconds, concurrent=True)
    del session
    their = quietly(run_benchmark_app, benchmark_app_command(model, "throughput", tool_seconds(seconds, our)))
    # benchmark_app's FPS is its batch (read from the layout's N axis; 1 when it finds none) x iterations / seconds:
    # samples/s here, as the layout is given; recomputed from its count and duration to be sure.
    their["samples_per_s"] = model.batch * their["iterations"] / (their["duration_ms"] / 1000)
    their["fps_counts"] = "samples" if their["model_batch"] == model.batch else "iterations"
    their["config"] = THROUGHPUT_CONFIG
    rows.append(row(model, "openvino", "throughput hint, 2 threads", "samples/s", our, their, "benchmark_app"))
    _show(rows[-1])

    # (c) ONNX Runtime: latency on 1 thread, throughput on 2 parallel sessions of 1 thread.
    session = open_session(model.proto, "onnxruntime", threads=1, options={"parallel_sessions": 1})
    our = quietly(ours, session, model.x, 1, seconds, concurrent=False)
    del session
    their = quietly(plain_latency, model, tool_seconds(seconds, our))
    rows.append(row(model, "onnxruntime", "latency 1 thread", "ms", our, their, "plain loop"))
    _show(rows[-1])

    session = open_session(model.proto, "onnxruntime", threads=2, options={"parallel_sessions": 2})
    our = quietly(ours, session, model.x, 2, seconds, concurrent=True)
    del session
    their = quietly(plain_throughput, model, tool_seconds(seconds, our))
    rows.append(row(model, "onnxruntime", "throughput, 2 sessions x 1 thread", "samples/s", our, their, "plain loop"))
    _show(rows[-1])
    return rows


def quietly(measurement: Any, *args: Any, **kwargs: Any) -> dict[str, Any]:
    """`measurement`'s result, with the share of the machine other processes took meanwhile."""
    with Others() as others:
        result = measurement(*args, **kwargs)
    return {**result, "others_cpu_share": others.share}


HEADER = " ".join(
    f"{h:{w}}" for h, w in (("model", 7), ("batch", ">5"), ("runtime", 11), ("profile", 33), ("unit", 9),
                            ("ours", ">9"), ("theirs", ">9"), ("ratio", ">6"), ("tool", 13), ("others", ""))
)  # fmt: skip
BUSY = 0.05  # other processes' share of the machine above which a row is marked


def _show(r: dict) -> None:
    others = max(r["compressbench"]["others_cpu_share"], r["reference"]["others_cpu_share"])
    print(
        f"{r['model']:7} {r['batch']:5} {r['runtime']:11} {r['profile']:33} {r['unit']:9} {r['ours']:9.2f} "
        f"{r['theirs']:9.2f} {r['ratio']:6.3f} {r['tool']:13} {others:4.0%}{'  BUSY' if others > BUSY else ''}",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(MODELS), help="comma-separated: resnet,minilm")
    parser.add_argument("--seconds", type=float, default=10.0, help="timed seconds per measurement (default 10)")
    parser.add_argument("--resnet-batch", type=int, default=64, help="ResNet batch size (default 64)")
    parser.add_argument("--minilm-batch", type=int, default=32, help="MiniLM batch size (default 32)")
    parser.add_argument("--out", type=Path, default=RESULTS, help=f"results JSON (default {RESULTS})")
    args = parser.parse_args()
    chosen = [m.strip() for m in args.models.split(",") if m.strip()]
    if unknown := sorted(set(chosen) - set(MODELS)):
        parser.error(f"unknown model(s) {unknown}; choose from {','.join(MODELS)}")
    import openvino as ov

    cpu = cpu_info()
    print(f"CPU: {cpu['model']}, {cpu['cores']} cores, flags {cpu['flags']}", flush=True)
    batches = {"resnet": args.resnet_batch, "minilm": args.minilm_batch}
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench_serving_") as folder:
        prepared = [prepare(name, batches[name], Path(folder)) for name in chosen]  # exports first, timings after
        print(HEADER, flush=True)
        for model in prepared:
            rows += measure(model, args.seconds)
    for r in rows:  # the temporary folder is gone: its files are named from $TMP
        if "command" in r["reference"]:
            r["reference"]["command"] = r["reference"]["command"].replace(folder, "$TMP")
    # Rows of models not measured this time (an earlier `--models` run) are kept.
    kept = json.loads(args.out.read_text()).get("rows", []) if args.out.is_file() else []
    rows = [r for r in kept if r["model"] not in chosen] + rows
    env = environment()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            {
                "date": datetime.datetime.now().isoformat(timespec="seconds"),
                "command": " ".join([sys.executable, *sys.argv]),
                "seconds": args.seconds,
                "cpu": cpu,
                "environment": env,
                "versions": {**env["versions"], "openvino": ov.__version__},
                "ratio": "ours / theirs: ms per call for latency (above 1: ours slower), samples/s for throughput "
                "(above 1: ours higher)",
                "others_cpu_share": "the share of the machine's CPU seconds other processes took during a "
                "measurement (/proc/stat less this process and its children)",
                "rows": rows,
            },
            indent=1,
        )
    )
    print(f"saved {args.out}")


if __name__ == "__main__":
    main()
