"""Sensitivity analysis: prune one layer (or one coupled channel group) at a time over a range of ratios and
measure validation accuracy, so per-layer ratios can go where they cost least ("pruning applied intelligently").

Curves are cached (keyed by the weights, the data and the settings) and reused by `prune.channels` with
`ratios: sensitivity`, which allocates per-group ratios for a target MACs budget from them.
"""

from __future__ import annotations

import copy
import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch
from torch import nn

from compressbench.data import DataBundle, Split
from compressbench.errors import CompressbenchError
from compressbench.measure.size import count_macs
from compressbench.techniques.channels import protected_layers, prune_channels, trace_groups
from compressbench.techniques.pruning import named_layers
from compressbench.training import evaluate

if TYPE_CHECKING:
    from compressbench.cache import Cache
    from compressbench.techniques.base import Context
    from compressbench.techniques.prune_channels import ChannelsConfig

SensitivityTechnique = Literal["prune.channels", "prune.magnitude"]
GRID_STEP = 0.05  # resolution of the ratio allocation (curves are interpolated between measured ratios)


@dataclass
class SensitivityCurves:
    """Validation accuracy (and MACs) with only one layer / group pruned, for each ratio."""

    technique: str
    importance: str
    layers: list[str]  # channel groups by their first layer, or single layers for prune.magnitude
    members: dict[str, list[str]]  # layers pruned together with each group
    ratios: list[float]
    baseline_accuracy: float
    baseline_macs: int
    accuracy: list[list[float]]  # [layer][ratio]
    macs: list[list[int]]  # [layer][ratio]: MACs of the model with only that layer pruned
    samples: int
    path: str | None = field(default=None, compare=False)

    def drop_pt(self) -> np.ndarray:
        return (self.baseline_accuracy - np.asarray(self.accuracy)) * 100

    def table_rows(self) -> list[list[str]]:
        """One row per layer (group): its name, accuracy % at each ratio, and the share of MACs removed at most."""
        rows = []
        for name, accuracy, macs in zip(self.layers, self.accuracy, self.macs, strict=True):
            members = self.members.get(name, [name])
            label = name if len(members) == 1 else f"{name} (+{len(members) - 1} coupled)"
            cells = [f"{a * 100:.1f}" for a in accuracy]
            share = 1 - min(macs) / self.baseline_macs if self.baseline_macs else 0
            rows.append([label, *cells, f"{share * 100:.0f}%"])
        return rows


def weights_fingerprint(model: nn.Module) -> str:
    digest = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def layer_sensitivity(
    model: nn.Module,
    data: DataBundle,
    *,
    technique: SensitivityTechnique = "prune.channels",
    ratios: list[float] | tuple[float, ...] = (0.2, 0.4, 0.6, 0.8),
    importance: str = "l2",
    samples: int = 2000,
    cache: Cache | None = None,
) -> SensitivityCurves:
    """Prune each layer (channel group) of a copy of `model` alone at each ratio; score on the validation split.

    `model` is never modified. With `cache`, curves are stored as `sensitivity/<hash>.npy` (accuracy matrix) with a
    JSON beside it, and loaded from there when the same weights, data and settings come again."""
    for ratio in ratios:
        if not 0 < ratio < 1:
            raise CompressbenchError(f"sensitivity: ratio {ratio} must lie strictly between 0 and 1")
    if technique not in ("prune.channels", "prune.magnitude"):
        raise CompressbenchError(f"sensitivity: technique {technique!r} is not one of prune.channels, prune.magnitude")
    ratios = sorted(set(float(r) for r in ratios))
    val = Split(data.val.x[:samples], data.val.y[:samples])
    identity = {
        "technique": technique,
        "importance": importance if technique == "prune.channels" else "magnitude",
        "ratios": ratios,
        "samples": len(val),
        "weights": weights_fingerprint(model),
        "data": hashlib.sha256(val.x.tobytes() + val.y.tobytes()).hexdigest()[:16],
    }
    path = cache.array_path("sensitivity", identity) if cache is not None else None
    if path is not None and path.is_file() and path.with_suffix(".json").is_file():
        stored = json.loads(path.with_suffix(".json").read_text())
        stored["accuracy"] = np.load(path).tolist()
        return SensitivityCurves(**{**stored, "path": str(path)})
    shape = data.spec.input_shape
    baseline_accuracy = evaluate(model, val)
    baseline_macs = count_macs(model, shape)
    if technique == "prune.channels":
        curves = _channel_curves(model, data, val, ratios, importance)
    else:
        curves = _magnitude_curves(model, val, ratios, shape)
    layers, members, accuracy, macs = curves
    result = SensitivityCurves(
        technique,
        identity["importance"],
        layers,
        members,
        ratios,
        baseline_accuracy,
        baseline_macs,
        accuracy,
        macs,
        len(val),
    )
    if path is not None:
        np.save(path, np.asarray(accuracy, dtype=np.float64))
        payload = {k: v for k, v in asdict(result).items() if k not in ("accuracy", "path")}
        path.with_suffix(".json").write_text(json.dumps(payload, indent=1))
        result.path = str(path)
    return result


def _channel_curves(model, data, val, ratios, importance):

    shape = data.spec.input_shape
    kept = protected_layers(model, shape, [], "sensitivity")
    _graph, groups = trace_groups(model, shape, list(kept.values()), "sensitivity")
    accuracy, macs = [], []
    for group in groups:
        row_acc, row_macs = [], []
        for ratio in ratios:
            trial = copy.deepcopy(model)
            prune_channels(
                trial, data, per_layer={group.root: ratio}, importance=importance, step="sensitivity", groups=groups
            )
            row_acc.append(evaluate(trial, val))
            row_macs.append(count_macs(trial, shape))
        accuracy.append(row_acc)
        macs.append(row_macs)
    return [g.root for g in groups], {g.root: list(g.layers) for g in groups}, accuracy, macs


def _magnitude_curves(model, val, ratios, shape):
    layers = list(named_layers(model, None, "sensitivity", "layers"))
    base_macs = count_macs(model, shape)
    accuracy = []
    for name in layers:
        row = []
        for ratio in ratios:
            trial = copy.deepcopy(model)
            weight = dict(trial.named_modules())[name].weight
            with torch.no_grad():
                flat = weight.abs().reshape(-1)
                count = round(ratio * flat.numel())
                weight.view(-1)[torch.topk(flat, count, largest=False).indices] = 0
            row.append(evaluate(trial, val))
        accuracy.append(row)
    # Unstructured zeros remove no MACs from a dense kernel.
    return layers, {n: [n] for n in layers}, accuracy, [[base_macs] * len(ratios) for _ in layers]


def allocate_ratios(curves: SensitivityCurves, macs_to_remove: float) -> dict[str, float]:
    """Greedy allocation: repeatedly raise (by GRID_STEP) the ratio of the group whose next step loses the least
    validation accuracy per MAC removed, until the (additive) MACs estimate removes `macs_to_remove`. Accuracy is
    interpolated between measured ratios and made non-increasing; ratios never exceed the largest one measured."""
    grid = np.arange(0, max(curves.ratios) + 1e-9, GRID_STEP)
    measured = np.asarray([0.0, *curves.ratios])
    acc, saved = [], []
    for row_acc, row_macs in zip(curves.accuracy, curves.macs, strict=True):
        a = np.interp(grid, measured, [curves.baseline_accuracy, *row_acc])
        acc.append(np.minimum.accumulate(a))
        saved.append(np.interp(grid, measured, [0, *(curves.baseline_macs - m for m in row_macs)]))
    level = [0] * len(curves.layers)
    removed = 0.0
    while removed < macs_to_remove:
        best, best_cost = None, None
        for i in range(len(level)):
            j = level[i]
            if j + 1 >= len(grid):
                continue
            gain = saved[i][j + 1] - saved[i][j]
            if gain <= 0:
                continue
            cost = max(acc[i][j] - acc[i][j + 1], 0.0) / gain
            if best_cost is None or cost < best_cost:
                best, best_cost = i, cost
        if best is None:
            break
        removed += saved[best][level[best] + 1] - saved[best][level[best]]
        level[best] += 1
    return {name: round(float(grid[j]), 4) for name, j in zip(curves.layers, level, strict=True) if j > 0}


def sensitivity_ratios(model: nn.Module, context: Context, config: ChannelsConfig) -> tuple[dict[str, float], dict]:
    """Per-group ratios for `prune.channels` with `ratios: sensitivity`: the MACs target is `target_macs` (a
    fraction of the model's MACs) or what a uniform `ratio` would leave; the allocation is checked on a pruned
    copy and pushed further until the real MACs meet the target."""
    data, shape = context.data, context.data.spec.input_shape
    curves = layer_sensitivity(
        model,
        data,
        technique="prune.channels",
        ratios=config.sensitivity_ratios,
        importance=config.importance,
        samples=config.sensitivity_samples,
        cache=context.cache,
    )
    base = curves.baseline_macs
    if config.target_macs is not None:
        target = config.target_macs * base
    else:
        uniform = copy.deepcopy(model)
        prune_channels(uniform, data, ratio=config.ratio, importance=config.importance, ignore=config.ignore)
        target = count_macs(uniform, shape)
    budget = base - target
    for _attempt in range(25):
        ratios = allocate_ratios(curves, budget)
        trial = copy.deepcopy(model)
        if ratios:
            prune_channels(trial, data, per_layer=ratios, importance=config.importance, ignore=config.ignore)
        real = count_macs(trial, shape)
        if real <= target * 1.005:
            break
        # The additive estimate overstates savings (a layer between two pruned groups loses (1-a)(1-b), not a+b):
        # scale the budget by what was needed over what was achieved.
        achieved = max(base - real, 1.0)
        budget = max(budget * (base - target) / achieved, budget + 0.005 * base)
    else:
        raise CompressbenchError(
            f"prune.channels: field 'target_macs': {target / base:.3f} of the MACs is out of reach with ratios up to "
            f"{max(config.sensitivity_ratios)} (add larger sensitivity_ratios)"
        )
    record: dict[str, Any] = {"target_macs": target / base, "allocated": ratios, "curves": curves.path}
    return ratios, record
