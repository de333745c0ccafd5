"""`quant.qat`: quantization-aware training, then the same ONNX Runtime QDQ int8 export as `quant.static`.

Route (torch 2.13, no deprecated `torch.ao.quantization` entry points):
1. batch norms are folded into the convolutions they follow (pairs found with torch.fx, folded with
   `torch.nn.utils.fusion.fuse_conv_bn_eval`), because the exported graph folds them too: the weights that get
   quantized are the folded ones;
2. every conv / linear layer is wrapped so its weight is fake-quantized per output channel (symmetric int8) and
   its input per tensor (uint8, range from an exponential moving average of min/max observed in training), both
   with the straight-through estimator of `torch.fake_quantize_per_*_affine`;
3. the model is fine-tuned from the baseline for a modest budget;
4. the wrappers are removed, the float model is exported and quantized by ONNX Runtime's static quantizer
   (QDQ, per-channel, calibrated min/max on the calibration split). The job measures that int8 graph.
"""

from __future__ import annotations

import copy
from typing import Any, Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from compressbench.artifacts import ONNX
from compressbench.errors import CompressbenchError
from compressbench.modes import CONV_LAYERS, PRUNABLE_LAYERS
from compressbench.runtime import export_onnx
from compressbench.techniques.base import (
    Candidate,
    Context,
    Technique,
    TechniqueConfig,
    register_technique,
)
from compressbench.techniques.onnx_quant import (
    calibration_inputs,
    check_outputs,
    float_layers,
    int8_op_counts,
    quantized_layers,
    resolve_exclude,
    unquantizable_flag,
)
from compressbench.techniques.quant_static import preprocess, quantize_static_graph
from compressbench.techniques.weight_sharing import limit_train
from compressbench.training import evaluate, train


class QATConfig(TechniqueConfig):
    epochs: int = Field(1, ge=0, description="fine-tuning epochs with fake quantization")
    min_steps: int = Field(
        300, ge=0, le=1_000_000, description="fine-tune at least this many optimiser steps (more epochs on small data)"
    )
    lr: float = Field(1e-4, gt=0)
    fine_tune_samples: int | None = Field(20000, ge=1, description="train samples used; None: all")
    fold_batch_norm: bool = True
    per_channel: bool = True
    activation_type: Literal["uint8", "int8"] = "uint8"
    observer_momentum: float = Field(0.01, gt=0, le=1, description="EMA weight of a new batch's min/max")
    calibration_samples: int = Field(512, ge=1)
    exclude: list[str] = Field(default_factory=list, description="layers kept in float (node names or module paths)")


class FakeQuant(nn.Module):
    """Wraps a conv / linear layer: fake-quantized input (per tensor, EMA range) and weight (per channel)."""

    def __init__(self, layer: nn.Module, per_channel: bool, activation_type: str, momentum: float) -> None:
        super().__init__()
        self.layer = layer
        self.per_channel = per_channel
        self.quant_min, self.quant_max = (0, 255) if activation_type == "uint8" else (-128, 127)
        self.momentum = momentum
        self.register_buffer("low", torch.tensor(0.0))
        self.register_buffer("high", torch.tensor(0.0))
        self.register_buffer("observed", torch.tensor(False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            with torch.no_grad():
                low, high = x.min().clamp(max=0), x.max().clamp(min=0)
                if not bool(self.observed):
                    self.low.copy_(low)
                    self.high.copy_(high)
                    self.observed.fill_(True)
                else:
                    self.low.lerp_(low, self.momentum)
                    self.high.lerp_(high, self.momentum)
        if bool(self.observed):
            scale = float((self.high - self.low).clamp(min=1e-8)) / (self.quant_max - self.quant_min)
            zero_point = int(round(self.quant_min - float(self.low) / scale))
            zero_point = max(self.quant_min, min(self.quant_max, zero_point))
            x = torch.fake_quantize_per_tensor_affine(x, scale, zero_point, self.quant_min, self.quant_max)
        weight = fake_quantize_weight(self.layer.weight, self.per_channel)
        if isinstance(self.layer, nn.Linear):
            return F.linear(x, weight, self.layer.bias)
        return self.layer._conv_forward(x, weight, self.layer.bias)


def fake_quantize_weight(weight: torch.Tensor, per_channel: bool) -> torch.Tensor:
    """Symmetric int8 in [-127, 127], as ONNX Runtime quantizes weights (scale = max |w| / 127)."""
    if per_channel:
        reduce = tuple(range(1, weight.dim()))
        scale = (weight.detach().abs().amax(dim=reduce) / 127).clamp(min=1e-8)
        zero_point = torch.zeros(len(scale), dtype=torch.int32)
        return torch.fake_quantize_per_channel_affine(weight, scale.float(), zero_point, 0, -127, 127)
    scale = max(float(weight.detach().abs().max()) / 127, 1e-8)
    return torch.fake_quantize_per_tensor_affine(weight, scale, 0, -127, 127)


QUANTIZABLE = PRUNABLE_LAYERS  # convolutions (1-D to 3-D) and linear layers


def wrap(module: nn.Module, **options: Any) -> int:
    wrapped = 0
    for name, child in list(module.named_children()):
        if isinstance(child, QUANTIZABLE):
            setattr(module, name, FakeQuant(child, **options))
            wrapped += 1
        else:
            wrapped += wrap(child, **options)
    return wrapped


def unwrap(module: nn.Module) -> None:
    for name, child in list(module.named_children()):
        if isinstance(child, FakeQuant):
            setattr(module, name, child.layer)
        else:
            unwrap(child)


def fold_batch_norms(module: nn.Module) -> int:
    """Fold every batch norm that directly follows a convolution into it, in place (the norm becomes Identity), so
    module paths and exported node names stay the same. Pairs are found by tracing with torch.fx."""
    from torch.fx import symbolic_trace
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    if not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in module.modules()):
        return 0  # nothing to fold (a transformer): no trace needed, which torch.fx may not manage
    module.eval()
    try:
        graph = symbolic_trace(module).graph
    except Exception as error:  # fx cannot trace some user models
        raise CompressbenchError(
            f"quant.qat: field 'fold_batch_norm': torch.fx could not trace {type(module).__name__} to find its "
            f"batch norms ({type(error).__name__}: {error}); set fold_batch_norm: false"
        ) from error
    layers = dict(module.named_modules())
    pairs = []
    for node in graph.nodes:
        if node.op != "call_module" or not isinstance(layers.get(node.target), nn.modules.batchnorm._BatchNorm):
            continue
        source = node.args[0]
        conv = layers.get(source.target) if getattr(source, "op", None) == "call_module" else None
        if isinstance(conv, CONV_LAYERS) and len(source.users) == 1:
            pairs.append((source.target, node.target))
    for conv_name, norm_name in pairs:
        replace_module(module, conv_name, fuse_conv_bn_eval(layers[conv_name], layers[norm_name]))
        replace_module(module, norm_name, nn.Identity())
    return len(pairs)


def replace_module(root: nn.Module, path: str, new: nn.Module) -> None:
    parent, _, name = path.rpartition(".")
    setattr(root.get_submodule(parent) if parent else root, name, new)


@register_technique
class QuantizationAwareTraining(Technique):
    name = "quant.qat"
    trains = True
    Config = QATConfig
    family = "quantization"
    produces = ONNX
    summary = "fake-quantized fine-tuning (STE, folded batch norms), exported to int8 QDQ for ONNX Runtime"

    def apply(self, candidate: Candidate, context: Context) -> Candidate:
        config: QATConfig = self.config  # type: ignore[assignment]
        calibration = calibration_inputs(self.name, context.data, config.calibration_samples)
        shape, dtype = context.data.spec.input_shape, context.data.spec.input_dtype
        resolve_exclude(
            self.name, export_onnx(candidate.module, shape, input_dtype=dtype), config.exclude
        )  # fail before training
        module = candidate.module
        folded = fold_batch_norms(module) if config.fold_batch_norm else 0
        wrapped = wrap(module, per_channel=config.per_channel, activation_type=config.activation_type,
                       momentum=config.observer_momentum)  # fmt: skip
        if not wrapped:
            raise CompressbenchError(f"{self.name}: the model has no convolution or linear layer to quantize")
        data = limit_train(context.data, config.fine_tune_samples)
        settings = context.train_config.model_copy(
            update={"epochs": config.epochs, "lr": config.lr, "optimizer": "adam", "patience": None,
                    "schedule": "cosine", "weight_decay": 0.0, "min_steps": config.min_steps}
        )  # fmt: skip
        report = train(module, data, settings, seed=context.seed, description=f"{self.name} fine-tune")
        fake_quant_accuracy = evaluate(module, context.data.val)
        float_model = copy.deepcopy(module)
        unwrap(float_model)
        float_model.eval()
        exported = export_onnx(float_model, shape, input_dtype=dtype)
        graph, _ = preprocess(self.name, exported)
        exclude = resolve_exclude(self.name, graph, config.exclude)
        candidate.artifact = quantize_static_graph(
            self.name, graph, calibration, op_types=None, exclude=exclude, per_channel=config.per_channel,
            activation_type=config.activation_type, weight_type="int8", reduce_range=False,
            calibration_method="minmax",
        )  # fmt: skip
        candidate.module = float_model
        check = check_outputs(self.name, candidate.artifact, context.data)
        left_float = float_layers(candidate.artifact)
        if flag := unquantizable_flag(self.name, candidate.artifact, left_float):
            candidate.flags.append(flag)
        candidate.flags += check["flags"]
        candidate.records.append(
            {"step": self.name, "epochs": report.epochs_run, "fine_tune_steps": report.steps,
             "samples": len(data.train), "wrapped_layers": wrapped,
             "batch_norms_folded": folded, "val_accuracy_fake_quant": fake_quant_accuracy,
             "val_accuracy_int8": check["val_accuracy"], "int8_ops": int8_op_counts(candidate.artifact),
             "quantized_layers": quantized_layers(candidate.artifact), "float_layers": left_float}
        )  # fmt: skip
        return candidate
