"""Export a torch module to a self-contained ONNX model (weights inside the file, so its size is real)."""

from __future__ import annotations

import io
import warnings
from typing import Literal

import numpy as np
import onnx
import torch
from torch import nn

from compressbench.errors import CompressbenchError
from compressbench.models import NamedInputs
from compressbench.modes import evaluating
from compressbench.runtime.base import open_session

INPUT_NAME, OUTPUT_NAME = "x", "logits"
OPSET = 17
# The export check: this many evaluation inputs, in batches of VERIFY_BATCH (so a data-dependent branch shows).
VERIFY_SAMPLES, VERIFY_BATCH = 512, 64


def export_onnx(
    model: nn.Module,
    input_shape: tuple[int, ...],
    exporter: Literal["torchscript", "dynamo"] = "torchscript",
    input_dtype: str = "float32",
) -> onnx.ModelProto:
    """Export in eval mode with a dynamic batch axis; check the graph with `onnx.checker`.

    Integer data (`input_dtype` int64: token ids) is exported as int64 inputs; a zoo text model trained on the zoo's
    float32 ids asks for int64 through its `input_dtype` attribute. A model taking several named inputs
    (`NamedInputs`) gets one graph input per name, each with dynamic batch and sequence axes.
    The TorchScript exporter is the default: it takes about 0.1 s where the dynamo exporter takes 3-6 s for
    the zoo models, and both give the same graph for them (Conv+BN folded, Gemm for linear layers).
    """
    dtype = torch.int64 if input_dtype.startswith("int") else getattr(model, "input_dtype", torch.float32)
    if isinstance(model, NamedInputs):
        traced, names = _Positional(model), list(model.input_names)
        examples = tuple(torch.zeros(1, *input_shape[1:], dtype=dtype) for _ in names)
        axes = {0: "batch", 1: "sequence"} if len(input_shape) > 1 else {0: "batch"}
    else:
        traced, names = model, [INPUT_NAME]
        examples = (torch.zeros(1, *input_shape, dtype=dtype),)
        axes = {0: "batch"}
    try:
        with evaluating(model), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if exporter == "dynamo":
                program = torch.onnx.export(
                    traced,
                    examples,
                    dynamo=True,
                    external_data=False,
                    input_names=names,
                    output_names=[OUTPUT_NAME],
                    dynamic_shapes={
                        name: {axis: torch.export.Dim(label) for axis, label in axes.items()} for name in names
                    },
                    verbose=False,
                )
                proto = program.model_proto
            else:
                buffer = io.BytesIO()
                torch.onnx.export(
                    traced,
                    examples,
                    buffer,
                    dynamo=False,
                    opset_version=OPSET,
                    input_names=names,
                    output_names=[OUTPUT_NAME],
                    dynamic_axes={**{name: axes for name in names}, OUTPUT_NAME: {0: "batch"}},
                )
                proto = onnx.load_from_string(buffer.getvalue())
    except Exception as error:
        raise CompressbenchError(f"ONNX export of {type(model).__name__} failed: {error}") from error
    onnx.checker.check_model(proto)
    return proto


class _Positional(nn.Module):
    """The wrapped model taking its named inputs positionally, in the data's order: what the exporters trace, so each
    graph input is named after the argument it feeds."""

    def __init__(self, named: NamedInputs) -> None:
        super().__init__()
        self.named = named

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        return self.named.model(**dict(zip(self.named.input_names, inputs, strict=True)))


def verify_onnx(
    model: nn.Module, proto: onnx.ModelProto, inputs: np.ndarray, atol: float = 1e-3, batch: int = VERIFY_BATCH
) -> float:
    """Run `inputs` through torch and ONNX Runtime in batches of `batch` and refuse the export when any logit differs
    by more than `atol * (1 + |logit|)`; returns the largest difference.

    Several batches of real inputs, not one: a forward pass that branches on the data (a Python `if` on tensor
    values) is frozen at export to the branch the example input took, and agrees on some batches only."""
    session = open_session(proto, "onnxruntime", threads=1)
    worst, worst_at, changed = 0.0, (0, 0), 0
    excess_seen = False
    with evaluating(model), torch.no_grad():
        for start in range(0, len(inputs), batch):
            chunk = np.ascontiguousarray(inputs[start : start + batch])
            expected = model(torch.from_numpy(chunk)).numpy()
            got = session.run(chunk)
            difference = np.abs(expected - got)
            excess_seen |= bool((difference > atol * (1 + np.abs(expected))).any()) or not np.isfinite(got).all()
            changed += int((expected.argmax(1) != got.argmax(1)).sum())
            if (largest := float(np.nan_to_num(difference, nan=np.inf).max())) > worst:
                worst, worst_at = largest, (start + int(np.nan_to_num(difference, nan=np.inf).max(1).argmax()), start)
    if excess_seen:
        batches = -(-len(inputs) // batch)
        raise CompressbenchError(
            f"exported ONNX graph of {type(model).__name__} disagrees with the torch module on {len(inputs)} "
            f"evaluation inputs: logits differ by up to {worst:.3g} (input {worst_at[0]}, in batch "
            f"{worst_at[1] // batch + 1} of {batches}; tolerance {atol:.0e} x (1 + |logit|)) and {changed} "
            "predictions change; the forward pass probably branches on the data (a Python `if` on tensor values is "
            "frozen at export) or uses an op the exporter does not support, so the served model would not be the "
            "one you trained"
        )
    return worst
