"""The Technique contract: a registered name and family, a validated config, what it consumes and produces, what
it needs of the input, one `apply`. `Candidate` lives in `compressbench.artifacts` and is re-exported here for
techniques."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
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


class Need(StrEnum):
    """What a technique may need of the input beyond a model and its test data. A shortlist (compress's `auto`, the
    search's plans) leaves out a recipe whose steps need what the input lacks and says why with `unmet`. Declared
    most basic first: a recipe left out is listed with the first need it misses, in this order."""

    unmet: str

    def __new__(cls, value: str, unmet: str) -> Need:
        member = str.__new__(cls, value)
        member._value_ = value
        member.unmet = unmet
        return member

    TORCH_MODULE = "torch module", "it changes the torch module, and the model is an ONNX graph"
    TRAIN_SPLIT = "train split", "it trains or fine-tunes, and the data has no train split"
    WIDTH_FACTORY = (
        "width factory",
        "it builds a narrower student, and the model is not a factory taking width= (a module instance, or a "
        "factory without that argument)",
    )
    DEPTH_FACTORY = (
        "depth factory",
        "it builds a shallower student, and the model is not a factory taking depth= (a module instance, or a "
        "factory without that argument)",
    )
    ATTENTION_LAYERS = (
        "attention layers",
        "it prunes attention heads or drops encoder layers, and the model has no attention layers",
    )
    NO_ATTENTION_LAYERS = (
        "no attention layers",
        "Torch-Pruning cannot trace multi-head attention, and the model has attention layers (prune.heads prunes them)",
    )
    OPENVINO = "openvino", "it runs on OpenVINO, which is not installed: pip install 'compressbench[openvino]'"
    BF16_CPU = "bf16 cpu", "this CPU lacks AVX-512 BF16 and AMX, so bf16 would be emulated or fall back to fp32"
    FP16_CPU = "fp16 cpu", "this CPU lacks AVX-512 FP16 and AMX-FP16, so fp16 would be emulated or fall back to fp32"


# What a technique that trains (`Technique.trains`) needs: a train split, and the torch code to train.
TRAINING_NEEDS = frozenset({Need.TORCH_MODULE, Need.TRAIN_SPLIT})


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
    # Whether the seed changes what it produces (calibration samples, fine-tuning order, a student's initialisation):
    # a study runs a recipe of unseeded steps once, since its other seeds would repeat the same model.
    seeded: ClassVar[bool] = True
    # Techniques that must come earlier in a recipe (Huffman coding codes weight sharing's indices).
    requires: ClassVar[tuple[str, ...]] = ()
    # What it needs of the input besides what training needs (`trains` adds a train split and the torch module): a
    # shortlist leaves it out where the input lacks one. `needs_for` where the config decides.
    needs: ClassVar[frozenset[Need]] = frozenset()

    @classmethod
    def needs_for(cls, config: TechniqueConfig) -> frozenset[Need]:
        """What a step of this technique with `config` needs of the input: `needs`, and a train split and the torch
        module when it trains."""
        return cls.needs | (TRAINING_NEEDS if cls.trains else frozenset())

    def __init__(self, config: TechniqueConfig | None = None) -> None:
        self.config = config if config is not None else self.Config()

    def apply(self, candidate: Candidate, context: Context) -> Candidate:
        raise NotImplementedError


techniques: Registry[type[Technique]] = Registry("technique")


def register_technique(cls: type[Technique]) -> type[Technique]:
    return techniques.register(cls.name)(cls)


def list_techniques() -> list[str]:
    return techniques.names()
