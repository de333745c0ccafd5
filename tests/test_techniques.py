"""The conformance suite: every registered technique applies, exports, measures and keeps the output shape."""

import copy

import onnx
import pytest
from conftest import FAST_LATENCY, FAST_MEASURE, QUICK_TRAINING

from compressbench.data import load_dataset
from compressbench.errors import CompressbenchError
from compressbench.measure.compare import measure_candidates
from compressbench.models import ModelConfig, build_model
from compressbench.recipes import load_recipe
from compressbench.runtime import serving_runtimes
from compressbench.techniques import Candidate, Context, list_techniques, precision, techniques
from compressbench.training import train


def trained_on(dataset, model_name, cache):
    data = load_dataset(dataset)
    model = build_model(model_name, data.spec, seed=0)
    train(model, data, QUICK_TRAINING, seed=0)
    context = Context(
        data=data,
        baseline=model,
        model=ModelConfig(name=model_name),
        train_config=QUICK_TRAINING,
        seed=0,
        cache=cache,
        latency=FAST_LATENCY,
    )
    return data, model, context


@pytest.fixture(scope="module")
def trained(cache):
    return trained_on("synthetic", "lenet5", cache)


@pytest.fixture(scope="module")
def trained_transformer(cache):
    return trained_on("synthetic-tokens", "transformer", cache)


# Techniques made for one kind of model run on it; every other technique on LeNet-5.
TRANSFORMER_ONLY = {"prune.heads"}


@pytest.fixture
def cpu_with_every_instruction(monkeypatch):
    """Reduced-precision steps check the CPU's flags; here they run as on a CPU that has them (torch emulates)."""
    flags = [flag for names in precision.NATIVE_FLAGS.values() for flag in names]
    monkeypatch.setattr(precision, "cpu_info", lambda: {"model": "simulated", "cores": 2, "flags": flags})


# Head pruning needs the trained transformer (9 s); the fast tier covers it in test_transformers.py.
@pytest.mark.parametrize(
    "name", [pytest.param(n, marks=pytest.mark.slow) if n == "prune.heads" else n for n in list_techniques()]
)
def test_every_technique_applies_exports_and_measures(name, request, cpu_with_every_instruction):
    data, baseline, context = request.getfixturevalue("trained_transformer" if name in TRANSFORMER_ONLY else "trained")
    original = copy.deepcopy(baseline.state_dict())
    technique = techniques.get(name)()
    candidate = Candidate(module=copy.deepcopy(baseline))
    for required in technique.requires:  # steps a recipe must put before this one (checked by load_recipe)
        candidate = techniques.get(required)().apply(candidate, context)
    candidate = technique.apply(candidate, context)
    assert candidate.kind == technique.produces
    assert candidate.records and candidate.records[-1]["step"] == name
    servable = serving_runtimes(technique.produces, technique.precision or "fp32")
    runtime = next(rt for rt in ("onnxruntime", "torch", "openvino") if rt in servable)  # torch emulates bf16/fp16
    settings = FAST_MEASURE.model_copy(update={"runtime": runtime})
    metrics = measure_candidates({"baseline": Candidate(module=baseline), "candidate": candidate}, data, settings)
    for role in ("baseline", "candidate"):
        assert 0 <= metrics[role].accuracy <= 1 and metrics[role].size_bytes > 0
        assert set(metrics[role].latency_ms) == {"1", "32"}
    assert metrics["candidate"].accuracy > 0.5, "a default technique must not destroy a trained model"
    # The baseline is the teacher of later steps: no technique may change it.
    for key, value in baseline.state_dict().items():
        assert (value == original[key]).all(), key


def test_dynamic_quantization_really_quantizes_matmul_and_gemm(trained):
    data, baseline, context = trained
    candidate = techniques.get("quant.dynamic")().apply(Candidate(module=copy.deepcopy(baseline)), context)
    ops = {node.op_type for node in candidate.artifact.graph.node}
    assert {"DynamicQuantizeLinear", "MatMulInteger"} <= ops and "ConvInteger" not in ops
    weights = [init for init in candidate.artifact.graph.initializer if init.data_type == onnx.TensorProto.INT8]
    assert weights, "weights are stored as int8"


def test_dynamic_quantization_of_convolutions_when_asked(trained):
    data, baseline, context = trained
    step = load_recipe({"name": "x", "steps": [{"technique": "quant.dynamic", "op_types": ["Conv"]}]}).steps[0]
    candidate = step.build().apply(Candidate(module=copy.deepcopy(baseline)), context)
    ops = [node.op_type for node in candidate.artifact.graph.node]
    assert ops.count("ConvInteger") == 2 and "MatMulInteger" not in ops


def test_dynamic_quantization_that_matches_nothing_is_an_error(cache):
    data = load_dataset("digits")
    model = build_model("mlp", data.spec, seed=0)
    context = Context(
        data=data,
        baseline=model,
        model=ModelConfig(name="mlp"),
        train_config=QUICK_TRAINING,
        seed=0,
        cache=cache,
        latency=FAST_LATENCY,
    )
    step = load_recipe({"name": "x", "steps": [{"technique": "quant.dynamic", "op_types": ["Conv"]}]}).steps[0]
    said = r"quant.dynamic: looked for Conv and quantized none: the graph has Gemm x3 \(a node is quantized only where"
    with pytest.raises(CompressbenchError, match=said + r" it multiplies by a constant weight\)$"):
        step.build().apply(Candidate(module=model), context)
