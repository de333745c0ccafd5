"""What a runtime serves, typed, and the candidate that carries it through a recipe.

An artifact is a torch module, an ONNX graph or an OpenVINO model. Each kind registers how it is recognised and
how its deployable bytes are written; each runtime (`compressbench.runtime`) names the kinds it opens. Checking a
recipe against a runtime, opening sessions and counting size all read these two registries, so a new runtime or
artifact kind is one file plus its registration. This module is a leaf: it imports no other layer.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import onnx
from torch import nn

from compressbench.errors import CompressbenchError
from compressbench.registry import Registry

TORCH, ONNX, OPENVINO = "torch", "onnx", "openvino"


@dataclass(frozen=True)
class ArtifactKind:
    name: str
    description: str  # as a sentence needs it: "a torch module"
    recognises: Callable[[Any], bool]
    serialise: Callable[[Any], bytes]  # the bytes of the file a deployer ships: what size is counted on
    # For a kind that does not pickle (an OpenVINO model): to and from a picklable form, to travel between processes.
    pack: Callable[[Any], Any] | None = None
    unpack: Callable[[Any], Any] | None = None


artifact_kinds: Registry[ArtifactKind] = Registry("artifact kind")


def register_artifact_kind(kind: ArtifactKind) -> ArtifactKind:
    return artifact_kinds.register(kind.name)(kind)


def kind_of(artifact: Any) -> ArtifactKind:
    for name in artifact_kinds:
        kind = artifact_kinds.get(name)
        if kind.recognises(artifact):
            return kind
    raise CompressbenchError(f"{type(artifact).__name__} is not a servable artifact (known: {artifact_kinds.names()})")


@dataclass(frozen=True)
class Packed:
    """An artifact of a kind that does not pickle, in its kind's picklable form."""

    kind: str
    data: Any


def pack(artifact: Any) -> Any:
    """The artifact in a form that pickles (itself when it already does)."""
    kind = kind_of(artifact)
    return Packed(kind.name, kind.pack(artifact)) if kind.pack else artifact


def unpack(value: Any) -> Any:
    return artifact_kinds.get(value.kind).unpack(value.data) if isinstance(value, Packed) else value


def is_onnx(artifact: Any) -> bool:
    return isinstance(artifact, onnx.ModelProto)


def _module_bytes(module: nn.Module) -> bytes:
    """A torch module ships as its state dict in safetensors (no pickle), tied weights stored once."""
    from safetensors.torch import save

    unique: dict[Any, tuple[str, Any]] = {}
    for name, tensor in module.state_dict().items():
        unique.setdefault(tensor.data_ptr() if tensor.numel() else name, (name, tensor.detach().contiguous()))
    return save(dict(unique.values()))


register_artifact_kind(ArtifactKind(TORCH, "a torch module", lambda a: isinstance(a, nn.Module), _module_bytes))
register_artifact_kind(ArtifactKind(ONNX, "an ONNX graph", is_onnx, lambda proto: proto.SerializeToString()))


@dataclass
class Candidate:
    """The model as it moves through a recipe.

    `module` is the torch form. Once a step produces an artifact the module cannot reproduce (an int8 ONNX graph,
    an OpenVINO model), it sits in `artifact` and `module` stays as the float model it came from (for parameter
    and MAC counts). `precision` is what the runtime is asked to execute in (precision.bf16 / fp16).
    `storage` is the encoded form's byte breakdown when a step defines one (sparse indices, codebooks, Huffman);
    `records` keeps what each step did; `flags` are warnings a report must show; `companions` are other models a
    step wants measured beside it under their own name (the distillation control: the student trained alone).
    A user's ONNX model has no module: `module` is None and `float_graph` is the graph as given, on which parameters
    and MACs are counted and from which graph techniques start.
    """

    module: nn.Module | None
    artifact: Any = None
    float_graph: onnx.ModelProto | None = None
    precision: str = "fp32"
    storage: dict[str, int] | None = None
    records: list[dict[str, Any]] = field(default_factory=list)
    flags: list[str] = field(default_factory=list)
    companions: dict[str, Candidate] = field(default_factory=dict)

    @property
    def kind(self) -> str:
        """The artifact kind a runtime must open: torch until a step produced a graph."""
        return TORCH if self.artifact is None else kind_of(self.artifact).name

    @property
    def served(self) -> Any:
        return self.module if self.artifact is None else self.artifact


def describe_kind(name: str) -> str:
    return artifact_kinds.get(name).description if name in artifact_kinds else name


__all__ = [
    "ONNX",
    "OPENVINO",
    "TORCH",
    "ArtifactKind",
    "Candidate",
    "Packed",
    "artifact_kinds",
    "describe_kind",
    "is_onnx",
    "kind_of",
    "pack",
    "register_artifact_kind",
    "unpack",
]
