"""The Technique contract: a registered name, a validated config, what it consumes and produces, one `apply`."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any, ClassVar

import onnx
from pydantic import BaseModel, ConfigDict
from torch import nn

from compressbench.registry import Registry

if TYPE_CHECKING:
    from compressbench.cache import Cache
    from compressbench.data import DataBundle
    from compressbench.measure import LatencySettings
    from compressbench.models import ModelConfig
    from compressbench.training import TrainConfig


class Form(StrEnum):
    """What a candidate is at a point in a recipe, so a recipe can be checked before anything runs."""

    MODULE = "a torch module"
    GRAPH = "an ONNX graph"


@dataclass
class Candidate:
    """The model as it moves through a recipe.

    `module` is the torch form. Once a step produces a runtime graph that the module cannot reproduce (int8
    ONNX in `graph`, or an OpenVINO model in `openvino`), `module` stays as the float model it came from (for
    parameter and MAC counts).
    `storage` is the encoded form's byte breakdown when a step defines one (sparse indices, codebooks, Huffman);
    `records` keeps what each step did; `flags` are warnings a report must show; `companions` are other models
    a step wants measured beside it under their own name (the distillation control: the student trained alone).
    """

    module: nn.Module
    graph: onnx.ModelProto | None = None
    openvino: Any = None  # an OpenVINO model, when a step produced one (quant.nncf); served by openvino only
    precision: str = "fp32"  # the precision the runtime is asked to execute in (precision.bf16 / precision.fp16)
    storage: dict[str, int] | None = None
    records: list[dict[str, Any]] = field(default_factory=list)
    flags: list[str] = field(default_factory=list)
    companions: dict[str, Candidate] = field(default_factory=dict)

    @property
    def form(self) -> Form:
        return Form.GRAPH if self.graph is not None or self.openvino is not None else Form.MODULE


@dataclass
class Context:
    """Everything a technique may use; nothing global. `baseline` is the trained model and must not be mutated."""

    data: DataBundle
    baseline: nn.Module
    model: ModelConfig
    train_config: TrainConfig
    seed: int
    cache: Cache
    latency: LatencySettings


class TechniqueConfig(BaseModel):
    """Base of every technique's config: unknown fields are errors, values are validated on construction."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Technique:
    name: ClassVar[str]
    Config: ClassVar[type[TechniqueConfig]]
    consumes: ClassVar[Form] = Form.MODULE
    produces: ClassVar[Form] = Form.MODULE
    summary: ClassVar[str] = ""
    # The runtimes that can serve what this step produces (checked against the measurement runtime up front).
    serving_runtimes: ClassVar[tuple[str, ...]] = ("onnxruntime", "openvino", "torch")
    # Techniques that must come earlier in a recipe (Huffman coding codes weight sharing's indices).
    requires: ClassVar[tuple[str, ...]] = ()

    def __init__(self, config: TechniqueConfig | None = None) -> None:
        self.config = config if config is not None else self.Config()

    def apply(self, candidate: Candidate, context: Context) -> Candidate:
        raise NotImplementedError


techniques: Registry[type[Technique]] = Registry("technique")


def register_technique(cls: type[Technique]) -> type[Technique]:
    return techniques.register(cls.name)(cls)


def list_techniques() -> list[str]:
    return techniques.names()
