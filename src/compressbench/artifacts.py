"""What a runtime serves, typed, and the candidate that carries it through a recipe.

An artifact is a torch module, an ONNX graph or an OpenVINO model. Each kind registers everything done with it
that depends on what it is: how it is recognised, its deployable bytes, the files it is handed back as (written and
loaded again), its inputs and outputs, and the same model cut at an inner tensor (the sentence embedding of a text
classifier). Each runtime (`compressbench.runtime`) names the kinds it opens. Checking a recipe against a runtime,
opening sessions, counting size, writing what compress hands back, `verify` and the embedding reader all go through
these two registries, and no module outside a kind's own file branches on a kind: a new runtime or artifact kind is
one file plus its registration. This module is a leaf: it imports no other layer. The torch and ONNX kinds are
here; OpenVINO's is registered by its runtime (`compressbench.runtime.openvino`).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
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
    write: Callable[[Any, Path], list[str]]  # the deployable files, written into a folder; returns their names
    load: Callable[[Path], Any]  # the artifact from a folder `write` filled (refused, with why, where it cannot be)
    describe: Callable[[Any], dict[str, Any]]  # {"inputs": [...], "outputs": [...]}: name, shape, dtype of each
    cut: Callable[[Any, str], Any]  # the same model giving the named inner tensor as its output
    # Kinds the measuring code turns this one into for a runtime that does not open it (a module: its ONNX export).
    reaches: tuple[str, ...] = ()
    # For a kind that does not pickle (an OpenVINO model): to and from a picklable form, to travel between processes.
    pack: Callable[[Any], Any] | None = None
    unpack: Callable[[Any], Any] | None = None
    # The operation types the runtime executes (one entry per operation), so that two artifacts can be told to do
    # the same work whatever their weights hold; None where a kind's operations cannot be listed.
    ops: Callable[[Any], list[str]] | None = None


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


def read_artifact(folder: Path, kind: str) -> Any:
    """The artifact a kind's `write` left in `folder`."""
    return artifact_kinds.get(kind).load(folder)


def _module_bytes(module: nn.Module) -> bytes:
    """A torch module ships as its state dict in safetensors (no pickle), tied weights stored once."""
    from safetensors.torch import save

    unique: dict[Any, tuple[str, Any]] = {}
    for name, tensor in module.state_dict().items():
        unique.setdefault(tensor.data_ptr() if tensor.numel() else name, (name, tensor.detach().contiguous()))
    return save(dict(unique.values()))


def _write_module(module: nn.Module, folder: Path) -> list[str]:
    (folder / "model.safetensors").write_bytes(_module_bytes(module))
    return ["model.safetensors"]


def _load_module(folder: Path) -> nn.Module:
    raise CompressbenchError(
        f"{folder / 'model.safetensors'}: a torch module's weights need its code to run; only graph artifacts "
        "(ONNX, OpenVINO) load on their own"
    )


class Embedder(nn.Module):
    """A text classifier whose forward gives its sentence embedding (`embed`): the torch form of a cut model."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module

    def forward(self, x):
        return self.module.embed(x)


def _cut_module(module: nn.Module, tensor: str) -> nn.Module:
    if not hasattr(module, "embed"):
        raise CompressbenchError(f"{type(module).__name__} has no embed(): no inner output to read from it")
    return Embedder(module)


def _write_onnx(proto: onnx.ModelProto, folder: Path) -> list[str]:
    onnx.save(proto, folder / "model.onnx")
    return ["model.onnx"]


def _describe_onnx(proto: onnx.ModelProto) -> dict[str, Any]:
    """Graph inputs (initializers that older exporters list as inputs left out) and outputs; a dynamic axis by name."""

    def described(values) -> list[dict[str, Any]]:
        return [
            {
                "name": v.name,
                "shape": [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim],
                "dtype": onnx.helper.tensor_dtype_to_np_dtype(v.type.tensor_type.elem_type).name,
            }
            for v in values
        ]

    initializers = {i.name for i in proto.graph.initializer}
    return {
        "inputs": described([v for v in proto.graph.input if v.name not in initializers]),
        "outputs": described(proto.graph.output),
    }


def _cut_onnx(proto: onnx.ModelProto, tensor: str) -> onnx.ModelProto:
    produced = {output for node in proto.graph.node for output in node.output}
    if tensor not in produced:
        raise CompressbenchError(f"the ONNX graph has no tensor {tensor!r} to read")
    cut = copy.deepcopy(proto)
    del cut.graph.output[:]
    cut.graph.output.append(onnx.helper.make_tensor_value_info(tensor, onnx.TensorProto.FLOAT, None))
    return cut


register_artifact_kind(
    ArtifactKind(
        TORCH,
        "a torch module",
        lambda a: isinstance(a, nn.Module),
        _module_bytes,
        write=_write_module,
        load=_load_module,
        describe=lambda _: {"inputs": "the torch module's forward(x), as the loader returns x", "outputs": "logits"},
        cut=_cut_module,
        reaches=(ONNX,),
        ops=lambda module: [type(layer).__name__ for layer in module.modules() if not any(layer.children())],
    )
)
register_artifact_kind(
    ArtifactKind(
        ONNX,
        "an ONNX graph",
        is_onnx,
        lambda proto: proto.SerializeToString(),
        write=_write_onnx,
        load=lambda folder: onnx.load(folder / "model.onnx"),
        describe=_describe_onnx,
        cut=_cut_onnx,
        ops=lambda proto: [node.op_type for node in proto.graph.node],
    )
)


@dataclass
class Candidate:
    """The model as it moves through a recipe.

    `module` is the torch form. Once a step produces an artifact the module cannot reproduce (an int8 ONNX graph,
    an OpenVINO model), it sits in `artifact` and `module` stays as the float model it came from (for parameter
    and MAC counts). `precision` is what the runtime is asked to execute in (precision.bf16 / fp16).
    `records` keeps what each step did; `flags` are warnings a report must show; `companions` are other models a
    step wants measured beside it under their own name (the distillation control: the student trained alone).
    A user's ONNX model has no module: `module` is None and `float_graph` is the graph as given, on which parameters
    and MACs are counted and from which graph techniques start.
    """

    module: nn.Module | None
    artifact: Any = None
    float_graph: onnx.ModelProto | None = None
    precision: str = "fp32"
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
    "Embedder",
    "Packed",
    "artifact_kinds",
    "describe_kind",
    "is_onnx",
    "kind_of",
    "pack",
    "read_artifact",
    "register_artifact_kind",
    "unpack",
]
