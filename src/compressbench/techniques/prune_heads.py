"""`prune.heads`: structured pruning of a transformer encoder — whole attention heads and feed-forward channels —
then fine-tuning. The encoder really shrinks (narrower query / key / value / output projections, a narrower FFN), so
every runtime runs fewer MACs; the hidden size, and so the residual stream and its layer norms, is kept.

Written here rather than with Torch-Pruning: Torch-Pruning 1.x cannot trace Hugging Face's BERT attention (its
tracer fails on the attention-mask path of transformers 5), and a head is only a head if query, key and value lose
the same rows and the output projection the matching columns, which is four slices per layer. The pruned model is
checked against the unpruned one with the removed heads and channels zeroed, as `prune.channels` checks its own.

Importance: `taylor` (default) scores a head or channel by |w * dL/dw| summed over its weights on a few training
batches — the first-order estimate of the loss change from removing it, which for a pretrained encoder finds the
heads its task uses (Michel et al. 2019, "Are sixteen heads really better than one?", score heads by the same
first-order term); `l2` by its weights' norm, with no data.
"""

from __future__ import annotations

import copy
from typing import Literal

import torch
from pydantic import Field, model_validator
from torch import nn

from compressbench.errors import CompressbenchError
from compressbench.measure.size import count_macs
from compressbench.models.transformer import heads_of, is_attention
from compressbench.techniques.base import Candidate, Context, Need, Technique, register_technique
from compressbench.techniques.channels import check_equivalent, gradients_for_taylor
from compressbench.techniques.pruning import FineTunedConfig, fine_tune

STEP = "prune.heads"


class HeadsConfig(FineTunedConfig):
    heads: float = Field(0.5, ge=0, lt=1, description="fraction of attention heads removed in every layer")
    ffn: float = Field(0.0, ge=0, lt=1, description="fraction of feed-forward channels removed in every layer")
    importance: Literal["taylor", "l2"] = Field(
        "taylor", description="taylor: |w * dL/dw| on training batches; l2: weight norm, no data"
    )

    @model_validator(mode="after")
    def _something_removed(self) -> HeadsConfig:
        if self.heads == 0 and self.ffn == 0:
            raise ValueError("heads and ffn are both 0: nothing would be pruned")
        return self


def encoder_blocks(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The BERT-style blocks of `model` (`attention.self.{query,key,value}`, `attention.output.dense`,
    `intermediate.dense`, `output.dense`), by name; a model without them is refused, naming what is needed."""
    blocks = []
    for name, module in model.named_modules():
        attention = getattr(getattr(module, "attention", None), "self", None)
        if attention is not None and is_attention(attention):
            blocks.append((name, module))
    if not blocks:
        raise CompressbenchError(
            f"{STEP}: {type(model).__name__} has no BERT-style encoder layer (attention.self.query / key / value, "
            "attention.output.dense, intermediate.dense, output.dense); use prune.channels or prune.magnitude"
        )
    return blocks


def _scores(weights: list[tuple[torch.Tensor, int]], groups: int, taylor: bool) -> torch.Tensor:
    """One score per group of rows (dim 0) or columns (dim 1) over several weights: |w * grad| or w^2, summed."""
    total = torch.zeros(groups)
    for weight, dim in weights:
        value = (weight * weight.grad).abs() if taylor else weight.detach() ** 2
        per_index = value.sum(dim=1 - dim) if value.ndim == 2 else value
        total += per_index.reshape(groups, -1).sum(1)
    return total


def _keep(linear: nn.Linear, index: torch.Tensor, dim: int) -> nn.Linear:
    """A copy of `linear` with only the output rows (dim 0) or input columns (dim 1) in `index`."""
    weight = linear.weight.detach().index_select(dim, index)
    out_features, in_features = weight.shape
    pruned = nn.Linear(in_features, out_features, bias=linear.bias is not None)
    pruned.weight.data.copy_(weight)
    if linear.bias is not None:
        pruned.bias.data.copy_(linear.bias.detach() if dim == 1 else linear.bias.detach()[index])
    return pruned


@torch.no_grad()
def prune_block(block: nn.Module, heads_removed: list[int], channels_removed: list[int]) -> None:
    """Remove heads (by index) and FFN channels (by index) from one encoder block, in place."""
    attention = block.attention.self
    size = attention.attention_head_size
    heads = heads_of(attention)
    if heads_removed:
        kept_heads = [h for h in range(heads) if h not in set(heads_removed)]
        rows = torch.tensor([h * size + i for h in kept_heads for i in range(size)])
        for projection in ("query", "key", "value"):
            setattr(attention, projection, _keep(getattr(attention, projection), rows, 0))
        block.attention.output.dense = _keep(block.attention.output.dense, rows, 1)
        attention.num_attention_heads = len(kept_heads)
        attention.all_head_size = len(kept_heads) * size
    if channels_removed:
        width = block.intermediate.dense.out_features
        kept = torch.tensor([c for c in range(width) if c not in set(channels_removed)])
        block.intermediate.dense = _keep(block.intermediate.dense, kept, 0)
        block.output.dense = _keep(block.output.dense, kept, 1)


@register_technique
class HeadPruning(Technique):
    name = STEP
    trains = True
    Config = HeadsConfig
    family = "pruning"
    needs = frozenset({Need.ATTENTION_LAYERS})
    summary = "removes whole attention heads and FFN channels of a transformer encoder + fine-tuning; it shrinks"

    def apply(self, candidate: Candidate, context: Context) -> Candidate:
        config: HeadsConfig = self.config  # type: ignore[assignment]
        shape = context.data.spec.input_shape
        model = copy.deepcopy(candidate.module)  # the candidate is replaced only once everything has worked
        blocks = encoder_blocks(model)
        macs_before = count_macs(model, shape, context.data.spec.torch_dtype)
        params_before = sum(p.numel() for p in model.parameters())
        if config.importance == "taylor":
            gradients_for_taylor(model, context.data, batch_size=32)
        removed: list[tuple[str, list[int]]] = []
        plan: list[tuple[nn.Module, list[int], list[int]]] = []
        heads_per_layer, channels_per_layer = {}, {}
        for name, block in blocks:
            attention = block.attention.self
            size = attention.attention_head_size
            heads = heads_of(attention)
            drop_heads = min(round(config.heads * heads), heads - 1)  # a layer keeps at least one head
            score = _scores(
                [(getattr(attention, p).weight, 0) for p in ("query", "key", "value")]
                + [(getattr(attention, p).bias, 0) for p in ("query", "key", "value")]
                + [(block.attention.output.dense.weight, 1)],
                heads,
                config.importance == "taylor",
            )
            dropped_heads = sorted(score.argsort()[:drop_heads].tolist())
            width = block.intermediate.dense.out_features
            drop_channels = min(round(config.ffn * width), width - 1)
            score = _scores(
                [
                    (block.intermediate.dense.weight, 0),
                    (block.intermediate.dense.bias, 0),
                    (block.output.dense.weight, 1),
                ],
                width,
                config.importance == "taylor",
            )
            dropped_channels = sorted(score.argsort()[:drop_channels].tolist())
            rows = [h * size + i for h in dropped_heads for i in range(size)]
            removed += [(f"{name}.attention.self.{p}", rows) for p in ("query", "key", "value") if rows]
            if dropped_channels:
                removed.append((f"{name}.intermediate.dense", dropped_channels))
            plan.append((block, dropped_heads, dropped_channels))
            heads_per_layer[name] = [heads, heads - len(dropped_heads)]
            channels_per_layer[name] = [width, width - len(dropped_channels)]
        model.zero_grad(set_to_none=True)
        if not removed:
            raise CompressbenchError(
                f"{self.name}: heads {config.heads:g} and ffn {config.ffn:g} remove nothing from layers of "
                f"{list(heads_per_layer.values())[0][0]} heads and {list(channels_per_layer.values())[0][0]} FFN "
                "channels (each layer keeps at least one); ask for larger fractions"
            )
        if short := [n for n, (h, kept) in heads_per_layer.items() if h - kept < round(config.heads * h)]:
            candidate.flags.append(
                f"{self.name}: {len(short)} layer(s) kept one head rather than lose {config.heads:.0%} of their heads"
            )
        before = copy.deepcopy(model)
        for block, dropped_heads, dropped_channels in plan:
            prune_block(block, dropped_heads, dropped_channels)
        check_equivalent(before, model, removed, context.data, self.name)
        report = fine_tune(model, context, config, what=f"{self.name} fine-tune")
        macs_after = count_macs(model, shape, context.data.spec.torch_dtype)
        candidate.module = model
        candidate.records.append(
            {
                "step": self.name,
                "importance": config.importance,
                "heads": heads_per_layer,
                "ffn_channels": channels_per_layer,
                "macs": [macs_before, macs_after],
                "macs_kept": macs_after / macs_before,
                "params": [params_before, sum(p.numel() for p in model.parameters())],
                "val_accuracy_after_fine_tune": report.val_accuracy if report else None,
                "fine_tune_steps": report.steps if report else 0,
            }
        )
        return candidate
