"""Recipes that begin with the same steps compute those steps once: the second job takes them from the cache."""

from __future__ import annotations

import copy

import pytest
import torch
from conftest import FAST_MEASURE, QUICK_TRAINING
from torch import nn

import compressbench as cb
from compressbench.artifacts import Candidate
from compressbench.cache import Cache
from compressbench.prefixes import PREFIXES, load_prefix, save_prefix, weights_digest
from compressbench.techniques.prune_channels import ChannelPruning

PRUNE = {"technique": "prune.channels", "ratio": 0.5, "fine_tune_epochs": 1}


def test_a_shared_prefix_is_computed_once_and_gives_the_same_model(tmp_path, monkeypatch):
    runs = []
    apply = ChannelPruning.apply
    monkeypatch.setattr(ChannelPruning, "apply", lambda self, *args: runs.append(1) or apply(self, *args))
    options = {"training": QUICK_TRAINING, "measure": FAST_MEASURE, "cache": Cache(tmp_path)}
    alone = cb.compress("digits", "mlp", {"name": "a", "steps": [PRUNE]}, **options)
    assert len(list((tmp_path / PREFIXES).glob("*.json"))) == 1
    dynamic = cb.compress("digits", "mlp", {"name": "b", "steps": [PRUNE, {"technique": "quant.dynamic"}]}, **options)
    static = cb.compress("digits", "mlp", {"name": "c", "steps": [PRUNE, {"technique": "quant.static"}]}, **options)
    assert len(runs) == 1  # pruned and fine-tuned once; both hybrids started from that model
    assert dynamic.steps[0] == static.steps[0] == alone.steps[0]
    assert dynamic.candidate.params == alone.candidate.params
    cb.compress("digits", "mlp", {"name": "d", "steps": [PRUNE]}, **options)
    assert len(runs) == 2  # a whole recipe is never taken as a prefix of itself: its job runs every step


def test_a_prefix_from_other_baseline_weights_has_another_key():
    model = nn.Linear(4, 2)
    before = weights_digest(model)
    with torch.no_grad():
        model.weight[0, 0] += 1e-3
    assert weights_digest(model) != before


def test_a_pruned_structure_is_rebuilt_from_the_baseline_with_its_sizes(tmp_path):
    baseline = nn.Sequential(nn.Conv2d(1, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.Flatten(), nn.LazyLinear(3))
    inputs = torch.randn(5, 1, 6, 6)
    baseline(inputs)
    baseline.eval()
    pruned = copy.deepcopy(baseline)
    pruned[0].weight = nn.Parameter(pruned[0].weight[:4].clone())
    pruned[0].bias = nn.Parameter(pruned[0].bias[:4].clone())
    pruned[0].out_channels = 4
    for buffer in ("running_mean", "running_var"):
        setattr(pruned[1], buffer, getattr(pruned[1], buffer)[:4].clone())
    pruned[1].weight, pruned[1].bias = nn.Parameter(pruned[1].weight[:4]), nn.Parameter(pruned[1].bias[:4])
    pruned[1].num_features = 4
    pruned[4].weight = nn.Parameter(pruned[4].weight[:, :64].clone())
    pruned[4].in_features = 64
    records = [{"step": "prune.channels", "fine_tune_steps": 12}]
    assert save_prefix(tmp_path, "k", Candidate(module=pruned, records=records), baseline, inputs)
    loaded = load_prefix(tmp_path, "k", baseline, inputs)
    assert loaded is not None and loaded.records == records
    assert (loaded.module[0].out_channels, loaded.module[1].num_features, loaded.module[4].in_features) == (4, 4, 64)
    torch.testing.assert_close(loaded.module(inputs), pruned(inputs))
    assert baseline[0].out_channels == 8  # the baseline is left as it was


class Scaled(nn.Module):
    """Keeps a size in a private field the state dict does not carry: a rebuild from the baseline gets it wrong."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(3, 3)
        self._scale = 1.0

    def forward(self, x):
        return self.linear(x) * self._scale


def test_a_model_the_rebuild_cannot_reproduce_is_computed_again(tmp_path):
    baseline = Scaled().eval()
    changed = copy.deepcopy(baseline)
    changed._scale = 3.0
    inputs = torch.randn(4, 3)
    assert save_prefix(tmp_path, "k", Candidate(module=changed), baseline, inputs)
    assert load_prefix(tmp_path, "k", baseline, inputs) is None


@pytest.mark.parametrize("why", ["hook", "graph"])
def test_what_safetensors_and_json_cannot_hold_is_not_cached(tmp_path, why):
    baseline = nn.Linear(3, 3).eval()
    candidate = Candidate(module=copy.deepcopy(baseline))
    if why == "hook":
        candidate.module.register_forward_pre_hook(lambda module, args: None)
    else:
        candidate.artifact = object()  # an int8 graph: the next step is cheap, and it is not a torch module
    assert not save_prefix(tmp_path, "k", candidate, baseline, torch.randn(2, 3))
    assert not (tmp_path / PREFIXES).exists()
