"""Pruning on tiny models: targets reached exactly, shapes really shrink, residual models stay consistent,
sensitivity curves are usable, and bad input fails with one clear error without touching the candidate."""

import copy

import numpy as np
import onnx
import pytest
import torch
from conftest import FAST_LATENCY, QUICK_TRAINING
from onnx import numpy_helper
from torch import nn

from compressbench.data import DataBundle, DataSpec, Split, load_dataset
from compressbench.errors import CompressbenchError
from compressbench.measure.size import count_macs
from compressbench.models import ModelConfig, build_model
from compressbench.recipes import load_recipe
from compressbench.runtime import export_onnx, verify_onnx
from compressbench.runtime.encoding import relative_index
from compressbench.techniques import Candidate, Context
from compressbench.techniques.channels import importance_of, prune_channels
from compressbench.techniques.prune_magnitude import UNEXPLOITED, agp_sparsity
from compressbench.techniques.prune_nm import NEEDS_HARDWARE
from compressbench.techniques.pruning import named_layers, relative_index_encoding
from compressbench.techniques.sensitivity import allocate_ratios, layer_sensitivity
from compressbench.techniques.weight_sharing import layer_streams, shared_layers
from compressbench.training import train

NO_TUNE = {"fine_tune_epochs": 0}
ONE_THREAD = QUICK_TRAINING.model_copy(update={"threads": 1})  # fine-tunes on a shared machine


def context_for(model, data, cache, name):
    return Context(
        data=data,
        baseline=model,
        model=ModelConfig(name=name),
        train_config=ONE_THREAD,
        seed=0,
        cache=cache,
        latency=FAST_LATENCY,
    )


@pytest.fixture(scope="module")
def lenet(cache):
    data = load_dataset("synthetic")
    model = build_model("lenet5", data.spec, seed=0)
    train(model, data, ONE_THREAD, seed=0)
    return data, model, context_for(model, data, cache, "lenet5")


@pytest.fixture(scope="module")
def resnet(cache):
    data = load_dataset("synthetic")
    model = build_model(ModelConfig(name="resnet", width=0.5), data.spec, seed=0)
    train(model, data, ONE_THREAD.model_copy(update={"epochs": 1}), seed=0)
    return data, model, context_for(model, data, cache, "resnet")


def run_step(options, model, context):
    step = load_recipe({"name": "t", "steps": [options]}).steps[0]
    return step.build().apply(Candidate(module=copy.deepcopy(model)), context)


def onnx_weights(model, data):
    proto = export_onnx(model, data.spec.input_shape)
    return [numpy_helper.to_array(i) for i in proto.graph.initializer if numpy_helper.to_array(i).ndim >= 2]


# --- prune.magnitude ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("scope", ["global", "layer"])
@pytest.mark.parametrize("schedule", ["one_shot", "gradual"])
def test_magnitude_reaches_the_target_sparsity_exactly(lenet, scope, schedule):
    data, model, context = lenet
    options = {
        "technique": "prune.magnitude",
        "sparsity": 0.7,
        "scope": scope,
        "schedule": schedule,
        "fine_tune_epochs": 1,
    }
    candidate = run_step(options, model, context)
    record = candidate.records[-1]
    assert record["sparsity"] == pytest.approx(0.7, abs=1e-4)
    if scope == "layer":
        for value in record["per_layer_sparsity"].values():
            assert value == pytest.approx(0.7, abs=0.01)
    # The exported graph carries exact zeros (masks are permanent, no reparametrisation left).
    weights = onnx_weights(candidate.module, data)
    zeros = sum(int((w == 0).sum()) for w in weights) / sum(w.size for w in weights)
    assert zeros == pytest.approx(0.7, abs=0.01)
    assert not any(name.endswith("_orig") or name.endswith("_mask") for name, _ in candidate.module.named_parameters())


def test_magnitude_reports_size_not_speed(lenet):
    data, model, context = lenet
    candidate = run_step(
        {"technique": "prune.magnitude", "sparsity": 0.9, "schedule": "one_shot", **NO_TUNE}, model, context
    )
    assert UNEXPLOITED in candidate.flags
    storage = candidate.records[-1]["storage"]  # the technique's own account; a run's figure is the encoded file
    assert set(storage) == {"sparse values (fp32)", "sparse relative indices", "dense tensors (fp32)"}
    dense = sum(p.numel() * 4 for p in model.parameters())
    assert sum(storage.values()) < dense / 3


def test_magnitude_prunes_only_the_named_layers(lenet):
    data, model, context = lenet
    candidate = run_step(
        {"technique": "prune.magnitude", "layers": ["features.3"], "schedule": "one_shot", "sparsity": 0.5, **NO_TUNE},
        model,
        context,
    )
    assert set(candidate.records[-1]["per_layer_sparsity"]) == {"features.3"}
    assert int((candidate.module.features[0].weight == 0).sum()) == 0


def test_agp_schedule_is_cubic_from_initial_to_final():
    assert agp_sparsity(0.9, 0.0, 0.0) == 0.0 and agp_sparsity(0.9, 0.0, 1.0) == pytest.approx(0.9)
    assert agp_sparsity(0.9, 0.0, 0.5) == pytest.approx(0.9 * (1 - 0.5**3))
    values = [agp_sparsity(0.9, 0.1, p / 10) for p in range(11)]
    assert values == sorted(values) and agp_sparsity(0.9, 0.0, 2.0) == pytest.approx(0.9)


def test_relative_indices_count_fillers_for_long_gaps():
    weight = torch.zeros(100)
    weight[[0, 3, 90]] = 1.0
    values, indices, bits = relative_index_encoding(weight)
    # gaps 1, 3, 87: at 2 bits (max gap 4) the 87 needs 21 fillers; wider indices are cheaper overall.
    assert bits >= 2 and values % 4 == 0
    entries = values // 4
    assert entries == 3 + (87 - 1) // (2**bits)
    assert indices == -(-entries * bits // 8)


def test_relative_index_inserts_deep_compression_fillers_by_hand():
    # 3-bit fields hold 0..7 zeros skipped (an index difference of 1..8). Non-zeros at 0, 3, 20 skip 0, 2 and 16
    # zeros: 16 > 7, so fillers (field 7, a stored zero) stand on positions 11 and 19, then 20 skips 0 zeros.
    fields, filler = relative_index(np.array([0, 3, 20]), bits=3)
    assert fields.tolist() == [0, 2, 7, 7, 0] and filler.tolist() == [False, False, True, True, False]
    assert (np.cumsum(fields + 1) - 1).tolist() == [0, 3, 11, 19, 20]  # Deep Compression's decoder
    # A run of z zeros takes z // 2**bits fillers: 7 zeros fit one field, 8 and 15 take one filler, 16 take two.
    assert [len(relative_index(np.array([z]), 3)[0]) - 1 for z in (7, 8, 15, 16)] == [0, 1, 1, 2]
    assert relative_index(np.array([], dtype=np.int64), 3)[0].tolist() == []


def test_pruning_and_weight_sharing_store_the_same_entries_for_one_mask():
    layer = nn.Linear(6, 4, bias=False)
    with torch.no_grad():
        layer.weight.zero_()
        layer.weight.view(-1)[[0, 3, 20]] = torch.tensor([0.5, -1.0, 2.0])
    values, indices, bits = relative_index_encoding(layer.weight, widths=[3])
    assert (values, indices, bits) == (5 * 4, 2, 3)  # 5 entries (2 fillers) of fp32 values and 3-bit indices
    info = {"name": "0", "kind": "fc", "bits": 2, "position_bits": 3}
    (stream,) = layer_streams(nn.Sequential(layer), [info])
    assert stream.positions.tolist() == relative_index(np.array([0, 3, 20]), 3)[0].tolist()
    # The fillers hold a zero: code 0, so the three shared values take codes 1..3 of the 2 index bits.
    assert stream.indices.tolist() == [2, 1, 0, 0, 3] and stream.codebook.tolist() == [-1.0, 0.5, 2.0]


# --- prune.nm ----------------------------------------------------------------------------------------------------


def test_nm_keeps_two_of_every_four_along_the_input_dimension(lenet):
    data, model, context = lenet
    candidate = run_step({"technique": "prune.nm", "fine_tune_epochs": 1}, model, context)
    record = candidate.records[-1]
    assert record["pattern"] == "2:4" and record["sparsity"] == pytest.approx(0.5)
    assert "features.0" in record["skipped_layers"]  # 1 input channel: no group of 4
    for name in record["pruned_layers"]:
        weight = dict(candidate.module.named_modules())[name].weight.detach()
        view = weight if weight.ndim == 2 else weight.movedim(1, -1)
        assert ((view.reshape(-1, 4) != 0).sum(1) <= 2).all()
    assert NEEDS_HARDWARE in candidate.flags


def test_nm_rejects_n_not_below_m_and_layers_that_do_not_fit(lenet):
    data, model, context = lenet
    with pytest.raises(CompressbenchError, match=r"step 1 \(prune.nm\).*n \(4\) must be smaller than m \(4\)"):
        load_recipe({"name": "t", "steps": [{"technique": "prune.nm", "n": 4, "m": 4}]})
    with pytest.raises(CompressbenchError, match=r"layer 'features.0' has 1 inputs, not a multiple of m=4"):
        run_step({"technique": "prune.nm", "layers": ["features.0"], **NO_TUNE}, model, context)


# --- prune.channels ----------------------------------------------------------------------------------------------


def test_channel_pruning_really_shrinks_lenet_and_keeps_the_classifier(lenet):
    data, model, context = lenet
    candidate = run_step({"technique": "prune.channels", "ratio": 0.5, "fine_tune_epochs": 1}, model, context)
    pruned = candidate.module
    assert pruned.features[0].out_channels == 3 and pruned.features[3].out_channels == 8
    assert pruned.classifier.out_features == data.spec.num_classes  # the output layer keeps every class
    assert pruned.classifier.in_features == 42
    shape = data.spec.input_shape
    assert count_macs(pruned, shape) < 0.5 * count_macs(model, shape)
    proto = export_onnx(pruned, shape)
    verify_onnx(pruned, proto, data.test.x[:16])
    onnx_params = sum(numpy_helper.to_array(i).size for i in proto.graph.initializer)
    base_params = sum(numpy_helper.to_array(i).size for i in export_onnx(model, shape).graph.initializer)
    assert onnx_params < 0.5 * base_params
    assert model.features[0].out_channels == 6, "the baseline is untouched"


@pytest.mark.slow
def test_channel_pruning_keeps_a_residual_resnet_consistent(resnet):
    data, model, context = resnet
    candidate = run_step(
        {"technique": "prune.channels", "ratio": 0.5, "steps": 2, "fine_tune_epochs": 1}, model, context
    )
    pruned, record = candidate.module, candidate.records[-1]
    # Layers joined by a residual add lose the same channels: the stem and the stage-1 block outputs.
    assert set(record["coupled"]["stem.0"]) >= {"blocks.0.conv2", "blocks.1.conv2"}
    assert pruned.stem[0].out_channels == pruned.blocks[0].conv2.out_channels == pruned.blocks[1].conv2.out_channels
    assert pruned.stem[0].out_channels == 4 and pruned.blocks[2].shortcut[0].out_channels == 8
    assert len(record["val_accuracy_after_fine_tune"]) == 2  # iterative: fine-tuned after each step
    verify_onnx(pruned, export_onnx(pruned, data.spec.input_shape), data.test.x[:16])


@pytest.mark.parametrize("importance", ["l1", "bn_scale", "taylor"])
def test_channel_importances_and_global_scope(resnet, importance):
    data, model, context = resnet
    options = {"technique": "prune.channels", "importance": importance, "ratio": 0.3, **NO_TUNE}
    if importance == "l1":
        options["scope"] = "global"
    candidate = run_step(options, model, context)
    assert candidate.records[-1]["macs_kept"] < 0.9


def test_bn_scale_on_a_model_without_batch_norm_is_an_error(lenet):
    data, model, context = lenet
    with pytest.raises(CompressbenchError, match="no channel was removed"):
        run_step({"technique": "prune.channels", "importance": "bn_scale", **NO_TUNE}, model, context)


def test_per_layer_ratios_and_their_errors(resnet):
    data, model, context = resnet
    candidate = run_step({"technique": "prune.channels", "ratios": {"blocks.4.conv1": 0.5}, **NO_TUNE}, model, context)
    assert candidate.module.blocks[4].conv1.out_channels == 16 and candidate.module.blocks[5].conv1.out_channels == 32
    with pytest.raises(CompressbenchError, match=r"no conv or linear layer 'blocks.9.conv1'"):
        run_step({"technique": "prune.channels", "ratios": {"blocks.9.conv1": 0.5}, **NO_TUNE}, model, context)
    with pytest.raises(CompressbenchError, match="coupled"):
        run_step(
            {"technique": "prune.channels", "ratios": {"stem.0": 0.5, "blocks.0.conv2": 0.25}, **NO_TUNE},
            model,
            context,
        )
    with pytest.raises(CompressbenchError, match="'classifier' is the output layer"):
        run_step({"technique": "prune.channels", "ratios": {"classifier": 0.5}, **NO_TUNE}, model, context)
    with pytest.raises(
        CompressbenchError, match=r"step 1 \(prune.channels\): field 'ratios.*layer 'stem.0': ratio 1.5"
    ):
        load_recipe({"name": "t", "steps": [{"technique": "prune.channels", "ratios": {"stem.0": 1.5}}]})


@pytest.mark.parametrize("value", [0.0, 1.0, -0.2])
def test_ratio_outside_zero_one_names_the_step_and_field(value):
    with pytest.raises(CompressbenchError, match=r"step 1 \(prune.channels\): field 'ratio'"):
        load_recipe({"name": "t", "steps": [{"technique": "prune.channels", "ratio": value}]})
    with pytest.raises(CompressbenchError, match=r"step 1 \(prune.magnitude\): field 'sparsity'"):
        load_recipe({"name": "t", "steps": [{"technique": "prune.magnitude", "sparsity": value}]})


class ChannelShuffle(nn.Module):
    """A model whose channel reshuffle torch-pruning cannot follow."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 8, 3, padding=1)
        self.head = nn.Linear(8, 4)

    def forward(self, x):
        y = self.conv(x)
        n, c, h, w = y.shape
        y = y.reshape(n, 2, c // 2, h, w).transpose(1, 2).reshape(n, c, h, w)
        return self.head(y.mean((2, 3)))


def test_a_model_torch_pruning_cannot_follow_fails_cleanly_and_leaves_the_candidate(cache):
    data = load_dataset("synthetic")
    model = ChannelShuffle()
    context = context_for(model, data, cache, "custom")
    candidate = Candidate(module=model)
    step = load_recipe({"name": "t", "steps": [{"technique": "prune.channels", **NO_TUNE}]}).steps[0]
    with pytest.raises(CompressbenchError, match=r"prune.channels: "):
        step.build().apply(candidate, context)
    assert candidate.module is model and model.conv.out_channels == 8 and not candidate.records


def test_an_unknown_channel_importance_is_refused_not_scored_as_taylor():
    with pytest.raises(CompressbenchError, match=r"unknown importance 'l3' \(known: l1, l2, bn_scale, taylor\)"):
        importance_of("l3")


def test_3d_convolutions_are_counted_pruned_and_shared_like_the_others():
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv3d(2, 8, 3, padding=1), nn.BatchNorm3d(8), nn.ReLU(),
        nn.Conv3d(8, 8, (1, 3, 3), padding=(0, 1, 1), groups=2), nn.ReLU(),
        nn.AdaptiveAvgPool3d(1), nn.Flatten(), nn.Linear(8, 3),
    )  # fmt: skip
    shape = (2, 4, 5, 5)
    # MACs per output element: in_channels / groups x prod(kernel_size), as for 1-D and 2-D convolutions.
    assert count_macs(model, shape) == 8 * 100 * (2 * 27) + 8 * 100 * (4 * 9) + 3 * 8
    assert list(named_layers(model, None, "s", "layers")) == ["0", "3", "7"]
    assert {name: kind for name, (_, kind) in shared_layers(model).items()} == {"0": "conv", "3": "conv", "7": "fc"}
    rng = np.random.default_rng(0)

    def split(n):
        return Split(rng.normal(size=(n, *shape)).astype(np.float32), rng.integers(0, 3, n))

    data = DataBundle(DataSpec("toy", shape, 3), split(64), split(32), split(32), split(16))
    groups = prune_channels(model, data, ratio=0.5)  # also checks the pruned model computes what zeroing computes
    assert [g.root for g in groups] == ["0", "3"] and model[0].out_channels == 4 and model[3].in_channels == 4


# --- sensitivity -------------------------------------------------------------------------------------------------


def test_channel_sensitivity_curves_are_usable_and_cached(lenet, cache):
    data, model, context = lenet
    curves = layer_sensitivity(model, data, ratios=(0.25, 0.5, 0.75), samples=120, cache=cache)
    assert curves.layers == ["features.0", "features.3", "classifier_hidden.1", "classifier_hidden.3"]
    accuracy = np.asarray(curves.accuracy)
    assert accuracy.shape == (4, 3) and np.isfinite(accuracy).all()
    # Monotone enough to use: pruning 75% of a group never beats pruning 25% of it by more than noise.
    assert (accuracy[:, -1] <= accuracy[:, 0] + 0.05).all()
    assert (np.diff(np.asarray(curves.macs), axis=1) < 0).all(), "more pruning, fewer MACs"
    again = layer_sensitivity(model, data, ratios=(0.25, 0.5, 0.75), samples=120, cache=cache)
    assert again.path == curves.path and again.accuracy == curves.accuracy
    ratios = allocate_ratios(curves, 0.3 * curves.baseline_macs)
    assert ratios and all(0 < r <= 0.75 for r in ratios.values())


def test_magnitude_sensitivity_prunes_single_layers(lenet):
    data, model, context = lenet
    curves = layer_sensitivity(model, data, technique="prune.magnitude", ratios=(0.5, 0.95), samples=120)
    assert len(curves.layers) == 5 and curves.path is None
    assert all(row[0] >= row[1] - 0.05 for row in curves.accuracy)


def test_sensitivity_guided_ratios_meet_the_macs_of_the_uniform_ratio(lenet):
    data, model, context = lenet
    shape = data.spec.input_shape
    uniform = run_step({"technique": "prune.channels", "ratio": 0.4, **NO_TUNE}, model, context)
    grid = {"sensitivity_samples": 120, "sensitivity_ratios": [0.3, 0.6], **NO_TUNE}
    guided = run_step({"technique": "prune.channels", "ratio": 0.4, "ratios": "sensitivity", **grid}, model, context)
    record = guided.records[-1]
    assert record["sensitivity"]["allocated"]
    assert count_macs(guided.module, shape) <= count_macs(uniform.module, shape) * 1.005
    explicit = run_step(
        {"technique": "prune.channels", "ratios": "sensitivity", "target_macs": 0.5, **grid}, model, context
    )
    assert explicit.records[-1]["macs_kept"] <= 0.5 * 1.005
    with pytest.raises(CompressbenchError, match="target_macs is used by ratios 'sensitivity' only"):
        load_recipe({"name": "t", "steps": [{"technique": "prune.channels", "target_macs": 0.5}]})


def test_onnx_of_a_magnitude_pruned_model_compresses(lenet):
    data, model, context = lenet
    candidate = run_step(
        {"technique": "prune.magnitude", "sparsity": 0.9, "schedule": "one_shot", **NO_TUNE}, model, context
    )
    dense = export_onnx(model, data.spec.input_shape).SerializeToString()
    sparse = export_onnx(candidate.module, data.spec.input_shape).SerializeToString()
    import zstandard

    assert len(zstandard.compress(sparse)) < 0.5 * len(zstandard.compress(dense))
    assert isinstance(onnx.load_from_string(sparse), onnx.ModelProto)


def test_sensitivity_command_prints_a_table_and_stores_the_curves(tmp_path):
    from typer.testing import CliRunner

    from compressbench.cli import app

    runner = CliRunner()
    args = [
        "sensitivity",
        "--dataset",
        "synthetic",
        "--model",
        "lenet5",
        "--epochs",
        "1",
        "--ratio",
        "0.5",
        "--samples",
        "60",
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "features.0" in result.stdout and "classifier_hidden.3" in result.stdout and "0.5" in result.stdout
    payload = runner.invoke(app, [*args, "--json"])
    assert payload.exit_code == 0
    import json

    curves = json.loads(payload.stdout)
    assert curves["path"].endswith(".npy") and len(curves["accuracy"]) == 4
    bad = runner.invoke(app, [*args, "--importance", "weird"])
    assert bad.exit_code == 2 and "unknown importance 'weird'" in bad.output
