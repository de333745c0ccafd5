import math

import numpy as np
import onnx
import pytest
from torch import nn

from compressbench.data import load_dataset
from compressbench.errors import CompressbenchError
from compressbench.measure import (
    LatencySettings,
    measure_accuracy,
    measure_latency_interleaved,
    wilson_interval,
)
from compressbench.measure.size import count_macs, measure_size
from compressbench.models import build_model
from compressbench.runtime import export_onnx, open_session, verify_onnx


@pytest.mark.parametrize(
    ("model", "dataset"),
    [("mlp", "digits"), ("lenet5", "digits"), ("resnet", "digits"), ("conv1d", "mnist1d")],
)
def test_every_zoo_model_exports_and_runs_the_same_on_onnxruntime(model, dataset):
    data = load_dataset(dataset)
    module = build_model(model, data.spec)
    proto = export_onnx(module, data.spec.input_shape)
    assert verify_onnx(module, proto, data.test.x[:16]) < 1e-4
    # A dynamic batch axis: any batch size runs.
    assert open_session(proto, "onnxruntime").run(data.test.x[:5]).shape == (5, 10)
    # Weights live inside the file, so its size is real.
    params = sum(p.numel() for p in module.parameters())
    assert len(proto.SerializeToString()) > 3.9 * params


def test_the_dynamo_exporter_gives_the_same_logits():
    data = load_dataset("digits")
    module = build_model("lenet5", data.spec)
    proto = export_onnx(module, data.spec.input_shape, exporter="dynamo")
    assert verify_onnx(module, proto, data.test.x[:8]) < 1e-4


def test_verify_catches_a_graph_that_differs_from_the_module():
    data = load_dataset("digits")
    module, other = build_model("mlp", data.spec), build_model("mlp", data.spec)
    with pytest.raises(CompressbenchError, match="disagrees with the torch module"):
        verify_onnx(other, export_onnx(module, data.spec.input_shape), data.test.x[:8])


def test_torch_runtime_refuses_an_onnx_graph():
    data = load_dataset("digits")
    proto = export_onnx(build_model("mlp", data.spec), data.spec.input_shape)
    with pytest.raises(CompressbenchError, match="runtime torch needs a torch module"):
        open_session(proto, "torch")


def test_wilson_interval_matches_the_textbook_values():
    low, high = wilson_interval(90, 100)
    assert (round(low, 4), round(high, 4)) == (0.8256, 0.9448)
    assert wilson_interval(0, 10)[0] == 0.0 and wilson_interval(10, 10)[1] == pytest.approx(1.0)


def test_accuracy_is_measured_on_the_runtime_session():
    data = load_dataset("digits")
    module = build_model("mlp", data.spec)
    session = open_session(export_onnx(module, data.spec.input_shape), "onnxruntime")
    result = measure_accuracy(session, data.test, batch_size=100)
    expected = (session.run(data.test.x).argmax(1) == data.test.y).mean()
    assert result.accuracy == pytest.approx(expected) and result.samples == len(data.test)
    assert result.ci_low <= result.accuracy <= result.ci_high and result.finite


def test_interleaved_latency_sees_a_bigger_model_as_slower():
    data = load_dataset("digits")
    small = build_model("mlp", data.spec)
    big = nn.Sequential(
        nn.Flatten(),
        *[m for _ in range(1) for m in (nn.Linear(64, 2048), nn.ReLU(), nn.Linear(2048, 2048), nn.ReLU())],
        nn.Linear(2048, 10),
    )
    sessions = [open_session(export_onnx(m, data.spec.input_shape), "onnxruntime") for m in (small, big)]
    settings = LatencySettings(warmup_s=0.05, blocks=3, block_s=0.02, batch_sizes=(1, 16))
    small_stats, big_stats = measure_latency_interleaved(sessions, data.test.x[:8], settings)
    for batch in (1, 16):
        assert small_stats[batch].p10_ms <= small_stats[batch].p50_ms <= small_stats[batch].p90_ms
        assert big_stats[batch].p50_ms > 2 * small_stats[batch].p50_ms
        assert small_stats[batch].calls >= 3 and small_stats[batch].blocks == 3
        assert len(big_stats[batch].block_ms) == 3  # one median per block, paired with the other session's


def test_size_counts_params_nonzeros_and_macs():
    data = load_dataset("digits")
    module = build_model("mlp", data.spec)
    module.features[1].weight.data[:, :32] = 0
    proto = export_onnx(module, data.spec.input_shape)
    size = measure_size(proto, module, data.spec.input_shape)
    assert size.params == 50_610 and size.nonzero_params == 50_610 - 300 * 32
    assert size.macs == 64 * 300 + 300 * 100 + 100 * 10
    # LeNet-5 on 28x28: conv1 6x28x28x25, conv2 16x10x10x150, then 400-120-84-10.
    lenet = build_model("lenet5", load_dataset("fashion-mnist").spec)
    assert count_macs(lenet, (1, 28, 28)) == 6 * 784 * 25 + 16 * 100 * 150 + 400 * 120 + 120 * 84 + 84 * 10
    assert size.zstd_bytes < size.size_bytes == len(proto.SerializeToString())
    assert isinstance(proto, onnx.ModelProto)


def test_a_new_runtime_is_one_registration_that_recipes_and_measurement_both_read(monkeypatch):
    """The seam a new runtime plugs into: register it, and the up-front recipe check and the measuring code use it."""
    from conftest import FAST_MEASURE

    from compressbench.artifacts import TORCH, Candidate
    from compressbench.measure.compare import measure_candidates
    from compressbench.recipes import load_recipe
    from compressbench.runner.job import check_servable
    from compressbench.runtime import Runtime, runtimes
    from compressbench.runtime.torch_eager import TorchEagerSession

    def open_twin(module, threads, precision):
        session = TorchEagerSession(module, threads, precision)
        session.info["runtime"] = "twin"
        return session

    twin = Runtime("twin", "torch", "nothing to install", open_twin, "torch under another name", opens=(TORCH,))
    monkeypatch.setitem(runtimes._items, "twin", twin)
    check_servable(load_recipe("prune.magnitude"), "twin")  # a torch module: twin serves it
    with pytest.raises(CompressbenchError, match="what quant.dynamic produces runs on onnxruntime or openvino, not"):
        check_servable(load_recipe("quant.dynamic"), "twin")  # an ONNX graph: twin cannot open it
    data = load_dataset("digits")
    module = build_model("mlp", data.spec)
    settings = FAST_MEASURE.model_copy(update={"runtime": "twin"})
    metrics = measure_candidates({"baseline": Candidate(module=module)}, data, settings)
    assert metrics["baseline"].runtime["runtime"] == "twin"
    # Its size is what it serves: the module's weights as safetensors, not an ONNX export.
    params = sum(p.numel() for p in module.parameters())
    assert params * 4 <= metrics["baseline"].size_bytes < params * 4 + 4096


def test_collapse_is_judged_against_the_most_common_class_not_against_chance():
    from compressbench.measure import collapse_flag

    balanced_two_classes = np.array([0, 1] * 50)
    assert collapse_flag(0.90, balanced_two_classes) is None  # twice chance (100%) would have flagged this
    assert "collapsed" in collapse_flag(0.51, balanced_two_classes)
    skewed = np.array([0] * 90 + [1] * 10)  # answering 0 always scores 90%
    assert "most common class: 90.0%" in collapse_flag(0.91, skewed)
    assert collapse_flag(0.95, skewed) is None
    ten_classes = np.arange(10).repeat(10)
    assert collapse_flag(0.15, ten_classes) is None and collapse_flag(0.11, ten_classes) is not None


def test_a_speedup_interval_spreads_the_paired_blocks_log_ratios_around_the_measured_ratio():
    from compressbench.ranking.intervals import speedup_interval

    baseline, candidate = [2.0, 2.2, 1.8, 2.0], [1.0, 1.0, 1.0, 1.0]
    logs = [math.log(2.0), math.log(2.2), math.log(1.8), math.log(2.0)]
    mean = sum(logs) / 4
    sd = math.sqrt(sum((x - mean) ** 2 for x in logs) / 3)
    half = 3.182446305284263 * sd / 2  # t(0.975, 3 degrees of freedom) x standard error (sd / sqrt(4))
    low, high = speedup_interval(2.0, baseline, candidate)
    assert (low, high) == (pytest.approx(2.0 * math.exp(-half)), pytest.approx(2.0 * math.exp(half)))
    assert high / 2.0 == pytest.approx(2.0 / low)  # symmetric on the log scale around the measured ratio
    # One slow baseline block pulls the blocks' mean log ratio up, not the ratio of medians the interval surrounds.
    low, high = speedup_interval(1.3, [1.3, 1.3, 1.3, 1.3, 6.0], [1.0] * 5)
    assert low < 1.3 < high
    assert speedup_interval(2.0, [2.0], [1.0]) is None  # one pair: no spread to estimate
    with pytest.raises(ValueError, match="3 baseline blocks vs 2"):
        speedup_interval(1.0, [1.0, 1.0, 1.0], [1.0, 1.0])


def test_a_pruned_model_served_dense_has_no_speed_mechanism_and_a_narrower_one_has_fewer_macs():
    import torch

    from compressbench.measure.compare import served_ops, speed_mechanism
    from compressbench.measure.size import count_macs
    from compressbench.results import Metrics

    data = load_dataset("digits")

    def metrics(module, precision="fp32", runtime="onnxruntime"):
        graph = export_onnx(module, data.spec.input_shape)
        return Metrics(accuracy=0.9, accuracy_ci=[0.8, 1.0], latency_ms={}, size_bytes=1, stored_bytes=1, params=1,
                       nonzero_params=1, macs=count_macs(module, data.spec.input_shape),
                       runtime={"runtime": runtime, "precision": precision}, served_ops=served_ops(graph))  # fmt: skip

    baseline = build_model("mlp", data.spec)
    pruned = build_model("mlp", data.spec)
    with torch.no_grad():
        for layer in pruned.modules():
            if isinstance(layer, nn.Linear):
                layer.weight[:, ::2] = 0  # half the weights zero, the graph and its MACs unchanged
    assert speed_mechanism(metrics(baseline), metrics(pruned)) == []
    narrow = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))
    (fewer,) = speed_mechanism(metrics(baseline), metrics(narrow))
    assert fewer.endswith("x fewer MACs")
    assert speed_mechanism(metrics(baseline), metrics(pruned, "int8")) == ["int8 on onnxruntime"]
    assert speed_mechanism(metrics(baseline), metrics(pruned, runtime="openvino")) == ["served on openvino"]
    deeper = nn.Sequential(baseline, nn.Identity(), nn.ReLU())  # one more node, same MACs and precision
    assert speed_mechanism(metrics(baseline), metrics(deeper)) == ["a different graph (Relu)"]


def test_with_a_target_width_timing_adds_blocks_until_the_interval_is_that_narrow(monkeypatch):
    from compressbench.measure import latency

    class Scripted:
        """A session whose blocks take the given seconds per call, in turn."""

        def __init__(self, *per_call: float) -> None:
            self.per_call, self.blocks = per_call, 0

    def timed(session, x, calls):
        session.blocks += 1
        return [session.per_call[(session.blocks - 1) % len(session.per_call)]] * calls

    monkeypatch.setattr(latency, "_warm_up", lambda session, x, seconds: 1e-3)
    monkeypatch.setattr(latency, "_timed_calls", timed)
    inputs = np.zeros((4, 2), dtype=np.float32)

    def blocks_timed(candidate: Scripted, target: float | None) -> int:
        settings = LatencySettings(blocks=3, block_s=0.002, batch_sizes=(1,), target_half_width=target)
        baseline_stats, candidate_stats = latency._interleaved([Scripted(2e-3), candidate], inputs, settings)
        assert baseline_stats[1].blocks == candidate_stats[1].blocks == len(candidate_stats[1].block_ms)
        return candidate_stats[1].blocks

    assert blocks_timed(Scripted(1e-3), 0.05) == 3  # a steady 2x: within ±5% after the minimum
    assert blocks_timed(Scripted(0.8e-3, 1.25e-3), 0.05) == 12  # never that narrow: 4 x the minimum, then stop
    assert blocks_timed(Scripted(0.8e-3, 1.25e-3), None) == 3  # no target: the minimum only
    # Noisy at first, then steady: it stops as soon as the interval is narrow enough, between the two limits.
    settling = Scripted(*[0.9e-3, 1.1e-3] + [1e-3] * 40)
    assert 3 < blocks_timed(settling, 0.05) < 12
