"""Model zoo registry: every family builds from a DataSpec with a width (and where it fits, depth) multiplier."""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import onnx
import torch
from pydantic import BaseModel, ConfigDict, Field, model_serializer
from torch import nn

from compressbench.data import DataSpec
from compressbench.errors import CompressbenchError
from compressbench.imports import accepted_keywords, call_user, describe_exception, is_user_reference, load_reference
from compressbench.modes import evaluating
from compressbench.registry import Registry

__all__ = [
    "ModelConfig",
    "ModelFamily",
    "build_model",
    "is_onnx_model",
    "is_zoo_model",
    "load_onnx_model",
    "register_instance",
    "list_models",
    "models",
    "scaled",
    "training_defaults",
]


@dataclass(frozen=True)
class ModelFamily:
    build: Callable[[DataSpec, float, int | None], nn.Module]
    input_rank: int | None  # 2 for (C, L) signals, 3 for (C, H, W) images, None for any
    description: str
    # How this family is trained to a baseline a practitioner accepts: TrainConfig fields over its defaults.
    training: dict[str, Any] = field(default_factory=dict)
    tokens: bool = False  # takes token ids (DataSpec.vocab_size set) rather than values


models: Registry[ModelFamily] = Registry("model")
# Modules handed to the API with their weights loaded (`compress_model(module, ...)`), by a name made from the
# weights' hash; in this process only, never listed with the zoo. Each build is a copy.
_instances: dict[str, nn.Module] = {}


def register_instance(module: nn.Module, weights_sha256: str) -> str:
    name = f"instance-{type(module).__name__}-{weights_sha256[:12]}"
    _instances.setdefault(name, copy.deepcopy(module).eval())
    return name


class ModelConfig(BaseModel):
    """A zoo family by name (or a user factory `module:function`) with its size multipliers."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    width: float = Field(1.0, gt=0, le=8, description="channel / unit multiplier")
    depth: int | None = Field(None, ge=1, description="blocks per stage (resnet) or hidden layers (mlp)")
    weights: str | None = Field(
        None, description="trained weights (safetensors or a state dict) loaded into the model: it is never trained"
    )

    @model_serializer(mode="wrap")
    def _identity(self, dump: Any) -> dict[str, Any]:
        """`weights` appears only when set, so models without them keep the keys they had before it existed."""
        fields = dump(self)
        if fields.get("weights") is None:
            fields.pop("weights", None)
        return fields


# A user factory's model, until the user says otherwise: Adam, cosine, early stopping (the MLP's settings).
# At least 1,000 optimiser steps, so that a small tabular set (a few hundred samples, three batches an epoch) is not
# stopped after a few dozen steps.
GENERIC_TRAINING = {"epochs": 20, "lr": 1e-3, "schedule": "cosine", "patience": 4, "min_steps": 1000}


def training_defaults(name: str) -> dict[str, Any]:
    """The family's training settings (TrainConfig fields), or the generic ones for a user factory or graph."""
    generic = is_user_reference(name) or is_onnx_model(name) or name in _instances
    return dict(GENERIC_TRAINING if generic else models.get(name).training)


def is_onnx_model(name: str) -> bool:
    """A user's ONNX model given by its path: graph techniques only, never trained."""
    return name.lower().endswith(".onnx")


def load_onnx_model(path: str, spec: DataSpec) -> onnx.ModelProto:
    """The user's ONNX graph, checked to take the data's inputs and give (N, num_classes) logits on ONNX Runtime."""
    import numpy as np
    import onnxruntime as ort

    if not Path(path).is_file():
        raise CompressbenchError(f"model {path}: no such file")
    try:
        graph = onnx.load(path)
        onnx.checker.check_model(graph)
        session = ort.InferenceSession(graph.SerializeToString(), providers=["CPUExecutionProvider"])
    except Exception as error:
        raise CompressbenchError(f"model {path}: not a valid ONNX model ({str(error).splitlines()[0]})") from None
    inputs = session.get_inputs()
    if len(inputs) != 1:
        raise CompressbenchError(f"model {path}: takes {len(inputs)} inputs; compressbench measures one-input models")
    try:
        logits = session.run(None, {inputs[0].name: np.zeros((2, *spec.input_shape), np.float32)})[0]
    except Exception as error:
        raise CompressbenchError(
            f"model {path}: does not run on 2 inputs of shape {spec.input_shape} float32 from the loader "
            f"(its input {inputs[0].name!r} is {inputs[0].shape}, {inputs[0].type}; a fixed batch axis must be "
            f"dynamic): {str(error).splitlines()[0]}"
        ) from None
    if tuple(np.shape(logits)) != (2, spec.num_classes):
        raise CompressbenchError(
            f"model {path}: output shape {tuple(np.shape(logits))} for 2 inputs; expected (2, {spec.num_classes})"
        )
    return graph


def list_models() -> list[str]:
    return models.names()


def scaled(channels: int, width: float) -> int:
    return max(1, round(channels * width))


def build_model(config: ModelConfig | str, spec: DataSpec, seed: int | None = None) -> nn.Module:
    """Build an untrained model for `spec` (initialised from `seed` when given, without touching the global RNG),
    and check that it maps one input batch to (N, num_classes) logits."""
    if isinstance(config, str):
        config = ModelConfig(name=config)
    if seed is None:
        return _build(config, spec)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return _build(config, spec)


def _build(config: ModelConfig, spec: DataSpec) -> nn.Module:
    if config.name in _instances:
        if config.width != 1.0 or config.depth is not None:
            raise CompressbenchError(
                f"model {config.name}: a module instance cannot be rebuilt at another width or depth (a student); "
                "pass a factory 'file.py:build' that takes width= to distil"
            )
        model = copy.deepcopy(_instances[config.name])
    elif is_user_reference(config.name):
        model = _build_user(config, spec)
        if not isinstance(model, nn.Module):
            raise CompressbenchError(
                f"model {config.name!r}: must return a torch.nn.Module, got {type(model).__name__}"
            )
    else:
        family = models.get(config.name)
        if family.tokens != spec.tokens:
            takes, gives = ("token ids", "values") if family.tokens else ("values", "token ids (text)")
            raise CompressbenchError(f"model {config.name!r} takes {takes}, but dataset {spec.name!r} gives {gives}")
        if family.input_rank is not None and len(spec.input_shape) != family.input_rank:
            kind = {2: "1-D signals (C, L)", 3: "images (C, H, W)"}[family.input_rank]
            raise CompressbenchError(
                f"model {config.name!r} takes {kind}, but dataset {spec.name!r} "
                f"gives inputs of shape {spec.input_shape}"
            )
        model = family.build(spec, config.width, config.depth)
    check_output_shape(model, spec, config.name)
    return model


def _build_user(config: ModelConfig, spec: DataSpec) -> nn.Module:
    """Call a user factory as `factory(spec)`, adding `width=` / `depth=` when they differ from the defaults (a
    student or a scaled model); a factory that cannot take one is refused rather than silently ignoring it."""
    factory = load_reference(config.name, what="model")
    asked = {"width": config.width} if config.width != 1.0 else {}
    if config.depth is not None:
        asked["depth"] = config.depth
    accepted = accepted_keywords(factory)
    for option, value in asked.items():
        if option not in accepted and "*" not in accepted:
            raise CompressbenchError(
                f"model {config.name!r}: {option} {value} asked, but {factory.__name__}() takes no {option!r} "
                f"argument; define it as {factory.__name__}(spec, {option}=...) and scale the layers by it"
            )
    return call_user(config.name, "model", factory, spec, **asked)


def is_zoo_model(model: nn.Module) -> bool:
    """Built by a zoo family (not a user factory): the models channels-last training was checked on."""
    return type(model).__module__.startswith(f"{__name__}.")


def is_compatible(name: str, spec: DataSpec) -> bool:
    if is_user_reference(name) or is_onnx_model(name) or name in _instances:
        return True
    family = models.get(name)
    if family.tokens != spec.tokens:
        return False
    return family.input_rank is None or family.input_rank == len(spec.input_shape)


def check_output_shape(model: nn.Module, spec: DataSpec, name: str) -> None:
    try:
        with evaluating(model), torch.no_grad():
            out = model(torch.zeros(2, *spec.input_shape))
    except Exception as error:
        what = describe_exception(error, type(model).forward)
        message = f"model {name!r}: forward pass on input (2, {spec.input_shape}) failed: {what}"
        raise CompressbenchError(message) from error
    if tuple(out.shape) != (2, spec.num_classes):
        raise CompressbenchError(
            f"model {name!r}: output shape {tuple(out.shape)} for 2 inputs; expected (2, {spec.num_classes}) logits"
        )


from compressbench.models import conv1d, lenet, mlp, resnet, transformer  # noqa: E402,F401
