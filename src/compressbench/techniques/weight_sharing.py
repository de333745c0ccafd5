"""`quant.weight_sharing`: Deep Compression's trained quantization (Han et al. 2016), a size technique.

Each conv / linear layer's non-zero weights are clustered by 1-D k-means (linear initialisation between the
smallest and largest weight) into 2^bits shared values (2^bits - 1 in a sparse layer whose relative positions need
filler entries: code 0 is then the zero a filler holds, as in Deep Compression's format); the model is then
fine-tuned with every weight tied to its centroid (after each optimiser step a centroid becomes the mean of its
members, so it moves by their average update; zeros stay zero, so a pruned model keeps its sparsity). The runtime
stays float — no kernel here does table look-up — so the figure is size: cluster indices + codebooks (+ relative
positions when the layer is sparse) + the other parameters in float32. `encode.huffman` then entropy-codes the
index and position streams.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from pydantic import Field
from torch import nn

from compressbench.data import DataBundle, Split
from compressbench.errors import CompressbenchError
from compressbench.modes import CONV_LAYERS
from compressbench.runtime.encoding import relative_index
from compressbench.techniques.base import (
    Candidate,
    Context,
    Technique,
    TechniqueConfig,
    register_technique,
)
from compressbench.training import TrainHook, train

CODEBOOK_VALUE_BYTES = 4  # float32 shared values
FLOAT_BYTES = 4


class WeightSharingConfig(TechniqueConfig):
    conv_bits: int = Field(8, ge=1, le=8, description="index bits of convolution layers (2^bits shared values)")
    fc_bits: int = Field(5, ge=1, le=8, description="index bits of fully connected layers")
    conv_position_bits: int = Field(8, ge=2, le=16, description="bits of a relative position in a sparse conv layer")
    fc_position_bits: int = Field(5, ge=2, le=16, description="bits of a relative position in a sparse fc layer")
    kmeans_iterations: int = Field(30, ge=1)
    fine_tune_epochs: int = Field(1, ge=0, description="centroid fine-tuning epochs")
    fine_tune_lr: float = Field(1e-4, gt=0)
    fine_tune_min_steps: int = Field(
        300, ge=0, le=1_000_000, description="fine-tune at least this many optimiser steps (more epochs on small data)"
    )
    fine_tune_samples: int | None = Field(20000, ge=1, description="train samples used for fine-tuning; None: all")


def shared_layers(module: nn.Module) -> dict[str, tuple[nn.Module, str]]:
    """The layers whose weights are shared: name -> (layer, 'conv' | 'fc')."""
    layers = {}
    for name, layer in module.named_modules():
        if isinstance(layer, CONV_LAYERS):
            layers[name] = (layer, "conv")
        elif isinstance(layer, nn.Linear):
            layers[name] = (layer, "fc")
    return layers


def kmeans_1d(values: np.ndarray, clusters: int, iterations: int) -> tuple[np.ndarray, np.ndarray]:
    """Lloyd's k-means on scalars with linear initialisation; an emptied cluster is re-seeded at the value farthest
    from its centroid, so `min(clusters, distinct values)` centroids are all used. Returns (centroids, labels)."""
    values = values.astype(np.float64)
    clusters = min(clusters, len(np.unique(values)))
    centroids = np.linspace(values.min(), values.max(), clusters)
    labels = np.zeros(len(values), dtype=np.int64)
    for _ in range(iterations):
        labels = assign(values, centroids)
        counts = np.bincount(labels, minlength=clusters)
        sums = np.bincount(labels, weights=values, minlength=clusters)
        updated = np.where(counts > 0, sums / np.maximum(counts, 1), centroids)
        for empty in np.flatnonzero(counts == 0):
            distance = np.abs(values - updated[assign(values, updated)])
            updated[empty] = values[int(distance.argmax())]
        updated = np.sort(updated)
        if np.allclose(updated, centroids):
            centroids = updated
            break
        centroids = updated
    labels = assign(values, centroids)
    # A cluster can still end up empty when two centroids coincide: give it one member so every value is used.
    for empty in np.flatnonzero(np.bincount(labels, minlength=clusters) == 0):
        crowded = np.flatnonzero(labels == np.bincount(labels).argmax())
        labels[crowded[0]] = empty
        centroids[empty] = values[crowded[0]]
    return centroids.astype(np.float32), labels


def assign(values: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    order = np.argsort(centroids)
    sorted_centroids = centroids[order]
    midpoints = (sorted_centroids[1:] + sorted_centroids[:-1]) / 2
    return order[np.searchsorted(midpoints, values)]


class TiedWeights(TrainHook):
    """Keeps each shared layer's weights on its centroids (and zeros at zero) after every optimiser step."""

    def __init__(self, ties: dict[str, tuple[torch.Tensor, torch.Tensor, int]]) -> None:
        self.ties = ties  # name -> (weight parameter, labels (-1 for a zero), clusters)

    @torch.no_grad()
    def after_step(self, model: nn.Module, step: int, total_steps: int) -> None:
        for weight, labels, clusters in self.ties.values():
            tie(weight, labels, clusters)


@torch.no_grad()
def tie(weight: torch.Tensor, labels: torch.Tensor, clusters: int) -> None:
    flat = weight.data.view(-1)
    members = labels >= 0
    counts = torch.bincount(labels[members], minlength=clusters).clamp_min(1)
    centroids = torch.bincount(labels[members], weights=flat[members].double(), minlength=clusters) / counts
    flat[members] = centroids[labels[members]].to(flat.dtype)
    flat[~members] = 0


@dataclass(frozen=True)
class LayerStreams:
    """A shared layer as it is stored: codebook (the non-zero shared values), one index per stored entry, and
    (sparse layers only) the relative positions of `runtime.encoding.relative_index`. When those need filler entries,
    each filler holds a zero, coded as index 0, and the codebook's values take codes 1, 2, ...; otherwise there is
    one index per non-zero weight and the codebook's values take codes 0, 1, ...."""

    name: str
    kind: str
    bits: int
    position_bits: int | None
    codebook: np.ndarray
    indices: np.ndarray
    positions: np.ndarray | None
    weights: int


def needs_zero_code(nonzero: np.ndarray, weights: int, position_bits: int) -> bool:
    """Whether a layer with non-zeros at `nonzero` (of `weights`) stores filler entries, whose zero takes a code."""
    return len(nonzero) < weights and bool(relative_index(nonzero, position_bits)[1].any())


def layer_streams(module: nn.Module, layers: list[dict[str, Any]]) -> list[LayerStreams]:
    """Rebuild the stored streams of the shared layers (as listed in the weight-sharing record) from the module."""
    found = shared_layers(module)
    streams = []
    for info in layers:
        if info["name"] not in found:
            raise CompressbenchError(f"layer {info['name']!r} of the weight-sharing step is gone from the model")
        flat = found[info["name"]][0].weight.detach().cpu().numpy().reshape(-1)
        nonzero = np.flatnonzero(flat)
        codebook, indices = np.unique(flat[nonzero], return_inverse=True)
        indices = indices.reshape(-1)
        sparse = len(nonzero) < len(flat)
        positions, filler = relative_index(nonzero, info["position_bits"]) if sparse else (None, None)
        zero_code = filler is not None and bool(filler.any())
        if len(codebook) + zero_code > 2 ** info["bits"]:
            also = " (plus the zero code of its filler entries)" if zero_code else ""
            raise CompressbenchError(
                f"layer {info['name']!r} has {len(codebook)} distinct non-zero values{also}, more than "
                f"2^{info['bits']} codes: it was changed after weight sharing"
            )
        if zero_code:
            coded = np.zeros(len(positions), dtype=np.int64)  # fillers: code 0, the zero they hold
            coded[~filler] = indices + 1
            indices = coded
        streams.append(
            LayerStreams(info["name"], info["kind"], info["bits"], info["position_bits"] if sparse else None,
                         codebook.astype(np.float32), indices.astype(np.int64), positions, len(flat))
        )  # fmt: skip
    return streams


def other_float_bytes(module: nn.Module, shared: list[str]) -> int:
    """Bytes of every parameter and buffer that is not a shared weight (biases, norms), stored as float32."""
    skip = {f"{name}.weight" for name in shared}
    tensors = dict(module.named_parameters())
    tensors.update({k: v for k, v in module.named_buffers() if v.is_floating_point()})
    return sum(t.numel() * FLOAT_BYTES for name, t in tensors.items() if name not in skip)


def fixed_width_storage(module: nn.Module, streams: list[LayerStreams]) -> dict[str, int]:
    """Bytes by part with fixed-width indices and positions (each layer's stream padded to whole bytes)."""
    codebooks = sum(len(s.codebook) * CODEBOOK_VALUE_BYTES for s in streams)
    indices = sum(math.ceil(len(s.indices) * s.bits / 8) for s in streams)
    positions = sum(math.ceil(len(s.positions) * s.position_bits / 8) for s in streams if s.positions is not None)
    storage = {"codebooks": codebooks, "indices": indices}
    if positions:
        storage["positions"] = positions
    storage["float params"] = other_float_bytes(module, [s.name for s in streams])
    return storage


def limit_train(data: DataBundle, samples: int | None) -> DataBundle:
    """The bundle with at most `samples` training samples (a fine-tuning budget)."""
    if samples is None or samples >= len(data.train):
        return data
    return dataclasses.replace(data, train=Split(data.train.x[:samples], data.train.y[:samples]))


@register_technique
class WeightSharing(Technique):
    name = "quant.weight_sharing"
    trains = True
    Config = WeightSharingConfig
    family = "weight sharing"
    summary = "k-means weight sharing per layer with centroid fine-tuning (Deep Compression); size only, runtime float"

    def apply(self, candidate: Candidate, context: Context) -> Candidate:
        config: WeightSharingConfig = self.config  # type: ignore[assignment]
        module = candidate.module
        layers = shared_layers(module)
        if not layers:
            raise CompressbenchError(f"{self.name}: the model has no convolution or linear layer to share weights in")
        ties: dict[str, tuple[torch.Tensor, torch.Tensor, int]] = {}
        infos = []
        for name, (layer, kind) in layers.items():
            if hasattr(layer, "weight_orig"):  # torch.nn.utils.prune re-parametrisation: make the zeros permanent
                torch.nn.utils.prune.remove(layer, "weight")
            bits = config.conv_bits if kind == "conv" else config.fc_bits
            flat = layer.weight.detach().cpu().numpy().reshape(-1)
            nonzero = np.flatnonzero(flat)
            position_bits = config.conv_position_bits if kind == "conv" else config.fc_position_bits
            clusters = 2**bits - needs_zero_code(nonzero, len(flat), position_bits)
            labels = np.full(len(flat), -1, dtype=np.int64)
            if len(nonzero):
                centroids, members = kmeans_1d(flat[nonzero], clusters, config.kmeans_iterations)
                labels[nonzero] = members
                with torch.no_grad():
                    layer.weight.view(-1).copy_(torch.from_numpy(np.where(labels >= 0, centroids[labels], 0.0)))
            ties[name] = (layer.weight, torch.from_numpy(labels), clusters)
            tie(*ties[name])
            # clusters < 2^bits when the layer's filler entries need a code for their zero: recorded, not hidden.
            infos.append({"name": name, "kind": kind, "bits": bits, "clusters": clusters,
                          "position_bits": position_bits, "weights": len(flat),
                          "nonzero": int(len(nonzero))})  # fmt: skip
        fine_tune: dict[str, Any] = {"epochs": config.fine_tune_epochs}
        fine_tune_steps = 0
        if config.fine_tune_epochs:
            data = context.data
            if config.fine_tune_samples is not None and config.fine_tune_samples < len(data.train):
                data = dataclasses.replace(
                    data,
                    train=Split(data.train.x[: config.fine_tune_samples], data.train.y[: config.fine_tune_samples]),
                )
            settings = context.train_config.model_copy(
                update={"epochs": config.fine_tune_epochs, "lr": config.fine_tune_lr, "patience": None,
                        "schedule": "constant", "weight_decay": 0.0, "min_steps": config.fine_tune_min_steps}
            )  # fmt: skip
            report = train(module, data, settings, seed=context.seed, hooks=[TiedWeights(ties)],
                           description=f"{self.name} fine-tune")  # fmt: skip
            fine_tune.update(
                {"epochs": report.epochs_run, "samples": len(data.train), "val_accuracy": report.val_accuracy}
            )
            fine_tune_steps = report.steps
        module.eval()
        streams = layer_streams(module, infos)
        for info, stream in zip(infos, streams, strict=True):
            info["shared_values"] = len(stream.codebook)
        candidate.flags.append(f"{self.name}: runtime is float (no table look-up kernel): a size-only technique")
        candidate.records.append(
            {
                "step": self.name,
                "layers": infos,
                "fine_tune": fine_tune,
                "fine_tune_steps": fine_tune_steps,
                "storage": fixed_width_storage(module, streams),
            }
        )
        return candidate
