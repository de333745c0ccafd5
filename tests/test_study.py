import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from compressbench import load_results, run_study
from compressbench.errors import CompressbenchError
from compressbench.reporting import write_report
from compressbench.store import Store
from compressbench.workflows.study import load_study, plan

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


def test_model_recipes_restrict_a_model_to_some_recipes(tmp_path):
    spec = tmp_path / "s.yaml"
    spec.write_text(
        "name: s\ndatasets: [digits]\nmodels: [mlp, lenet5]\nrecipes: [none, quant.dynamic, quant.static]\n"
        "model_recipes: {lenet5: [none, quant.static]}\n"
    )
    jobs, _ = plan(load_study(spec))
    assert sorted((job.model.name, job.recipe["name"]) for job in jobs) == [
        ("lenet5", "none"), ("lenet5", "quant.static"),
        ("mlp", "none"), ("mlp", "quant.dynamic"), ("mlp", "quant.static"),
    ]  # fmt: skip
    spec.write_text("name: s\ndatasets: [digits]\nmodels: [mlp]\nrecipes: [none]\nmodel_recipes: {mlp: [qat]}\n")
    with pytest.raises(CompressbenchError, match=r"model_recipes.mlp: \['qat'\] not in the recipes"):
        plan(load_study(spec))


def test_model_measure_puts_one_model_on_another_runtime(tmp_path):
    spec = tmp_path / "s.yaml"
    spec.write_text(
        "name: s\ndatasets: [digits]\nmodels: [mlp, lenet5]\nrecipes: [none, quant.dynamic]\n"
        "model_measure: {lenet5: {runtime: auto, target_batch: 1}}\n"
    )
    jobs, _ = plan(load_study(spec))
    measured = {(job.model.name, job.measure.runtime, job.measure.target_batch) for job in jobs}
    assert measured == {("mlp", "onnxruntime", 256), ("lenet5", "auto", 1)}
    spec.write_text(
        "name: s\ndatasets: [digits]\nmodels: [mlp]\nrecipes: [none]\nmodel_measure: {mlp: {runtime: tpu}}\n"
    )
    with pytest.raises(CompressbenchError, match=r"model_measure.mlp.runtime: .*unknown runtime 'tpu'"):
        plan(load_study(spec))
    spec.write_text("name: s\ndatasets: [digits]\nmodels: [mlp]\nrecipes: [none]\nmodel_measure: {lenet5: {}}\n")
    with pytest.raises(CompressbenchError, match=r"model_measure.lenet5: not one of the models"):
        plan(load_study(spec))


def test_compression_seeds_share_one_baseline_and_keep_the_keys_of_seed_zero(tmp_path):
    """`baseline_seed: 0` with `seeds: [0, 1, 2]`: three compression seeds from the one baseline (and its split);
    `model_seeds` gives the costly model one seed. Seed 0's job is the job a one-seed study already stored."""
    spec = tmp_path / "s.yaml"
    spec.write_text(
        "name: s\ndatasets: [digits]\nmodels: [mlp, lenet5]\nrecipes: [quant.static]\nseeds: [0, 1, 2]\n"
        "baseline_seed: 0\nmodel_seeds: {lenet5: [0]}\n"
    )
    jobs, _ = plan(load_study(spec))
    assert sorted((job.model.name, job.seed, job.data_seed) for job in jobs) == [
        ("lenet5", 0, 0), ("mlp", 0, 0), ("mlp", 1, 0), ("mlp", 2, 0)
    ]  # fmt: skip
    one_seed = tmp_path / "one.yaml"
    one_seed.write_text("name: s\ndatasets: [digits]\nmodels: [mlp]\nrecipes: [quant.static]\n")
    (alone,) = plan(load_study(one_seed))[0]
    assert alone.key() in {job.key() for job in jobs}
    spec.write_text("name: s\ndatasets: [digits]\nmodels: [mlp]\nrecipes: [none]\nmodel_seeds: {resnet: [0]}\n")
    with pytest.raises(CompressbenchError, match=r"model_seeds.resnet: not one of the models"):
        plan(load_study(spec))


def test_a_recipe_no_seed_changes_runs_once_timed_as_long_as_the_seeds_together(tmp_path):
    """From one baseline, `none` and dynamic int8 make the same model at every seed: one run each, with three times
    the blocks, so its speed-up interval rests on as many paired blocks as static int8's three runs pooled. With a
    baseline per seed, every seed differs and runs."""
    spec = tmp_path / "s.yaml"
    study = "name: s\ndatasets: [digits]\nmodels: [mlp]\nrecipes: [none, quant.dynamic, quant.static]\n"
    study += "seeds: [0, 1, 2]\n"
    spec.write_text(study + "baseline_seed: 0\nmeasure: {latency: {blocks: 4}}\n")
    jobs, _ = plan(load_study(spec))
    assert sorted((job.recipe["name"], job.seed, job.measure.latency.blocks) for job in jobs) == [
        ("none", 0, 12), ("quant.dynamic", 0, 12), ("quant.static", 0, 4), ("quant.static", 1, 4),
        ("quant.static", 2, 4),
    ]  # fmt: skip
    spec.write_text(study + "measure: {latency: {blocks: 4}}\n")
    jobs, _ = plan(load_study(spec))
    assert len(jobs) == 9 and {job.measure.latency.blocks for job in jobs} == {4}


def test_a_compression_seed_draws_its_own_calibration_samples_from_the_same_split():
    from compressbench.data import load_dataset

    data = load_dataset("digits", 0)
    first, second = data.recalibrated(1), data.recalibrated(2)
    assert first.train is data.train and first.val is data.val and first.test is data.test
    assert len(first.calibration) == len(data.calibration)
    assert not np.array_equal(first.calibration.x, second.calibration.x)
    assert np.array_equal(first.calibration.x, data.recalibrated(1).calibration.x)  # the same seed, the same samples
    train_rows = {row.tobytes() for row in data.train.x}
    assert all(row.tobytes() in train_rows for row in first.calibration.x)  # drawn from the baseline's train split


STUDIES = Path(__file__).parent.parent / "studies"


@pytest.mark.parametrize("name", ["smoke", "default", "full", "runtimes", "text"])
def test_every_shipped_study_plans_with_valid_recipes(name):
    jobs, _ = plan(load_study(STUDIES / f"{name}.yaml"))  # validates every recipe, training and measure field
    assert jobs and len({job.key() for job in jobs}) == len(jobs)


def test_the_full_profile_has_three_seeds_and_five_operating_points_per_family():
    spec = load_study(STUDIES / "full.yaml")
    assert spec.seeds == [0, 1, 2]
    families = {"prune": 0, "quant": 0, "distill": 0}
    for recipe in spec.recipes:
        steps = recipe["steps"] if isinstance(recipe, dict) else [{"technique": recipe}]
        if len(steps) == 1 or steps[-1]["technique"] == "encode.huffman":
            family = steps[0]["technique"].split(".")[0]
            families[family] = families.get(family, 0) + 1
    assert min(families[f] for f in ("prune", "quant", "distill")) >= 5, families


def test_bad_study_files_name_the_field(tmp_path):
    spec = tmp_path / "bad.yaml"
    spec.write_text("name: bad\ndatasets: [digits]\nmodels: [mlp]\nrecipes: [none]\nseeds: [zero]\n")
    with pytest.raises(CompressbenchError, match=r"bad.yaml: field 'seeds.0'"):
        load_study(spec)
    spec.write_text("name: bad\ndatasets: [digits]\nmodels: [mlp]\nrecipes: [none]\ntraining: {mlp: {epoch: 3}}\n")
    with pytest.raises(CompressbenchError, match=r"training.mlp.epoch"):
        plan(load_study(spec))


@pytest.mark.slow
def test_a_killed_study_resumes_without_half_rows_or_recomputation(tmp_path):
    spec = tmp_path / "long.yaml"
    spec.write_text(
        "name: long\ndatasets: [digits]\nmodels: [mlp]\nrecipes: [none, quant.dynamic]\nseeds: [0, 1, 2, 3]\n"
        "training: {mlp: {epochs: 2}}\n"
        "measure: {latency: {warmup_s: 0.2, blocks: 3, block_s: 0.1, batch_sizes: [1, 64]}}\n"
    )
    out = tmp_path / "out"
    command = [sys.executable, "-m", "compressbench.cli", "study", str(spec), "--out", str(out)]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    store = Store(out / "results.db")
    deadline = time.time() + 120
    while time.time() < deadline and process.poll() is None:
        if (out / "results.db").exists() and len(store.runs()) >= 2:
            break
        time.sleep(0.2)
    process.send_signal(signal.SIGKILL)
    process.wait()
    stored = store.runs()
    assert 2 <= len(stored) < 8, "the kill must land mid-study"
    assert all(run.status == "ok" and run.result.candidate.accuracy > 0 for run in stored)
    counts = run_study(spec, out)
    assert counts == {"planned": 8, "stored_before": len(stored), "ok": 8 - len(stored), "failed": 0}
    assert len(Store(out / "results.db").runs()) == 8


def test_smoke_study_report(tmp_path):
    run_study(SMOKE, tmp_path)
    html_path, md_path = write_report(tmp_path)
    markdown = md_path.read_text()
    assert "# compressbench report: smoke" in markdown and "## digits / mlp" in markdown
    assert "quant.dynamic" in html_path.read_text()
