"""`prune.nm`: N:M semi-structured sparsity (2:4 by default): in every M consecutive weights along a layer's input
dimension, only the N largest survive. GPUs with sparse tensor cores run it faster; no CPU kernel here does.
"""

from __future__ import annotations

import copy
import math

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
    skipped_layers,
    sparsity,
)

NEEDS_HARDWARE = (
    "N:M sparsity needs hardware support (e.g. sparse tensor cores) to run faster; no ONNX Runtime CPU kernel "
    "skips the zeros, so latency is not expected to change here"
)


class NMConfig(FineTunedConfig):
    n: int = Field(2, ge=1, le=64, description="weights kept in each group")
    m: int = Field(4, ge=2, le=64, description="group size along the input dimension")
    layers: list[str] | None = Field(
        None, description="conv / linear layers by name; None: every layer whose input dimension M divides"
    )

    @model_validator(mode="after")
    def _n_below_m(self) -> NMConfig:
        if self.n >= self.m:
            raise ValueError(f"n ({self.n}) must be smaller than m ({self.m})")
        return self


def grouped_view(weight: torch.Tensor) -> torch.Tensor:
    """The weight with its input dimension last (O, *kernel, I), as sparse tensor cores group it."""
    return weight if weight.ndim == 2 else weight.movedim(1, -1)


def nm_mask(weight: torch.Tensor, n: int, m: int) -> torch.Tensor:
    view = grouped_view(weight.detach().abs())
    groups = view.reshape(-1, m)
    keep = torch.zeros_like(groups)
    keep.scatter_(1, torch.topk(groups, n, dim=1).indices, 1.0)
    keep = keep.reshape(view.shape)
    return keep if weight.ndim == 2 else keep.movedim(-1, 1).contiguous()


@register_technique
class NMPruning(Technique):
    name = "prune.nm"
    trains = True
    Config = NMConfig
    family = "pruning"
    summary = "N:M semi-structured sparsity (2:4 default) + fine-tuning; speed needs sparse hardware"

    def apply(self, candidate: Candidate, context: Context) -> Candidate:
        config: NMConfig = self.config  # type: ignore[assignment]
        model = copy.deepcopy(candidate.module)
        chosen = named_layers(model, config.layers, self.name, "layers")
        fits = {name: m for name, m in chosen.items() if m.weight.shape[1] % config.m == 0}
        if config.layers is not None and len(fits) < len(chosen):
            bad = next(name for name in chosen if name not in fits)
            raise CompressbenchError(
                f"{self.name}: field 'layers': layer {bad!r} has {chosen[bad].weight.shape[1]} inputs, "
                f"not a multiple of m={config.m}"
            )
        if not fits:
            raise CompressbenchError(f"{self.name}: no layer has an input dimension divisible by m={config.m}")
        masks = {name: nm_mask(m.weight, config.n, config.m) for name, m in fits.items()}
        apply_masks(fits, masks)
        report = fine_tune(model, context, config, [MaskHook(masks, fits)], what=f"{self.name} fine-tune")
        storage = nm_storage(model, fits, config.n, config.m)
        skipped = skipped_layers(model, fits)
        for name in chosen.keys() - fits.keys():
            skipped[name]["why"] = f"{chosen[name].weight.shape[1]} inputs, not a multiple of m={config.m}"
        candidate.module = model
        candidate.flags.append(NEEDS_HARDWARE)
        if flag := coverage_flag(self.name, fits, skipped, 1 - config.n / config.m):
            candidate.flags.append(flag)
        candidate.records.append(
            {
                "step": self.name,
                "pattern": f"{config.n}:{config.m}",
                "pruned_layers": list(fits),
                "skipped_layers": skipped,
                "sparsity": sparsity(fits),
                "fine_tune_epochs": report.epochs_run if report else 0,
                "fine_tune_steps": report.steps if report else 0,
                "val_accuracy_after_fine_tune": report.val_accuracy if report else None,
                "storage": storage,
            }
        )
        return candidate


def nm_storage(model: nn.Module, layers: dict[str, nn.Module], n: int, m: int) -> dict[str, int]:
    """The compressed N:M layout: N values of every M, plus ceil(log2 M) bits of position per kept value."""
    kept = sum(layer.weight.numel() * n // m for layer in layers.values())
    return {
        "kept values (fp32)": kept * 4,
        "position metadata": math.ceil(kept * math.ceil(math.log2(m)) / 8),
        "dense tensors (fp32)": dense_bytes(model, skip=[layer.weight for layer in layers.values()]),
    }
