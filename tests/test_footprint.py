"""The footprint probe: a served model's memory and start-up, measured in a fresh process without torch."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from compressbench.errors import CompressbenchError
from compressbench.measure import footprint
from compressbench.measure.footprint import Footprint, probe_footprint

LARGE, SMALL = 2048, 32  # four square float32 weights: 64 MiB and 16 KiB
BATCH = 8


def matmul_chain(width: int, layers: int = 4) -> onnx.ModelProto:
    """x @ W0 @ W1 @ ... with random weights (nothing for a runtime to fold or share)."""
    rng = np.random.default_rng(0)
    weights, nodes, previous = [], [], "x"
    for i in range(layers):
        w = (rng.standard_normal((width, width)) / np.sqrt(width)).astype(np.float32)
        weights.append(numpy_helper.from_array(w, f"w{i}"))
        output = "y" if i == layers - 1 else f"h{i}"
        nodes.append(helper.make_node("MatMul", [previous, f"w{i}"], [output]))
        previous = output
    graph = helper.make_graph(
        nodes,
        "chain",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", width])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", width])],
        weights,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def weight_mb(proto: onnx.ModelProto) -> float:
    return sum(numpy_helper.to_array(w).nbytes for w in proto.graph.initializer) / 2**20


def batch_of(width: int) -> np.ndarray:
    return np.random.default_rng(1).standard_normal((BATCH, width)).astype(np.float32)


def assert_sane(figures: Footprint, runtime: str) -> None:
    assert figures.runtime == runtime and figures.batch == BATCH and figures.threads == 1
    assert 0 < figures.baseline_rss_mb <= figures.peak_rss_mb
    assert figures.model_rss_mb == pytest.approx(figures.peak_rss_mb - figures.baseline_rss_mb)
    assert figures.load_s > 0 and figures.first_inference_ms > 0 and figures.second_inference_ms > 0
    assert runtime in figures.how and f"batch of {BATCH}" in figures.how
    assert figures.as_dict()["model_rss_mb"] == figures.model_rss_mb


def test_a_large_model_is_resident_on_onnxruntime():
    large = matmul_chain(LARGE)
    big = probe_footprint(large, "onnxruntime", batch_of(LARGE))
    small = probe_footprint(matmul_chain(SMALL), "onnxruntime", batch_of(SMALL))
    for figures in (big, small):
        assert_sane(figures, "onnxruntime")
    assert big.model_rss_mb > small.model_rss_mb
    assert big.model_rss_mb >= weight_mb(large) / 2  # the weights really are in memory


def test_a_large_model_is_resident_on_openvino():
    pytest.importorskip("openvino")
    from compressbench.runtime import onnx_to_openvino

    large = matmul_chain(LARGE)
    big = probe_footprint(onnx_to_openvino(large), "openvino", batch_of(LARGE))  # an OpenVINO model, as its IR
    small = probe_footprint(matmul_chain(SMALL), "openvino", batch_of(SMALL))  # an ONNX graph, converted on load
    for figures in (big, small):
        assert_sane(figures, "openvino")
    assert "model.xml" in big.how and "model.onnx" in small.how
    assert big.model_rss_mb > small.model_rss_mb
    assert big.model_rss_mb >= weight_mb(large) / 2


def two_input_sum(width: int) -> onnx.ModelProto:
    graph = helper.make_graph(
        [helper.make_node("Add", ["a", "b"], ["y"])],
        "pair",
        [helper.make_tensor_value_info(name, TensorProto.FLOAT, ["batch", width]) for name in ("a", "b")],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", width])],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


@pytest.mark.parametrize("runtime", ["onnxruntime", "openvino"])
def test_several_inputs_are_packed_along_axis_1(runtime):
    """As the project's sessions take them (`models.NamedInputs`): x[:, 0] is a, x[:, 1] is b."""
    if runtime == "openvino":
        pytest.importorskip("openvino")
    x = np.ones((BATCH, 2, SMALL), dtype=np.float32)
    assert_sane(probe_footprint(two_input_sum(SMALL), runtime, x), runtime)
    with pytest.raises(CompressbenchError, match=rf"{runtime} failed .*the graph takes 2 inputs"):
        probe_footprint(two_input_sum(SMALL), runtime, np.ones((BATCH, 3, SMALL), dtype=np.float32))


def test_a_broken_model_names_the_runtime_and_the_cause():
    broken = matmul_chain(SMALL, layers=1)
    broken.graph.node[0].op_type = "NoSuchOp"
    with pytest.raises(CompressbenchError, match=r"^onnxruntime failed in the footprint probe: .*NoSuchOp"):
        probe_footprint(broken, "onnxruntime", batch_of(SMALL))


def test_a_probe_past_its_timeout_is_an_error():
    with pytest.raises(CompressbenchError, match=r"onnxruntime: the footprint probe did not finish in 0.01 s"):
        probe_footprint(matmul_chain(SMALL), "onnxruntime", batch_of(SMALL), timeout_s=0.01)


def test_torch_models_are_refused_before_any_process_starts():
    with pytest.raises(CompressbenchError, match=r"serves on onnxruntime or openvino, not torch"):
        probe_footprint(matmul_chain(SMALL), "torch", batch_of(SMALL))


def test_the_child_imports_neither_torch_nor_compressbench(tmp_path):
    """Torch alone would be most of a small model's baseline: the child's whole path runs in a clean process
    and leaves no torch (nor compressbench, which imports it) in sys.modules."""
    onnx.save(matmul_chain(SMALL), tmp_path / "model.onnx")
    np.save(tmp_path / "inputs.npy", batch_of(SMALL))
    script = (
        "import runpy, sys; "
        f"child = runpy.run_path({footprint.__file__!r}); "
        f"child['measure_in_this_process'](__import__('pathlib').Path({str(tmp_path)!r}), 'onnxruntime', 1, 'fp32'); "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'compressbench')))"
    )
    run = subprocess.run([sys.executable, "-P", "-c", script], capture_output=True, text=True, check=True)
    assert run.stdout.strip() == "[]"
