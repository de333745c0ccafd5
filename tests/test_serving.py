"""Serving profiles: latency (one request at a time, one thread) and throughput (batches served concurrently on every
core), each runtime's session settings chosen by measurement and recorded so a deployment can reproduce them."""

import copy

import numpy as np
import pytest
from conftest import QUICK_TRAINING

from compressbench.data import load_dataset
from compressbench.errors import CompressbenchError
from compressbench.measure.compare import MeasureSettings, measure_candidates, session_choices
from compressbench.measure.latency import LatencySettings
from compressbench.models import build_model
from compressbench.runner.job import make_job
from compressbench.runtime import export_onnx, open_session
from compressbench.techniques import Candidate
from compressbench.training import train

TWO_THREADS = LatencySettings(warmup_s=0.05, blocks=2, block_s=0.05, threads=2)


def batch_ms_of(options: dict, tried: list[dict]) -> float:
    """The time tuning measured for `options` (two settings can tie once rounded, e.g. OpenVINO's own stream count
    and one stream per core on 2 cores: compare times, not which of the tied settings is named)."""
    return next(t["batch_ms"] for t in tried if t["options"] == options)


@pytest.fixture(scope="module")
def mlp():
    data = load_dataset("digits")
    module = build_model("mlp", data.spec, seed=0)
    train(module, data, QUICK_TRAINING, seed=0)
    return data, module


@pytest.mark.parametrize("runtime", ["onnxruntime", "openvino"])
def test_the_throughput_profile_serves_on_two_threads_and_records_its_settings(mlp, runtime):
    data, module = mlp
    settings = MeasureSettings(runtime=runtime, serving="throughput", latency=TWO_THREADS)
    assert settings.latency.batch_sizes == (256,)  # the large batch alone
    candidates = {"baseline": Candidate(module=module), "candidate": Candidate(module=copy.deepcopy(module))}
    metrics = measure_candidates(candidates, data, settings)
    for measured in metrics.values():
        assert set(measured.latency_ms) == {"256"} and measured.latency_ms["256"] > 0
        assert measured.runtime["threads"] == 2
        tried = [t["options"] for t in measured.runtime["tuning"]["tried"]]
        assert len(tried) == len(session_choices(runtime, settings)) == {"onnxruntime": 4, "openvino": 3}[runtime]
        assert measured.runtime["options"] in tried
    options = metrics["candidate"].runtime["options"]
    timed = metrics["candidate"].runtime["tuning"]["tried"]
    assert batch_ms_of(options, timed) == min(t["batch_ms"] for t in timed)  # which setting wins is the CPU's answer
    if runtime == "openvino":
        assert {t["options"]["hint"] for t in timed} == {"THROUGHPUT", "LATENCY"}
        assert metrics["candidate"].runtime["infer_requests"] >= 1
    else:
        assert options["parallel_sessions"] in (1, 2)
        assert {"optimization": "all", "execution_mode": "parallel", "parallel_sessions": 1} in tried
    assert metrics["candidate"].accuracy == pytest.approx(metrics["baseline"].accuracy)


def test_throughput_takes_every_core_unless_told_and_leaves_latency_keys_alone():
    assert MeasureSettings(serving="throughput").latency.threads >= 1
    assert MeasureSettings(serving="throughput", latency=LatencySettings(threads=1)).latency.threads == 1
    latency = make_job("digits", "mlp", "none")
    assert "serving" not in latency.identity()["measure"]  # keys of runs stored before the profiles are unchanged
    throughput = make_job("digits", "mlp", "none", measure=MeasureSettings(serving="throughput"))
    assert throughput.identity()["measure"]["serving"] == "throughput" and throughput.key() != latency.key()


def test_tune_tries_onnxruntime_optimisation_levels_in_the_latency_profile_and_keeps_the_fastest(mlp):
    data, module = mlp
    one_thread = TWO_THREADS.model_copy(update={"threads": 1, "batch_sizes": (1, 256)})
    settings = MeasureSettings(latency=one_thread, tune=True)
    measured = measure_candidates({"baseline": Candidate(module=module)}, data, settings)["baseline"]
    tuning = measured.runtime["tuning"]
    tried = {t["options"]["optimization"]: t["batch_ms"] for t in tuning["tried"]}
    assert set(tried) == {"all", "extended", "basic"}
    assert measured.runtime["options"]["optimization"] == min(tried, key=tried.get)  # the fastest kept
    assert session_choices("openvino", settings) == [{}]  # one thread, one stream: nothing to choose
    assert "tuning" not in measure_candidates({"baseline": Candidate(module=module)}, data,
                                              MeasureSettings(latency=one_thread))["baseline"].runtime  # fmt: skip
    assert "tune" not in make_job("digits", "mlp", "none").identity()["measure"]  # off: keys unchanged
    tuned = make_job("digits", "mlp", "none", measure=settings)
    assert tuned.identity()["measure"]["tune"] is True and tuned.key() != make_job("digits", "mlp", "none").key()


def test_parallel_sessions_give_the_same_outputs_and_bad_settings_are_named():
    data = load_dataset("digits")
    proto = export_onnx(build_model("mlp", data.spec, seed=0), data.spec.input_shape)
    x = data.test.x[:64]
    single = open_session(proto, "onnxruntime", threads=2)
    parallel = open_session(proto, "onnxruntime", threads=2, options={"parallel_sessions": 2})
    np.testing.assert_allclose(parallel.run(x), single.run(x), atol=1e-6)
    branches = open_session(proto, "onnxruntime", threads=2, options={"execution_mode": "parallel"})
    np.testing.assert_allclose(branches.run(x), single.run(x), atol=1e-6)
    assert parallel.run_many(x, 6) > 0
    with pytest.raises(CompressbenchError, match="session option optimization='fast'"):
        open_session(proto, "onnxruntime", options={"optimization": "fast"})
    with pytest.raises(CompressbenchError, match="3 threads cannot be split evenly over 2 parallel sessions"):
        open_session(proto, "onnxruntime", threads=3, options={"parallel_sessions": 2})
    with pytest.raises(CompressbenchError, match="openvino: session option hint='FAST'"):
        open_session(proto, "openvino", options={"hint": "FAST"})


def test_the_manifest_records_the_tuned_session_and_verify_applies_it(mlp, tmp_path):
    """compress --serving throughput on OpenVINO: the manifest says how to open the artifact as it was measured
    (threads, the hint and streams tuning kept), and verify opens it that way and gets the stored accuracy again."""
    import compressbench as cb

    _, module = mlp
    data = tmp_path / "data.npz"
    digits = load_dataset("digits")
    np.savez(data, x_train=digits.train.x, y_train=digits.train.y, x_test=digits.test.x, y_test=digits.test.y)
    outcome = cb.compress_model(
        module,
        str(data),
        out=tmp_path / "out",
        recipes=["quant.nncf"],
        runtime="openvino",
        max_accuracy_drop=100.0,
        batch=64,
        serving="throughput",
        latency=TWO_THREADS,
    )
    session = outcome.manifest["artifact"]["session"]
    assert session["serving"] == "throughput" and session["threads"] == 2
    assert session["runtime"] == "openvino"
    tried = outcome.manifest["compressed"]["runtime"]["tuning"]["tried"]  # the hints and streams tuning timed
    assert batch_ms_of(session["options"], tried) == min(t["batch_ms"] for t in tried)  # the fastest is kept
    assert {t["options"]["hint"] for t in tried} == {"THROUGHPUT", "LATENCY"}
    checked = cb.verify(outcome.out)
    assert checked["session"]["options"] == session["options"]
    assert checked["accuracy"]["here"] == pytest.approx(outcome.manifest["compressed"]["accuracy"], abs=1e-3)


def test_memory_and_load_time_are_probed_for_the_served_model_with_its_session_settings(mlp):
    """With footprint on, each candidate as served gets its fresh process's peak memory, load time and first calls,
    opened with the settings it was timed with (OpenVINO's hint and streams that tuning kept)."""
    data, module = mlp
    settings = MeasureSettings(runtime="openvino", serving="throughput", latency=TWO_THREADS, footprint=True)
    metrics = measure_candidates({"baseline": Candidate(module=module)}, data, settings)
    footprint = metrics["baseline"].footprint
    assert footprint["peak_rss_mb"] >= footprint["baseline_rss_mb"] > 0 and footprint["load_s"] > 0
    assert footprint["runtime"] == "openvino" and footprint["threads"] == 2 and footprint["batch"] == 256
    assert f"with {metrics['baseline'].runtime['options']}" in footprint["how"]
    assert "footprint" not in make_job("digits", "mlp", "none").identity()["measure"]  # off: keys unchanged
