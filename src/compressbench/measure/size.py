"""Size as a deployer sees it: bytes of the runtime file, its zstd-compressed bytes, parameters, non-zeros, MACs."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx
import torch
from onnx import numpy_helper
from torch import nn

from compressbench.modes import CONV_LAYERS, evaluating
from compressbench.runtime.stored import zstd_compressed


@dataclass(frozen=True)
class SizeResult:
    size_bytes: int  # the deployable file (ONNX, weights inside)
    zstd_bytes: int  # that file compressed with zstd at level 19
    params: int
    nonzero_params: int
    macs: int  # multiply-accumulates for one input


def zstd_size(payload: bytes) -> int:
    return len(zstd_compressed(payload))


def count_params(module: nn.Module) -> tuple[int, int]:
    params = list(module.parameters())
    return sum(p.numel() for p in params), sum(int(torch.count_nonzero(p)) for p in params)


def count_graph_params(proto: onnx.ModelProto) -> tuple[int, int]:
    """(parameters, non-zeros) of a float ONNX graph: the elements of its floating-point weight tensors, held as
    initializers or, as some exporters (Paddle, tf2onnx) write them, as `Constant` nodes."""
    floats = {onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.BFLOAT16, onnx.TensorProto.DOUBLE}
    constants = [attribute.t for node in proto.graph.node if node.op_type == "Constant"
                 for attribute in node.attribute if attribute.name == "value"]  # fmt: skip
    tensors = [*proto.graph.initializer, *constants]
    arrays = [numpy_helper.to_array(t) for t in tensors if t.data_type in floats and len(t.dims)]
    return sum(a.size for a in arrays), sum(int(np.count_nonzero(a)) for a in arrays)


def count_graph_macs(proto: onnx.ModelProto, input_shape: tuple[int, ...]) -> int:
    """Multiply-accumulates of a float ONNX graph's convolutions and matrix products for one input, from ONNX shape
    inference with the batch axis set to 1: what `count_macs` counts on a module, for a graph without its code."""
    model = onnx.ModelProto()
    model.CopyFrom(proto)
    initializers = {t.name for t in model.graph.initializer}
    first = next(v for v in model.graph.input if v.name not in initializers)
    for dim, size in zip(first.type.tensor_type.shape.dim, (1, *input_shape), strict=False):
        dim.ClearField("dim_param")
        dim.dim_value = size
    graph = onnx.shape_inference.infer_shapes(model).graph
    shapes = {
        v.name: [d.dim_value for d in v.type.tensor_type.shape.dim]
        for v in (*graph.value_info, *graph.input, *graph.output)
    }
    shapes.update({t.name: list(t.dims) for t in graph.initializer})
    total = 0
    for node in graph.node:
        output = shapes.get(node.output[0])
        if not output or not all(output):
            continue
        if node.op_type == "Conv" and len(shapes.get(node.input[1], [])) >= 3:
            total += int(np.prod(output)) * int(np.prod(shapes[node.input[1]][1:]))
        elif node.op_type in ("Gemm", "MatMul") and shapes.get(node.input[0]):
            transposed = node.op_type == "Gemm" and any(a.name == "transA" and a.i for a in node.attribute)
            inner = shapes[node.input[0]][-2 if transposed else -1]
            total += int(np.prod(output)) * inner
    return total


def count_macs(module: nn.Module, input_shape: tuple[int, ...], dtype: str = "float32") -> int:
    """Multiply-accumulates of the convolutions, linear layers, attention and recurrent layers for one input (bias
    adds, activations and normalisation not counted, as in the papers), from the layers' shapes as they are now (so
    pruned channels count as gone). The input is the all-zeros one the exporter traces, so a data-dependent forward
    is counted on the branch that was exported."""
    total = 0

    def conv(layer: nn.Conv1d | nn.Conv2d | nn.Conv3d, _inputs, output: torch.Tensor) -> None:
        nonlocal total
        per_output = (layer.in_channels // layer.groups) * int(torch.tensor(layer.kernel_size).prod())
        total += output[0].numel() * per_output

    def linear(layer: nn.Linear, _inputs, output: torch.Tensor) -> None:
        nonlocal total
        total += output[0].numel() * layer.in_features

    def attention(layer: nn.MultiheadAttention, inputs: tuple[torch.Tensor, ...], _output) -> None:
        # Projections of query (L x E x E), key and value (S x E x kdim, S x E x vdim), scores and weighted sum
        # (2 x L x S x E), output projection (L x E x E); its linear layers run as functions, so no hook sees them.
        nonlocal total
        query, key = inputs[0], inputs[1]
        length, source = (query.shape[-2], key.shape[-2]) if layer.batch_first else (query.shape[0], key.shape[0])
        embed = layer.embed_dim
        total += 2 * length * embed * embed + source * embed * (layer.kdim + layer.vdim) + 2 * length * source * embed

    def recurrent(layer: nn.RNNBase, inputs: tuple[torch.Tensor, ...], _output) -> None:
        # Every step of every layer and direction: gates x hidden x (layer input + hidden).
        nonlocal total
        gates = {"LSTM": 4, "GRU": 3}.get(layer.mode, 1)
        steps = inputs[0].shape[-2] if layer.batch_first or inputs[0].ndim == 2 else inputs[0].shape[0]
        directions = 2 if layer.bidirectional else 1
        for number in range(layer.num_layers):
            layer_input = layer.input_size if number == 0 else layer.hidden_size * directions
            total += directions * steps * gates * layer.hidden_size * (layer_input + layer.hidden_size)

    handles = []
    for layer in module.modules():
        if isinstance(layer, CONV_LAYERS):
            handles.append(layer.register_forward_hook(conv))
        elif isinstance(layer, nn.Linear):
            handles.append(layer.register_forward_hook(linear))
        elif isinstance(layer, nn.MultiheadAttention):
            handles.append(layer.register_forward_hook(attention))
        elif isinstance(layer, nn.RNNBase):
            handles.append(layer.register_forward_hook(recurrent))
    try:
        with evaluating(module), torch.no_grad():
            module(torch.zeros(1, *input_shape, dtype=getattr(torch, dtype)))
    finally:
        for handle in handles:
            handle.remove()
    return total


def measure_size(proto: onnx.ModelProto, module: nn.Module, input_shape: tuple[int, ...]) -> SizeResult:
    payload = proto.SerializeToString()
    params, nonzero = count_graph_params(proto)
    return SizeResult(len(payload), zstd_size(payload), params, nonzero, count_macs(module, input_shape))
