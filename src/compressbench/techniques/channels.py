"""Channel-pruning mechanics shared by `prune.channels` and the sensitivity analysis: torch-pruning's dependency
graph, groups of coupled layers, importance scores, and the pruning itself with an equivalence check.

Layers coupled by a residual add, a batch norm or a flatten are pruned together (one *group*, named by its first
layer); the next layers lose the matching inputs. The model really shrinks, so the runtime runs fewer MACs.
The output layer (the classifier) never loses outputs.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, get_args

import torch
import torch.nn.functional as F
from torch import nn

from compressbench.data import DataBundle
from compressbench.errors import CompressbenchError
from compressbench.models.transformer import is_attention
from compressbench.modes import PRUNABLE_LAYERS, evaluating
from compressbench.techniques.pruning import check_runs, named_layers, output_layer

Importance = Literal["l1", "l2", "bn_scale", "taylor"]
STEP = "prune.channels"


@dataclass(frozen=True)
class ChannelGroup:
    """Layers whose output channels are removed together; `root` names the group."""

    root: str
    layers: tuple[str, ...]
    channels: int


def importance_of(kind: Importance):
    """torch-pruning's scorer for `kind`; an unknown name is refused (never silently scored as another one)."""
    import torch_pruning as tp

    if kind == "l1":
        return tp.importance.GroupMagnitudeImportance(p=1)
    if kind == "l2":
        return tp.importance.GroupMagnitudeImportance(p=2)
    if kind == "bn_scale":
        return tp.importance.BNScaleImportance()
    if kind == "taylor":
        return tp.importance.GroupTaylorImportance()
    raise CompressbenchError(f"{STEP}: unknown importance {kind!r} (known: {', '.join(get_args(Importance))})")


def trace_groups(model: nn.Module, input_shape: tuple[int, ...], ignored: list[nn.Module], step: str = STEP):
    """torch-pruning's dependency graph of `model` and its prunable groups; a model it cannot trace is an error."""
    import torch_pruning as tp

    try:
        with evaluating(model):
            graph = tp.DependencyGraph().build_dependency(model, example_inputs=torch.zeros(1, *input_shape))
            raw = list(graph.get_all_groups(ignored_layers=ignored, root_module_types=list(PRUNABLE_LAYERS)))
    except Exception as error:
        raise CompressbenchError(
            f"{step}: torch-pruning cannot trace {type(model).__name__} ({type(error).__name__}: {error}); "
            "use prune.magnitude, or a model without custom ops"
        ) from error
    names = {module: name for name, module in model.named_modules()}
    groups = []
    for group in raw:
        layers = []
        for item in group:
            module = item.dep.target.module
            if isinstance(module, PRUNABLE_LAYERS) and graph.is_out_channel_pruning_fn(item.dep.handler):
                layers.append(names[module])
        if layers:
            root = names[group[0].dep.target.module]
            groups.append(
                ChannelGroup(root, tuple(dict.fromkeys(layers)), graph.get_out_channels(group[0].dep.target.module))
            )
    order = {name: index for index, name in enumerate(names.values())}
    return graph, sorted(groups, key=lambda g: order[g.root])


def refuse_recurrent(model: nn.Module, step: str = STEP) -> None:
    """Recurrent layers (GRU, LSTM, RNN) hold their gates' weights in one packed tensor that Torch-Pruning cannot
    shrink consistently, so a model with one is refused before anything is traced, naming it."""
    recurrent = [f"{name} ({type(m).__name__})" for name, m in model.named_modules() if isinstance(m, nn.RNNBase)]
    if recurrent:
        raise CompressbenchError(
            f"{step}: {', '.join(recurrent)} is a recurrent layer, which channel pruning cannot shrink (its gates' "
            "weights are packed in one tensor); use prune.magnitude, prune.nm or quantization for this model"
        )


def refuse_attention(model: nn.Module, step: str = STEP) -> None:
    """Torch-Pruning cannot trace Hugging Face attention (transformers 5); a transformer encoder is pruned by
    `prune.heads`, which removes whole heads and feed-forward channels."""
    attention = [name for name, m in model.named_modules() if is_attention(m)]
    if attention:
        raise CompressbenchError(
            f"{step}: {attention[0]} is multi-head attention; prune a transformer's heads and feed-forward "
            "channels with prune.heads"
        )


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
    x, y = torch.from_numpy(data.train.x), torch.from_numpy(data.train.y)
    with evaluating(model):
        for start in range(0, min(len(y), batches * batch_size), batch_size):
            F.cross_entropy(model(x[start : start + batch_size]), y[start : start + batch_size]).backward()


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

    refuse_recurrent(model, step)
    refuse_attention(model, step)
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
