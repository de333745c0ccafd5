"""`quant.nncf`: post-training int8 with NNCF on the OpenVINO model, served by OpenVINO."""

from __future__ import annotations

import contextlib
import importlib.util
import sys
from typing import Literal

from pydantic import Field

from compressbench.errors import CompressbenchError
from compressbench.progress import quiet_root_logger
from compressbench.runtime import export_onnx
from compressbench.runtime.sessions import onnx_to_openvino
from compressbench.techniques.base import Candidate, Context, Form, Technique, TechniqueConfig, register_technique


class NncfConfig(TechniqueConfig):
    subset_size: int | None = Field(
        None, ge=1, description="calibration samples; default the whole calibration split (NNCF's own is 300)"
    )
    preset: Literal["performance", "mixed"] = Field(
        "performance", description="performance: symmetric activations; mixed: asymmetric activations"
    )
    fast_bias_correction: bool = True


@register_technique
class NncfQuantization(Technique):
    name = "quant.nncf"
    Config = NncfConfig
    consumes = Form.MODULE
    produces = Form.GRAPH
    serving_runtimes = ("openvino",)
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
        model = onnx_to_openvino(export_onnx(candidate.module, context.data.spec.input_shape))
        items = [calibration[i : i + 1] for i in range(size)]
        preset = (
            nncf.QuantizationPreset.PERFORMANCE if config.preset == "performance" else nncf.QuantizationPreset.MIXED
        )
        try:
            # NNCF draws progress bars on stdout; keep stdout for `--json` output.
            with quiet_root_logger(), contextlib.redirect_stdout(sys.stderr):
                quantized = nncf.quantize(
                    model,
                    nncf.Dataset(items),
                    subset_size=size,
                    preset=preset,
                    fast_bias_correction=config.fast_bias_correction,
                )
        except Exception as error:
            raise CompressbenchError(f"{self.name}: NNCF failed: {str(error).splitlines()[0]}") from error
        fake_quantize = sum(op.get_type_name() == "FakeQuantize" for op in quantized.get_ops())
        candidate.openvino = quantized
        candidate.records.append(
            {
                "step": self.name,
                "calibration_samples": size,
                "preset": config.preset,
                "fake_quantize_ops": fake_quantize,
            }
        )
        return candidate
