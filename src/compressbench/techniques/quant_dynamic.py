"""`quant.dynamic`: ONNX Runtime dynamic int8 — weights quantized offline, activations at run time."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any, Literal, get_args

import onnx
from pydantic import Field

from compressbench.artifacts import ONNX
from compressbench.errors import CompressbenchError
from compressbench.techniques.base import (
    Candidate,
    Context,
    Technique,
    TechniqueConfig,
    register_technique,
)
from compressbench.techniques.onnx_quant import (
    dedupe,
    first_and_last,
    float_graph,
    fresh,
    quantize_with,
    quantized_layers,
    resolve_exclude,
    take_int8_variant,
)

DynamicOp = Literal["MatMul", "Gemm", "Conv", "Attention", "LSTM", "GRU"]
DYNAMIC_OPS = get_args(DynamicOp)


class DynamicQuantConfig(TechniqueConfig):
    # MatMul/Gemm by default: dynamic ConvInteger ran 3-5x slower than fp32 convolutions on both CPUs measured.
    op_types: Literal["auto"] | list[DynamicOp] = Field(
        default_factory=lambda: ["MatMul", "Gemm"],
        description="op types to quantize, or 'auto': try MatMul+Gemm and MatMul+Gemm+Conv, keep the fastest",
    )
    exclude: Literal["auto", "first+last"] | list[str] = Field(
        default_factory=list,
        description="layers kept in float (node names or torch module paths, or 'first+last'); 'auto' also tries "
        "first+last in float",
    )
    per_channel: bool = False
    weight_type: Literal["int8", "uint8"] = "int8"
    max_accuracy_drop_pt: float = Field(1.0, ge=0, description="auto: validation accuracy budget vs fp32")
    min_speedup: float = Field(1.05, gt=0, description="auto: an int8 variant must beat fp32 by this at every batch")
    selection_samples: int = Field(2000, ge=1, description="auto: validation samples for the accuracy check")


def quantize_dynamic_graph(
    step: str, graph: onnx.ModelProto, op_types: list[str], exclude: list[str], per_channel: bool, weight_type: str
) -> onnx.ModelProto:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    def run(target: Path) -> None:
        quantize_dynamic(
            fresh(graph), target, op_types_to_quantize=op_types, per_channel=per_channel,
            nodes_to_exclude=exclude or None,
            weight_type=QuantType.QInt8 if weight_type == "int8" else QuantType.QUInt8,
        )  # fmt: skip

    return quantize_with(step, run)


@register_technique
class DynamicQuantization(Technique):
    name = "quant.dynamic"
    Config = DynamicQuantConfig
    family = "quantization"
    produces = ONNX
    summary = "int8 weights, activations quantized at run time (ONNX Runtime dynamic quantization)"
    seeded = False  # no calibration: the weights decide the scales

    def apply(self, candidate: Candidate, context: Context) -> Candidate:
        config: DynamicQuantConfig = self.config  # type: ignore[assignment]
        graph = float_graph(self.name, candidate, context)
        user_exclude = resolve_exclude(self.name, graph, config.exclude) if config.exclude != "auto" else []
        op_choices = (
            {"MatMul/Gemm": ["MatMul", "Gemm"], "MatMul/Gemm/Conv": ["MatMul", "Gemm", "Conv"]}
            if config.op_types == "auto"
            else {"+".join(config.op_types): list(config.op_types)}
        )
        exclude_choices = (
            {"": [], ", first and last layers in float": first_and_last(graph)}
            if config.exclude == "auto"
            else {"": user_exclude}
        )
        variants = {
            op_name + exclude_name: quantize_dynamic_graph(
                self.name, graph, op_types, exclude, config.per_channel, config.weight_type
            )
            for op_name, op_types in op_choices.items()
            for exclude_name, exclude in exclude_choices.items()
        }
        variants = {name: g for name, g in dedupe(variants).items() if quantized_layers(g) > 0}
        looked_for = sorted({op for op_types in op_choices.values() for op in op_types})
        found = dict(Counter(node.op_type for node in graph.graph.node if node.op_type in DYNAMIC_OPS))
        if not variants and config.op_types != "auto":
            there = ", ".join(f"{op} x{count}" for op, count in sorted(found.items())) or "none of " + ", ".join(
                DYNAMIC_OPS
            )
            hint = (
                ". Conv is left out by default (dynamic ConvInteger ran 3-5x slower than fp32 convolutions); "
                "op_types: auto tries it, quant.static quantizes convolutions with calibration"
                if "Conv" in found and "Conv" not in looked_for
                else ""
            )
            raise CompressbenchError(
                f"{self.name}: looked for {', '.join(looked_for)} and quantized none: the graph has {there} (a node "
                f"is quantized only where it multiplies by a constant weight){hint}"
            )
        record: dict[str, Any] = {
            "step": self.name,
            "op_types": config.op_types if config.op_types == "auto" else list(config.op_types),
            "looked_for": looked_for,
            "found": found,
            "per_channel": config.per_channel,
            "weight_type": config.weight_type,
        }
        take_int8_variant(self.name, candidate, graph, variants, config, context, record)
        return candidate
