"""ONNX Runtime on the CPU: the reference runtime every speed-up is measured against."""

from __future__ import annotations

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


# Graph input types fed from the loaders' float32 arrays: token ids (exact in float32) go in as the graph asks.
INPUT_TYPES = {"tensor(float)": np.float32, "tensor(int64)": np.int64, "tensor(int32)": np.int32}


@dataclass
class OnnxRuntimeSession:
    """A fixed intra-op thread count, sequential execution, all graph optimisations."""

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
        self._dtype = INPUT_TYPES.get(self._session.get_inputs()[0].type, np.float32)
        self.info = {
            "runtime": "onnxruntime",
            "version": ort.__version__,
            "threads": self.threads,
            "provider": "CPUExecutionProvider",
            "precision": onnx_precision(self.proto),
        }

    def run(self, x: np.ndarray) -> np.ndarray:
        return self._session.run(None, {self._input: x.astype(self._dtype, copy=False)})[0]


def _open(artifact: onnx.ModelProto, threads: int, precision: str) -> Session:
    return OnnxRuntimeSession(artifact, threads)


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
