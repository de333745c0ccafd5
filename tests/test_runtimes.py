"""Runtimes side by side: the same exported model on ONNX Runtime, OpenVINO and torch; auto picks the fastest."""

import copy

import numpy as np
import pytest
import torch
from conftest import FAST_LATENCY, FAST_MEASURE, QUICK_TRAINING

from compressbench.data import load_dataset
from compressbench.errors import CompressbenchError
from compressbench.measure.compare import MeasureSettings, measure_candidates
from compressbench.measure.environment import cpu_info
from compressbench.models import ModelConfig, build_model
from compressbench.runner.job import make_job
from compressbench.runtime import export_onnx, installed_runtimes, open_session, runtimes
from compressbench.techniques import Candidate, Context, precision, techniques
from compressbench.training import train

ZOO = [("mlp", "digits"), ("lenet5", "digits"), ("resnet", "digits"), ("conv1d", "mnist1d")]


def test_openvino_is_installed_by_make_setup():
    assert set(installed_runtimes()) == {"onnxruntime", "openvino", "torch"}


@pytest.mark.parametrize(("model", "dataset"), ZOO)
def test_every_runtime_matches_onnxruntime_fp32(model, dataset):
    data = load_dataset(dataset)
    module = build_model(model, data.spec, seed=0)
    proto = export_onnx(module, data.spec.input_shape)
    x = data.test.x[:33]
    reference = open_session(proto, "onnxruntime").run(x)
    openvino = open_session(proto, "openvino")
    assert openvino.info["precision"] == "fp32"  # forced f32, whatever the CPU's default
    np.testing.assert_allclose(openvino.run(x), reference, atol=1e-4)
    np.testing.assert_allclose(open_session(module, "torch").run(x), reference, atol=1e-4)


@pytest.fixture(scope="module")
def trained(cache):
    data = load_dataset("synthetic")
    model = build_model("lenet5", data.spec, seed=0)
    train(model, data, QUICK_TRAINING, seed=0)
    context = Context(data=data, baseline=model, model=ModelConfig(name="lenet5"), train_config=QUICK_TRAINING,
                      seed=0, cache=cache, latency=FAST_LATENCY)  # fmt: skip
    return data, model, context


def test_nncf_gives_an_int8_openvino_model_measured_on_openvino(trained):
    data, baseline, context = trained
    candidate = techniques.get("quant.nncf")().apply(Candidate(module=copy.deepcopy(baseline)), context)
    assert candidate.kind == "openvino" and candidate.records[-1]["fake_quantize_ops"] > 0
    assert candidate.records[-1]["calibration_samples"] == len(data.calibration)
    session = open_session(candidate.artifact, "openvino")
    assert session.info["precision"] == "int8"  # u8 convolutions / fully-connected layers in the runtime model
    settings = FAST_MEASURE.model_copy(update={"runtime": "openvino"})
    metrics = measure_candidates({"baseline": Candidate(module=baseline), "candidate": candidate}, data, settings)
    assert metrics["candidate"].runtime["precision"] == "int8"
    assert abs(metrics["candidate"].accuracy - metrics["baseline"].accuracy) < 0.05


def test_auto_records_every_runtime_and_keeps_the_fastest(trained):
    data, baseline, _ = trained
    settings = FAST_MEASURE.model_copy(update={"runtime": "auto", "target_batch": 32})
    candidates = {"baseline": Candidate(module=baseline), "candidate": Candidate(module=copy.deepcopy(baseline))}
    metrics = measure_candidates(candidates, data, settings)
    candidate = metrics["candidate"]
    measured = {rt: m for rt, m in candidate.runtimes.items() if "skipped" not in m}
    assert set(measured) == {"onnxruntime", "openvino", "torch"}
    fastest = min(measured, key=lambda rt: measured[rt]["latency_ms"]["32"])
    assert candidate.runtime["runtime"] == fastest
    # The headline figures are the chosen runtime's own, and the stated reason names the batch and the field.
    assert candidate.latency_ms == measured[fastest]["latency_ms"]
    assert candidate.accuracy == measured[fastest]["accuracy"]
    assert candidate.runtime_choice == "fastest at batch 32 among onnxruntime, openvino, torch"
    # The baseline stays on the reference runtime, with the others shown beside it.
    assert metrics["baseline"].runtime["runtime"] == "onnxruntime" and len(metrics["baseline"].runtimes) == 3


def test_auto_compares_only_the_runtimes_asked_for(trained):
    data, baseline, _ = trained
    settings = FAST_MEASURE.model_copy(
        update={"runtime": "auto", "target_batch": 32, "compare": ["onnxruntime", "openvino"]}
    )
    candidates = {"baseline": Candidate(module=baseline), "candidate": Candidate(module=copy.deepcopy(baseline))}
    metrics = measure_candidates(candidates, data, settings)
    assert set(metrics["candidate"].runtimes) == set(metrics["baseline"].runtimes) == {"onnxruntime", "openvino"}
    with pytest.raises(ValueError, match="must include onnxruntime"):
        MeasureSettings(runtime="auto", compare=["openvino"])


def test_auto_records_a_runtime_that_cannot_serve_as_skipped(trained):
    data, baseline, context = trained
    candidate = techniques.get("quant.dynamic")().apply(Candidate(module=copy.deepcopy(baseline)), context)
    settings = FAST_MEASURE.model_copy(update={"runtime": "auto", "target_batch": 32})
    metrics = measure_candidates({"baseline": Candidate(module=baseline), "candidate": candidate}, data, settings)
    assert "runtime torch needs a torch module" in metrics["candidate"].runtimes["torch"]["skipped"]


def test_bf16_is_refused_on_a_cpu_without_it(monkeypatch, trained):
    _, baseline, context = trained
    monkeypatch.setattr(precision, "cpu_info", lambda: {"model": "old CPU", "cores": 2, "flags": ["avx2"]})
    with pytest.raises(CompressbenchError, match=r"precision.bf16: this CPU \(old CPU\) lacks avx512_bf16"):
        techniques.get("precision.bf16")().apply(Candidate(module=copy.deepcopy(baseline)), context)


def test_openvino_never_reports_a_silent_fp32_fallback_as_bf16():
    data = load_dataset("digits")
    proto = export_onnx(build_model("mlp", data.spec, seed=0), data.spec.input_shape)
    if {"avx512_bf16", "amx_bf16"} & set(cpu_info()["flags"]):
        assert open_session(proto, "openvino", precision="bf16").info["precision"] == "bf16"
    else:
        with pytest.raises(
            CompressbenchError, match="asked for bf16 but executes fp32 .*refusing to report it as a bf16 result"
        ):
            open_session(proto, "openvino", precision="bf16")


def test_a_missing_runtime_says_how_to_install_it(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "openvino" else real(name, *a))
    assert runtimes.get("openvino").missing() == (
        "runtime openvino is not installed: pip install 'compressbench[openvino]' (OpenVINO and NNCF, about 380 MB)"
    )
    assert "openvino" not in installed_runtimes()


def test_a_recipe_is_checked_against_the_runtime_before_training():
    with pytest.raises(CompressbenchError, match="what quant.nncf produces runs on openvino, not onnxruntime"):
        make_job("digits", "mlp", "quant.nncf")
    assert make_job("digits", "mlp", "quant.nncf", measure=FAST_MEASURE.model_copy(update={"runtime": "auto"}))


def test_nncf_accuracy_control_keeps_the_layer_that_int8_breaks_in_fp32(cache):
    # One hidden unit fires at 10,000 and feeds nothing: fp32 is unaffected, but a per-tensor int8 scale for the
    # next layer's input then rounds every other unit to zero. Plain NNCF ruins the model; accuracy control
    # puts that layer back to fp32 and stays within the budget.
    data = load_dataset("digits")
    model = build_model("mlp", data.spec, seed=0)
    train(model, data, QUICK_TRAINING, seed=0)
    with torch.no_grad():
        first, second = model.features[1], model.features[3]
        first.weight[0].zero_()
        first.bias[0] = 1e4
        second.weight[:, 0].zero_()
    context = Context(data=data, baseline=model, model=ModelConfig(name="mlp"), train_config=QUICK_TRAINING,
                      seed=0, cache=cache, latency=FAST_LATENCY)  # fmt: skip
    nncf = techniques.get("quant.nncf")
    plain = nncf(nncf.Config(max_accuracy_drop_pt=None)).apply(Candidate(module=copy.deepcopy(model)), context)
    controlled = nncf(nncf.Config(max_accuracy_drop_pt=1.0)).apply(Candidate(module=copy.deepcopy(model)), context)
    plain_val, controlled_val = plain.records[-1]["val_accuracy"], controlled.records[-1]["val_accuracy"]
    assert plain_val["fp32"] - plain_val["int8"] > 0.3
    assert controlled_val["fp32"] - controlled_val["int8"] <= 0.01
    assert 0 < controlled.records[-1]["fake_quantize_ops"] < plain.records[-1]["fake_quantize_ops"]


def test_an_openvino_error_is_reported_whole_on_one_line_not_cut_at_its_location():
    from compressbench.runtime.openvino import openvino_cause

    raised = RuntimeError(
        "Exception from src/inference/src/cpp/core.cpp:84:\nCheck 'false' failed at src/frontends/common_translators/"
        "src/unconverted_ops_report.cpp:151:\nFrontEnd API failed with OpConversionFailure:\nModel wasn't fully "
        "converted.\nSummary:\n-- No conversion rule found for operations: NoSuchOp-17\n\n"
    )
    assert openvino_cause(raised) == (
        "FrontEnd API failed with OpConversionFailure: Model wasn't fully converted. Summary: -- No conversion rule "
        "found for operations: NoSuchOp-17"
    )


def test_openvino_compiles_every_axis_to_the_shape_of_the_data_and_agrees_with_onnxruntime(tmp_path):
    """A CNN exported with dynamic batch, height and width (as other exporters leave them): the session fixes every
    axis to the input it is given, one compiled model per shape."""
    import io

    import onnx

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1),
                              torch.nn.Flatten(), torch.nn.Linear(4, 3)).eval()  # fmt: skip
    buffer = io.BytesIO()
    axes = {"x": {0: "batch", 2: "height", 3: "width"}}
    torch.onnx.export(net, torch.zeros(1, 1, 8, 8), buffer, input_names=["x"], dynamo=False, dynamic_axes=axes)
    graph = onnx.load_from_string(buffer.getvalue())
    session = open_session(graph, "openvino")
    x = np.random.default_rng(0).standard_normal((2, 1, 12, 10)).astype(np.float32)
    np.testing.assert_allclose(session.run(x), open_session(graph, "onnxruntime").run(x), atol=1e-4)
    compiled, _ = session.compiled_for(x.shape)
    assert compiled.input(0).partial_shape.is_static and list(compiled.input(0).shape) == [2, 1, 12, 10]
