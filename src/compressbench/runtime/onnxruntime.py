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
        self._inputs = [(i.name, INPUT_TYPES.get(i.type, np.float32)) for i in self._session.get_inputs()]
        self.info = {
            "runtime": "onnxruntime",
            "version": ort.__version__,
            "threads": self.threads,
            "provider": "CPUExecutionProvider",
            "precision": onnx_precision(self.proto),
        }

    def run(self, x: np.ndarray) -> np.ndarray:
        return self._session.run(None, graph_feeds(x, self._inputs))[0]


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
