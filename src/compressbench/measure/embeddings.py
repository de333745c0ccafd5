"""Fidelity of a text encoder beyond accuracy: how close the compressed model's sentence embeddings stay to the
fp32 baseline's, measured on the artifact the runtime serves.

A text classifier's sentence embedding is the input of its classifier layer. In the served artifact (the ONNX graph,
int8 or not, or the OpenVINO model) that tensor keeps the name the fp32 export gave it, so the artifact is cut there
and run on the same runtime: the figures are the deployed model's, not an estimate from the torch module.

- cosine: per test text, cosine(candidate embedding, baseline embedding); its mean and its minimum.
- top-k agreement: per test text, the share of its k nearest neighbours (cosine, itself excluded) in the baseline's
  embedding space that are still among its k nearest in the candidate's: do searches over the embeddings return
  the same texts?
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import onnx
import torch
from torch import nn

from compressbench.artifacts import ONNX, OPENVINO, TORCH, kind_of
from compressbench.errors import CompressbenchError
from compressbench.runtime import export_onnx, open_session

NEIGHBOURS = 10


def embedding_tensor(module: nn.Module, input_shape: tuple[int, ...]) -> str:
    """The name of the classifier's input (the sentence embedding) in the module's fp32 ONNX export."""
    graph = export_onnx(module, input_shape).graph
    producer = {output: node for node in graph.node for output in node.output}
    weights = {init.name for init in graph.initializer}
    node = producer.get(graph.output[0].name)
    if node is not None and node.op_type == "Add":  # MatMul + Add where the export did not fuse them to Gemm
        node = next((producer[i] for i in node.input if i in producer and i not in weights), None)
    if node is None or node.op_type not in ("Gemm", "MatMul"):
        raise CompressbenchError(
            f"{type(module).__name__}: its output is not made by a final linear layer, so no sentence embedding "
            "can be read from the served model"
        )
    return node.input[0]


def embedding_artifact(artifact: Any, tensor: str) -> Any:
    """The served artifact cut at `tensor`: the same graph (same runtime, same int8 kernels) giving the embedding."""
    kind = kind_of(artifact).name
    if kind == ONNX:
        cut = copy.deepcopy(artifact)
        del cut.graph.output[:]
        cut.graph.output.append(onnx.helper.make_tensor_value_info(tensor, onnx.TensorProto.FLOAT, None))
        return cut
    if kind == OPENVINO:
        import openvino as ov

        for op in artifact.get_ops():
            for port in op.outputs():
                if tensor in port.get_names():
                    return ov.Model([port], artifact.get_parameters(), "embedding")
        raise CompressbenchError(f"the OpenVINO model has no tensor {tensor!r} (the classifier's input) to read")
    raise CompressbenchError(f"cannot read sentence embeddings from {kind}: an ONNX, OpenVINO or torch model is needed")


def sentence_embeddings(
    artifact: Any, x: np.ndarray, runtime: str, tensor: str, precision: str = "fp32", batch: int = 64
) -> np.ndarray:
    """Embeddings of `x` from a torch module (its `embed`) or from the served artifact cut at `tensor`, executed in
    the `precision` it is served in."""
    if kind_of(artifact).name == TORCH:
        artifact.eval()
        dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
        with torch.inference_mode(), torch.autocast("cpu", dtype, enabled=dtype is not None):
            chunks = [artifact.embed(torch.from_numpy(x[i : i + batch])).float() for i in range(0, len(x), batch)]
        return torch.cat(chunks).numpy()
    session = open_session(embedding_artifact(artifact, tensor), runtime, threads=1, precision=precision)
    return np.concatenate([session.run(x[i : i + batch]) for i in range(0, len(x), batch)])


def embedding_fidelity(reference: np.ndarray, candidate: np.ndarray, k: int = NEIGHBOURS) -> dict[str, float]:
    """Cosine to the reference embeddings (mean, minimum) and top-k neighbour agreement; see the module docstring."""
    if reference.shape != candidate.shape:
        raise CompressbenchError(f"embeddings of shape {candidate.shape} cannot be compared with {reference.shape}")
    ref = reference / np.linalg.norm(reference, axis=1, keepdims=True)
    cand = candidate / np.linalg.norm(candidate, axis=1, keepdims=True)
    cosine = (ref * cand).sum(1)
    k = min(k, len(ref) - 1)
    agreement = float("nan")
    if k > 0:
        neighbours = []
        for table in (ref, cand):
            similarity = table @ table.T
            np.fill_diagonal(similarity, -np.inf)
            neighbours.append(np.argpartition(-similarity, k - 1, axis=1)[:, :k])
        kept = [len(np.intersect1d(a, b)) / k for a, b in zip(*neighbours, strict=True)]
        agreement = float(np.mean(kept))
    return {
        "cosine_mean": float(cosine.mean()),
        "cosine_min": float(cosine.min()),
        "top_k_agreement": agreement,
        "k": k,
        "samples": len(ref),
    }
