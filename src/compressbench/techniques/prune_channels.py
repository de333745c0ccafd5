"""`prune.channels`: structured pruning that removes whole channels / units with torch-pruning's dependency graph.

Layers coupled by a residual add, a batch norm or a flatten are pruned together (one *group*, named by its first
layer); the next layers lose the matching inputs. The model really shrinks, so the runtime runs fewer MACs.
The output layer (the classifier) never loses outputs.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field, field_validator, model_validator
from torch import nn

from compressbench.data import DataBundle
from compressbench.errors import CompressbenchError
from compressbench.measure.size import count_macs
from compressbench.techniques.base import Candidate, Context, Form, Technique, register_technique
from compressbench.techniques.pruning import (
    FineTunedConfig,
    check_runs,
    fine_tune,
    named_layers,
    output_layer,
)

Importance = Literal["l1", "l2", "bn_scale", "taylor"]
STEP = "prune.channels"


class ChannelsConfig(FineTunedConfig):
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


@dataclass(frozen=True)
class ChannelGroup:
    """Layers whose output channels are removed together; `root` names the group."""

    root: str
    layers: tuple[str, ...]
    channels: int


def importance_of(kind: Importance):
    import torch_pruning as tp

    if kind == "l1":
        return tp.importance.GroupMagnitudeImportance(p=1)
    if kind == "l2":
        return tp.importance.GroupMagnitudeImportance(p=2)
    if kind == "bn_scale":
        return tp.importance.BNScaleImportance()
    return tp.importance.GroupTaylorImportance()


def trace_groups(model: nn.Module, input_shape: tuple[int, ...], ignored: list[nn.Module], step: str = STEP):
    """torch-pruning's dependency graph of `model` and its prunable groups; a model it cannot trace is an error."""
    import torch_pruning as tp

    was_training = model.training
    model.eval()
    try:
        graph = tp.DependencyGraph().build_dependency(model, example_inputs=torch.zeros(1, *input_shape))
        raw = list(graph.get_all_groups(ignored_layers=ignored, root_module_types=[nn.Conv1d, nn.Conv2d, nn.Linear]))
    except Exception as error:
        raise CompressbenchError(
            f"{step}: torch-pruning cannot trace {type(model).__name__} ({type(error).__name__}: {error}); "
            "use prune.magnitude, or a model without custom ops"
        ) from error
    finally:
        model.train(was_training)
    names = {module: name for name, module in model.named_modules()}
    groups = []
    for group in raw:
        layers = []
        for item in group:
            module = item.dep.target.module
            if isinstance(module, nn.Conv1d | nn.Conv2d | nn.Linear) and graph.is_out_channel_pruning_fn(
                item.dep.handler
            ):
                layers.append(names[module])
        if layers:
            root = names[group[0].dep.target.module]
            groups.append(
                ChannelGroup(root, tuple(dict.fromkeys(layers)), graph.get_out_channels(group[0].dep.target.module))
            )
    order = {name: index for index, name in enumerate(names.values())}
    return graph, sorted(groups, key=lambda g: order[g.root])


def protected_layers(model: nn.Module, input_shape: tuple[int, ...], ignore: list[str], step: str = STEP):
    """The classifier plus the layers the user asked to keep whole."""
    classifier = output_layer(model, input_shape)
    kept = named_layers(model, ignore, step, "ignore") if ignore else {}
    if classifier is not None:
        kept = {classifier[0]: classifier[1], **kept}
    return kept


def gradients_for_taylor(model: nn.Module, data: DataBundle, batches: int = 8, batch_size: int = 64) -> None:
    """First-order Taylor importance needs dL/dw: accumulate it over a few training batches."""
    model.zero_grad(set_to_none=True)
    was_training = model.training
    model.eval()
    x, y = torch.from_numpy(data.train.x), torch.from_numpy(data.train.y)
    for start in range(0, min(len(y), batches * batch_size), batch_size):
        F.cross_entropy(model(x[start : start + batch_size]), y[start : start + batch_size]).backward()
    model.train(was_training)


def prune_channels(
    model: nn.Module,
    data: DataBundle,
    *,
    ratio: float = 0.0,
    per_layer: dict[str, float] | None = None,
    scope: str = "layer",
    importance: Importance = "l2",
    steps: int = 1,
    ignore: list[str] | None = None,
    round_to: int | None = None,
    max_ratio: float = 0.9,
    between_steps: Callable[[int], None] | None = None,
    step: str = STEP,
    groups: list[ChannelGroup] | None = None,
) -> list[ChannelGroup]:
    """Remove channels from `model` in place: `ratio` in every group (or ranked globally), or `per_layer` ratios
    keyed by any layer of a group. Returns the groups as they were before pruning. Callers that must not leave a
    half-pruned model pass a copy; callers pruning many copies of one model pass its `groups` (traced once)."""
    import torch_pruning as tp
    from torch_pruning._helpers import to_plain_idxs

    input_shape = data.spec.input_shape
    kept = protected_layers(model, input_shape, list(ignore or []), step)
    if groups is None:
        _graph, groups = trace_groups(model, input_shape, list(kept.values()), step)
    modules = dict(model.named_modules())
    ratio_dict: dict[nn.Module, float] = {}
    if per_layer:
        owner = {layer: group for group in groups for layer in group.layers}
        chosen: dict[str, tuple[str, float]] = {}
        for layer, value in per_layer.items():
            if layer in kept:
                raise CompressbenchError(
                    f"{step}: field 'ratios': layer {layer!r} is the output layer or ignored; "
                    "its outputs are never pruned"
                )
            named_layers(model, [layer], step, "ratios")
            if layer not in owner:
                raise CompressbenchError(f"{step}: field 'ratios': layer {layer!r} has no prunable output channels")
            root = owner[layer].root
            if root in chosen and chosen[root][1] != value:
                raise CompressbenchError(
                    f"{step}: field 'ratios': layers {chosen[root][0]!r} and {layer!r} are coupled (pruned together) "
                    f"but given different ratios {chosen[root][1]} and {value}"
                )
            chosen[root] = (layer, value)
        ratio_dict = {modules[root]: value for root, (_layer, value) in chosen.items() if value > 0}
    model.eval()
    try:
        pruner = tp.pruner.BasePruner(
            model,
            torch.zeros(1, *input_shape),
            importance=importance_of(importance),
            global_pruning=scope == "global",
            pruning_ratio=0.0 if per_layer else ratio,
            pruning_ratio_dict=ratio_dict or None,
            max_pruning_ratio=max_ratio if scope == "global" else 1.0,
            iterative_steps=steps,
            ignored_layers=list(kept.values()),
            round_to=round_to,
        )
        for number in range(1, steps + 1):
            if importance == "taylor":
                gradients_for_taylor(model, data)
            before = copy.deepcopy(model)
            removed: list[tuple[str, list[int]]] = []
            names = {module: name for name, module in model.named_modules()}
            for group in pruner.step(interactive=True):
                for item in group:
                    if pruner.DG.is_out_channel_pruning_fn(item.dep.handler) and item.dep.target.module in names:
                        removed.append((names[item.dep.target.module], [int(i) for i in to_plain_idxs(item.idxs)]))
                group.prune()
            model.zero_grad(set_to_none=True)
            check_runs(model, input_shape, data.spec.num_classes, step)
            check_equivalent(before, model, removed, data, step)
            if between_steps is not None:
                between_steps(number)
    except CompressbenchError:
        raise
    except Exception as error:
        raise CompressbenchError(f"{step}: torch-pruning failed on {type(model).__name__}: {error}") from error
    return groups


@torch.no_grad()
def check_equivalent(
    before: nn.Module, after: nn.Module, removed: list[tuple[str, list[int]]], data: DataBundle, step: str
) -> None:
    """Removing channels must compute what zeroing them computes. Zero the removed output channels (weights,
    biases, norm scales and shifts) in the unpruned model and compare logits: a model whose channel flow
    torch-pruning misread (a reshuffle, a custom op) gives different logits and is refused, not kept."""
    zeroed = before
    modules = dict(zeroed.named_modules())
    for name, idxs in removed:
        module = modules[name]
        for attribute in ("weight", "bias"):
            tensor = getattr(module, attribute, None)
            if isinstance(tensor, torch.Tensor) and tensor.ndim >= 1 and idxs:
                tensor[idxs] = 0
    x = torch.from_numpy(data.val.x[:16])
    zeroed.eval(), after.eval()
    expected, got = zeroed(x), after(x)
    scale = float(expected.abs().max()) + 1e-6
    difference = float((expected - got).abs().max())
    if difference > 1e-3 * scale:
        raise CompressbenchError(
            f"{step}: torch-pruning misread how channels flow through {type(after).__name__} (logits differ by "
            f"{difference:.3g} from the same channels zeroed; a reshuffle or custom op?); nothing was kept"
        )


def channel_counts(model: nn.Module, groups: list[ChannelGroup]) -> dict[str, int]:
    modules = dict(model.named_modules())
    counts = {}
    for group in groups:
        layer = modules[group.root]
        counts[group.root] = layer.out_features if isinstance(layer, nn.Linear) else layer.out_channels
    return counts


@register_technique
class ChannelPruning(Technique):
    name = STEP
    Config = ChannelsConfig
    consumes = Form.MODULE
    produces = Form.MODULE
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
            from compressbench.sensitivity import sensitivity_ratios

            per_layer, allocation = sensitivity_ratios(model, context, config)
        fine_tunes: list[float] = []

        def between(number: int) -> None:
            report = fine_tune(model, context, config, what=f"{self.name} fine-tune {number}/{config.steps}")
            if report is not None:
                fine_tunes.append(report.val_accuracy)

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
        candidate.storage = None  # an earlier step's encoding described the unpruned shapes
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
                **({"sensitivity": allocation} if allocation else {}),
            }
        )
        return candidate
