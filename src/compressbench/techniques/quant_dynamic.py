"""`quant.dynamic`: ONNX Runtime dynamic int8 — weights quantized offline, activations at run time."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Literal

import onnx
from pydantic import Field

from compressbench.errors import CompressbenchError
from compressbench.progress import quiet_root_logger
from compressbench.runtime import export_onnx
from compressbench.techniques.base import (
    Candidate,
    Context,
    Form,
    Technique,
    TechniqueConfig,
    register_technique,
)


class DynamicQuantConfig(TechniqueConfig):
    # MatMul/Gemm only by default: dynamic ConvInteger ran 3-5x slower than fp32 convolutions on this CPU.
    op_types: list[Literal["MatMul", "Gemm", "Conv", "Attention", "LSTM", "GRU"]] = Field(
        default_factory=lambda: ["MatMul", "Gemm"], min_length=1
    )
    per_channel: bool = False
    weight_type: Literal["int8", "uint8"] = "int8"


@register_technique
class DynamicQuantization(Technique):
    name = "quant.dynamic"
    Config = DynamicQuantConfig
    consumes = Form.MODULE
    produces = Form.GRAPH
    serving_runtimes = ("onnxruntime", "openvino")
    summary = "int8 weights, activations quantized at run time (ONNX Runtime dynamic quantization)"

    def apply(self, candidate: Candidate, context: Context) -> Candidate:
        from onnxruntime.quantization import QuantType, quantize_dynamic

        config: DynamicQuantConfig = self.config  # type: ignore[assignment]
        graph = export_onnx(candidate.module, context.data.spec.input_shape)
        with tempfile.TemporaryDirectory() as folder:
            target = Path(folder) / "int8.onnx"
            try:
                with quiet_root_logger():
                    quantize_dynamic(
                        graph,
                        target,
                        op_types_to_quantize=list(config.op_types),
                        per_channel=config.per_channel,
                        weight_type=QuantType.QInt8 if config.weight_type == "int8" else QuantType.QUInt8,
                    )
            except Exception as error:
                raise CompressbenchError(f"{self.name}: ONNX Runtime's quantizer failed: {error}") from error
            quantized = onnx.load(target)
        int8_nodes = [n.op_type for n in quantized.graph.node if n.op_type in ("MatMulInteger", "ConvInteger")]
        if not int8_nodes:
            raise CompressbenchError(f"{self.name}: op_types {config.op_types} matched no node of this model")
        candidate.graph = quantized
        candidate.records.append(
            {
                "step": self.name,
                "quantized_nodes": len(int8_nodes),
                "op_types": list(config.op_types),
                "per_channel": config.per_channel,
            }
        )
        return candidate
