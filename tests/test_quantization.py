"""Quantization techniques: real int8 graphs, calibration, `auto` selection, QAT, weight sharing and Huffman sizes."""

import copy
import dataclasses
import math

import numpy as np
import onnx
import pytest
import torch
from conftest import FAST_LATENCY, QUICK_TRAINING
from torch import nn

from compressbench.data import Split, load_dataset
from compressbench.errors import CompressbenchError
from compressbench.measure.latency import LatencyStats
from compressbench.models import ModelConfig, build_model
from compressbench.recipes import load_recipe
from compressbench.runtime import export_onnx
from compressbench.runtime.encoding import canonical_code, code_lengths, relative_index
from compressbench.runtime.encoding import huffman_decode as decode
from compressbench.runtime.encoding import huffman_encode as encode
from compressbench.techniques import Candidate, Context, onnx_quant
from compressbench.techniques.huffman import StreamSize, coded_bytes, stream_size
from compressbench.techniques.onnx_quant import FP32, module_path
from compressbench.techniques.quant_static import preprocess, quantize_static_graph
from compressbench.training import train


def make_context(data, model, cache, name="lenet5", latency=FAST_LATENCY):
    return Context(data=data, baseline=model, model=ModelConfig(name=name), train_config=QUICK_TRAINING, seed=0,
                   cache=cache, latency=latency)  # fmt: skip


@pytest.fixture(scope="module")
def lenet(cache):
    data = load_dataset("synthetic")
    model = build_model("lenet5", data.spec, seed=0)
    train(model, data, QUICK_TRAINING, seed=0)
    return data, model, make_context(data, model, cache)


def apply(step: dict, model: nn.Module, context: Context) -> Candidate:
    built = load_recipe({"name": "t", "steps": [step]}).steps[0].build()
    return built.apply(Candidate(module=copy.deepcopy(model)), context)


def test_static_int8_graph_has_qdq_nodes_and_int8_weights(lenet):
    data, model, context = lenet
    candidate = apply({"technique": "quant.static", "op_types": ["Conv", "Gemm"], "exclude": []}, model, context)
    ops = [node.op_type for node in candidate.artifact.graph.node]
    assert ops.count("QuantizeLinear") > 0 and ops.count("DequantizeLinear") > 0
    assert candidate.records[-1]["quantized_layers"] == 5
    assert any(i.data_type == onnx.TensorProto.INT8 for i in candidate.artifact.graph.initializer)
    assert candidate.records[-1]["val_accuracy"] > 0.5


def test_exclude_keeps_a_layer_in_float_by_module_path_or_node_name(lenet):
    data, model, context = lenet
    by_path = apply({"technique": "quant.static", "op_types": ["Conv", "Gemm"], "exclude": ["classifier"]},
                    model, context)  # fmt: skip
    by_name = apply({"technique": "quant.static", "op_types": ["Conv", "Gemm"], "exclude": ["/classifier/Gemm"]},
                    model, context)  # fmt: skip
    assert by_path.records[-1]["quantized_layers"] == by_name.records[-1]["quantized_layers"] == 4
    ends = apply({"technique": "quant.static", "op_types": ["Conv", "Gemm"], "exclude": "first+last"}, model, context)
    assert {module_path(node) for node in ends.records[-1]["float_layers"]} == {"features.0", "classifier"}
    assert ends.records[-1]["quantized_layers"] == 3
    assert module_path("/blocks/blocks.2/shortcut/shortcut.0/Conv") == "blocks.2.shortcut.0"


def test_calibration_methods_give_different_scales(lenet):
    data, model, _ = lenet
    graph, _ = preprocess("t", export_onnx(model, data.spec.input_shape))

    def scales(method: str) -> np.ndarray:
        quantized = quantize_static_graph(
            "t", graph, data.calibration.x[:256], op_types=None, exclude=[], per_channel=True,
            activation_type="uint8", weight_type="int8", reduce_range=False, calibration_method=method,
            percentile=99.0,
        )  # fmt: skip
        values = {i.name: onnx.numpy_helper.to_array(i) for i in quantized.graph.initializer}
        return np.array([float(values[n.input[1]]) for n in quantized.graph.node if n.op_type == "QuantizeLinear"])

    minmax, percentile, entropy = scales("minmax"), scales("percentile"), scales("entropy")
    assert len(minmax) == len(percentile) == len(entropy) > 0
    assert not np.allclose(minmax, percentile) and not np.allclose(minmax, entropy)
    assert (percentile <= minmax + 1e-9).all(), "a percentile range lies inside the min/max range"


class SmallConvWideFC(nn.Module):
    """A tiny convolution (where int8 is slower than fp32) in front of wide fully connected layers (where it is
    faster)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.fc = nn.Sequential(nn.Flatten(), nn.Linear(576, 1024), nn.ReLU(), nn.Linear(1024, 1024), nn.ReLU())
        self.classifier = nn.Linear(1024, 4)

    def forward(self, x):
        return self.classifier(self.fc(torch.relu(self.conv(x))))


def modelled_latency(sessions, inputs, settings):
    """Stand-in timings (real ones are too noisy for a unit test; benchmarks/ measures them): fp32 1 ms, int8 fully
    connected layers 0.5 ms, plus 0.3 ms when the tiny convolution is int8 too (ConvInteger: the slow case)."""
    stats = []
    for session in sessions:
        ops = {node.op_type for node in session.proto.graph.node}
        ms = 1.0 if "MatMulInteger" not in ops else 0.5 + 0.3 * ("ConvInteger" in ops)
        stats.append(
            {b: LatencyStats(b, ms, ms, ms, 10, settings.blocks, settings.threads) for b in settings.batch_sizes}
        )
    return stats


def test_auto_picks_the_faster_candidate_where_quantizing_convolutions_is_slower(cache, monkeypatch):
    monkeypatch.setattr(onnx_quant, "measure_latency_interleaved", modelled_latency)
    data = load_dataset("synthetic")
    torch.manual_seed(0)
    model = SmallConvWideFC().eval()
    context = make_context(data, model, cache, latency=FAST_LATENCY)
    step = {"technique": "quant.dynamic", "op_types": "auto", "max_accuracy_drop_pt": 100, "min_speedup": 1.0}
    candidate = apply(step, model, context)
    record = candidate.records[-1]
    table = {row["variant"]: row for row in record["variants"]}
    assert set(table) == {FP32, "MatMul/Gemm", "MatMul/Gemm/Conv"}
    assert min(table["MatMul/Gemm/Conv"]["speedup"].values()) < min(table["MatMul/Gemm"]["speedup"].values())
    assert record["chosen"] == "MatMul/Gemm", record["why"]
    ops = {node.op_type for node in candidate.artifact.graph.node}
    assert "MatMulInteger" in ops and "ConvInteger" not in ops


def test_auto_times_its_variants_on_every_runtime_that_will_serve_the_candidate(lenet):
    """With the job measuring on ONNX Runtime and OpenVINO, `auto` times fp32 and each int8 variant on both and
    compares each graph on its fastest runtime (never on ONNX Runtime alone)."""
    data, model, context = lenet
    both = dataclasses.replace(context, runtimes=("onnxruntime", "openvino"))
    step = {"technique": "quant.static", "max_accuracy_drop_pt": 100, "min_speedup": 0.01}
    table = apply(step, model, both).records[-1]["variants"]
    chosen_runtimes = {runtime for row in table for runtime in row["runtime"].values()}
    assert chosen_runtimes <= {"onnxruntime", "openvino"} and len(table) >= 2
    assert all(speedup == 1.0 for speedup in table[0]["speedup"].values())  # fp32 against itself
    only_ort = apply(step, model, context).records[-1]["variants"]
    assert {runtime for row in only_ort for runtime in row["runtime"].values()} == {"onnxruntime"}


def test_auto_keeps_fp32_with_a_flag_when_no_variant_is_fast_enough(lenet):
    data, model, context = lenet
    candidate = apply({"technique": "quant.static", "min_speedup": 100.0}, model, context)
    assert candidate.records[-1]["chosen"] == FP32 and "100.00x" in candidate.records[-1]["why"]
    assert not candidate.records[-1]["int8_ops"]
    assert any("stays fp32" in flag for flag in candidate.flags)


@pytest.mark.parametrize(
    ("calibration", "message"),
    [
        (Split(np.zeros((0, 1, 12, 12), np.float32), np.zeros(0, np.int64)), "calibration split is empty"),
        (Split(np.zeros((8, 1, 10, 10), np.float32), np.zeros(8, np.int64)), r"shape \(1, 10, 10\)"),
    ],
)
def test_bad_calibration_data_is_one_clear_error(lenet, calibration, message):
    data, model, context = lenet
    bad = dataclasses.replace(context, data=dataclasses.replace(data, calibration=calibration))
    for technique in ("quant.static", "quant.qat"):
        with pytest.raises(CompressbenchError, match=rf"{technique}: field 'calibration_samples': .*{message}"):
            apply({"technique": technique}, model, bad)


def test_unknown_exclude_layer_and_unsupported_op_are_clear_errors(lenet):
    data, model, context = lenet
    with pytest.raises(CompressbenchError, match=r"quant.static: field 'exclude': no layer 'fc9'.*classifier_hidden.1"):
        apply({"technique": "quant.static", "exclude": ["fc9"]}, model, context)
    with pytest.raises(CompressbenchError, match=r"quant.dynamic: field 'exclude': no layer 'fc9'"):
        apply({"technique": "quant.dynamic", "exclude": ["fc9"]}, model, context)
    with pytest.raises(CompressbenchError, match=r"quant.static: field 'op_types': .*cannot handle \['Softmaxx'\]"):
        apply({"technique": "quant.static", "op_types": ["Softmaxx"]}, model, context)


class NaNHead(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(144, 4)

    def forward(self, x):
        return self.fc(x.flatten(1)) * float("nan")


def test_nan_outputs_after_quantization_are_flagged(lenet, cache):
    data, _, _ = lenet
    model = NaNHead().eval()
    candidate = apply({"technique": "quant.dynamic"}, model, make_context(data, model, cache, name="x"))
    assert any("NaN" in flag for flag in candidate.flags)
    assert any("collapsed" in flag for flag in candidate.flags)


def test_qat_fine_tunes_with_fake_quantization_and_exports_int8(cache):
    data = load_dataset("synthetic")
    model = build_model(ModelConfig(name="resnet", width=0.25, depth=1), data.spec, seed=0)
    train(model, data, QUICK_TRAINING, seed=0)
    context = make_context(data, model, cache, name="resnet")
    before = copy.deepcopy(model.state_dict())
    candidate = apply({"technique": "quant.qat", "epochs": 1, "min_steps": 0, "exclude": ["stem.0"]}, model, context)
    record = candidate.records[-1]
    assert record["epochs"] == 1 and record["batch_norms_folded"] == 9 and record["wrapped_layers"] == 10
    ops = [node.op_type for node in candidate.artifact.graph.node]
    assert "BatchNormalization" not in ops and ops.count("QuantizeLinear") > 0
    assert record["quantized_layers"] == 9 and record["val_accuracy_int8"] > 0.5, "stem.0 stays float"
    assert all((model.state_dict()[k] == v).all() for k, v in before.items()), "the baseline is not touched"


def test_weight_sharing_leaves_exactly_2_pow_bits_values_and_keeps_zeros(lenet):
    data, model, context = lenet
    pruned = copy.deepcopy(model)
    with torch.no_grad():
        weight = pruned.classifier_hidden[1].weight
        weight[weight.abs() < weight.abs().median()] = 0
    zeros = pruned.classifier_hidden[1].weight == 0
    step = {"technique": "quant.weight_sharing", "conv_bits": 4, "fc_bits": 3, "fine_tune_samples": 256}
    candidate = apply(step, pruned, context)
    for name, layer in candidate.module.named_modules():
        if isinstance(layer, nn.Conv2d | nn.Linear):
            bits = 4 if isinstance(layer, nn.Conv2d) else 3
            nonzero = layer.weight[layer.weight != 0]
            assert len(torch.unique(nonzero)) == 2**bits, name
    assert (candidate.module.classifier_hidden[1].weight[zeros] == 0).all(), "pruned weights stay pruned"
    assert "positions" in candidate.records[-1]["storage"]
    # One epoch of 256 samples is 2 steps: the fine-tune runs to its 300-step minimum instead.
    assert candidate.records[-1]["fine_tune"]["epochs"] == 150 and candidate.records[-1]["fine_tune_steps"] == 300
    assert any("size-only" in flag for flag in candidate.flags)


def test_huffman_code_lengths_and_sizes_match_a_brute_force_count():
    symbols = np.array([0] * 5 + [1] * 2 + [2] + [3])
    assert code_lengths(symbols) == {0: 1, 1: 2, 2: 3, 3: 3}
    assert coded_bytes(symbols) == math.ceil((5 * 1 + 2 * 2 + 3 + 3) / 8) == 2
    payload, words = encode(symbols)
    assert len(payload) == 2 and (decode(payload, words, len(symbols)) == symbols).all()
    assert len(set(canonical_code(code_lengths(symbols)).values())) == 4
    rng = np.random.default_rng(0)
    skewed = rng.geometric(0.3, 2000).clip(max=31) - 1
    payload, words = encode(skewed)
    assert len(payload) == coded_bytes(skewed) and (decode(payload, words, len(skewed)) == skewed).all()


def test_relative_positions_with_fillers_decode_back():
    nonzero = np.array([0, 3, 4, 40, 41, 100])
    # 3-bit fields skip 0..7 zeros; a filler (field 7) stands on the 8th position of a longer run and holds a zero:
    # 35 zeros before 40 take 4 fillers (32 positions) then 3; 58 before 100 take 7 fillers (56) then 2.
    stream, filler = relative_index(nonzero, bits=3)
    assert stream.tolist() == [0, 2, 0, 7, 7, 7, 7, 3, 0, *[7] * 7, 2]
    stored = np.cumsum(stream + 1) - 1  # every entry, filler or not, takes one position
    assert stored[~filler].tolist() == nonzero.tolist() and not set(stored[filler]) & set(nonzero.tolist())


def test_deep_compression_storage_matches_a_count_by_hand(lenet, cache):
    data, _, _ = lenet
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(144, 4))
    with torch.no_grad():
        model[1].weight[:, :100] = 0  # 100 zeros per row: sparse
    context = make_context(data, model, cache, name="x")
    step = {"technique": "quant.weight_sharing", "fc_bits": 2, "fc_position_bits": 4, "fine_tune_epochs": 0}
    shared = apply(step, model, context)
    weight = shared.module[1].weight.detach().numpy().reshape(-1)
    nonzero = np.flatnonzero(weight)
    codebook, codes = np.unique(weight[nonzero], return_inverse=True)
    positions, filler = relative_index(nonzero, 4)
    # Each row starts with a run of 100 zeros: 100 // 16 = 6 fillers (each a stored zero), then 4 zeros skipped.
    assert len(nonzero) == 4 * 44 and len(positions) == 4 * (44 + 6) and filler.sum() == 4 * 6
    # The fillers' zero takes index code 0, so k-means leaves 2^2 - 1 = 3 shared non-zero values (codes 1..3).
    assert len(codebook) == 3
    indices = np.zeros(len(positions), dtype=np.int64)
    indices[~filler] = codes.reshape(-1) + 1
    assert shared.records[-1]["storage"] == {
        "codebooks": 3 * 4, "indices": math.ceil(len(positions) * 2 / 8),
        "positions": math.ceil(len(positions) * 4 / 8), "float params": 4 * 4,
    }  # fmt: skip
    from compressbench.techniques import techniques

    coded = techniques.get("encode.huffman")().apply(shared, context)
    # Each stream is Huffman-coded only where code + table (one byte per symbol) beats its fixed width.
    index_fixed, position_fixed = math.ceil(len(indices) * 2 / 8), math.ceil(len(positions) * 4 / 8)
    index_coded, position_coded = len(encode(indices)[0]), len(encode(positions)[0])
    index_choice = (index_coded, 2**2) if index_coded + 2**2 < index_fixed else (index_fixed, 0)
    position_choice = (position_coded, 2**4) if position_coded + 2**4 < position_fixed else (position_fixed, 0)
    assert coded.records[-1]["storage"] == {
        "codebooks": 3 * 4, "indices (huffman)": index_choice[0], "positions (huffman)": position_choice[0],
        "huffman tables": 1 + index_choice[1] + position_choice[1], "float params": 16,
    }  # fmt: skip
    assert coded.records[-1]["bytes_after"] <= coded.records[-1]["bytes_before"] + 1  # coding never grows the model


def test_huffman_keeps_a_stream_fixed_width_when_coding_it_does_not_pay():
    uniform = np.arange(256).repeat(2)  # 512 8-bit symbols, all equally likely: a code saves nothing
    assert stream_size(uniform, 8) == StreamSize(payload=512, table=0, coded=False)
    skewed = np.array([0] * 4000 + [1] * 10 + [2] * 10)  # 2-bit symbols, one dominant
    size = stream_size(skewed, 2)
    assert size.coded and size.payload == coded_bytes(skewed) and size.payload + size.table < 1005
