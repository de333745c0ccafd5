"""`prune.magnitude`: unstructured magnitude pruning, one-shot or gradual (Zhu & Gupta's cubic AGP schedule).

Zeros that no kernel skips: the gain is size (a Deep-Compression sparse encoding, and the zstd-compressed
file), never speed, and the candidate carries a flag saying so.
"""

from __future__ import annotations

import copy
import math
from typing import Literal

import torch
from pydantic import Field, model_validator
from torch import nn

from compressbench.errors import CompressbenchError
from compressbench.techniques.base import Candidate, Context, Technique, register_technique
from compressbench.techniques.pruning import (
    FineTunedConfig,
    MaskHook,
    apply_masks,
    coverage_flag,
    dense_bytes,
    fine_tune,
    named_layers,
    relative_index_encoding,
    skipped_layers,
    sparsity,
)

UNEXPLOITED = (
    "unstructured sparsity is not exploited by any ONNX Runtime CPU kernel: latency is not expected to change; "
    "the gain is size (sparse encoding, compressed bytes)"
)


class MagnitudeConfig(FineTunedConfig):
    sparsity: float = Field(0.8, gt=0, lt=1, description="fraction of the pruned layers' weights set to zero")
    scope: Literal["global", "layer"] = Field(
        "global", description="global: one threshold over all pruned layers; layer: each layer to `sparsity`"
    )
    schedule: Literal["gradual", "one_shot"] = Field(
        "gradual", description="gradual: AGP's cubic ramp while fine-tuning; one_shot: prune, then fine-tune"
    )
    ramp: float = Field(0.75, gt=0, le=1, description="fraction of the fine-tuning steps over which sparsity rises")
    updates: int = Field(16, ge=1, le=10_000, description="mask updates along the gradual ramp")
    layers: list[str] | None = Field(None, description="conv / linear layers to prune by name; None: all of them")

    @model_validator(mode="after")
    def _gradual_needs_training(self) -> MagnitudeConfig:
        if self.schedule == "gradual" and self.fine_tune_epochs == 0:
            raise ValueError("schedule 'gradual' prunes while fine-tuning, so fine_tune_epochs must be at least 1")
        return self


def magnitude_masks(layers: dict[str, nn.Module], target: float, scope: str) -> dict[str, torch.Tensor]:
    """Masks that zero exactly round(target * n) of the smallest-magnitude weights, globally or per layer."""
    if scope == "layer":
        return {
            name: _smallest_zeroed(m.weight.detach().abs().reshape(-1), target).view_as(m.weight)
            for name, m in layers.items()
        }
    flat = torch.cat([m.weight.detach().abs().reshape(-1) for m in layers.values()])
    keep = _smallest_zeroed(flat, target)
    masks, start = {}, 0
    for name, m in layers.items():
        masks[name] = keep[start : start + m.weight.numel()].view_as(m.weight)
        start += m.weight.numel()
    return masks


def _smallest_zeroed(values: torch.Tensor, target: float) -> torch.Tensor:
    keep = torch.ones_like(values)
    count = round(target * values.numel())
    if count:
        keep[torch.topk(values, count, largest=False, sorted=False).indices] = 0
    return keep


def agp_sparsity(final: float, initial: float, progress: float) -> float:
    """Zhu & Gupta (2017): s_t = s_f + (s_i - s_f) (1 - progress)^3, progress in [0, 1]."""
    progress = min(max(progress, 0.0), 1.0)
    return final + (initial - final) * (1 - progress) ** 3


@register_technique
class MagnitudePruning(Technique):
    name = "prune.magnitude"
    trains = True
    Config = MagnitudeConfig
    family = "pruning"
    summary = "unstructured magnitude pruning (global or per layer, one-shot or gradual AGP) + fine-tuning"

    def apply(self, candidate: Candidate, context: Context) -> Candidate:
        config: MagnitudeConfig = self.config  # type: ignore[assignment]
        model = copy.deepcopy(candidate.module)  # the candidate is replaced only once everything has worked
        layers = named_layers(model, config.layers, self.name, "layers")
        if not layers:
            raise CompressbenchError(f"{self.name}: {type(model).__name__} has no conv or linear layer to prune")
        initial = sparsity(layers)
        if config.schedule == "one_shot":
            masks = magnitude_masks(layers, config.sparsity, config.scope)
            apply_masks(layers, masks)
            hook = MaskHook(masks, layers)
        else:
            events: set[int] = set()

            def update(step: int, total: int) -> dict[str, torch.Tensor] | None:
                ramp_steps = max(1, math.floor(config.ramp * total))
                if not events:
                    events.update(max(1, round(ramp_steps * (k + 1) / config.updates)) for k in range(config.updates))
                if step not in events:
                    return None
                target = agp_sparsity(config.sparsity, initial, step / ramp_steps)
                return magnitude_masks(layers, target, config.scope)

            hook = MaskHook({}, layers, update)
        report = fine_tune(model, context, config, [hook], what=f"{self.name} fine-tune")
        # The end state is the target, whatever the step count did to the ramp; masks are now permanent zeros.
        final = magnitude_masks(layers, config.sparsity, config.scope)
        apply_masks(layers, final)
        reached = sparsity(layers)
        storage = sparse_storage(model, layers)
        skipped = skipped_layers(model, layers)
        all_weights = sum(m.weight.numel() for m in layers.values()) + sum(e["weights"] for e in skipped.values())
        candidate.module = model
        candidate.flags.append(UNEXPLOITED)
        if flag := coverage_flag(self.name, layers, skipped, config.sparsity):
            candidate.flags.append(flag)
        candidate.records.append(
            {
                "step": self.name,
                "target_sparsity": config.sparsity,
                "sparsity": reached,
                "per_layer_sparsity": {n: float((m.weight == 0).float().mean()) for n, m in layers.items()},
                "sparsity_of_all_weights": sum(int((m.weight == 0).sum()) for m in layers.values()) / all_weights,
                "skipped_layers": skipped,
                "scope": config.scope,
                "schedule": config.schedule,
                "fine_tune_epochs": report.epochs_run if report else 0,
                "fine_tune_steps": report.steps if report else 0,
                "val_accuracy_after_fine_tune": report.val_accuracy if report else None,
                "storage": storage,
            }
        )
        return candidate


def sparse_storage(model: nn.Module, layers: dict[str, nn.Module]) -> dict[str, int]:
    """Bytes of the sparse encoding: pruned weights as values + relative indices, everything else dense fp32."""
    values = indices = 0
    for layer in layers.values():
        v, i, _bits = relative_index_encoding(layer.weight)
        values, indices = values + v, indices + i
    return {
        "sparse values (fp32)": values,
        "sparse relative indices": indices,
        "dense tensors (fp32)": dense_bytes(model, skip=[m.weight for m in layers.values()]),
    }
