"""The stored form of a graph's weights (`model.cbw`): lossless round trips, Deep Compression's sizes, refused
corrupt files, and the canonical Huffman codec underneath."""

import math

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from compressbench.errors import CompressbenchError
from compressbench.runtime.encoding import (
    ENCODED_NAME,
    MAGIC,
    MAX_CODE_BITS,
    canonical_code,
    code_lengths,
    decode_file,
    decode_graph,
    encode_file,
    encode_graph,
    huffman_decode,
    huffman_encode,
    huffman_lengths,
    read_header,
    relative_index,
)

RNG = np.random.default_rng(0)


def make_model(nodes, inputs, outputs, initializers=()) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "g", inputs, outputs, list(initializers))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def mlp(w1: np.ndarray, w2: np.ndarray) -> onnx.ModelProto:
    """x (N, 784) -> Gemm(w1 (256, 784)) -> Relu -> Gemm(w2 (10, 256)): a 2-layer MLP as torch exports it."""
    b1, b2 = RNG.normal(size=w1.shape[0]).astype(np.float32), RNG.normal(size=w2.shape[0]).astype(np.float32)
    return make_model(
        [helper.make_node("Gemm", ["x", "fc1.weight", "fc1.bias"], ["h"], transB=1),
         helper.make_node("Relu", ["h"], ["r"]),
         helper.make_node("Gemm", ["r", "fc2.weight", "fc2.bias"], ["logits"], transB=1)],
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", w1.shape[1]])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", w2.shape[0]])],
        [numpy_helper.from_array(a, name) for a, name in
         [(w1, "fc1.weight"), (b1, "fc1.bias"), (w2, "fc2.weight"), (b2, "fc2.bias")]],
    )  # fmt: skip


def dense(*shape: int) -> np.ndarray:
    return (RNG.normal(size=shape) * 0.05).astype(np.float32)


def pruned(weight: np.ndarray, sparsity: float = 0.9) -> np.ndarray:
    """Magnitude pruning as `weight.mul_(mask)` does it: a pruned negative weight becomes -0.0."""
    keep = np.abs(weight) > np.quantile(np.abs(weight), sparsity)
    return (weight * keep).astype(np.float32)


def shared(shape: tuple[int, ...], values: int = 16) -> np.ndarray:
    codebook = (RNG.normal(size=values) * 0.05).astype(np.float32)
    return codebook[RNG.integers(values, size=shape)]


def pruned_shared(shape: tuple[int, ...], values: int = 15) -> np.ndarray:
    """Deep Compression's order: magnitude pruning, then the survivors shared among `values` centroids."""
    weight = pruned(dense(*shape))
    centroids = np.quantile(weight[weight != 0], np.linspace(0, 1, values)).astype(np.float32)
    nearest = np.abs(weight[..., None] - centroids).argmin(axis=-1)
    return np.where(weight != 0, centroids[nearest], weight).astype(np.float32)  # the zeros keep their sign


def per_channel_conv() -> onnx.ModelProto:
    """A conv whose batch norm was folded in: 16 shared values scaled per output channel (512 distinct in all)."""
    weight = (shared((32, 8, 3, 3)) * RNG.uniform(0.5, 2, size=(32, 1, 1, 1))).astype(np.float32)
    return make_model(
        [helper.make_node("Conv", ["x", "conv.weight", "conv.bias"], ["y"], pads=[1, 1, 1, 1])],
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 8, 12, 12])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 32, 12, 12])],
        [numpy_helper.from_array(weight, "conv.weight"), numpy_helper.from_array(dense(32), "conv.bias")],
    )


def constant_weights() -> onnx.ModelProto:
    """Weights as Constant nodes (some exporters do this), one stored as float_data rather than raw_data."""
    weight = pruned(dense(64, 784))
    return make_model(
        [helper.make_node("Constant", [], ["w"], value=numpy_helper.from_array(weight, "")),
         helper.make_node("Constant", [], ["b"], value=helper.make_tensor("", TensorProto.FLOAT, [64],
                                                                            dense(64).tolist())),
         helper.make_node("Constant", [], ["w2"], value=helper.make_tensor("", TensorProto.FLOAT, [10, 64],
                                                                             shared((10, 64)).reshape(-1).tolist())),
         helper.make_node("Gemm", ["x", "w", "b"], ["h"], transB=1),
         helper.make_node("Gemm", ["h", "w2"], ["y"], transB=1)],
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 784])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 10])],
    )  # fmt: skip


def int64_indices() -> onnx.ModelProto:
    """An int64 initializer (gather indices) beside a float weight: the indices stay in the graph untouched."""
    return make_model(
        [helper.make_node("Gather", ["x", "columns"], ["g"], axis=1),
         helper.make_node("MatMul", ["g", "w"], ["y"])],
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 784])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 10])],
        [numpy_helper.from_array(RNG.permutation(784)[:100].astype(np.int64), "columns"),
         numpy_helper.from_array(dense(100, 10), "w")],
    )  # fmt: skip


GRAPHS = {
    "dense MLP": lambda: mlp(dense(256, 784), dense(10, 256)),
    "90% pruned": lambda: mlp(pruned(dense(256, 784)), pruned(dense(10, 256))),
    "16 shared values": lambda: mlp(shared((256, 784)), shared((10, 256))),
    "pruned and shared": lambda: mlp(pruned_shared((256, 784)), pruned_shared((10, 256))),
    "per-channel scaled conv": per_channel_conv,
    "Constant-node weights": constant_weights,
    "int64 initializer": int64_indices,
    "all-zero weight": lambda: mlp(dense(256, 784), np.zeros((10, 256), dtype=np.float32)),
}


def all_tensors(model: onnx.ModelProto) -> dict[str, onnx.TensorProto]:
    tensors = {t.name: t for t in model.graph.initializer}
    tensors |= {n.output[0]: a.t for n in model.graph.node for a in n.attribute if a.type == onnx.AttributeProto.TENSOR}
    return tensors


def outputs(model: onnx.ModelProto) -> list[np.ndarray]:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(1).normal(size=[4 if isinstance(d, str) else d for d in input_shape(model)])
    return session.run(None, {model.graph.input[0].name: x.astype(np.float32)})


def input_shape(model: onnx.ModelProto) -> list[int | str]:
    return [d.dim_param or d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]


def streams(header: dict) -> list[dict]:
    found = []
    for entry in header["tensors"]:
        found += [entry["positions"]] if entry["positions"] else []
        found += [entry["values"]["indices"]] if entry["values"]["form"] == "codebook" else []
    return found


@pytest.mark.parametrize("build", GRAPHS.values(), ids=GRAPHS.keys())
def test_every_tensor_comes_back_bit_for_bit_and_onnxruntime_gives_identical_outputs(build):
    model = build()
    encoded = encode_graph(model)
    decoded = decode_graph(encoded.payload)
    before, after = all_tensors(model), all_tensors(decoded)
    assert before.keys() == after.keys()
    for name, tensor in before.items():
        a, b = numpy_helper.to_array(tensor), numpy_helper.to_array(after[name])
        assert a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes(), name  # -0.0 too
    assert decoded.SerializeToString() == model.SerializeToString()  # even the protobuf is byte for byte the same
    assert all(np.array_equal(x, y) for x, y in zip(outputs(model), outputs(decoded), strict=True))
    assert sum(encoded.parts.values()) == len(encoded.payload)


def test_pruned_weights_keep_the_sign_of_their_zeros_at_one_bit_each():
    weight = pruned(dense(256, 784))
    negative_zeros = np.signbit(weight) & (weight == 0)
    assert negative_zeros.any(), "the pruned layer has -0.0, as weight * mask leaves it"
    encoded = encode_graph(mlp(weight, dense(10, 256)))
    [entry] = [t for t in read_header(encoded.payload)["tensors"] if t["name"] == "fc1.weight"]
    assert entry["positions"] is not None and entry["zero_signs"]["count"] == (weight == 0).sum()
    assert encoded.parts["zero signs"] <= math.ceil((weight == 0).sum() / 8)
    back = numpy_helper.to_array(all_tensors(decode_graph(encoded.payload))["fc1.weight"])
    assert np.array_equal(np.signbit(back), np.signbit(weight))


def test_only_float32_tensors_of_64_elements_or_more_are_encoded_the_rest_stay_in_the_graph():
    header = read_header(encode_graph(int64_indices()).payload)
    assert [(t["name"], t["home"]) for t in header["tensors"]] == [("w", "initializer")]
    header = read_header(encode_graph(constant_weights()).payload)
    assert [(t["name"], t["home"], t["field"]) for t in header["tensors"]] == [
        ("w", "constant", "raw_data"), ("b", "constant", "float_data"), ("w2", "constant", "float_data")
    ]  # fmt: skip


def test_a_pruned_shared_layer_beats_deep_compressions_fixed_width_arithmetic():
    # LeNet-300-100's first layer in Deep Compression's setting: 90% pruned, 4-bit shared indices (15 shared values
    # and the zero that fillers hold), 5-bit relative indices as the paper uses for fc layers, and every zero +0.0
    # (weight sharing's tie writes them so).
    weight = pruned_shared((256, 784))
    weight[weight == 0] = 0.0
    encoded = encode_graph(mlp(weight, np.zeros((10, 256), dtype=np.float32)))
    entries = len(relative_index(np.flatnonzero(weight), 5)[0])  # non-zeros plus fillers
    paper = math.ceil(entries * (5 + 4) / 8) + 16 * 4  # fixed-width streams plus the codebook
    [entry] = [t for t in read_header(encoded.payload)["tensors"] if t["name"] == "fc1.weight"]
    fc1 = sum(s["length"] + (s["table"]["length"] if s["table"] else 0)
              for s in (entry["positions"], entry["values"]["indices"]))  # fmt: skip
    fc1 += entry["values"]["codebook"]["length"] + entry["values"]["sizes"]["length"]
    assert entry["values"]["form"] == "codebook" and entry["values"]["axis"] is None
    assert "zero signs" not in encoded.parts
    assert fc1 <= paper  # the best width and Huffman coding only take bytes away
    assert len(encoded.payload) < weight.size * 4 / 30  # about 22 kB for the 803 kB of fp32


@pytest.mark.parametrize("build", GRAPHS.values(), ids=GRAPHS.keys())
def test_huffman_coding_never_makes_a_stream_larger_than_its_fixed_width(build):
    for stream in streams(read_header(encode_graph(build()).payload)):
        table = stream["table"]["length"] if stream["table"] else 0
        assert stream["length"] + table <= math.ceil(stream["count"] * stream["bits"] / 8)


def test_a_skewed_stream_is_huffman_coded_and_a_tiny_one_stays_fixed_width():
    skewed = RNG.choice(np.float32([0.5, -0.25, 0.125]), p=[0.9, 0.05, 0.05], size=(256, 784))
    header = read_header(encode_graph(mlp(skewed, dense(10, 256))).payload)
    assert header["tensors"][0]["values"]["indices"]["coding"] == "huffman"  # about 1.1 bits a weight, not 2
    tiny = np.tile(np.float32([0.5, -0.5, 0.25, 0.75]), 16)  # 64 weights, 4 values: a 4-byte table does not pay
    model = make_model([helper.make_node("Mul", ["x", "w"], ["y"])],
                       [helper.make_tensor_value_info("x", TensorProto.FLOAT, [64])],
                       [helper.make_tensor_value_info("y", TensorProto.FLOAT, [64])],
                       [numpy_helper.from_array(tiny, "w")])  # fmt: skip
    assert [t["values"]["indices"]["coding"] for t in read_header(encode_graph(model).payload)["tensors"]] == ["fixed"]


def test_a_per_channel_scaled_conv_takes_one_codebook_per_output_channel():
    [entry] = read_header(encode_graph(per_channel_conv()).payload)["tensors"]
    assert entry["values"]["form"] == "codebook" and entry["values"]["axis"] == 0
    # 72 weights per channel drawn from 16 values: each channel's codebook holds the ones it uses, 16 at most
    assert entry["values"]["indices"]["alphabet"] <= 16 and entry["values"]["codebook"]["length"] <= 32 * 16 * 4


def test_a_dense_layer_is_stored_as_fp32_or_zstd_whichever_is_smaller():
    weight = dense(256, 784)
    encoded = encode_graph(mlp(weight, dense(10, 256)))
    [entry] = [t for t in read_header(encoded.payload)["tensors"] if t["name"] == "fc1.weight"]
    assert entry["positions"] is None and entry["values"]["form"] in ("fp32", "zstd-planes")
    assert entry["values"]["length"] <= weight.size * 4


def test_an_all_zero_weight_takes_no_body_bytes():
    [entry] = [t for t in read_header(encode_graph(GRAPHS["all-zero weight"]()).payload)["tensors"]
               if t["name"] == "fc2.weight"]  # fmt: skip
    assert entry["positions"]["count"] == 0 and entry["values"]["length"] == 0


def test_a_file_or_a_directory_round_trips(tmp_path):
    model = GRAPHS["pruned and shared"]()
    encoded = encode_file(model, tmp_path)
    assert (tmp_path / ENCODED_NAME).stat().st_size == len(encoded.payload)
    assert decode_file(tmp_path).SerializeToString() == model.SerializeToString()
    with pytest.raises(CompressbenchError, match="no such file"):
        decode_file(tmp_path / "missing.cbw")


@pytest.fixture(scope="module")
def payload() -> bytes:
    return encode_graph(GRAPHS["pruned and shared"]()).payload


@pytest.mark.parametrize(
    ("corrupt", "message"),
    [
        (lambda p: p[:-100], "truncated: its body has"),
        (lambda p: p[:20], "truncated: its header needs"),
        (lambda p: p[:5], "truncated: 5 bytes"),
        (lambda p: b"", "empty"),
        (lambda p: b"PK\x03\x04" + p[4:], "not a compressbench weights file"),
        (lambda p: p[:8] + (2).to_bytes(2, "little") + p[10:], "format version 2, which this compressbench does not"),
        (lambda p: p[:-10] + bytes([p[-10] ^ 1]) + p[-9:], "CRC-32"),
        (lambda p: p + b"\0", "1 bytes after the end of its body"),
    ],
    ids=["cut body", "cut header", "cut prefix", "empty", "wrong magic", "unknown version", "flipped bit", "trailing"],
)
def test_a_damaged_file_is_refused_with_what_is_wrong(payload, corrupt, message):
    with pytest.raises(CompressbenchError, match=message):
        decode_graph(corrupt(payload))
    assert payload.startswith(MAGIC)


def test_huffman_code_lengths_by_hand():
    # counts 5, 2, 1, 1: merge 1+1, then 2+2, then 4+5: lengths 1, 2, 3, 3 and codewords 0, 10, 110, 111
    symbols = np.array([0] * 5 + [1] * 2 + [2] + [3])
    assert code_lengths(symbols) == {0: 1, 1: 2, 2: 3, 3: 3}
    assert canonical_code(code_lengths(symbols)) == {0: "0", 1: "10", 2: "110", 3: "111"}
    payload, _ = huffman_encode(symbols)
    assert payload == bytes([0b0000_0101, 0b0110_1110])  # 00000 10 10 110 111, then one bit of padding


@pytest.mark.parametrize(
    "symbols",
    [RNG.geometric(0.3, 20_000).clip(max=200) - 1, RNG.integers(0, 256, 20_000), np.full(1000, 7), np.array([3]),
     np.zeros(0, dtype=np.int64)],
    ids=["skewed", "uniform", "one symbol", "one element", "empty"],
)  # fmt: skip
def test_huffman_encode_then_decode_is_the_identity(symbols):
    payload, words = huffman_encode(symbols)
    assert np.array_equal(huffman_decode(payload, words, len(symbols)), symbols)
    values, counts = np.unique(symbols, return_counts=True)
    bits = sum(count * len(words[value]) for value, count in zip(values.tolist(), counts.tolist(), strict=True))
    assert len(payload) == math.ceil(bits / 8)


def test_code_lengths_are_capped_and_still_form_a_complete_prefix_code():
    counts = np.array([1, 1] + [int(1.6**k) for k in range(1, 40)])  # Fibonacci-like: optimal depths reach 40
    lengths = huffman_lengths(counts)
    assert lengths.max() == MAX_CODE_BITS and (2.0 ** -lengths.astype(float)).sum() == 1.0
    symbols = np.repeat(np.arange(len(counts)), np.minimum(counts, 50))
    payload, words = huffman_encode(symbols)
    assert np.array_equal(huffman_decode(payload, words, len(symbols)), symbols)


def test_a_huffman_stream_cut_short_is_refused():
    symbols = RNG.integers(0, 5, 1000)
    payload, words = huffman_encode(symbols)
    with pytest.raises(ValueError, match="fewer than its 1000 symbols"):
        huffman_decode(payload[: len(payload) // 2], words, len(symbols))


def test_both_stored_forms_decode_to_the_graph_from_a_folder_or_a_file(tmp_path):
    from compressbench.runtime.stored import ENCODED_KIND, ZSTD_KIND, decode_stored, stored_forms

    model = mlp(pruned_shared((64, 32)), pruned_shared((10, 64)))
    forms = stored_forms(model)
    assert {form.kind for form in forms} == {ENCODED_KIND, ZSTD_KIND} and forms[0].size <= forms[1].size
    assert all(sum(form.parts.values()) == form.size for form in forms)
    for form in forms:
        folder = tmp_path / form.kind
        folder.mkdir()
        (folder / form.file).write_bytes(form.payload)
        for where in (folder, folder / form.file):
            assert decode_stored(where).SerializeToString() == model.SerializeToString()
    with pytest.raises(CompressbenchError, match="holds neither model.cbw nor model.onnx.zst"):
        decode_stored(tmp_path)
