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
from compressbench.modes import evaluating
from compressbench.runtime.base import open_session

INPUT_NAME, OUTPUT_NAME = "x", "logits"
OPSET = 17
# The export check: this many evaluation inputs, in batches of VERIFY_BATCH (so a data-dependent branch shows).
VERIFY_SAMPLES, VERIFY_BATCH = 512, 64


def export_onnx(
    model: nn.Module, input_shape: tuple[int, ...], exporter: Literal["torchscript", "dynamo"] = "torchscript"
) -> onnx.ModelProto:
    """Export in eval mode with a dynamic batch axis; check the graph with `onnx.checker`.

    The TorchScript exporter is the default: it takes about 0.1 s where the dynamo exporter takes 3-6 s for
    the zoo models, and both give the same graph for them (Conv+BN folded, Gemm for linear layers).
    """
    # A model may ask for integer inputs (the text models take int64 token ids); the loaders' float32 ids are cast
    # to the graph's input type by the runtimes' sessions.
    example = torch.zeros(1, *input_shape, dtype=getattr(model, "input_dtype", torch.float32))
    try:
        with evaluating(model), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if exporter == "dynamo":
                program = torch.onnx.export(
                    model,
                    (example,),
                    dynamo=True,
                    external_data=False,
                    input_names=[INPUT_NAME],
                    output_names=[OUTPUT_NAME],
                    dynamic_shapes={"x": {0: torch.export.Dim("batch")}},
                    verbose=False,
                )
                proto = program.model_proto
            else:
                buffer = io.BytesIO()
                torch.onnx.export(
                    model,
                    (example,),
                    buffer,
                    dynamo=False,
                    opset_version=OPSET,
                    input_names=[INPUT_NAME],
                    output_names=[OUTPUT_NAME],
                    dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
                )
                proto = onnx.load_from_string(buffer.getvalue())
    except Exception as error:
        raise CompressbenchError(f"ONNX export of {type(model).__name__} failed: {error}") from error
    onnx.checker.check_model(proto)
    return proto


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
