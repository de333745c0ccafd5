"""Memory and start-up as a deployment sees them: what a served model costs in a process of its own.

A probe writes the artifact in its kind's file form, with one batch of inputs, into a temporary folder. It then
runs this file as a script in a fresh python process, so the measuring process's memory (torch, the data, pytest)
does not count. The child imports only numpy and the runtime. Importing compressbench's runtime layer would import
torch, which added about 360 MB to a 45 MB baseline here, more than most models cost. So the child opens the model
with onnxruntime / openvino directly, with the session options of `compressbench.runtime.onnxruntime` and
`compressbench.runtime.openvino`. It is run by path with `python -P`, never `-m`: the package `__init__` of
`compressbench.measure` imports torch.

Peak memory is read from VmHWM in /proc/self/status, not from getrusage's ru_maxrss. On Linux a child's ru_maxrss
carries the parent's resident size at the moment it was spawned (a child of a 1 GiB parent reported 1049 MB before
doing anything). VmHWM belongs to the child's own address space.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

# Only the standard library and numpy above this line: this file is also the child process's script.

CHILD_RUNTIMES = ("onnxruntime", "openvino")
# The graph input types fed from the loaders' arrays (as `runtime.onnxruntime.INPUT_TYPES`).
INPUT_TYPES = {"tensor(float)": np.float32, "tensor(int64)": np.int64, "tensor(int32)": np.int32}
HINTS = {"fp32": "f32", "bf16": "bf16", "fp16": "f16"}  # as `runtime.openvino.HINTS`


@dataclass(frozen=True)
class Footprint:
    baseline_rss_mb: float  # resident after importing numpy and the runtime, before the model
    peak_rss_mb: float  # the process's peak resident memory, after loading the model and two calls
    model_rss_mb: float  # peak minus baseline: what the model costs on top of the runtime
    load_s: float  # loading and compiling the model from its file
    first_inference_ms: float  # the first call on the batch (cold)
    second_inference_ms: float  # the call after it
    runtime: str
    threads: int
    batch: int
    how: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def probe_footprint(
    artifact: Any,
    runtime: str,
    inputs: np.ndarray,
    *,
    threads: int = 1,
    precision: str = "fp32",
    options: dict[str, Any] | None = None,
    timeout_s: float = 300,
) -> Footprint:
    """Load `artifact` and run `inputs` (one batch) twice on `runtime` in a fresh process. `artifact` is what
    compressbench serves: an ONNX graph (onnxruntime, openvino) or an OpenVINO model (openvino); `options` the
    session settings it is served with (`runtime.open_session`: parallel sessions hold a model each, OpenVINO's
    THROUGHPUT streams their own buffers)."""
    import subprocess
    import tempfile

    from compressbench.artifacts import kind_of
    from compressbench.errors import CompressbenchError
    from compressbench.runtime import runtimes  # registers the runtimes and OpenVINO's artifact kind

    spec = runtimes.get(runtime)
    if problem := spec.missing():
        raise CompressbenchError(problem)
    if runtime not in CHILD_RUNTIMES:
        raise CompressbenchError(
            f"the footprint probe serves on {' or '.join(CHILD_RUNTIMES)}, not {runtime}: a {runtime} model needs "
            "its code (and torch) in the serving process"
        )
    kind = kind_of(artifact)
    if kind.name not in spec.opens or precision not in spec.precisions:
        raise CompressbenchError(spec.why_not(kind.name, precision))
    inputs = np.asarray(inputs)
    if inputs.ndim == 0:
        raise CompressbenchError("the footprint probe needs a batch of inputs (an array with a batch axis)")

    with tempfile.TemporaryDirectory(prefix="compressbench-footprint-") as name:
        folder = Path(name)
        files = kind.write(artifact, folder)
        np.save(folder / "inputs.npy", np.ascontiguousarray(inputs))
        command = [sys.executable, "-P", str(Path(__file__).resolve()), str(folder), runtime, str(threads), precision,
                   json.dumps(options or {})]  # fmt: skip
        try:
            child = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s)
        except subprocess.TimeoutExpired as error:
            raise CompressbenchError(
                f"{runtime}: the footprint probe did not finish in {timeout_s:g} s (loading and two calls)"
            ) from error
    if child.returncode != 0:
        raise CompressbenchError(f"{runtime} failed in the footprint probe: {_child_failure(child)}")
    try:
        figures = json.loads(child.stdout.strip().splitlines()[-1])
    except (IndexError, json.JSONDecodeError) as error:
        raise CompressbenchError(
            f"{runtime}: the footprint probe printed no figures: {child.stdout[-200:]!r}"
        ) from error

    loading = {
        "onnxruntime": "create an InferenceSession from",
        "openvino": "read_model and compile_model (all axes static) of",
    }
    how = (
        f"a fresh python process without torch: import numpy and {runtime} (baseline: VmRSS), {loading[runtime]} "
        f"{files[0]} at {threads} thread(s){f' with {options}' if options else ''}, run one batch of {len(inputs)} "
        "twice; peak: VmHWM of /proc/self/status"
    )
    return Footprint(
        baseline_rss_mb=figures["baseline_rss_mb"],
        peak_rss_mb=figures["peak_rss_mb"],
        model_rss_mb=figures["peak_rss_mb"] - figures["baseline_rss_mb"],
        load_s=figures["load_s"],
        first_inference_ms=figures["first_inference_ms"],
        second_inference_ms=figures["second_inference_ms"],
        runtime=runtime,
        threads=threads,
        batch=len(inputs),
        how=how,
    )


def _child_failure(child: Any) -> str:
    """The child's last stderr line, and the signal that killed it if one did (the OOM killer leaves no line)."""
    import signal

    lines = [line.strip() for line in child.stderr.splitlines() if line.strip()]
    last = lines[-1] if lines else "no error output"
    if child.returncode < 0:
        return f"killed by {signal.Signals(-child.returncode).name} ({last})"
    return last


# The child: numpy and one runtime, nothing of compressbench.


def _rss_mb(field: str) -> float:
    """VmRSS (now) or VmHWM (peak) of this process in MiB. Without /proc, ru_maxrss (the peak, a bound for both;
    KiB on Linux, bytes on macOS)."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith(f"{field}:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024 if sys.platform == "darwin" else 1024)


def _packed(x: np.ndarray, count: int) -> list[np.ndarray]:
    """A batch as a graph's inputs, in order: one input takes `x`; several take x[:, i] each (packed along axis 1,
    as `runtime.onnxruntime.graph_feeds`)."""
    if count == 1:
        return [x]
    if x.ndim < 2 or x.shape[1] != count:
        raise ValueError(f"the graph takes {count} inputs; the data packs {x.shape[1:2]}")
    return [x[:, i] for i in range(count)]


ORT_LEVELS = {"all": "ORT_ENABLE_ALL", "extended": "ORT_ENABLE_EXTENDED", "basic": "ORT_ENABLE_BASIC"}
ORT_MODES = {"sequential": "ORT_SEQUENTIAL", "parallel": "ORT_PARALLEL"}  # as `runtime.onnxruntime`'s


def _open_onnxruntime(folder: Path, threads: int, x: np.ndarray, chosen: dict[str, Any]) -> Any:
    """InferenceSessions as `runtime.onnxruntime.OnnxRuntimeSession` opens them, from the file: with
    `parallel_sessions` k, k sessions of threads / k each (all resident; the first one runs)."""
    import onnxruntime as ort

    parallel = int(chosen.get("parallel_sessions", 1))
    options = ort.SessionOptions()
    options.intra_op_num_threads = max(1, threads // parallel)
    options.inter_op_num_threads = 1
    options.execution_mode = getattr(ort.ExecutionMode, ORT_MODES[chosen.get("execution_mode", "sequential")])
    options.graph_optimization_level = getattr(
        ort.GraphOptimizationLevel, ORT_LEVELS[chosen.get("optimization", "all")]
    )
    options.log_severity_level = 3
    sessions = [ort.InferenceSession(str(folder / "model.onnx"), options, providers=["CPUExecutionProvider"])
                for _ in range(parallel)]  # fmt: skip
    session = sessions[0]
    ports = [(i.name, INPUT_TYPES.get(i.type, np.float32)) for i in session.get_inputs()]

    def run(batch: np.ndarray) -> np.ndarray:
        arrays = _packed(batch, len(ports))
        feeds = {name: np.ascontiguousarray(a, dtype=dtype) for (name, dtype), a in zip(ports, arrays, strict=True)}
        return session.run(None, feeds)[0]

    return run


def _open_openvino(folder: Path, threads: int, precision: str, x: np.ndarray, core: Any, chosen: dict[str, Any]) -> Any:
    """A compiled model as `runtime.openvino.OpenVinoSession` compiles it for batches of x's shape (every axis
    static; several inputs packed along axis 1 each get that shape without it), with one reused infer request."""
    import openvino as ov

    path = folder / "model.xml" if (folder / "model.xml").exists() else folder / "model.onnx"
    model = core.read_model(path)
    dtypes = [port.element_type.to_dtype() for port in model.inputs]
    if len(model.inputs) == 1:
        model.reshape(ov.PartialShape(list(x.shape)))
    else:
        each = ov.PartialShape([x.shape[0], *x.shape[2:]])
        model.reshape({port.any_name: each for port in model.inputs})
    config = {
        "INFERENCE_NUM_THREADS": threads,
        "INFERENCE_PRECISION_HINT": HINTS[precision],
        "PERFORMANCE_HINT": chosen.get("hint", "LATENCY"),
    }
    streams = chosen.get("streams", "auto" if config["PERFORMANCE_HINT"] == "THROUGHPUT" else 1)
    if streams != "auto":
        config["NUM_STREAMS"] = streams
    request = core.compile_model(model, "CPU", config).create_infer_request()

    def run(batch: np.ndarray) -> np.ndarray:
        if len(dtypes) == 1:  # shared with the array, which lives until infer() returns
            request.set_input_tensor(ov.Tensor(np.ascontiguousarray(batch, dtype=dtypes[0]), shared_memory=True))
        else:
            for i, (array, dtype) in enumerate(zip(_packed(batch, len(dtypes)), dtypes, strict=True)):
                request.set_input_tensor(i, ov.Tensor(np.ascontiguousarray(array, dtype=dtype)))
        request.infer()
        return request.get_output_tensor().data.copy()

    return run


def measure_in_this_process(
    folder: Path, runtime: str, threads: int, precision: str, options: dict[str, Any] | None = None
) -> dict[str, float]:
    """The figures of a probe, taken in the calling process (the child's work): the model and inputs a probe wrote
    into `folder`. The inputs are read before the baseline, so that they count as the runtime's, not the model's."""
    x = np.load(folder / "inputs.npy")
    if runtime == "onnxruntime":
        import onnxruntime  # noqa: F401  (in the baseline)

        baseline = _rss_mb("VmRSS")
        start = time.perf_counter()
        run = _open_onnxruntime(folder, threads, x, options or {})
    elif runtime == "openvino":
        import openvino as ov

        core = ov.Core()  # the runtime's, once per process: in the baseline, with its CPU plugin (about 9 MB here,
        core.get_property("CPU", "FULL_DEVICE_NAME")  # loaded by the first compile otherwise)
        baseline = _rss_mb("VmRSS")
        start = time.perf_counter()
        run = _open_openvino(folder, threads, precision, x, core, options or {})
    else:
        raise ValueError(f"no footprint child for runtime {runtime!r} (known: {', '.join(CHILD_RUNTIMES)})")
    load_s = time.perf_counter() - start
    calls = []
    for _ in range(2):
        start = time.perf_counter()
        run(x)
        calls.append((time.perf_counter() - start) * 1e3)
    return {
        "baseline_rss_mb": baseline,
        "peak_rss_mb": _rss_mb("VmHWM"),
        "load_s": load_s,
        "first_inference_ms": calls[0],
        "second_inference_ms": calls[1],
    }


def _one_line(error: BaseException) -> str:
    """An exception on one line, as the parent reports the child's last stderr line. OpenVINO's text opens with
    where it was raised ("Exception from src/...", "Check '...' failed at"): the cause is on the lines after, so
    those are dropped (as `runtime.openvino.openvino_cause`)."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    causes = [line for line in lines if not line.startswith(("Exception from ", "Check '"))]
    return f"{type(error).__name__}: {' '.join(causes or lines)}"


def _main(argv: list[str]) -> int:
    folder, runtime, threads, precision, options = argv
    try:
        figures = measure_in_this_process(Path(folder), runtime, int(threads), precision, json.loads(options))
    except Exception as error:
        print(_one_line(error), file=sys.stderr)
        return 1
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
