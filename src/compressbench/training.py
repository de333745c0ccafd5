"""The one train / fine-tune / evaluate loop. Deterministic by seed; techniques hook in through `loss` and `hooks`."""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field, model_serializer
from torch import nn

from compressbench import progress
from compressbench.data import DataBundle, Split
from compressbench.errors import CompressbenchError
from compressbench.imports import describe_exception
from compressbench.machine_lock import training_slot
from compressbench.models import training_defaults
from compressbench.modes import evaluating


class TrainConfig(BaseModel):
    """How a model is trained or fine-tuned. Each zoo family's own settings live in its registry entry."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    epochs: int = Field(10, ge=0)
    batch_size: int = Field(128, ge=1)
    optimizer: Literal["adam", "sgd"] = "adam"
    lr: float = Field(1e-3, gt=0)
    momentum: float = Field(0.9, ge=0, lt=1)
    nesterov: bool = True
    weight_decay: float = Field(0.0, ge=0)
    schedule: Literal["constant", "cosine"] = "constant"
    augment: bool = False
    patience: int | None = Field(None, ge=1, description="stop after this many epochs without a better val accuracy")
    threads: int | None = Field(None, ge=1, description="torch threads while training; None keeps torch's default")
    min_steps: int = Field(
        0, ge=0, description="at least this many optimiser steps: more epochs on small data (early stopping after)"
    )

    @model_serializer(mode="wrap")
    def _identity(self, dump: Any) -> dict[str, Any]:
        """`min_steps` appears only when set, so the keys of configs that do not use it are as before it existed."""
        fields = dump(self)
        if fields.get("min_steps") == 0:
            del fields["min_steps"]
        return fields

    def epochs_for(self, samples: int) -> int:
        """The epochs to run on `samples` training samples: `epochs`, or more to reach `min_steps`."""
        return max(self.epochs, math.ceil(self.min_steps / math.ceil(samples / self.batch_size)))


def default_train_config(model: str) -> TrainConfig:
    """The model family's training settings from its registry entry (the generic defaults for a user factory)."""
    return TrainConfig(**training_defaults(model))


@dataclass
class Batch:
    x: torch.Tensor
    y: torch.Tensor
    index: torch.Tensor  # positions in the train split, so cached per-sample values (teacher logits) can be found


LossFn = Callable[[nn.Module, torch.Tensor, Batch], torch.Tensor]


class TrainHook:
    """Called by the loop; techniques override what they need (pruning masks, schedules)."""

    def after_step(self, model: nn.Module, step: int, total_steps: int) -> None: ...

    def after_epoch(self, model: nn.Module, epoch: int) -> None: ...


def cross_entropy(model: nn.Module, logits: torch.Tensor, batch: Batch) -> torch.Tensor:
    return F.cross_entropy(logits, batch.y)


@dataclass
class TrainReport:
    epochs_run: int
    best_epoch: int
    val_accuracy: float
    history: list[dict[str, float]]
    seconds: float
    steps: int = 0  # optimiser steps taken


def train(
    model: nn.Module,
    data: DataBundle,
    config: TrainConfig,
    *,
    seed: int = 0,
    loss: LossFn = cross_entropy,
    hooks: Sequence[TrainHook] = (),
    description: str = "train",
    channels_last: bool = False,
) -> TrainReport:
    """Train `model` in place on the train split; keep the weights of the best validation epoch when early-stopping.

    `channels_last` trains convolutions in the channels-last layout, 1.2-1.3x faster here (EPYC Zen 3, oneDNN:
    ResNet-14 197 -> 160 ms a batch). Only the zoo's unpruned models ask for it: torch 2.13 crashed (a native abort
    in backward) fine-tuning a channel-pruned ResNet in that layout. Holds the machine's training slot
    (`compressbench.machine_lock`): no timing of another worker runs meanwhile."""
    with training_slot():
        return _train(model, data, config, seed, loss, hooks, description, channels_last)


def _train(
    model: nn.Module,
    data: DataBundle,
    config: TrainConfig,
    seed: int,
    loss: LossFn,
    hooks: Sequence[TrainHook],
    description: str,
    channels_last: bool,
) -> TrainReport:
    started = time.perf_counter()
    previous_threads = torch.get_num_threads()
    if config.threads:
        torch.set_num_threads(config.threads)
    torch.manual_seed(seed)
    generator = np.random.default_rng(seed)
    x_train = torch.from_numpy(data.train.x)
    y_train = torch.from_numpy(data.train.y)
    steps_per_epoch = math.ceil(len(y_train) / config.batch_size)
    epochs = config.epochs_for(len(y_train))
    total_steps = max(1, steps_per_epoch * epochs)
    channels_last = channels_last and _has_conv2d(model) and data.train.x.ndim == 4
    if channels_last:
        model.to(memory_format=torch.channels_last)
    optimizer = _optimizer(model, config)
    scheduler = (
        torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, total_steps) if config.schedule == "cosine" else None
    )
    history: list[dict[str, float]] = []
    best = (-1.0, 0, None)  # (val accuracy, epoch, state)
    step = 0
    try:
        with progress.bar(description, epochs) as bar:
            for epoch in range(1, epochs + 1):
                model.train()
                order = torch.from_numpy(generator.permutation(len(y_train)))
                running = 0.0
                for start in range(0, len(order), config.batch_size):
                    index = order[start : start + config.batch_size]
                    x = x_train[index]
                    if config.augment:
                        x = augment(x, data.spec.augmentations, generator)
                    if channels_last:
                        x = x.contiguous(memory_format=torch.channels_last)
                    batch = Batch(x, y_train[index], index)
                    value = loss(model, forward(model, x, description), batch)
                    optimizer.zero_grad(set_to_none=True)
                    value.backward()
                    optimizer.step()
                    if scheduler:
                        scheduler.step()
                    step += 1
                    running += value.item() * len(index)
                    for hook in hooks:
                        hook.after_step(model, step, total_steps)
                for hook in hooks:
                    hook.after_epoch(model, epoch)
                val_accuracy = evaluate(model, data.val)
                history.append({"epoch": epoch, "loss": running / len(order), "val_accuracy": val_accuracy})
                if val_accuracy > best[0] and step >= config.min_steps:  # the best of the epochs past the minimum
                    best = (
                        val_accuracy,
                        epoch,
                        copy.deepcopy(model.state_dict()) if config.patience else None,
                    )
                if bar is not None:
                    bar.update(bar.task_ids[0], advance=1, status=f"val {val_accuracy:.4f}")
                if config.patience and epoch - best[1] >= config.patience and step >= config.min_steps:
                    break
    finally:
        torch.set_num_threads(previous_threads)
        if channels_last:
            model.to(memory_format=torch.contiguous_format)  # what export, pruning and the cache expect
    if config.patience and best[2] is not None:
        model.load_state_dict(best[2])
    model.eval()
    if not history:
        val_accuracy = evaluate(model, data.val)
        return TrainReport(0, 0, val_accuracy, [], time.perf_counter() - started)
    final = best[0] if config.patience else history[-1]["val_accuracy"]
    best_epoch = best[1] if config.patience else len(history)
    return TrainReport(len(history), best_epoch, final, history, time.perf_counter() - started, step)


def forward(model: nn.Module, x: torch.Tensor, description: str) -> torch.Tensor:
    """The model's forward pass; an exception raised in it (the user's code, typically) is one line naming it."""
    try:
        return model(x)
    except Exception as error:
        raise CompressbenchError(
            f"{description}: the model's forward pass on a batch of {len(x)} failed: "
            f"{describe_exception(error, type(model).forward)}"
        ) from error


def _has_conv2d(model: nn.Module) -> bool:
    return any(isinstance(m, nn.Conv2d) for m in model.modules())


def _optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    """The fused CPU kernels update every parameter in one call: AdamW on the MLP 2.9 -> 2.1 ms a batch here."""
    params = [p for p in model.parameters() if p.requires_grad]
    if config.optimizer == "sgd":
        return torch.optim.SGD(
            params,
            lr=config.lr,
            momentum=config.momentum,
            nesterov=config.nesterov,
            weight_decay=config.weight_decay,
            fused=True,
        )
    return torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay, fused=True)


def augment(x: torch.Tensor, allowed: tuple[str, ...], generator: np.random.Generator, pad: int = 2) -> torch.Tensor:
    """Random `pad`-pixel crop (and horizontal flip where the dataset allows it), per sample, for image batches."""
    if x.ndim != 4:
        return x
    n, _, h, w = x.shape
    if "crop" in allowed:
        padded = F.pad(x, (pad, pad, pad, pad))
        dy, dx = generator.integers(0, 2 * pad + 1, (2, n))
        rows = torch.arange(h)[None, :] + torch.from_numpy(dy)[:, None]
        cols = torch.arange(w)[None, :] + torch.from_numpy(dx)[:, None]
        x = padded[
            torch.arange(n)[:, None, None, None],
            torch.arange(x.shape[1])[None, :, None, None],
            rows[:, None, :, None],
            cols[:, None, None, :],
        ]
    if "hflip" in allowed:
        flip = torch.from_numpy(generator.random(n) < 0.5)
        x = torch.where(flip[:, None, None, None], x.flip(-1), x)
    return x


@torch.no_grad()
def predict_logits(model: nn.Module, split: Split, batch_size: int = 512) -> np.ndarray:
    with evaluating(model):
        out = [model(torch.from_numpy(split.x[i : i + batch_size])).numpy() for i in range(0, len(split), batch_size)]
    return np.concatenate(out)


def evaluate(model: nn.Module, split: Split) -> float:
    """Top-1 accuracy of the torch module (training-time feedback; reported accuracy comes from the runtime)."""
    return float((predict_logits(model, split).argmax(1) == split.y).mean())
