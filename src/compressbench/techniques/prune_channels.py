"""`prune.channels`: structured pruning that removes whole channels / units (torch-pruning's dependency graph, see
`channels.py`) and fine-tunes; per-group ratios may come from sensitivity curves (`sensitivity.py`)."""

from __future__ import annotations

import copy
from typing import Literal

from pydantic import Field, field_validator, model_validator

from compressbench.errors import CompressbenchError
from compressbench.measure.size import count_macs
from compressbench.techniques.base import Candidate, Context, Need, Technique, register_technique
from compressbench.techniques.channels import STEP, Importance, channel_counts, prune_channels
from compressbench.techniques.pruning import FineTunedConfig, fine_tune
from compressbench.techniques.sensitivity import sensitivity_ratios


class ChannelsConfig(FineTunedConfig):
    # Removing whole channels needs a longer recovery than zeroing weights: 4 epochs kept the converged Fashion-MNIST
    # ResNet within 0.8 pt at 2.4x / 2.6x (2 epochs: 1.2 pt).
    fine_tune_epochs: int = Field(4, ge=0, le=1000, description="epochs of fine-tuning after pruning")
    ratio: float = Field(0.5, gt=0, lt=1, description="fraction of channels removed (uniform per group, or global)")
    ratios: Literal["uniform", "sensitivity"] | dict[str, float] = Field(
        "uniform",
        description="uniform: `ratio` in every group; sensitivity: per-group ratios chosen from sensitivity curves "
        "for `target_macs`; or {layer name: ratio} (groups not named are kept whole)",
    )
    target_macs: float | None = Field(
        None,
        gt=0,
        lt=1,
        description="ratios=sensitivity: fraction of the MACs to keep; None: what uniform `ratio` keeps",
    )
    scope: Literal["layer", "global"] = Field(
        "layer", description="layer: every group loses `ratio` of its channels; global: one ranking over all groups"
    )
    importance: Importance = Field("l2", description="channel score: l1/l2 weight norm, bn_scale, first-order taylor")
    steps: int = Field(1, ge=1, le=50, description="iterative pruning steps, fine-tuned after each")
    ignore: list[str] = Field(default_factory=list, description="layers whose outputs are never pruned")
    round_to: int | None = Field(None, ge=1, description="keep channel counts a multiple of this")
    max_ratio: float = Field(0.9, gt=0, lt=1, description="no group loses more than this fraction (global scope)")
    sensitivity_ratios: list[float] = Field(
        default_factory=lambda: [0.2, 0.4, 0.6, 0.8], min_length=1, description="ratios the curves are measured at"
    )
    sensitivity_samples: int = Field(2000, ge=10, description="validation samples scoring each pruned variant")

    @field_validator("ratios")
    @classmethod
    def _ratios_in_range(cls, value):
        if isinstance(value, dict):
            if not value:
                raise ValueError("a ratios mapping needs at least one layer")
            for layer, ratio in value.items():
                if not 0 < ratio < 1:
                    raise ValueError(f"layer {layer!r}: ratio {ratio} must lie strictly between 0 and 1")
        return value

    @field_validator("sensitivity_ratios")
    @classmethod
    def _grid_in_range(cls, value):
        for ratio in value:
            if not 0 < ratio < 1:
                raise ValueError(f"ratio {ratio} must lie strictly between 0 and 1")
        return sorted(set(value))

    @model_validator(mode="after")
    def _consistent(self) -> ChannelsConfig:
        if self.scope == "global" and self.ratios != "uniform":
            raise ValueError("scope 'global' ranks all groups with one ratio; use it with ratios 'uniform'")
        if self.target_macs is not None and self.ratios != "sensitivity":
            raise ValueError("target_macs is used by ratios 'sensitivity' only")
        return self


@register_technique
class ChannelPruning(Technique):
    name = STEP
    trains = True
    Config = ChannelsConfig
    family = "pruning"
    # Torch-Pruning cannot trace Hugging Face attention: a transformer is refused (channels.refuse_attention).
    needs = frozenset({Need.NO_ATTENTION_LAYERS})
    summary = "removes whole channels (torch-pruning dependency graph) + fine-tuning; the model really shrinks"

    def apply(self, candidate: Candidate, context: Context) -> Candidate:
        config: ChannelsConfig = self.config  # type: ignore[assignment]
        shape = context.data.spec.input_shape
        model = copy.deepcopy(candidate.module)  # the candidate is replaced only once everything has worked
        macs_before = count_macs(model, shape)
        params_before = sum(p.numel() for p in model.parameters())
        per_layer: dict[str, float] | None = None
        allocation: dict | None = None
        if isinstance(config.ratios, dict):
            per_layer = dict(config.ratios)
        elif config.ratios == "sensitivity":
            per_layer, allocation = sensitivity_ratios(model, context, config)
        fine_tunes: list[float] = []
        fine_tune_steps = 0

        def between(number: int) -> None:
            nonlocal fine_tune_steps
            report = fine_tune(model, context, config, what=f"{self.name} fine-tune {number}/{config.steps}")
            if report is not None:
                fine_tunes.append(report.val_accuracy)
                fine_tune_steps += report.steps

        groups = prune_channels(
            model,
            context.data,
            ratio=config.ratio,
            per_layer=per_layer,
            scope=config.scope,
            importance=config.importance,
            steps=config.steps,
            ignore=config.ignore,
            round_to=config.round_to,
            max_ratio=config.max_ratio,
            between_steps=between,
            step=self.name,
        )
        macs_after = count_macs(model, shape)
        if macs_after >= macs_before:
            raise CompressbenchError(
                f"{self.name}: no channel was removed (importance {config.importance!r} scored no group; "
                "bn_scale needs batch norm layers)"
            )
        after = channel_counts(model, groups)
        candidate.module = model
        candidate.records.append(
            {
                "step": self.name,
                "importance": config.importance,
                "scope": config.scope,
                "ratios": config.ratios if isinstance(config.ratios, str) else dict(config.ratios),
                "ratio": config.ratio,
                "steps": config.steps,
                "channels": {g.root: [g.channels, after[g.root]] for g in groups},
                "coupled": {g.root: list(g.layers) for g in groups if len(g.layers) > 1},
                "macs": [macs_before, macs_after],
                "macs_kept": macs_after / macs_before,
                "params": [params_before, sum(p.numel() for p in model.parameters())],
                "val_accuracy_after_fine_tune": fine_tunes,
                "fine_tune_steps": fine_tune_steps,
                **({"sensitivity": allocation} if allocation else {}),
            }
        )
        return candidate
