from pathlib import Path

import pytest

from compressbench import load_results, run_study
from compressbench.errors import CompressbenchError
from compressbench.runner.study import load_study, plan

SMOKE = Path(__file__).parents[1] / "studies" / "smoke.yaml"


def test_the_smoke_study_runs_stores_and_resumes(tmp_path):
    counts = run_study(SMOKE, tmp_path)
    assert counts == {"planned": 4, "stored_before": 0, "ok": 4, "failed": 0}
    frame = load_results(tmp_path)
    assert sorted(frame["recipe"]) == ["none", "none", "quant.dynamic", "quant.dynamic"]
    assert (frame["status"] == "ok").all()
    # The uncompressed recipe measures the baseline against itself: same accuracy, same size.
    none = frame[frame["recipe"] == "none"]
    assert (none["accuracy_drop_pt"] == 0).all() and (none["size_ratio"] == 1).all()
    # Re-running skips every stored run.
    assert run_study(SMOKE, tmp_path) == {"planned": 4, "stored_before": 4, "ok": 0, "failed": 0}


def test_a_failing_job_is_stored_with_its_error_and_the_study_goes_on(tmp_path):
    factory = tmp_path / "flaky.py"
    factory.write_text(
        "import torch\n"
        "class Flaky(torch.nn.Module):\n"
        "    def __init__(self, n):\n"
        "        super().__init__(); self.fc = torch.nn.Linear(64, n)\n"
        "    def forward(self, x):\n"
        "        if x.shape[0] > 2 and not self.training: raise RuntimeError('cannot serve big batches')\n"
        "        return self.fc(x.flatten(1))\n"
        "def build(spec):\n"
        "    return Flaky(spec.num_classes)\n"
    )
    spec = tmp_path / "study.yaml"
    spec.write_text(
        f"name: flaky\ndatasets: [digits]\nmodels: [mlp, '{factory}:build']\nrecipes: [none]\n"
        "training: {mlp: {epochs: 1}}\n"
        f"measure: {{latency: {{warmup_s: 0.01, blocks: 1, block_s: 0.01, batch_sizes: [1]}}}}\n"
    )
    counts = run_study(spec, tmp_path / "out")
    assert counts["ok"] == 1 and counts["failed"] == 1
    frame = load_results(tmp_path / "out")
    failed = frame[frame["status"] == "failed"].iloc[0]
    assert "cannot serve big batches" in failed["error"]


def test_plan_skips_models_that_cannot_take_the_inputs(tmp_path):
    spec = tmp_path / "s.yaml"
    spec.write_text("name: s\ndatasets: [mnist1d]\nmodels: [mlp, lenet5, conv1d]\nrecipes: [none, quant.dynamic]\n")
    jobs, skipped = plan(load_study(spec))
    assert sorted({job.model.name for job in jobs}) == ["conv1d", "mlp"] and len(jobs) == 4
    assert skipped and "lenet5 on mnist1d" in skipped[0]
    assert len({job.key() for job in jobs}) == 4


def test_bad_study_files_name_the_field(tmp_path):
    spec = tmp_path / "bad.yaml"
    spec.write_text("name: bad\ndatasets: [digits]\nmodels: [mlp]\nrecipes: [none]\nseeds: [zero]\n")
    with pytest.raises(CompressbenchError, match=r"bad.yaml: field 'seeds.0'"):
        load_study(spec)
    spec.write_text("name: bad\ndatasets: [digits]\nmodels: [mlp]\nrecipes: [none]\ntraining: {mlp: {epoch: 3}}\n")
    with pytest.raises(CompressbenchError, match=r"training.mlp.epoch"):
        plan(load_study(spec))
