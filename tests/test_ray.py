"""Jobs on a real Ray cluster: two node processes on this machine, one advertising the resource `target`.

Every run is stored once, by the driver; every measure phase runs on the target node; a worker killed mid-job has its
job retried; the accuracies are the ones the local executor stores for the same keys.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import ray
from conftest import FAST_LATENCY
from ray.cluster_utils import Cluster

import compressbench as cb
from compressbench.measure.compare import MeasureSettings
from compressbench.workflows.search import search

SMOKE = Path(__file__).parent.parent / "studies" / "smoke.yaml"
ON_TARGET = cb.ExecutorSettings(kind="ray", measure_on="target")


@pytest.fixture(scope="module")
def cluster():
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    nodes = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    target = nodes.add_node(num_cpus=1, resources={"target": 1})
    nodes.wait_for_nodes()
    ray.init(address=nodes.address, logging_level="ERROR")
    yield target.node_id
    ray.shutdown()
    nodes.shutdown()


def _study(tmp_path: Path, epochs: int):
    """The smoke study with its own training epochs: baselines no other test has cached."""
    spec = cb.load_study(SMOKE)
    return spec.model_copy(update={"training": {"mlp": {"epochs": epochs}, "lenet5": {"epochs": epochs}}})


@pytest.mark.slow
def test_the_smoke_study_runs_on_two_nodes_and_is_timed_on_the_target_node(cluster, tmp_path):
    counts = cb.run_study(SMOKE, tmp_path, executor=ON_TARGET)
    runs = cb.stored_runs(tmp_path)
    assert counts["ok"] == counts["planned"] == len(runs) == 4 and counts["failed"] == 0
    assert len({run.key for run in runs}) == 4  # each job once
    assert {run.result.environment["node"]["ray_node_id"] for run in runs} == {cluster}
    # Resuming on Ray runs nothing again.
    assert cb.run_study(SMOKE, tmp_path, executor=ON_TARGET)["stored_before"] == 4


@pytest.mark.slow
def test_a_worker_killed_mid_job_is_retried_and_nothing_is_lost_or_repeated(cluster, tmp_path):
    killed: list[int] = []

    def kill_one_compress_phase() -> None:
        deadline = time.monotonic() + 120
        while not killed and time.monotonic() < deadline:
            found = subprocess.run(["pgrep", "-f", "ray::_compress_task"], capture_output=True, text=True).stdout
            if pids := [int(pid) for pid in found.split()]:
                time.sleep(0.3)  # into the baseline's training
                try:
                    os.kill(pids[0], signal.SIGKILL)
                    killed.append(pids[0])
                except ProcessLookupError:
                    continue
            time.sleep(0.05)

    killer = threading.Thread(target=kill_one_compress_phase)
    killer.start()
    counts = cb.run_study(_study(tmp_path, epochs=40), tmp_path, executor=ON_TARGET)
    killer.join()
    assert killed, "no compress phase was seen running"
    runs = cb.stored_runs(tmp_path)
    assert counts["ok"] == counts["planned"] == len(runs) == 4 and counts["failed"] == 0
    assert all(run.status == "ok" for run in runs)


@pytest.mark.slow
def test_the_same_keys_store_the_same_accuracies_as_locally(cluster, tmp_path):
    spec = _study(tmp_path, epochs=5)
    cb.run_study(spec, tmp_path / "local", cache=cb.Cache(tmp_path / "cache-local"))
    cb.run_study(spec, tmp_path / "ray", cache=cb.Cache(tmp_path / "cache-ray"), executor=ON_TARGET)

    def accuracies(folder: Path) -> dict[str, tuple[float, float]]:
        return {r.key: (r.result.baseline.accuracy, r.result.candidate.accuracy) for r in cb.stored_runs(folder)}

    local, on_ray = accuracies(tmp_path / "local"), accuracies(tmp_path / "ray")
    assert len(local) == 4 and local == on_ray  # baselines trained apart (two caches), to the same weights


@pytest.mark.slow
def test_a_search_runs_its_trials_on_the_cluster(cluster, tmp_path):
    measure = MeasureSettings(runtime="onnxruntime", target_batch=32, latency=FAST_LATENCY)
    outcome = search("digits", "mlp", out=tmp_path, trials=3, plans=["quant"], batch=32, measure=measure,
                     executor=ON_TARGET, max_accuracy_drop=5.0)  # fmt: skip
    assert outcome.trials == 3
    runs = cb.stored_runs(tmp_path)
    assert {run.recipe for run in runs} >= {"none", "search: static minmax float:auto"}  # the baseline, a fixed trial
    assert all(run.result.environment["node"]["ray_node_id"] == cluster for run in runs)


@pytest.mark.slow
def test_the_local_executor_never_imports_ray_and_a_missing_ray_is_one_line(tmp_path, monkeypatch):
    code = (
        "import sys, compressbench as cb; cb.run_study(sys.argv[1], sys.argv[2]); "
        "assert 'ray' not in sys.modules, 'ray was imported'"
    )
    subprocess.run([sys.executable, "-c", code, str(SMOKE), str(tmp_path / "local")], check=True)
    monkeypatch.setitem(sys.modules, "ray", None)  # as if Ray were not installed
    with pytest.raises(cb.CompressbenchError, match=r"^--executor ray needs Ray: pip install 'compressbench\[ray\]'"):
        cb.run_study(SMOKE, tmp_path / "ray", executor=cb.ExecutorSettings(kind="ray"))


USER_CODE = """
import numpy as np
from sklearn.datasets import load_digits
from torch import nn


def build(spec):
    return nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))


def digits():
    x, y = load_digits(return_X_y=True)
    return (x / 16.0).astype(np.float32)[1400:], y[1400:]
"""


@pytest.mark.slow
def test_compress_hands_back_the_artifact_its_target_node_measured(cluster, tmp_path):
    import torch
    from safetensors.torch import save_file

    (tmp_path / "mine.py").write_text(USER_CODE)
    torch.manual_seed(0)
    save_file(torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.ReLU(), torch.nn.Linear(32, 10)).state_dict(),
              tmp_path / "weights.safetensors")  # fmt: skip
    outcome = cb.compress_model(f"{tmp_path / 'mine.py'}:build", f"{tmp_path / 'mine.py'}:digits",
                                weights=tmp_path / "weights.safetensors", out=tmp_path / "out", recipes="quant.dynamic",
                                runtime="onnxruntime", max_accuracy_drop=100.0, latency=FAST_LATENCY,
                                executor=ON_TARGET)  # fmt: skip
    manifest = outcome.manifest
    assert manifest["environment"]["node"]["ray_node_id"] == cluster
    assert set(manifest["candidates"]) == {"none", "quant.dynamic"}
    assert (tmp_path / "out" / "model.onnx").is_file()
