"""The CLI as a user drives it: real training, real ONNX Runtime, small data."""

import json

from typer.testing import CliRunner

from compressbench.cli import app

runner = CliRunner()
FAST = ["--epochs", "2", "--warmup", "0.02", "--repeats", "2", "--batch-sizes", "1", "--batch", "64"]


def test_list_shows_the_registries():
    result = runner.invoke(app, ["list", "techniques"])
    assert result.exit_code == 0 and "quant.dynamic" in result.stdout
    assert "resnet" in runner.invoke(app, ["list", "models"]).stdout
    assert "mnist1d" in runner.invoke(app, ["list", "datasets"]).stdout


def test_run_json_prints_the_documented_object(tmp_path):
    args = [
        "run",
        "--dataset",
        "digits",
        "--model",
        "mlp",
        "--recipe",
        "quant.dynamic",
        "--json",
        "--out",
        str(tmp_path),
    ]
    result = runner.invoke(app, args + FAST)
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    # The documented object, key for key and in this order (a typed RunResult renders it; this pins the rendering).
    assert list(payload) == [
        "dataset",
        "model",
        "recipe",
        "seed",
        "baseline",
        "candidate",
        "speedup",
        "speedup_ci",
        "speed_mechanism",
        "size_ratio",
        "compression_ratio",
        "accuracy_drop_pt",
        "steps",
        "flags",
        "baseline_training",
        "data",
        "measurement",
        "environment",
        "phase_seconds",
    ]
    assert set(payload["phase_seconds"]) == {"compress", "measure"}
    for role in ("baseline", "candidate"):
        metrics = payload[role]
        assert list(metrics) == [
            "accuracy",
            "accuracy_ci",
            "test_samples",
            "finite_outputs",
            "latency_ms",
            "latency",
            "runtime",
            "size_bytes",
            "zstd_bytes",
            "encoded_bytes",
            "stored_bytes",
            "stored_form",
            "storage",
            "params",
            "nonzero_params",
            "macs",
            "served_ops",
        ]
        assert metrics["accuracy_ci"][0] <= metrics["accuracy"] <= metrics["accuracy_ci"][1]
        assert set(metrics["latency_ms"]) == {"1", "64"}
    assert payload["candidate"]["runtime"]["precision"] == "int8"
    assert (
        payload["speedup"]["64"] == payload["baseline"]["latency_ms"]["64"] / payload["candidate"]["latency_ms"]["64"]
    )
    for batch, (low, high) in payload["speedup_ci"].items():  # from the paired blocks of the same pass
        assert low <= payload["speedup"][batch] <= high
        assert len(payload["candidate"]["latency"][batch]["block_ms"]) == payload["measurement"]["latency"]["blocks"]
    assert payload["speed_mechanism"] == ["int8 on onnxruntime"]  # same MACs, a lower precision
    assert payload["candidate"]["served_ops"]["MatMulInteger"] >= 1 and "Gemm" in payload["baseline"]["served_ops"]
    assert payload["size_ratio"] > 3  # int8 weights
    assert payload["compression_ratio"] == payload["baseline"]["params"] * 4 / payload["candidate"]["stored_bytes"]
    assert (
        abs(payload["accuracy_drop_pt"] - 100 * (payload["baseline"]["accuracy"] - payload["candidate"]["accuracy"]))
        < 1e-9
    )
    assert payload["environment"]["versions"]["onnxruntime"]
    # The run is stored: the results command finds it.
    listed = runner.invoke(app, ["results", str(tmp_path), "--format", "csv"])
    assert listed.exit_code == 0 and "quant.dynamic" in listed.stdout


def test_table_output_and_the_torch_runtime(tmp_path):
    result = runner.invoke(
        app,
        ["run", "--dataset", "digits", "--model", "mlp", "--runtime", "torch", "--out", str(tmp_path)] + FAST,
    )
    assert result.exit_code == 0, result.output
    assert "accuracy (95% CI)" in result.stdout and "torch" in result.stdout


def test_bad_input_is_one_line_and_a_nonzero_exit(tmp_path):
    result = runner.invoke(app, ["run", "--dataset", "fashion_mnist", "--model", "mlp", "--out", str(tmp_path)])
    assert result.exit_code == 2
    assert "did you mean 'fashion-mnist'" in result.output and "Traceback" not in result.output
    result = runner.invoke(
        app,
        ["run", "--dataset", "digits", "--model", "mlp", "--recipe", "quant.statc", "--out", str(tmp_path)],
    )
    assert result.exit_code == 2 and "unknown recipe 'quant.statc'" in result.output
    result = runner.invoke(app, ["results", str(tmp_path / "missing")])
    assert result.exit_code == 2 and "no results database" in result.output
