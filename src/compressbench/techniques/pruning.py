"""What the pruning techniques share: layer look-up by name, masks kept through fine-tuning, sparse encodings.

Masks are plain tensors multiplied into the weights after every optimizer step (no reparametrisation left in
the module), so the model a technique hands on has exact zeros and exports like any dense model.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable, Iterable

import numpy as np
import torch
from pydantic import Field
from torch import nn

from compressbench.errors import CompressbenchError
from compressbench.modes import PRUNABLE_LAYERS, evaluating
from compressbench.runtime.encoding import relative_index
from compressbench.techniques.base import Context, TechniqueConfig
from compressbench.training import TrainConfig, TrainHook, TrainReport, train

# Relative-index widths tried for the sparse encoding; Deep Compression used 8 bits (conv) and 5 bits (fc).
INDEX_BITS = range(2, 13)


class FineTunedConfig(TechniqueConfig):
    """Fine-tuning after pruning, run by the shared training loop with the baseline's recipe otherwise."""

    fine_tune_epochs: int = Field(2, ge=0, le=1000, description="epochs of fine-tuning after (or while) pruning")
    fine_tune_lr: float | None = Field(
        None,
        gt=0,
        description="learning rate of the fine-tuning (decayed by the baseline's schedule); None: the baseline's "
        "with Adam, a tenth of it with SGD",
    )
    fine_tune_min_steps: int = Field(
        300, ge=0, le=1_000_000, description="fine-tune at least this many optimiser steps (more epochs on small data)"
    )


def fine_tune(
    model: nn.Module, context: Context, config: FineTunedConfig, hooks: Iterable[TrainHook] = (), *, what: str
) -> TrainReport | None:
    """Fine-tune in place with the baseline's training recipe (optimizer, schedule, augmentation), shorter; no early
    stopping, since a best-epoch restore could bring back pruned weights. At least `fine_tune_min_steps` optimiser
    steps: two epochs of 1,212 digits are 20 steps, which left 20-40 point drops. On the Fashion-MNIST MLP at 90%
    sparsity (Adam, cosine) the baseline's learning rate recovered 0.7 point of accuracy where a tenth of it left 2.5
    points."""
    if config.fine_tune_epochs == 0:
        return None
    lr = config.fine_tune_lr if config.fine_tune_lr is not None else default_fine_tune_lr(context.train_config)
    settings = context.train_config.model_copy(
        update={"epochs": config.fine_tune_epochs, "lr": lr, "patience": None, "min_steps": config.fine_tune_min_steps}
    )
    return train(model, context.data, settings, seed=context.seed, hooks=list(hooks), description=what)


def default_fine_tune_lr(training: TrainConfig) -> float:
    """The baseline's learning rate with Adam; a tenth of it with SGD, whose 0.1 restarts a converged network too
    hard: on the 93.6% Fashion-MNIST ResNet, 50% of channels removed and 2 epochs of fine-tuning lost 2.62 pt at lr
    0.1 and 1.20 pt at 0.01 (0.79 pt with 4 epochs)."""
    return training.lr / 10 if training.optimizer == "sgd" else training.lr


def output_layer(model: nn.Module, input_shape: tuple[int, ...]) -> tuple[str, nn.Module] | None:
    """The layer whose output is the model's output (the classifier), found by running one input through it."""
    produced: dict[int, tuple[str, nn.Module]] = {}
    handles = [
        layer.register_forward_hook(lambda m, _i, out, name=name: produced.__setitem__(id(out), (name, m)))
        for name, layer in model.named_modules()
        if isinstance(layer, PRUNABLE_LAYERS)
    ]
    try:
        with evaluating(model), torch.no_grad():
            out = model(torch.zeros(1, *input_shape))
    finally:
        for handle in handles:
            handle.remove()
    if id(out) in produced:
        return produced[id(out)]
    layers = [(n, m) for n, m in model.named_modules() if isinstance(m, PRUNABLE_LAYERS)]
    return layers[-1] if layers else None


def named_layers(model: nn.Module, names: list[str] | None, step: str, field: str) -> dict[str, nn.Module]:
    """The conv / linear layers named in `names` (all of them when None); an unknown name is one clear error."""
    layers = {name: m for name, m in model.named_modules() if isinstance(m, PRUNABLE_LAYERS)}
    if names is None:
        return layers
    for name in names:
        if name not in layers:
            close = difflib.get_close_matches(name, list(layers), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise CompressbenchError(
                f"{step}: field {field!r}: no conv or linear layer {name!r} in {type(model).__name__}{hint} "
                f"(layers: {', '.join(layers)})"
            )
    return {name: layers[name] for name in names}


def skipped_layers(model: nn.Module, layers: dict[str, nn.Module]) -> dict[str, dict[str, object]]:
    """The modules holding weight matrices or kernels (parameters of two or more dimensions) that a pruning
    technique leaves alone because they are not among `layers` (a GRU, attention's packed projection, an
    embedding), with how many such weights each holds and why: what a record must say it did not touch."""
    taken = {id(m.weight) for m in layers.values()}
    skipped: dict[str, dict[str, object]] = {}
    for name, module in model.named_modules():
        count = sum(p.numel() for p in module.parameters(recurse=False) if p.ndim >= 2 and id(p) not in taken)
        if count:
            reason = "not a conv or linear layer" if not isinstance(module, PRUNABLE_LAYERS) else "not selected"
            skipped[name or type(module).__name__] = {"type": type(module).__name__, "weights": count, "why": reason}
    return skipped


def coverage_flag(
    step: str, layers: dict[str, nn.Module], skipped: dict[str, dict[str, object]], asked: float
) -> str | None:
    """A flag when the layers left alone hold more than a tenth of the model's weights: the asked sparsity then
    describes only part of the model, and the record's `sparsity_of_all_weights` is the figure that holds."""
    pruned = sum(m.weight.numel() for m in layers.values())
    left = sum(int(entry["weights"]) for entry in skipped.values())
    if left <= 0.1 * (pruned + left):
        return None
    zeros = sum(int((m.weight == 0).sum()) for m in layers.values())
    names = ", ".join(f"{name} ({entry['type']})" for name, entry in skipped.items())
    return (
        f"{step}: {left:,} of {pruned + left:,} weights ({left / (pruned + left):.0%}) are in layers it did not prune "
        f"({names}); sparsity over all weights is {zeros / (pruned + left):.2f}, not the {asked:.2f} asked"
    )


def check_ratio(value: float, step: str, field: str) -> float:
    if not 0 < value < 1:
        raise CompressbenchError(f"{step}: field {field!r}: ratio {value} must lie strictly between 0 and 1")
    return value


class MaskHook(TrainHook):
    """Keeps masked weights at exactly zero during fine-tuning; `update` (when given) recomputes the masks at
    chosen steps (the gradual schedule)."""

    def __init__(
        self,
        masks: dict[str, torch.Tensor],
        layers: dict[str, nn.Module],
        update: Callable[[int, int], dict[str, torch.Tensor] | None] | None = None,
    ) -> None:
        self.masks, self.layers, self.update = masks, layers, update

    def after_step(self, model: nn.Module, step: int, total_steps: int) -> None:
        if self.update is not None and (new := self.update(step, total_steps)) is not None:
            self.masks = new
        apply_masks(self.layers, self.masks)


@torch.no_grad()
def apply_masks(layers: dict[str, nn.Module], masks: dict[str, torch.Tensor]) -> None:
    """Zero the pruned weights as +0.0 (multiplying by the mask would leave -0.0 for every negative one, whose sign
    a lossless stored form has to keep: a fifth of a 90%-pruned layer's encoding)."""
    for name, mask in masks.items():
        layers[name].weight.masked_fill_(~mask.bool(), 0.0)


def sparsity(layers: dict[str, nn.Module]) -> float:
    total = sum(m.weight.numel() for m in layers.values())
    zeros = sum(int((m.weight == 0).sum()) for m in layers.values())
    return zeros / max(total, 1)


def relative_index_encoding(
    weight: torch.Tensor, value_bytes: int = 4, widths: Iterable[int] = INDEX_BITS
) -> tuple[int, int, int]:
    """Deep Compression's sparse format for one tensor (`runtime.encoding.relative_index`): non-zeros in flattened
    order, each with its relative index in `bits` bits; a run of zeros too long for `bits` takes filler entries,
    each storing a zero value too. Returns (value bytes, index bytes, bits) at the width among `widths` that gives
    the fewest bytes."""
    flat = weight.detach().cpu().reshape(-1).numpy()
    positions = np.flatnonzero(flat)
    if len(positions) == 0:
        return 0, 0, 0
    best = None
    for bits in widths:
        entries = len(relative_index(positions, bits)[0])
        values, indices = entries * value_bytes, math.ceil(entries * bits / 8)
        if best is None or values + indices < best[0] + best[1]:
            best = (values, indices, bits)
    return best  # type: ignore[return-value]


def dense_bytes(model: nn.Module, skip: Iterable[torch.Tensor] = ()) -> int:
    """fp32 bytes of every parameter and buffer of `model` not in `skip`."""
    skipped = {id(t) for t in skip}
    tensors = [*model.parameters(), *(b for b in model.buffers() if b.is_floating_point())]
    return sum(t.numel() * 4 for t in tensors if id(t) not in skipped)


def check_runs(model: nn.Module, input_shape: tuple[int, ...], num_classes: int, step: str) -> None:
    """The pruned model still maps a batch to (N, num_classes) logits, or the step fails (nothing is kept)."""
    try:
        with evaluating(model), torch.no_grad():
            out = model(torch.zeros(2, *input_shape))
    except Exception as error:
        raise CompressbenchError(f"{step}: the pruned model no longer runs ({error}); nothing was kept") from error
    if tuple(out.shape) != (2, num_classes):
        raise CompressbenchError(f"{step}: the pruned model gives shape {tuple(out.shape)}; nothing was kept")
