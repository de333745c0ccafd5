"""The Technique contract: a registered name and family, a validated config, what it consumes and produces, one
`apply`. `Candidate` lives in `compressbench.artifacts` and is re-exported here for techniques."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from pydantic import BaseModel, ConfigDict
from torch import nn

from compressbench.artifacts import TORCH, Candidate
from compressbench.registry import Registry

if TYPE_CHECKING:
    from compressbench.cache import Cache
    from compressbench.data import DataBundle
    from compressbench.measure import LatencySettings
    from compressbench.models import ModelConfig
    from compressbench.training import TrainConfig


@dataclass
class Context:
    """Everything a technique may use; nothing global. `baseline` is the trained model and must not be mutated."""

    data: DataBundle
    baseline: nn.Module | None  # None for a user's ONNX model (graph techniques only)
    model: ModelConfig
    train_config: TrainConfig
    seed: int
    cache: Cache
    latency: LatencySettings
    # The runtimes the candidate will be measured (and served) on: a step that chooses by speed times on these.
    runtimes: tuple[str, ...] = ("onnxruntime",)


class TechniqueConfig(BaseModel):
    """Base of every technique's config: unknown fields are errors, values are validated on construction."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Technique:
    name: ClassVar[str]
    Config: ClassVar[type[TechniqueConfig]]
    family: ClassVar[str]  # pruning, quantization, distillation, coding: what the report groups and judges by
    # The artifact kinds (compressbench.artifacts) it takes and leaves: a recipe and its runtime are checked
    # against them before anything runs.
    consumes: ClassVar[str] = TORCH
    produces: ClassVar[str] = TORCH
    precision: ClassVar[str | None] = None  # the precision it asks the runtime to execute in, if it sets one
    summary: ClassVar[str] = ""
    # Whether it trains or fine-tunes the model (a train split is needed): refused on evaluation-only data.
    trains: ClassVar[bool] = False
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
