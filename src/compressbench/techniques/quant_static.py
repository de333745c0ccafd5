"""`quant.static`: post-training static int8 with ONNX Runtime's quantizer (QDQ format, calibrated activations)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

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
    ArrayReader,
    calibration_inputs,
    dedupe,
    failing_node,
    first_and_last,
    float_graph,
    fresh,
    quantize_with,
    quantized_layers,
    resolve_exclude,
    take_int8_variant,
)

CALIBRATION_METHODS = {"minmax": "MinMax", "percentile": "Percentile", "entropy": "Entropy"}


class StaticQuantConfig(TechniqueConfig):
    op_types: Literal["auto"] | list[str] = Field(
        "auto", description="op types to quantize (ONNX Runtime's QDQ names), or 'auto': try all / MatMul+Gemm only"
    )
    exclude: Literal["auto", "first+last"] | list[str] = Field(
        "auto",
        description="layers kept in float: node names of the exported graph or torch module paths; "
        "'first+last' the first and last weighted layers; 'auto' tries none and first+last",
    )
    per_channel: bool = True
    activation_type: Literal["uint8", "int8"] = "uint8"
    weight_type: Literal["int8", "uint8"] = "int8"
    reduce_range: bool = Field(False, description="7-bit weights (for CPUs without VNNI, against saturation)")
    calibration: Literal["minmax", "percentile", "entropy"] = "minmax"
    percentile: float = Field(99.999, gt=90, le=100, description="for calibration: percentile")
    entropy_bins: int = Field(512, ge=256, le=8192, description="for calibration: entropy, histogram bins searched")
    calibration_samples: int = Field(512, ge=1, description="calibration inputs used (from the calibration split)")
    preprocess: bool = Field(True, description="shape inference and graph optimisation before quantizing")
    max_accuracy_drop_pt: float = Field(1.0, ge=0, description="auto: validation accuracy budget vs fp32")
    min_speedup: float = Field(1.05, gt=0, description="auto: an int8 variant must beat fp32 by this at every batch")
    selection_samples: int = Field(2000, ge=1, description="auto: validation samples for the accuracy check")


def quant_type(name: str):
    from onnxruntime.quantization import QuantType

    return QuantType.QUInt8 if name == "uint8" else QuantType.QInt8


def preprocess(step: str, graph: onnx.ModelProto) -> tuple[onnx.ModelProto, str]:
    """ONNX Runtime's pre-processing, as far as the graph allows; returns the graph and what was done. In order:
    symbolic shape inference and graph optimisation; graph optimisation alone (symbolic shape inference fails on
    some graphs: a Reshape whose shape is computed at run time, as in attention, or a Concat of shape tensors that
    other exporters write); the graph as given."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    def run(target: Path, skip_symbolic_shape: bool = False) -> None:
        quant_pre_process(fresh(graph), target, skip_symbolic_shape=skip_symbolic_shape)

    try:
        return quantize_with(step, run), "shape inference and graph optimisation"
    except CompressbenchError as error:
        symbolic = _cause(error)
    try:
        processed = quantize_with(step, lambda target: run(target, skip_symbolic_shape=True))
    except CompressbenchError as error:
        return graph, f"none: the graph as given (symbolic shape inference failed{symbolic}; then {_cause(error)})"
    return processed, f"graph optimisation only (symbolic shape inference failed{symbolic})"


def _cause(error: CompressbenchError) -> str:
    """Where and why a pre-processing attempt failed, for the step's record."""
    cause = error.__cause__ or error
    message = str(cause).strip().splitlines()[0] if str(cause).strip() else "(no message)"
    return f"{failing_node(cause)}: {type(cause).__name__}: {message}"


def check_op_types(step: str, op_types: list[str]) -> None:
    from onnxruntime.quantization.registry import QDQRegistry, QLinearOpsRegistry

    known = sorted(set(QDQRegistry) | set(QLinearOpsRegistry))
    if not op_types:
        raise CompressbenchError(f"{step}: field 'op_types': name at least one op type, or 'auto'")
    unknown = [op for op in op_types if op not in known]
    if unknown:
        raise CompressbenchError(
            f"{step}: field 'op_types': ONNX Runtime's static quantizer cannot handle {unknown} "
            f"(it handles: {', '.join(known)})"
        )


def quantize_static_graph(
    step: str,
    graph: onnx.ModelProto,
    calibration,
    *,
    op_types: list[str] | None,
    exclude: list[str],
    per_channel: bool,
    activation_type: str,
    weight_type: str,
    reduce_range: bool,
    calibration_method: str,
    percentile: float = 99.999,
    entropy_bins: int = 512,
    extra: dict[str, Any] | None = None,
    quant_format: str = "QDQ",
) -> onnx.ModelProto:
    """One static quantization of `graph` (already pre-processed) with `calibration` inputs, in `quant_format`: QDQ
    (quantize / dequantize pairs around float ops, which runtimes fuse) or QOperator (QLinearConv, QLinearMatMul)."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, quantize_static

    options: dict[str, Any] = dict(extra or {})
    if calibration_method == "percentile":
        options["CalibPercentile"] = percentile
        # ORT's percentile calibrator makes ranges symmetric unless told: uint8 activations would lose half their
        # levels on ReLU outputs.
        options["CalibTensorRangeSymmetric"] = activation_type == "int8"
    method = getattr(CalibrationMethod, CALIBRATION_METHODS[calibration_method])

    def run(target: Path) -> None:
        cache = None
        if calibration_method == "entropy":
            cache = target.with_name("entropy-ranges.json")
            entropy_ranges(graph, calibration, op_types, cache, entropy_bins, symmetric=activation_type == "int8")
        quantize_static(
            fresh(graph), target, None if cache else ArrayReader(calibration, graph),
            quant_format=getattr(QuantFormat, quant_format), op_types_to_quantize=op_types, per_channel=per_channel,
            reduce_range=reduce_range, activation_type=quant_type(activation_type),
            weight_type=quant_type(weight_type), nodes_to_exclude=exclude or None, calibrate_method=method,
            extra_options=options, calibration_cache_path=cache,
        )  # fmt: skip

    return quantize_with(step, run)


def quantized_in_a_format(
    step: str, graph: onnx.ModelProto, calibration, **options: Any
) -> tuple[onnx.ModelProto, str]:
    """QDQ, or QOperator where ONNX Runtime's quantizer cannot write QDQ for the graph; the graph and what it took
    (with why QDQ failed)."""
    try:
        return quantize_static_graph(step, graph, calibration, **options), "QDQ"
    except CompressbenchError as error:
        qdq_failed = str(error).removeprefix(f"{step}: ")
        return quantize_static_graph(step, graph, calibration, quant_format="QOperator", **options), (
            f"QOperator (QDQ failed: {qdq_failed})"
        )


def entropy_ranges(
    graph: onnx.ModelProto, calibration, op_types: list[str] | None, cache: Path, bins: int, *, symmetric: bool
) -> None:
    """KL-divergence (entropy) ranges: `bins` histogram bins searched down to 128 quantized bins (TensorRT uses
    2048; 512 keeps the search about 5x faster), written as ONNX Runtime's calibration cache. Through
    `quantize_static`, ORT's entropy calibrator uses 128 bins for both, which leaves one candidate threshold: the
    full min/max range, i.e. the same ranges as minmax."""
    from onnxruntime.quantization.calibrate import CalibrationMethod, create_calibrator, save_tensors_data
    from onnxruntime.quantization.registry import QDQRegistry, QLinearOpsRegistry

    folder = cache.parent
    model_path = folder / "calibrate.onnx"
    onnx.save(graph, model_path)
    calibrator = create_calibrator(
        model_path, op_types or sorted(set(QDQRegistry) | set(QLinearOpsRegistry)),
        augmented_model_path=str(folder / "augmented.onnx"), calibrate_method=CalibrationMethod.Entropy,
        extra_options={"num_bins": bins, "num_quantized_bins": 128, "symmetric": symmetric},
    )  # fmt: skip
    calibrator.collect_data(ArrayReader(calibration, graph))
    save_tensors_data(calibrator.compute_data(), cache)


@register_technique
class StaticQuantization(Technique):
    name = "quant.static"
    Config = StaticQuantConfig
    family = "quantization"
    produces = ONNX
    summary = "int8 weights and calibrated int8 activations, QDQ format (ONNX Runtime static quantization)"

    def apply(self, candidate: Candidate, context: Context) -> Candidate:
        config: StaticQuantConfig = self.config  # type: ignore[assignment]
        calibration = calibration_inputs(self.name, context.data, config.calibration_samples)
        exported = float_graph(self.name, candidate, context)
        if config.op_types != "auto":
            check_op_types(self.name, list(config.op_types))
        user_exclude = resolve_exclude(self.name, exported, config.exclude) if config.exclude != "auto" else []
        graph, preprocessing = preprocess(self.name, exported) if config.preprocess else (exported, "none")
        missing = [n for n in user_exclude if n not in {node.name for node in graph.graph.node}]
        if missing:
            raise CompressbenchError(
                f"{self.name}: field 'exclude': {missing} disappeared in pre-processing; set preprocess: false"
            )
        op_choices = (
            {"all ops": None, "MatMul/Gemm only": ["MatMul", "Gemm"]}
            if config.op_types == "auto"
            else {"+".join(config.op_types): list(config.op_types)}
        )
        exclude_choices = (
            {"": [], ", first and last layers in float": first_and_last(exported)}
            if config.exclude == "auto"
            else {(f", {len(user_exclude)} excluded" if user_exclude else ""): user_exclude}
        )
        variants, formats = {}, {}
        for op_name, op_types in op_choices.items():
            for exclude_name, exclude in exclude_choices.items():
                name = op_name + exclude_name
                variants[name], formats[name] = quantized_in_a_format(
                    self.name, graph, calibration, op_types=op_types, exclude=exclude,
                    per_channel=config.per_channel, activation_type=config.activation_type,
                    weight_type=config.weight_type, reduce_range=config.reduce_range,
                    calibration_method=config.calibration, percentile=config.percentile,
                    entropy_bins=config.entropy_bins,
                )  # fmt: skip
        variants = {name: g for name, g in dedupe(variants).items() if quantized_layers(g) > 0}
        record: dict[str, Any] = {
            "step": self.name, "calibration": config.calibration, "calibration_samples": len(calibration),
            "per_channel": config.per_channel, "activation_type": config.activation_type,
            "weight_type": config.weight_type, "reduce_range": config.reduce_range, "preprocessing": preprocessing,
            # Per variant: QDQ, or QOperator with why QDQ failed.
            "formats": {name: formats[name] for name in variants},
        }  # fmt: skip
        take_int8_variant(self.name, candidate, exported, variants, config, context, record)
        return candidate
