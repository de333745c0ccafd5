"""Compress a model the user trained: their weights are what is measured, and what comes back is what was measured."""

from __future__ import annotations

import json
import pickle
import re
import textwrap

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from conftest import FAST_LATENCY
from safetensors.torch import save_file
from torch import nn
from typer.testing import CliRunner

import compressbench as cb
from compressbench import CompressbenchError
from compressbench.cli import app
from compressbench.runner import job as job_module
from compressbench.runtime import export_onnx
from compressbench.techniques import Need
from compressbench.weights import file_sha256, read_weights
from compressbench.workflows.compress_model import _shortlist

USER_CODE = textwrap.dedent(
    """
    import numpy as np
    from sklearn.datasets import load_digits
    from torch import nn


    def build(spec, width=1.0):
        hidden = max(1, round(48 * width))
        return nn.Sequential(nn.Linear(64, hidden), nn.ReLU(), nn.Linear(hidden, 10))


    def _arrays():
        x, y = load_digits(return_X_y=True)
        x = (x / 16.0 - 0.3).astype(np.float32)  # the user's own preprocessing, which the tool must not redo
        return x[:1400], y[:1400], x[1400:], y[1400:]


    def train_and_test():
        x_train, y_train, x_test, y_test = _arrays()
        return {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test}


    def test_only():
        _, _, x_test, y_test = _arrays()
        return x_test, y_test
    """
)


def _user_weights(folder):
    """Weights trained here by hand (SGD with an odd schedule and a shifted bias): nothing the tool would train."""
    namespace: dict = {}
    exec(USER_CODE, namespace)
    x_train, y_train, x_test, y_test = namespace["_arrays"]()
    torch.manual_seed(7)
    model = namespace["build"](None)
    optimiser = torch.optim.SGD(model.parameters(), lr=0.2)
    inputs, labels = torch.from_numpy(x_train), torch.from_numpy(y_train)
    for _ in range(60):
        optimiser.zero_grad()
        nn.functional.cross_entropy(model(inputs), labels).backward()
        optimiser.step()
    with torch.no_grad():
        model[2].bias += 0.05
        accuracy = (model(torch.from_numpy(x_test)).argmax(1).numpy() == y_test).mean()
    path = folder / "weights.safetensors"
    save_file(model.state_dict(), path)
    return model, path, float(accuracy)


@pytest.fixture(scope="module")
def user(tmp_path_factory):
    folder = tmp_path_factory.mktemp("user")
    (folder / "my_model.py").write_text(USER_CODE)
    model, weights, accuracy = _user_weights(folder)
    return {"folder": folder, "model": model, "weights": weights, "accuracy": accuracy, "code": folder / "my_model.py"}


def _compress(user, out, recipes, data="train_and_test", **options):
    return cb.compress_model(
        f"{user['code']}:build",
        f"{user['code']}:{data}",
        weights=user["weights"],
        out=out,
        recipes=recipes,
        latency=FAST_LATENCY,
        **options,
    )


def test_the_artifact_runs_in_plain_onnxruntime_with_the_manifests_accuracy(user, tmp_path, monkeypatch):
    monkeypatch.setattr(job_module, "train", lambda *a, **k: pytest.fail("the user's model was trained"))
    outcome = _compress(user, tmp_path / "out", "quant.dynamic", runtime="onnxruntime", max_accuracy_drop=5.0)
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert outcome.chosen == "quant.dynamic" or manifest["choice"]["recipe"] is None
    assert sorted(p.name for p in (tmp_path / "out").iterdir() if p.name != "logs") == [
        "manifest.json", "model.onnx", "report.html", "report.md", "results.db"
    ]  # fmt: skip
    assert manifest["artifact"]["files"]["model.onnx"] == file_sha256(tmp_path / "out" / "model.onnx")
    # Plain onnxruntime, the loader's arrays as they are: the manifest's accuracy.
    namespace: dict = {}
    exec(USER_CODE, namespace)
    _, _, x_test, y_test = namespace["_arrays"]()
    session = ort.InferenceSession(str(tmp_path / "out" / "model.onnx"), providers=["CPUExecutionProvider"])
    logits = session.run(None, {session.get_inputs()[0].name: x_test})[0]
    assert abs((logits.argmax(1) == y_test).mean() - manifest["compressed"]["accuracy"]) <= 0.001
    # The baseline is the user's model as given: its accuracy in torch, never retrained.
    assert abs(manifest["baseline"]["accuracy"] - user["accuracy"]) <= 0.001
    assert manifest["input"]["weights_sha256"] == file_sha256(user["weights"])
    assert manifest["preprocessing"].startswith("none")
    assert set(manifest["candidates"]) == {"none", "quant.dynamic"}


def test_evaluation_data_only_refuses_training_recipes_before_anything_runs(user, tmp_path):
    with pytest.raises(CompressbenchError, match="prune.channels fine-tunes or trains the model.*no train split"):
        _compress(user, tmp_path / "out", "prune.channels", data="test_only")
    assert not (tmp_path / "out").exists() and not (tmp_path / "out.partial" / "results.db").exists()


def test_evaluation_data_only_calibrates_on_samples_kept_apart_from_the_measured_ones(user, tmp_path):
    _compress(user, tmp_path / "out", "quant.static", data="test_only", runtime="onnxruntime", max_accuracy_drop=5.0)
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    held_out = manifest["evaluation"]["held_out"]
    assert len(held_out) == manifest["evaluation"]["calibration"] == manifest["evaluation"]["val"]
    assert manifest["evaluation"]["test"] + len(held_out) == 397  # the loader's 397 evaluation samples
    assert manifest["compressed"]["test_samples"] == manifest["evaluation"]["test"]
    assert "held out" in manifest["evaluation"]["samples"]


def test_auto_fits_the_input():
    factory = {Need.TORCH_MODULE, Need.NO_ATTENTION_LAYERS, Need.WIDTH_FACTORY}
    training = [_name(r) for r in _shortlist("auto", frozenset({*factory, Need.TRAIN_SPLIT}))[0]]
    evaluation_only = [_name(r) for r in _shortlist("auto", frozenset(factory))[0]]
    assert {"none", "quant.dynamic", "quant.static", "prune.channels-50", "prune+quant", "distill.kd-half"} <= set(
        training
    )
    assert not any(name.startswith(("prune", "distill")) for name in evaluation_only)
    no_width = frozenset({Need.TORCH_MODULE, Need.NO_ATTENTION_LAYERS, Need.TRAIN_SPLIT})
    assert "distill.kd-half" not in [_name(r) for r in _shortlist("auto", no_width)[0]]


def _name(recipe) -> str:
    return cb.load_recipe(recipe).name


@pytest.mark.parametrize("problem", ["missing", "shape", "pickled", "absent"])
def test_bad_weights_are_one_line_and_leave_nothing(user, tmp_path, problem):
    state = user["model"].state_dict()
    path = tmp_path / "bad.pt"
    if problem == "missing":
        torch.save({k: v for k, v in state.items() if k != "2.bias"}, path)
    elif problem == "shape":
        torch.save({**state, "0.weight": torch.zeros(3, 64)}, path)
    elif problem == "pickled":
        torch.save(user["model"], path)
    expected = {
        "missing": "missing: 2.bias",
        "shape": r"wrong shape: 0.weight \(3, 64\) \(model: \(48, 64\)\)",
        "pickled": "a pickled object .* not a state dict",
        "absent": "no such file",
    }[problem]
    result = CliRunner().invoke(
        app,
        ["compress", "--model", f"{user['code']}:build", "--weights", str(path), "--data",
         f"{user['code']}:test_only", "--out", str(tmp_path / "out"), "--recipes", "quant.dynamic"],
    )  # fmt: skip
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert re.search(expected, " ".join(lines)), result.output
    assert not (tmp_path / "out").exists()


def test_an_interrupted_compress_leaves_no_manifest_and_resumes(user, tmp_path, monkeypatch):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("compressbench.reporting.write_report", interrupted)
    with pytest.raises(KeyboardInterrupt):
        _compress(user, tmp_path / "out", "quant.dynamic", runtime="onnxruntime")
    assert not (tmp_path / "out").exists()
    monkeypatch.undo()
    runs = []
    run_job = job_module.run_job
    monkeypatch.setattr("compressbench.runner.executors.run_job", lambda *a, **k: runs.append(1) or run_job(*a, **k))
    _compress(user, tmp_path / "out", "quant.dynamic", runtime="onnxruntime")
    assert runs == []  # both runs came from the interrupted attempt's store, with their artifacts
    assert (tmp_path / "out" / "manifest.json").is_file() and not (tmp_path / "out.partial").exists()


def test_verify_measures_again_and_refuses_a_changed_artifact(user, tmp_path):
    _compress(user, tmp_path / "out", "quant.dynamic", runtime="onnxruntime", max_accuracy_drop=5.0)
    checked = cb.verify(tmp_path / "out")
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert checked["accuracy"]["here"] == pytest.approx(manifest["compressed"]["accuracy"], abs=1e-3)
    assert set(checked["latency_ms"]) == set(manifest["compressed"]["latency_ms"])
    artifact = tmp_path / "out" / "model.onnx"
    artifact.write_bytes(artifact.read_bytes() + b"\0")
    with pytest.raises(CompressbenchError, match="differs from the manifest"):
        cb.verify(tmp_path / "out")


def test_a_module_instance_is_taken_with_its_weights(user, tmp_path):
    outcome = cb.compress_model(
        user["model"], f"{user['code']}:train_and_test", out=tmp_path / "out", recipes="none",
        runtime="onnxruntime", latency=FAST_LATENCY,
    )  # fmt: skip
    assert outcome.chosen is None  # only the baseline was asked for: it is handed back, and the manifest says so
    assert abs(outcome.manifest["baseline"]["accuracy"] - user["accuracy"]) <= 0.001
    assert "keep the baseline" in outcome.manifest["choice"]["why"]


def test_an_existing_output_folder_is_never_overwritten(user, tmp_path):
    (tmp_path / "out").mkdir()
    with pytest.raises(CompressbenchError, match="already exists"):
        _compress(user, tmp_path / "out", "quant.dynamic")


def test_pickle_is_never_loaded_even_when_asked_for_a_state_dict(tmp_path):
    path = tmp_path / "evil.pt"
    path.write_bytes(pickle.dumps(np.array([1])))  # any pickle that is not plain tensors
    with pytest.raises(CompressbenchError, match="weights .*evil.pt"):
        read_weights(path)


@pytest.fixture(scope="module")
def user_onnx(user):
    """The user's model as an ONNX file with its own input name, as a deployment pipeline would have it."""
    path = user["folder"] / "model.onnx"
    torch.onnx.export(
        user["model"], (torch.zeros(1, 64),), path, dynamo=False, input_names=["pixels"], output_names=["scores"],
        dynamic_axes={"pixels": {0: "n"}, "scores": {0: "n"}},
    )  # fmt: skip
    return path


def test_an_onnx_model_refuses_a_training_recipe_before_anything_runs(user, user_onnx, tmp_path):
    with pytest.raises(CompressbenchError, match="prune.channels trains or fine-tunes.*ONNX graph without its torch"):
        cb.compress_model(str(user_onnx), f"{user['code']}:train_and_test", out=tmp_path / "out",
                          recipes="quant.dynamic,prune.channels")  # fmt: skip
    assert not (tmp_path / "out").exists() and not (tmp_path / "out.partial").exists()


def test_an_onnx_model_is_quantized_as_given(user, user_onnx, tmp_path):
    every_gemm = {"name": "int8", "steps": [{"technique": "quant.static", "op_types": ["Gemm"], "exclude": []}]}
    outcome = cb.compress_model(
        str(user_onnx), f"{user['code']}:train_and_test", out=tmp_path / "out", recipes=[every_gemm],
        runtime="onnxruntime", max_accuracy_drop=5.0, latency=FAST_LATENCY,
    )  # fmt: skip
    manifest = outcome.manifest
    assert abs(manifest["baseline"]["accuracy"] - user["accuracy"]) <= 0.001
    assert manifest["input"]["weights_sha256"] == file_sha256(user_onnx)
    assert manifest["baseline"]["params"] == sum(p.numel() for p in user["model"].parameters())
    static = manifest["candidates"]["int8"]
    assert static["runtime"] == "onnxruntime" and static["size_ratio"] > 1.5  # int8 weights, fp32 scales
    if outcome.chosen == "int8":
        assert manifest["artifact"]["inputs"]["inputs"][0]["name"] == "pixels"


@pytest.mark.slow
def test_recipes_search_runs_the_searchs_best_recipes_and_keeps_its_report(user, tmp_path, monkeypatch):
    monkeypatch.setattr(job_module, "train", lambda *a, **k: pytest.fail("the user's model was trained"))
    out = tmp_path / "out"
    outcome = _compress(user, out, "search", data="test_only", runtime="onnxruntime", max_accuracy_drop=5.0,
                        batch=32, search_trials=3)  # fmt: skip
    manifest = outcome.manifest
    searched = manifest["search"]
    assert searched["trials"] == 3 and 1 <= len(searched["shortlist"]) <= 3  # evaluation data: int8 plans alone
    assert all(name.startswith("search: ") for name in searched["shortlist"])
    assert set(manifest["candidates"]) == {"none", *searched["shortlist"]}
    assert outcome.chosen in (None, *searched["shortlist"])
    assert {p.name for p in (out / "search").iterdir()} == {"search.html", "search.md", "search.db", "results.db"}
    with pytest.raises(CompressbenchError, match="fine_tune_epochs: the search chooses"):
        _compress(user, tmp_path / "again", "search", fine_tune_epochs=2)


ENVIRONMENT = {"cpu": {"model": "modelled", "cores": 2, "flags": []}, "python": "3.11", "platform": "linux",
               "versions": {}}  # fmt: skip


def _modelled(job, runtime: str, speedup: float, openvino_alone: float) -> cb.RunResult:
    """A run with modelled figures: the baseline on ONNX Runtime (1 ms at batch 1, 10 ms at 32) and on OpenVINO
    `openvino_alone` times faster, the candidate `speedup` times faster than the ONNX Runtime baseline."""
    base_ms = {"1": 1.0, "32": 10.0}
    info = {"runtime": "onnxruntime", "requested_precision": "fp32"}
    metrics = {"accuracy": 0.95, "accuracy_ci": [0.94, 0.96], "latency_ms": base_ms, "size_bytes": 1000,
               "stored_bytes": 900, "params": 250, "nonzero_params": 250, "macs": 100, "runtime": info}  # fmt: skip
    on_openvino = {b: ms / openvino_alone for b, ms in base_ms.items()}
    baseline = {**metrics, "runtimes": {"onnxruntime": {"accuracy": 0.95, "latency_ms": base_ms, "runtime": info},
                                        "openvino": {"accuracy": 0.95, "latency_ms": on_openvino,
                                                     "runtime": {**info, "runtime": "openvino"}}}}  # fmt: skip
    candidate = {**metrics, "latency_ms": {b: ms / speedup for b, ms in base_ms.items()},
                 "runtime": {**info, "runtime": runtime}}  # fmt: skip
    return cb.RunResult.model_validate({
        "dataset": job.dataset.name, "model": job.model.name, "recipe": job.recipe["name"], "seed": job.seed,
        "baseline": baseline, "candidate": candidate, "speedup": {b: speedup for b in base_ms},
        "size_ratio": 1.0, "compression_ratio": 1.1, "accuracy_drop_pt": 0.0,
        "measurement": job.measure.model_dump(mode="json"), "environment": ENVIRONMENT,
    })  # fmt: skip


@pytest.mark.parametrize(
    ("nncf_speedup", "chosen", "files"),
    [(1.25, "none", ["model.bin", "model.xml"]), (2.5, "quant.nncf", ["model.bin", "model.xml"])],
    ids=["the runtime alone wins", "int8 beats the runtime alone"],
)
def test_compress_never_hands_back_a_model_slower_than_the_uncompressed_one_on_the_fastest_runtime(
    user, tmp_path, monkeypatch, nncf_speedup, chosen, files
):
    """Modelled latencies at the user's batch 32: the model unchanged on OpenVINO 1.79x, static int8 on ONNX
    Runtime 0.5x, NNCF int8 on OpenVINO 1.25x (slower than OpenVINO alone) or 2.5x."""
    graph = export_onnx(user["model"].eval(), (64,))
    modelled = {"none": ("openvino", 1.79), "quant.static": ("onnxruntime", 0.5),
                "quant.nncf": ("openvino", nncf_speedup)}  # fmt: skip

    def run_job(job, cache, measure_every_step=False, chosen_artifacts=None):
        runtime, speedup = modelled[job.recipe["name"]]
        chosen_artifacts["candidate"] = graph
        return _modelled(job, runtime, speedup, openvino_alone=1.79)

    monkeypatch.setattr("compressbench.runner.executors.run_job", run_job)
    outcome = _compress(user, tmp_path / "out", ["quant.static", "quant.nncf"], batch=32)
    choice = outcome.manifest["choice"]
    assert (choice["recipe"], choice["runtime"], choice["runtime_only"]) == (chosen, "openvino", chosen == "none")
    assert sorted(outcome.manifest["artifact"]["files"]) == files
    fastest_uncompressed = outcome.manifest["candidates"]["none"]["speedup"]["32"]
    assert outcome.manifest["speedup"]["32"] >= fastest_uncompressed
    # Each step is credited only with its gain over the uncompressed model on its own runtime.
    nncf = outcome.manifest["candidates"]["quant.nncf"]["speedup_same_runtime"]["32"]
    assert nncf == pytest.approx(nncf_speedup / 1.79)


def _graph_symbolic_shape_inference_asserts_on() -> onnx.ModelProto:
    """A linear classifier whose output is reshaped to a shape computed from a Concat of shape tensors on axis 1, as
    other frameworks' exporters write: ONNX Runtime's symbolic shape inference asserts on it."""
    from onnx import TensorProto
    from onnx import helper as h
    from onnx import numpy_helper as nh

    weights = np.random.default_rng(0).standard_normal((64, 10)).astype(np.float32)
    constants = {"W": weights, "axes": [0], "start": [0], "end": [1], "classes": [10], "flat": [-1]}
    nodes = [
        h.make_node("MatMul", ["x", "W"], ["y"], name="fc"),
        h.make_node("Shape", ["x"], ["s"], name="shape"),
        h.make_node("Unsqueeze", ["s", "axes"], ["u"], name="unsqueeze"),
        h.make_node("Concat", ["u", "u"], ["c"], axis=1, name="concat_shapes"),
        h.make_node("Reshape", ["c", "flat"], ["f"], name="flatten_shapes"),
        h.make_node("Slice", ["f", "start", "end"], ["n"], name="batch"),
        h.make_node("Concat", ["n", "classes"], ["target"], axis=0, name="target"),
        h.make_node("Reshape", ["y", "target"], ["logits"], name="out"),
    ]
    initializers = [nh.from_array(np.asarray(v, dtype=np.float32 if k == "W" else np.int64), k)
                    for k, v in constants.items()]  # fmt: skip
    graph = h.make_graph(nodes, "exported", [h.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 64])],
                         [h.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 10])], initializers)  # fmt: skip
    return h.make_model(graph, opset_imports=[h.make_opsetid("", 17)])


def test_a_graph_that_defeats_symbolic_shape_inference_is_still_quantized_and_the_manifest_says_how(
    user, tmp_path, capfd, caplog, monkeypatch
):
    path = tmp_path / "exported.onnx"
    onnx.save(_graph_symbolic_shape_inference_asserts_on(), path)
    (tmp_path / "cwd").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")  # where ONNX Runtime's pre-processing drops its temporary graph
    outcome = cb.compress_model(str(path), f"{user['code']}:test_only", out=tmp_path / "out", recipes="quant.static",
                                runtime="onnxruntime", latency=FAST_LATENCY)  # fmt: skip
    (step,) = outcome.manifest["candidates"]["quant.static"]["steps"]
    # Symbolic shape inference asserts at the Concat; graph optimisation alone then fails on this graph too (ONNX
    # Runtime cannot read the initializers it moved out), so the graph as given is quantized, and the record says so.
    assert "symbolic shape inference failed at node 'concat_shapes' (Concat): AssertionError" in step["preprocessing"]
    assert step["preprocessing"].startswith(("graph optimisation only", "none: the graph as given"))
    # Every int8 variant with a quantized layer is listed with its format (whether int8 is kept is auto's timed
    # choice against fp32).
    assert step["formats"] and set(step["formats"].values()) == {"QDQ"}
    printed = capfd.readouterr()
    assert "Traceback" not in printed.out + printed.err + caplog.text
    assert list((tmp_path / "cwd").iterdir()) == []  # no sym_shape_infer_temp.onnx or <uuid>.data left behind


def test_objective_size_hands_back_the_stored_form_it_ranked_and_decode_gives_the_measured_model(user, tmp_path):
    """Deep Compression on a 64-256-10 MLP: the size figure the winner was chosen on is the bytes of the file handed
    back (model.cbw, compressbench's encoding), and `decode` turns it into the model.onnx that was measured."""
    namespace: dict = {}
    exec(USER_CODE, namespace)
    x_train, y_train, x_test, y_test = namespace["_arrays"]()
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 10))
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(100):
        optimiser.zero_grad()
        nn.functional.cross_entropy(model(torch.from_numpy(x_train)), torch.from_numpy(y_train)).backward()
        optimiser.step()
    deep = {"name": "deep", "steps": [
        {"technique": "prune.magnitude", "sparsity": 0.9, "fine_tune_epochs": 2, "fine_tune_min_steps": 50},
        {"technique": "quant.weight_sharing", "fc_bits": 4, "fine_tune_epochs": 0},
    ]}  # fmt: skip
    out = tmp_path / "out"
    outcome = cb.compress_model(model.eval(), f"{user['code']}:train_and_test", out=out, recipes=[deep],
                                objective="size", runtime="onnxruntime", max_accuracy_drop=100.0,
                                latency=FAST_LATENCY)  # fmt: skip
    manifest = outcome.manifest
    assert manifest["choice"]["recipe"] == "deep"
    assert manifest["artifact"]["kind"] == "onnx-encoded" and list(manifest["artifact"]["files"]) == ["model.cbw"]
    handed_back = (out / "model.cbw").stat().st_size
    assert handed_back == manifest["artifact"]["bytes"] == manifest["compressed"]["stored_bytes"]
    assert handed_back < manifest["compressed"]["zstd_bytes"] < manifest["compressed"]["size_bytes"]
    assert "compressbench decode" in manifest["artifact"]["load"]
    assert not (out / "model.onnx").exists()

    checked = cb.verify(out)  # decodes the stored form and measures it
    assert checked["accuracy"]["here"] == pytest.approx(manifest["compressed"]["accuracy"], abs=1e-9)
    result = CliRunner().invoke(app, ["decode", str(out)])
    assert result.exit_code == 0, result.output
    session = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    logits = session.run(None, {session.get_inputs()[0].name: x_test})[0]
    assert (logits.argmax(1) == y_test).mean() == pytest.approx(manifest["compressed"]["accuracy"], abs=1e-9)
    assert CliRunner().invoke(app, ["decode", str(out)]).exit_code != 0  # model.onnx is never overwritten
