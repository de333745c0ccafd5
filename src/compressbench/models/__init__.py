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
    "holds_trained_weights",
    "ModelConfig",
    "ModelFamily",
    "ModelSource",
    "NamedInputs",
    "model_source_of",
    "model_sources",
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


@dataclass(frozen=True)
class ModelSource:
    """A kind of model reference besides the zoo's names, factories and ONNX files (a Hugging Face folder, a timm
    architecture): `matches(name)` recognises one, `build(config, spec)` makes the module (with the weights the
    source itself holds, if any) and `fingerprint(name)` is the content hash that makes a run's key change with it."""

    description: str
    matches: Callable[[str], bool]
    build: Callable[[ModelConfig, DataSpec], nn.Module]
    fingerprint: Callable[[str], str]
    rebuilds: frozenset[str] = frozenset()  # "width" / "depth": what `build` can scale (a student's shape)
    holds_weights: bool = False  # the trained weights come with the reference (a folder), not from --weights
    # How its models fine-tune (TrainConfig fields), when the generic settings do not fit: a pretrained encoder
    # wants a small learning rate and few epochs, not the generic Adam 1e-3 with 1,000 steps at least.
    training: dict[str, Any] | None = None


model_sources: Registry[ModelSource] = Registry("model source")


def holds_trained_weights(name: str) -> bool:
    """A reference that is a trained model by itself (an ONNX file, a Hugging Face folder): never trained here."""
    source = model_source_of(name)
    return is_onnx_model(name) or (source is not None and source.holds_weights)


def model_source_of(name: str) -> ModelSource | None:
    """The registered source that builds `name` (the intake package registers them), or None."""
    return next((model_sources.get(kind) for kind in model_sources if model_sources.get(kind).matches(name)), None)


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
    source = model_source_of(name)
    if source is not None and source.training is not None:
        return dict(source.training)
    generic = is_user_reference(name) or is_onnx_model(name) or name in _instances or source is not None
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
        fixed = fixed_batch(graph)
        if fixed:
            graph = with_dynamic_batch(graph)
        session = ort.InferenceSession(graph.SerializeToString(), providers=["CPUExecutionProvider"])
    except Exception as error:
        raise CompressbenchError(f"model {path}: not a valid ONNX model ({str(error).splitlines()[0]})") from None
    inputs = session.get_inputs()
    names = [i.name for i in inputs]
    if len(inputs) > 1 and list(spec.input_names) != names:
        raise CompressbenchError(
            f"model {path}: takes {len(inputs)} inputs ({', '.join(names)}); the data gives "
            f"{', '.join(spec.input_names) or 'one array'} (give them by name in the graph's order: a loader's "
            "dict, or a .npz file's x_test__<name> arrays)"
        )
    types = {"tensor(int64)": np.int64, "tensor(int32)": np.int32}
    example = np.zeros((2, *spec.input_shape), spec.torch_dtype)
    feeds = {i.name: (example if len(inputs) == 1 else example[:, n]).astype(types.get(i.type, np.float32))
             for n, i in enumerate(inputs)}  # fmt: skip
    try:
        logits = session.run(None, feeds)[0]
    except Exception as error:
        because = (
            f"the file fixes its batch axis at {fixed} and the graph depends on it (a Reshape to a fixed batch, say); "
            "export it with a dynamic batch axis"
            if fixed
            else f"its input {inputs[0].name!r} is {inputs[0].shape}, {inputs[0].type}"
        )
        raise CompressbenchError(
            f"model {path}: does not run on 2 inputs of shape {spec.input_shape} {spec.input_dtype} from the data "
            f"({because}): {str(error).splitlines()[0]}"
        ) from None
    if tuple(np.shape(logits)) != (2, spec.num_classes):
        raise CompressbenchError(
            f"model {path}: output shape {tuple(np.shape(logits))} for 2 inputs; expected (2, {spec.num_classes})"
        )
    return graph


def fixed_batch(graph: onnx.ModelProto) -> int | None:
    """The batch size a graph's inputs fix (exporters often write 1), or None when their batch axis is dynamic."""
    initializers = {t.name for t in graph.graph.initializer}
    for value in graph.graph.input:
        dims = value.type.tensor_type.shape.dim
        if value.name not in initializers and dims and dims[0].HasField("dim_value"):
            return dims[0].dim_value
    return None


def with_dynamic_batch(graph: onnx.ModelProto) -> onnx.ModelProto:
    """The graph with its inputs' and outputs' first axis declared dynamic ("batch") and the stale intermediate
    shapes dropped; it is checked by running a batch of 2 (a graph that computes with the fixed batch fails there).
    Recorded in the graph's metadata, so the artifact says it."""
    dynamic = onnx.ModelProto()
    dynamic.CopyFrom(graph)
    initializers = {t.name for t in dynamic.graph.initializer}
    for value in [*dynamic.graph.input, *dynamic.graph.output]:
        dims = value.type.tensor_type.shape.dim
        if value.name not in initializers and dims:
            dims[0].Clear()
            dims[0].dim_param = "batch"
    del dynamic.graph.value_info[:]
    onnx.helper.set_model_props(dynamic, {**{p.key: p.value for p in graph.metadata_props},
                                          "compressbench": "batch axis made dynamic (the file fixed it)"})  # fmt: skip
    return dynamic


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
    elif (source := model_source_of(config.name)) is not None:
        model = source.build(config, spec)
    elif is_user_reference(config.name):
        model = _build_user(config, spec)
        if not isinstance(model, nn.Module):
            raise CompressbenchError(
                f"model {config.name!r}: must return a torch.nn.Module, got {type(model).__name__}"
            )
        if spec.input_names:  # the data's several inputs, passed to forward by name
            model = NamedInputs(model, spec.input_names, spec.torch_dtype)
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
    if is_user_reference(name) or is_onnx_model(name) or name in _instances or model_source_of(name) is not None:
        return True
    family = models.get(name)
    if family.tokens != spec.tokens:
        return False
    return family.input_rank is None or family.input_rank == len(spec.input_shape)


def check_output_shape(model: nn.Module, spec: DataSpec, name: str) -> None:
    try:
        with evaluating(model), torch.no_grad():
            out = model(torch.zeros(2, *spec.input_shape, dtype=getattr(torch, spec.torch_dtype)))
    except Exception as error:
        what = describe_exception(error, type(model).forward)
        message = f"model {name!r}: forward pass on input (2, {spec.input_shape}) failed: {what}"
        raise CompressbenchError(message) from error
    if tuple(out.shape) != (2, spec.num_classes):
        raise CompressbenchError(
            f"model {name!r}: output shape {tuple(out.shape)} for 2 inputs; expected (2, {spec.num_classes}) logits"
        )


from compressbench.models import conv1d, lenet, mlp, resnet, transformer  # noqa: E402,F401
from compressbench.models.named_inputs import NamedInputs  # noqa: E402
