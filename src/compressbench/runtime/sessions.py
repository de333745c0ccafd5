"""Runtimes: a registry of what can serve a model, each opening sessions with one interface (`run(x) -> logits`).

Every session reports the runtime, its version, its thread count and the precision it *actually executes*
(read back from the runtime where it can tell, so a silent fallback is never reported as a speed-up).
"""

from __future__ import annotations

import importlib.util
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import onnx
import torch
from torch import nn

from compressbench.errors import CompressbenchError
from compressbench.registry import Registry

PRECISIONS = ("fp32", "bf16", "fp16")


class Session(Protocol):
    info: dict[str, Any]

    def run(self, x: np.ndarray) -> np.ndarray: ...


@dataclass(frozen=True)
class Runtime:
    name: str
    package: str  # importable module that must be installed
    install: str  # how to install it, for the one-line error
    open: Callable[..., Session]  # open(artifact, threads, precision) -> Session
    description: str

    def missing(self) -> str | None:
        """None when installed, else the one line that says how to install it."""
        if importlib.util.find_spec(self.package) is None:
            return f"runtime {self.name} is not installed: {self.install}"
        return None


runtimes: Registry[Runtime] = Registry("runtime")


def list_runtimes() -> list[str]:
    return runtimes.names()


def installed_runtimes() -> list[str]:
    return [name for name in runtimes.names() if runtimes.get(name).missing() is None]


def open_session(artifact: Any, runtime: str, threads: int = 1, precision: str = "fp32") -> Session:
    spec = runtimes.get(runtime)
    if problem := spec.missing():
        raise CompressbenchError(problem)
    if precision not in PRECISIONS:
        raise CompressbenchError(f"unknown precision {precision!r} (known: {', '.join(PRECISIONS)})")
    return spec.open(artifact, threads, precision)


def onnx_precision(proto: onnx.ModelProto) -> str:
    int8_ops = {
        "QuantizeLinear",
        "DynamicQuantizeLinear",
        "MatMulInteger",
        "ConvInteger",
        "QLinearConv",
        "QLinearMatMul",
    }
    return "int8" if any(node.op_type in int8_ops for node in proto.graph.node) else "fp32"


@dataclass
class OnnxRuntimeSession:
    """ONNX Runtime on the CPU with a fixed intra-op thread count, sequential execution, all graph optimisations."""

    proto: onnx.ModelProto
    threads: int = 1
    info: dict[str, Any] = field(init=False)

    def __post_init__(self) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = self.threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3
        try:
            self._session = ort.InferenceSession(
                self.proto.SerializeToString(), options, providers=["CPUExecutionProvider"]
            )
        except Exception as error:
            raise CompressbenchError(f"onnxruntime cannot load the model: {error}") from error
        self._input = self._session.get_inputs()[0].name
        self.info = {
            "runtime": "onnxruntime",
            "version": ort.__version__,
            "threads": self.threads,
            "provider": "CPUExecutionProvider",
            "precision": onnx_precision(self.proto),
        }

    def run(self, x: np.ndarray) -> np.ndarray:
        return self._session.run(None, {self._input: x})[0]


def _open_onnxruntime(artifact: Any, threads: int, precision: str) -> Session:
    if not isinstance(artifact, onnx.ModelProto):
        raise CompressbenchError("runtime onnxruntime needs an ONNX model; this candidate is an OpenVINO model")
    if precision != "fp32":
        raise CompressbenchError(f"runtime onnxruntime has no {precision} CPU kernels; use --runtime openvino or torch")
    return OnnxRuntimeSession(artifact, threads)


@dataclass
class TorchEagerSession:
    """PyTorch eager mode, the runtime a model is trained in; inference mode, fixed thread count, optional autocast."""

    module: nn.Module
    threads: int = 1
    precision: str = "fp32"
    info: dict[str, Any] = field(init=False)

    def __post_init__(self) -> None:
        self.module.eval()
        self._dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(self.precision)
        self.info = {
            "runtime": "torch",
            "version": torch.__version__,
            "threads": self.threads,
            "precision": self.precision,
        }

    def run(self, x: np.ndarray) -> np.ndarray:
        previous = torch.get_num_threads()
        torch.set_num_threads(self.threads)
        try:
            with torch.inference_mode(), torch.autocast("cpu", self._dtype, enabled=self._dtype is not None):
                return self.module(torch.from_numpy(x)).float().numpy()
        finally:
            torch.set_num_threads(previous)


def _open_torch(artifact: Any, threads: int, precision: str) -> Session:
    if not isinstance(artifact, nn.Module):
        raise CompressbenchError(
            "runtime torch needs a torch module, but this candidate exists only as an exported graph "
            "(an ONNX Runtime or OpenVINO int8 model); measure it with --runtime onnxruntime or openvino"
        )
    return TorchEagerSession(artifact, threads, precision)


@dataclass
class OpenVinoSession:
    """OpenVINO on the CPU: fp32 forced unless a lower precision is asked for (its default on bf16-capable CPUs is
    bf16), the low-overhead call path (one reused infer request, shared-memory input tensors), and one compiled
    model per batch size with a static shape, which ran faster than a dynamic batch axis here."""

    model: Any  # openvino.Model
    threads: int = 1
    precision: str = "fp32"
    info: dict[str, Any] = field(init=False)

    def __post_init__(self) -> None:
        import openvino as ov

        self._ov = ov
        self._core = ov.Core()
        self._compiled: dict[int, tuple[Any, Any]] = {}
        self.info = {
            "runtime": "openvino",
            "version": ov.__version__,
            "threads": self.threads,
            "requested_precision": self.precision,
        }
        self.info["precision"] = self._executed_precision(self._compile(1)[0])

    def _compile(self, batch: int) -> tuple[Any, Any]:
        if batch not in self._compiled:
            model = self.model.clone()
            shape = list(model.inputs[0].partial_shape)
            shape[0] = batch
            model.reshape(self._ov.PartialShape(shape))
            hint = {"fp32": "f32", "bf16": "bf16", "fp16": "f16"}[self.precision]
            config = {
                "INFERENCE_NUM_THREADS": self.threads,
                "INFERENCE_PRECISION_HINT": hint,
                "PERFORMANCE_HINT": "LATENCY",
                "NUM_STREAMS": 1,
            }
            try:
                compiled = self._core.compile_model(model, "CPU", config)
            except Exception as error:
                raise CompressbenchError(f"openvino cannot compile the model: {str(error).splitlines()[0]}") from error
            self._compiled[batch] = (compiled, compiled.create_infer_request())
        return self._compiled[batch]

    def _executed_precision(self, compiled: Any) -> str:
        """What the compute layers run in, from the runtime model's rt_info: int8, bf16, fp16 or fp32."""
        compute = {"Convolution", "FullyConnected", "MatMul", "GroupConvolution"}
        seen = set()
        for op in compiled.get_runtime_model().get_ops():
            info = op.get_rt_info()
            if info["layerType"].astype(str) in compute:
                seen.add(info["runtimePrecision"].astype(str))
        if seen & {"u8", "i8"}:
            return "int8"
        for name, tag in (("bf16", "bf16"), ("fp16", "f16")):
            if tag in seen:
                return name
        return "fp32"

    def run(self, x: np.ndarray) -> np.ndarray:
        _, request = self._compile(len(x))
        request.set_input_tensor(self._ov.Tensor(np.ascontiguousarray(x), shared_memory=True))
        request.infer()
        return request.get_output_tensor().data.copy()


def onnx_to_openvino(proto: onnx.ModelProto) -> Any:
    import openvino as ov

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "model.onnx"
        onnx.save(proto, path)
        try:
            return ov.Core().read_model(path)
        except Exception as error:
            raise CompressbenchError(f"openvino cannot read the ONNX model: {str(error).splitlines()[0]}") from error


def openvino_bytes(model: Any) -> int:
    """Bytes of the saved IR (xml + bin), weights kept in fp32 (no silent fp16 compression)."""
    import openvino as ov

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "model.xml"
        ov.save_model(model, path, compress_to_fp16=False)
        return path.stat().st_size + path.with_suffix(".bin").stat().st_size


def is_openvino_model(artifact: Any) -> bool:
    return type(artifact).__module__.startswith("openvino")


def _open_openvino(artifact: Any, threads: int, precision: str) -> Session:
    if isinstance(artifact, nn.Module):
        raise CompressbenchError("runtime openvino needs an exported model, not a torch module")
    model = onnx_to_openvino(artifact) if isinstance(artifact, onnx.ModelProto) else artifact
    session = OpenVinoSession(model, threads, precision)
    if precision != "fp32" and session.info["precision"] not in (precision, "int8"):
        raise CompressbenchError(
            f"openvino was asked for {precision} but executes {session.info['precision']} on this CPU "
            "(no hardware support); refusing to report it as a {precision} result"
        )
    return session


runtimes.register("onnxruntime")(
    Runtime(
        "onnxruntime",
        "onnxruntime",
        "pip install onnxruntime",
        _open_onnxruntime,
        "ONNX Runtime, CPU execution provider (the reference runtime)",
    )
)
runtimes.register("openvino")(
    Runtime(
        "openvino",
        "openvino",
        "pip install 'compressbench[openvino]' (OpenVINO and NNCF, about 380 MB)",
        _open_openvino,
        "Intel OpenVINO, CPU plugin (fp32 forced; int8 from QDQ or NNCF models)",
    )
)
runtimes.register("torch")(
    Runtime("torch", "torch", "pip install torch==2.13.0", _open_torch, "PyTorch eager, inference mode")
)
