"""`quant.nncf`: post-training int8 with NNCF on the OpenVINO model, served by OpenVINO."""

from __future__ import annotations

import contextlib
import importlib.util
import sys
from collections.abc import Iterable
from typing import Any, Literal

import numpy as np
from pydantic import Field

from compressbench.artifacts import OPENVINO
from compressbench.errors import CompressbenchError
from compressbench.progress import quiet_root_logger
from compressbench.runtime import onnx_to_openvino, open_session
from compressbench.techniques.base import (
    Candidate,
    Context,
    Need,
    Technique,
    TechniqueConfig,
    register_technique,
)
from compressbench.techniques.onnx_quant import float_graph


class NncfConfig(TechniqueConfig):
    subset_size: int | None = Field(
        None, ge=1, description="calibration samples; default the whole calibration split (NNCF's own is 300)"
    )
    preset: Literal["performance", "mixed"] = Field(
        "performance", description="performance: symmetric activations; mixed: asymmetric activations"
    )
    fast_bias_correction: bool = True
    max_accuracy_drop_pt: float | None = Field(
        1.0,
        ge=0,
        description="NNCF's accuracy control: the layers that cost most go back to fp32 until validation accuracy "
        "is within this many points of fp32; null: plain quantization, whatever it costs",
    )
    validation_samples: int = Field(2000, ge=1, description="validation samples for the accuracy control")
    model_type: Literal["auto", "default", "transformer"] = Field(
        "auto",
        description="transformer: NNCF's transformer scheme (SmoothQuant, softmax / layer-norm paths kept float); "
        "auto: transformer for text models (token-id inputs), default otherwise",
    )


@register_technique
class NncfQuantization(Technique):
    name = "quant.nncf"
    Config = NncfConfig
    family = "quantization"
    produces = OPENVINO
    needs = frozenset({Need.OPENVINO})
    summary = "int8 post-training quantization with NNCF, run by OpenVINO (needs compressbench[openvino])"

    def apply(self, candidate: Candidate, context: Context) -> Candidate:
        if importlib.util.find_spec("nncf") is None or importlib.util.find_spec("openvino") is None:
            raise CompressbenchError(f"{self.name}: needs OpenVINO and NNCF: pip install 'compressbench[openvino]'")
        import nncf

        config: NncfConfig = self.config  # type: ignore[assignment]
        calibration = context.data.calibration.x
        if len(calibration) == 0:
            raise CompressbenchError(f"{self.name}: field 'subset_size': the calibration split is empty")
        size = min(config.subset_size or len(calibration), len(calibration))
        model = onnx_to_openvino(float_graph(self.name, candidate, context))
        items = [_model_inputs(model, calibration[i : i + 1]) for i in range(size)]
        preset = (
            nncf.QuantizationPreset.PERFORMANCE if config.preset == "performance" else nncf.QuantizationPreset.MIXED
        )
        options = {"subset_size": size, "preset": preset, "fast_bias_correction": config.fast_bias_correction}
        if config.model_type == "transformer" or (config.model_type == "auto" and context.data.spec.tokens):
            options["model_type"] = nncf.ModelType.TRANSFORMER
        val_x = context.data.val.x[: config.validation_samples]
        val_y = context.data.val.y[: config.validation_samples]
        validation = [(_model_inputs(model, val_x[i : i + 1]), int(val_y[i])) for i in range(len(val_y))]
        try:
            # NNCF draws progress bars on stdout; keep stdout for `--json` output.
            with quiet_root_logger(also=("nncf",)), contextlib.redirect_stdout(sys.stderr):
                if config.max_accuracy_drop_pt is None or not validation:
                    quantized = nncf.quantize(model, nncf.Dataset(items), **options)
                else:
                    quantized = nncf.quantize_with_accuracy_control(
                        model,
                        nncf.Dataset(items),
                        nncf.Dataset(validation, lambda item: item[0]),
                        validate_accuracy,
                        max_drop=config.max_accuracy_drop_pt / 100,
                        **options,
                    )
        except Exception as error:
            raise CompressbenchError(f"{self.name}: NNCF failed: {str(error).splitlines()[0]}") from error
        fake_quantize = sum(op.get_type_name() == "FakeQuantize" for op in quantized.get_ops())
        candidate.artifact = quantized
        record = {"step": self.name, "calibration_samples": size, "preset": config.preset,
                  "fake_quantize_ops": fake_quantize, "max_accuracy_drop_pt": config.max_accuracy_drop_pt,
                  "model_type": "transformer" if "model_type" in options else "default"}  # fmt: skip
        if len(val_y):
            record["val_accuracy"] = {"samples": len(val_y)} | {
                name: float((open_session(graph, "openvino").run(val_x).argmax(1) == val_y).mean())
                for name, graph in (("fp32", model), ("int8", quantized))
            }
        if fake_quantize == 0:
            candidate.flags.append(f"{self.name}: no layer stays int8 within the accuracy budget; the model is fp32")
        candidate.records.append(record)
        return candidate


def validate_accuracy(compiled: Any, items: Iterable[tuple[np.ndarray, int]]) -> tuple[float, list[float]]:
    """NNCF's validation function: top-1 accuracy and each sample's 0/1 (NNCF ranks layers by the latter)."""
    correct = [float(np.asarray(compiled(x)[0]).argmax() == y) for x, y in items]
    return (sum(correct) / len(correct) if correct else 0.0), correct


def _model_inputs(model: Any, x: np.ndarray) -> np.ndarray | dict[str, np.ndarray]:
    """One sample as the OpenVINO model takes it: in its input's type (the zoo's float32 token ids as int64), or
    several inputs by name (packed along axis 1 of the data)."""
    ports = model.inputs
    if len(ports) == 1:
        return x.astype(ports[0].element_type.to_dtype(), copy=False)
    return {port.any_name: np.ascontiguousarray(x[:, i], dtype=port.element_type.to_dtype())
            for i, port in enumerate(ports)}  # fmt: skip
