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

from typing import Any

import numpy as np
from torch import nn

from compressbench.artifacts import kind_of
from compressbench.errors import CompressbenchError
from compressbench.runtime import export_onnx, open_session

NEIGHBOURS = 10


def embedding_tensor(module: nn.Module, input_shape: tuple[int, ...], input_dtype: str = "float32") -> str:
    """The name of the classifier's input (the sentence embedding) in the module's fp32 ONNX export."""
    graph = export_onnx(module, input_shape, input_dtype=input_dtype).graph
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


def sentence_embeddings(
    artifact: Any, x: np.ndarray, runtime: str, tensor: str, precision: str = "fp32", batch: int = 64
) -> np.ndarray:
    """Embeddings of `x` from the served artifact cut at `tensor` (its kind knows how: a graph at that tensor, a torch
    module through its `embed`), run on the same runtime in the `precision` it is served in."""
    session = open_session(kind_of(artifact).cut(artifact, tensor), runtime, threads=1, precision=precision)
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
