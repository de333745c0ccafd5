"""ONNX Runtime on the CPU: the reference runtime every speed-up is measured against."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnx

from compressbench.artifacts import ONNX
from compressbench.errors import CompressbenchError
from compressbench.runtime.base import Runtime, Session, register_runtime

INT8_OPS = {"QuantizeLinear", "DynamicQuantizeLinear", "MatMulInteger", "ConvInteger", "QLinearConv", "QLinearMatMul"}


def onnx_precision(proto: onnx.ModelProto) -> str:
    return "int8" if any(node.op_type in INT8_OPS for node in proto.graph.node) else "fp32"


# Graph input types fed from the loaders' arrays: the zoo's token ids (float32, exact) go in as the graph asks.
INPUT_TYPES = {"tensor(float)": np.float32, "tensor(int64)": np.int64, "tensor(int32)": np.int32}


def graph_feeds(x: np.ndarray, inputs: list[tuple[str, type]]) -> dict[str, np.ndarray]:
    """A batch as a graph's named inputs: one input takes `x`; several take x[:, i] each (packed along axis 1 in
    the graph's input order, `models.NamedInputs`), each in its own type."""
    if len(inputs) == 1:
        name, dtype = inputs[0]
        return {name: x.astype(dtype, copy=False)}
    if x.ndim < 2 or x.shape[1] != len(inputs):
        names = ", ".join(name for name, _ in inputs)
        raise CompressbenchError(f"the graph takes {len(inputs)} inputs ({names}); the data packs {x.shape[1:2]}")
    return {name: np.ascontiguousarray(x[:, i], dtype=dtype) for i, (name, dtype) in enumerate(inputs)}


# The session settings a deployment chooses (`options`), with the values a latency-bound single-stream server uses.
OPTIMIZATION_LEVELS = {"all": "ORT_ENABLE_ALL", "extended": "ORT_ENABLE_EXTENDED", "basic": "ORT_ENABLE_BASIC"}
EXECUTION_MODES = {"sequential": "ORT_SEQUENTIAL", "parallel": "ORT_PARALLEL"}
DEFAULT_OPTIONS = {"optimization": "all", "execution_mode": "sequential", "parallel_sessions": 1}


def session_options(options: dict[str, Any] | None) -> dict[str, Any]:
    """`options` over the defaults, each checked: a bad name or value is refused naming it."""
    chosen = {**DEFAULT_OPTIONS, **(options or {})}
    if unknown := sorted(set(chosen) - set(DEFAULT_OPTIONS)):
        raise CompressbenchError(f"onnxruntime: unknown session option(s) {unknown} (known: {sorted(DEFAULT_OPTIONS)})")
    for name, allowed in (("optimization", OPTIMIZATION_LEVELS), ("execution_mode", EXECUTION_MODES)):
        if chosen[name] not in allowed:
            raise CompressbenchError(f"onnxruntime: session option {name}={chosen[name]!r}: one of {sorted(allowed)}")
    if not isinstance(chosen["parallel_sessions"], int) or chosen["parallel_sessions"] < 1:
        raise CompressbenchError("onnxruntime: session option parallel_sessions: a whole number of at least 1")
    return chosen


@dataclass
class OnnxRuntimeSession:
    """A fixed intra-op thread count, and the deployment's session settings (`options`, by default sequential
    execution with all graph optimisations). With `parallel_sessions` k > 1 the threads are split over k sessions that
    serve concurrent batches (`run_many`): a throughput server's other way to use its cores."""

    proto: onnx.ModelProto
    threads: int = 1
    options: dict[str, Any] | None = None
    info: dict[str, Any] = field(init=False)

    def __post_init__(self) -> None:
        import onnxruntime as ort

        chosen = session_options(self.options)
        parallel = chosen["parallel_sessions"]
        if self.threads % parallel:
            raise CompressbenchError(
                f"onnxruntime: {self.threads} threads cannot be split evenly over {parallel} parallel sessions"
            )
        options = ort.SessionOptions()
        options.intra_op_num_threads = self.threads // parallel
        # Parallel execution runs independent nodes (a residual block's branches) at once, on inter-op threads.
        options.inter_op_num_threads = self.threads // parallel if chosen["execution_mode"] == "parallel" else 1
        options.execution_mode = getattr(ort.ExecutionMode, EXECUTION_MODES[chosen["execution_mode"]])
        options.graph_optimization_level = getattr(ort.GraphOptimizationLevel,
                                                   OPTIMIZATION_LEVELS[chosen["optimization"]])  # fmt: skip
        options.log_severity_level = 3
        serialised = self.proto.SerializeToString()
        try:
            self._sessions = [ort.InferenceSession(serialised, options, providers=["CPUExecutionProvider"])
                              for _ in range(parallel)]  # fmt: skip
        except Exception as error:
            raise CompressbenchError(f"onnxruntime cannot load the model: {error}") from error
        self._session = self._sessions[0]
        self._inputs = [(i.name, INPUT_TYPES.get(i.type, np.float32)) for i in self._session.get_inputs()]
        self._pool = ThreadPoolExecutor(parallel) if parallel > 1 else None
        self.concurrency = parallel  # batches served at once by `run_many`; `run` uses the first session alone
        self.info = {
            "runtime": "onnxruntime",
            "version": ort.__version__,
            "threads": self.threads,
            "provider": "CPUExecutionProvider",
            "precision": onnx_precision(self.proto),
            "options": chosen,
        }

    def run(self, x: np.ndarray) -> np.ndarray:
        return self._session.run(None, graph_feeds(x, self._inputs))[0]

    def __del__(self) -> None:
        if getattr(self, "_pool", None) is not None:
            self._pool.shutdown(wait=False)

    def run_many(self, x: np.ndarray, calls: int) -> float:
        """Serve `calls` batches as a throughput server does (spread over the parallel sessions, whose runs release
        the GIL); the wall seconds they took."""
        feeds = graph_feeds(x, self._inputs)
        started = time.perf_counter()
        if self._pool is None:
            for _ in range(calls):
                self._session.run(None, feeds)
        else:
            count = len(self._sessions)
            share = [calls // count + (i < calls % count) for i in range(count)]
            futures = [self._pool.submit(_serve, s, feeds, n) for s, n in zip(self._sessions, share, strict=True)]
            for future in futures:
                future.result()
        return time.perf_counter() - started


def _serve(session: Any, feeds: dict[str, np.ndarray], calls: int) -> None:
    for _ in range(calls):
        session.run(None, feeds)


def _open(artifact: onnx.ModelProto, threads: int, precision: str, options: dict[str, Any] | None = None) -> Session:
    return OnnxRuntimeSession(artifact, threads, options)


register_runtime(
    Runtime(
        name="onnxruntime",
        package="onnxruntime",
        install="pip install onnxruntime",
        open=_open,
        description="ONNX Runtime, CPU execution provider (the reference runtime)",
        opens=(ONNX,),
    )
)
