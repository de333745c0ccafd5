"""Sessions: one interface (`run(x) -> logits`) over the runtimes that serve a model."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import onnx
import torch
from torch import nn

from compressbench.errors import CompressbenchError
from compressbench.registry import unknown_name_message

RUNTIMES = ("onnxruntime", "torch")


class Session(Protocol):
    info: dict[str, Any]

    def run(self, x: np.ndarray) -> np.ndarray: ...


def list_runtimes() -> list[str]:
    return list(RUNTIMES)


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
            "precision": _onnx_precision(self.proto),
        }

    def run(self, x: np.ndarray) -> np.ndarray:
        return self._session.run(None, {self._input: x})[0]


@dataclass
class TorchEagerSession:
    """PyTorch eager mode, the runtime a model is trained in; inference mode, fixed thread count."""

    module: nn.Module
    threads: int = 1
    info: dict[str, Any] = field(init=False)

    def __post_init__(self) -> None:
        self.module.eval()
        self.info = {
            "runtime": "torch",
            "version": torch.__version__,
            "threads": self.threads,
            "precision": "fp32",
        }

    def run(self, x: np.ndarray) -> np.ndarray:
        previous = torch.get_num_threads()
        torch.set_num_threads(self.threads)
        try:
            with torch.inference_mode():
                return self.module(torch.from_numpy(x)).numpy()
        finally:
            torch.set_num_threads(previous)


def open_session(artifact: onnx.ModelProto | nn.Module, runtime: str, threads: int = 1) -> Session:
    if runtime == "onnxruntime":
        if not isinstance(artifact, onnx.ModelProto):
            raise CompressbenchError("runtime onnxruntime needs an exported ONNX model")
        return OnnxRuntimeSession(artifact, threads)
    if runtime == "torch":
        if not isinstance(artifact, nn.Module):
            raise CompressbenchError(
                "runtime torch needs a torch module, but this candidate exists only as an ONNX graph "
                "(an ONNX Runtime quantized model); measure it with --runtime onnxruntime"
            )
        return TorchEagerSession(artifact, threads)
    raise CompressbenchError(unknown_name_message("runtime", runtime, RUNTIMES))


def _onnx_precision(proto: onnx.ModelProto) -> str:
    int8_ops = {
        "QuantizeLinear",
        "DynamicQuantizeLinear",
        "MatMulInteger",
        "ConvInteger",
        "QLinearConv",
        "QLinearMatMul",
    }
    return "int8" if any(node.op_type in int8_ops for node in proto.graph.node) else "fp32"
