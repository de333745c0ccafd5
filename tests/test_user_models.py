"""A user's own model and data are measured right or refused with one line: architectures and data the zoo does not
have (a branching forward, a GRU, a transformer, tabular features on different scales, a tiny train split), and
user code that raises. A refused run stores nothing."""

from __future__ import annotations

import gzip
import textwrap

import numpy as np
import pytest
from conftest import FAST_MEASURE
from torch import nn
from typer.testing import CliRunner

import compressbench as cb
from compressbench.cli import app
from compressbench.data import load_dataset
from compressbench.imports import load_reference
from compressbench.models import build_model
from compressbench.runner.job import short_fine_tune_flag
from compressbench.store import Store
from compressbench.techniques.onnx_quant import failing_node
from compressbench.training import TrainConfig, train

USER_CODE = '''
import gzip

import numpy as np
import torch
from torch import nn


def sequences():
    """Signals of length 12 whose class is the sign of their mean; one scale for every point, as for any signal."""
    rng = np.random.default_rng(0)
    x = rng.normal(0, 1, (600, 12)).astype(np.float32)
    y = (x.mean(1) > 0).astype(np.int64)
    return {"x_train": x[:500], "y_train": y[:500], "x_test": x[500:], "y_test": y[500:], "normalisation": "global"}


def scales():
    """Tabular data, two classes: the label lives in features 0-3 (scale 1); features 4-7 are noise at scale 1e4."""
    rng = np.random.default_rng(0)
    n = 1200
    informative = rng.normal(0, 1, (n, 4))
    y = (informative @ np.array([1.0, -1.0, 0.5, 0.5]) > 0).astype(np.int64)
    noise = rng.normal(5e4, 1e4, (n, 4))
    x = np.concatenate([informative, noise], axis=1).astype(np.float32)
    return x[:1000], y[:1000], x[1000:], y[1000:]


def scales_global():
    x_train, y_train, x_test, y_test = scales()
    return {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test, "normalisation": "global"}


def broken_loader():
    values = {"a": 1}
    return values["b"]


def truncated_loader():
    with gzip.open(TRUNCATED) as handle:
        return np.frombuffer(handle.read(), np.float32)


class Branchy(nn.Module):
    """Branches on the batch's values: the export freezes the branch its all-zeros example took."""

    def __init__(self, spec):
        super().__init__()
        n = int(np.prod(spec.input_shape))
        self.a = nn.Sequential(nn.Flatten(), nn.Linear(n, 32), nn.ReLU(), nn.Linear(32, spec.num_classes))
        self.b = nn.Sequential(nn.Flatten(), nn.Linear(n, spec.num_classes))

    def forward(self, x):
        if x.sum() > 0:
            return self.a(x)
        return self.b(x)


def branchy(spec):
    return Branchy(spec)


class WithSpare(nn.Module):
    """Holds a layer its forward never calls: those weights are not in the served graph."""

    def __init__(self, spec):
        super().__init__()
        n = int(np.prod(spec.input_shape))
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(n, 16), nn.ReLU(), nn.Linear(16, spec.num_classes))
        self.spare = nn.Linear(100, 100)

    def forward(self, x):
        return self.net(x)


def with_spare(spec):
    return WithSpare(spec)


class GRUNet(nn.Module):
    def __init__(self, spec, width=1.0):
        super().__init__()
        hidden = max(2, round(24 * width))
        self.gru = nn.GRU(spec.input_shape[0], hidden, batch_first=True)
        self.head = nn.Linear(hidden, spec.num_classes)

    def forward(self, x):
        out, _ = self.gru(x.transpose(1, 2))
        return self.head(out[:, -1])


def gru(spec):
    return GRUNet(spec)


def mlp(spec):
    n = int(np.prod(spec.input_shape))
    return nn.Sequential(nn.Flatten(), nn.Linear(n, 32), nn.ReLU(), nn.Linear(32, spec.num_classes))


def mlp_ignoring_width(spec, width=1.0):
    return mlp(spec)


def scaled_mlp(spec, width=1.0):
    n, hidden = int(np.prod(spec.input_shape)), max(1, round(32 * width))
    return nn.Sequential(nn.Flatten(), nn.Linear(n, hidden), nn.ReLU(), nn.Linear(hidden, spec.num_classes))


def broken_factory(spec):
    raise RuntimeError("no weights file configured")


class FailingForward(nn.Module):
    def __init__(self, spec):
        super().__init__()
        self.linear = nn.Linear(5, spec.num_classes)

    def forward(self, x):
        return self.linear(x)  # (N, 1, 8, 8) images into a 5-input layer


def failing_forward(spec):
    return FailingForward(spec)
'''

QUICK = TrainConfig(epochs=3, lr=3e-3)


class TinyTransformer(nn.Module):
    """One encoder layer over 12 steps of 2 features: attention's projections run as functions, not as modules."""

    def __init__(self):
        super().__init__()
        self.embed = nn.Linear(2, 8)
        self.encoder = nn.TransformerEncoder(nn.TransformerEncoderLayer(8, 2, 16, batch_first=True), 1)
        self.head = nn.Linear(8, 3)

    def forward(self, x):
        return self.head(self.encoder(self.embed(x.transpose(1, 2))).mean(1))


@pytest.fixture(scope="module")
def user(tmp_path_factory):
    """The path of a user's Python file holding the loaders and factories above (referenced as 'file.py:name')."""
    folder = tmp_path_factory.mktemp("user")
    payload = gzip.compress(np.arange(50_000, dtype=np.float32).tobytes())
    (folder / "data.gz").write_bytes(payload[: len(payload) // 2])
    path = folder / "user_code.py"
    path.write_text(f"TRUNCATED = {str(folder / 'data.gz')!r}\n" + textwrap.dedent(USER_CODE))
    return str(path)


def refused(store, *args, **kwargs) -> str:
    """Run `cb.compress` with a results store; it must refuse, store nothing, and return the one-line message."""
    with pytest.raises(cb.CompressbenchError) as caught:
        cb.compress(*args, store=store, measure=FAST_MEASURE, **kwargs)
    message = str(caught.value)
    assert "\n" not in message and "Traceback" not in message
    assert Store(store).runs() == []
    return message


def test_a_forward_that_branches_on_the_data_is_refused_before_anything_is_stored(user, tmp_path):
    message = refused(tmp_path / "r.db", "digits", f"{user}:branchy", "quant.dynamic", training=QUICK)
    assert "disagrees with the torch module on 450 evaluation inputs" in message
    assert "branches on the data" in message and "predictions change" in message


def test_parameters_are_counted_on_the_served_graph_not_the_module(user):
    result = cb.compress("digits", f"{user}:with_spare", "none", training=QUICK, measure=FAST_MEASURE)
    served = 64 * 16 + 16 + 16 * 10 + 10  # the spare 100x100 layer is in the module, not in the exported graph
    assert result.baseline.params == result.candidate.params == served


def test_magnitude_pruning_of_a_recurrent_model_reports_the_layers_it_left_alone(user):
    result = cb.compress(f"{user}:sequences", f"{user}:gru", "prune.magnitude", training=QUICK, measure=FAST_MEASURE)
    record = result.steps[-1]
    gru_weights = 3 * 24 * 1 + 3 * 24 * 24  # weight_ih and weight_hh: the biases are not weight matrices
    assert record["skipped_layers"] == {
        "gru": {"type": "GRU", "weights": gru_weights, "why": "not a conv or linear layer"}
    }
    assert record["sparsity"] == pytest.approx(0.8, abs=0.01)  # of the head, the only layer pruned
    assert record["sparsity_of_all_weights"] == pytest.approx(0.8 * 48 / (48 + gru_weights), abs=0.01)
    assert any("in layers it did not prune (gru (GRU))" in flag for flag in result.flags)


def test_int8_of_a_recurrent_model_says_the_recurrent_weights_stay_float(user):
    result = cb.compress(f"{user}:sequences", f"{user}:gru", "quant.dynamic", training=QUICK, measure=FAST_MEASURE)
    record = result.steps[-1]
    # ONNX's GRU takes W (1, 72, 1), R (1, 72, 24) and B (1, 144): its bias is a matrix too.
    gru = {"op": "GRU", "weights": 72 + 72 * 24 + 144, "why": "no int8 kernel for GRU"}
    assert record["float_layers"] == {"/gru/GRU": gru}
    assert any("stay float in layers it has no int8 kernel for (GRU)" in flag for flag in result.flags)


def test_channel_pruning_refuses_a_recurrent_layer_by_name(user, tmp_path):
    message = refused(tmp_path / "r.db", f"{user}:sequences", f"{user}:gru", "prune.channels", training=QUICK)
    assert "prune.channels: gru (GRU) is a recurrent layer" in message


def test_a_static_int8_transformer_names_the_node_where_shape_inference_gave_up():
    """ONNX Runtime's symbolic shape inference fails on attention's run-time Reshape; quantization goes on without it
    and the record says so."""
    from compressbench.runtime import export_onnx
    from compressbench.techniques.quant_static import preprocess

    graph, done = preprocess("quant.static", export_onnx(TinyTransformer().eval(), (2, 12)))
    assert done.startswith("graph optimisation only (symbolic shape inference failed at node")
    assert "(Reshape, layer encoder.layers.0.self_attn)" in done
    assert len(graph.graph.node) > 0


def test_macs_count_attention_and_recurrent_layers_whose_linear_maps_run_as_functions(user):
    from compressbench.measure.size import count_macs

    length, embed = 12, 8
    attention = 4 * length * embed * embed + 2 * length * length * embed  # q, k, v, out projections; scores, sum
    linears = length * 2 * embed + length * embed * 16 + length * 16 * embed + embed * 3
    assert count_macs(TinyTransformer(), (2, length)) == attention + linears
    gru = load_reference(f"{user}:gru", "model")(load_dataset(f"{user}:sequences").spec)
    assert count_macs(gru, (1, 12)) == 12 * 3 * 24 * (1 + 24) + 24 * 2  # 12 steps x 3 gates x 24 x (input + hidden)


def test_a_quantizer_failure_names_the_node_it_was_handling():
    import onnx

    def handle(node):
        raise AssertionError

    try:
        handle(onnx.helper.make_node("Reshape", ["a", "b"], ["c"], name="/encoder/layers.0/self_attn/Reshape_2"))
    except AssertionError as error:
        where = failing_node(error)
    assert where == " at node '/encoder/layers.0/self_attn/Reshape_2' (Reshape, layer encoder.layers.0.self_attn)"


def test_a_distilled_student_must_shrink_and_a_factory_that_takes_width_builds_it(user, tmp_path):
    no_width = refused(tmp_path / "r.db", "digits", f"{user}:mlp", "distill.kd", training=QUICK)
    assert "width 0.5 asked, but mlp() takes no 'width' argument" in no_width
    ignored = refused(tmp_path / "r.db", "digits", f"{user}:mlp_ignoring_width", "distill.kd", training=QUICK)
    assert "built 2,410 params, as many as the teacher's 2,410" in ignored
    result = cb.compress("digits", f"{user}:scaled_mlp", "distill.kd", training=QUICK, measure=FAST_MEASURE)
    record = result.steps[-1]
    assert record["student"]["width"] == 0.5 and record["student_params"] == 64 * 16 + 16 + 16 * 10 + 10
    assert record["param_ratio"] == pytest.approx(2410 / 1210)


def test_tabular_features_on_different_scales_are_standardised_one_by_one(user):
    """One scalar mean / std lets the 1e4-scale noise features swamp the informative ones; per-feature standardisation
    (the default for (N, F) inputs, fitted on train only) does not. The run records which was used."""
    data = load_dataset(f"{user}:scales")
    assert data.spec.normalisation == "per-feature" and data.spec.input_shape == (1, 8)
    assert np.allclose(data.train.x.mean(0), 0, atol=1e-4) and np.allclose(data.train.x.std(0), 1, atol=1e-3)
    assert not np.allclose(data.test.x.mean(0), 0, atol=1e-4)  # test uses the train split's statistics
    per_feature = cb.compress(f"{user}:scales", f"{user}:mlp", "none", measure=FAST_MEASURE)
    scalar = cb.compress(f"{user}:scales_global", f"{user}:mlp", "none", measure=FAST_MEASURE)
    assert per_feature.data["normalisation"] == "per-feature" and scalar.data["normalisation"] == "global"
    assert per_feature.data["train"] + per_feature.data["val"] == 1000 and per_feature.data["test"] == 200
    assert per_feature.baseline.accuracy >= 0.93
    assert per_feature.baseline.accuracy >= scalar.baseline.accuracy + 0.05
    # Two classes at 95%: far above the majority-class rate, so not "collapsed".
    assert not any("collapsed" in flag for flag in per_feature.flags)


def test_a_misspelt_normalisation_is_refused_by_name(tmp_path):
    (tmp_path / "bad.py").write_text(
        "import numpy as np\n"
        "def load():\n"
        "    x, y = np.zeros((10, 3), np.float32), np.arange(10) % 2\n"
        "    return {'x_train': x, 'y_train': y, 'x_test': x, 'y_test': y, 'normalisation': 'per_feature'}\n"
    )
    with pytest.raises(cb.CompressbenchError, match="normalisation 'per_feature' is not one of auto, global"):
        load_dataset(f"{tmp_path / 'bad.py'}:load")


def test_training_takes_at_least_min_steps_on_a_small_split():
    data = load_dataset("digits")  # 1,213 train samples: 10 batches of 128 an epoch
    model = build_model("mlp", data.spec, seed=0)
    report = train(model, data, TrainConfig(epochs=2, min_steps=95), seed=0)
    assert report.steps >= 95 and report.epochs_run == 10
    assert "min_steps" not in TrainConfig().model_dump()  # unset, it leaves the run keys as they were


def test_pruning_fine_tunes_at_least_its_minimum_steps_and_records_them():
    result = cb.compress("digits", "mlp", "prune.magnitude", training=QUICK, measure=FAST_MEASURE)
    assert result.steps[-1]["fine_tune_steps"] >= 300 and result.steps[-1]["fine_tune_epochs"] == 30


def test_a_large_drop_after_a_short_fine_tune_is_flagged_as_the_budget():
    records = [{"step": "prune.channels", "fine_tune_steps": 22}]
    assert "after only 22 fine-tuning optimiser steps" in short_fine_tune_flag(23.0, records)
    assert short_fine_tune_flag(2.0, records) is None  # a small drop is the technique's own
    assert short_fine_tune_flag(23.0, [{"fine_tune_steps": 5000}]) is None  # a long fine-tune: not the budget
    assert short_fine_tune_flag(23.0, [{"step": "quant.dynamic"}]) is None  # nothing fine-tuned


@pytest.mark.parametrize(
    ("dataset", "model", "expected"),
    [
        (
            "{user}:broken_loader",
            "mlp",
            "dataset '{user}:broken_loader': broken_loader() raised KeyError at user_code.py:",
        ),
        ("digits", "{user}:broken_factory", "broken_factory() raised RuntimeError at user_code.py:"),
        ("digits", "{user}:failing_forward", "forward() raised RuntimeError at user_code.py:"),
        ("{user}:truncated_loader", "mlp", "EOFError at user_code.py:"),
    ],
)
def test_an_exception_in_user_code_is_one_line_naming_the_function_and_line(user, tmp_path, dataset, model, expected):
    runner = CliRunner()
    args = ["run", "--dataset", dataset.format(user=user), "--model", model.format(user=user), "--recipe", "none"]
    result = runner.invoke(app, [*args, "--out", str(tmp_path)])
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and expected.format(user=user) in " ".join(result.output.split())
    assert "Traceback" not in result.output
    assert not (tmp_path / "results.db").exists() or Store(tmp_path / "results.db").runs() == []


def test_a_truncated_gzip_names_its_file(user, tmp_path):
    message = refused(tmp_path / "r.db", f"{user}:truncated_loader", "mlp", "none")
    assert "data.gz: truncated or corrupt" in message
    # The bundled Fashion-MNIST reader names a truncated IDX file too.
    from compressbench.data.fashion_mnist import read_idx

    truncated = tmp_path / "train-images-idx3-ubyte.gz"
    truncated.write_bytes(gzip.compress(np.random.default_rng(0).bytes(4096))[:1000])
    with pytest.raises(
        cb.CompressbenchError, match="train-images-idx3-ubyte.gz: cannot be read .*truncated or corrupt"
    ):
        read_idx(truncated, 2051)


def test_the_api_refuses_a_function_object_with_the_reference_to_pass(user, tmp_path):
    def build(spec):
        return None

    message = refused(tmp_path / "r.db", "digits", build, "none")
    assert message.startswith("model: expected a zoo model name, a 'file.py:function' factory or a ModelConfig")
    assert message.endswith(f"got the function build (pass it by reference, as '{build.__module__}:build')")
