"""The one job driver: every workflow's "take the stored run, or run it and store it" under the policy it states."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import FAST_MEASURE

import compressbench as cb
from compressbench import CompressbenchError
from compressbench.runner.drive import Policy, drive, time_left
from compressbench.runner.job import make_job
from compressbench.store import Store
from compressbench.workflows import search as search_workflow
from compressbench.workflows import study as study_workflow
from compressbench.workflows.study import load_study, plan

FIXTURES = Path(__file__).parent / "fixtures"
COMPRESS_LIKE = Policy(rerun_failed=False, store_failures=True)


@pytest.fixture(scope="module")
def template():
    """One real result (the digits MLP's shipped baseline, measured), which the fake job runner hands back."""
    return cb.compress("digits", "mlp", "none", measure=FAST_MEASURE)


class FakeRunner:
    """Stands in for `run_job`: recipes named in `failing` raise, the others return the template; `ran` lists the
    recipes it was asked to run, in order."""

    def __init__(self, template) -> None:
        self.template, self.ran, self.failing = template, [], set()

    def __call__(self, job, cache, measure_every_step=False, chosen_artifacts=None):
        self.ran.append(job.recipe["name"])
        if job.recipe["name"] in self.failing:
            raise CompressbenchError(f"{job.recipe['name']} failed on purpose")
        return self.template.model_copy(update={"recipe": job.recipe["name"]})


@pytest.fixture
def runs(monkeypatch, template) -> FakeRunner:
    runner = FakeRunner(template)
    monkeypatch.setattr("compressbench.runner.executors.run_job", runner)
    return runner


def jobs(*recipes):
    return [make_job("digits", "mlp", recipe, measure=FAST_MEASURE) for recipe in recipes]


def test_a_study_runs_a_stored_failure_again_and_stores_every_failure(tmp_path, runs, cache):
    store = Store(tmp_path / "results.db")
    runs.failing.add("quant.static")
    first = drive(jobs("none", "quant.static"), store, cache, study_workflow.POLICY)
    assert [o.result is not None for o in first] == [True, False]
    assert store.get(first[1].job.key()).status == "failed"
    runs.failing.clear()
    again = drive(jobs("none", "quant.static"), store, cache, study_workflow.POLICY)
    assert runs.ran == ["none", "quant.static", "quant.static"]  # the stored success is taken, the failure re-run
    assert [o.stored for o in again] == [True, False]
    assert store.get(again[1].job.key()).status == "ok"


def test_compress_never_runs_a_stored_failure_again_and_a_success_counts_only_with_what_reuse_asks(
    tmp_path, runs, cache
):
    store = Store(tmp_path / "results.db")
    runs.failing.add("quant.static")
    drive(jobs("none", "quant.static"), store, cache, COMPRESS_LIKE)
    runs.failing.clear()
    marked: set[str] = set()
    needs_mark = Policy(rerun_failed=False, store_failures=True, reuse=lambda run: run.key in marked)
    again = drive(jobs("none", "quant.static"), store, cache, needs_mark)
    assert runs.ran == ["none", "quant.static", "none"]  # the failure stays; the success lacks its mark and runs again
    assert again[1].stored and again[1].result is None and "failed on purpose" in again[1].error
    marked.add(again[0].job.key())
    drive(jobs("none"), store, cache, needs_mark)
    assert runs.ran == ["none", "quant.static", "none"]


def test_a_search_stores_no_failure_and_a_failed_trial_is_one_line(tmp_path, runs, cache):
    store = Store(tmp_path / "results.db")
    runs.failing.add("quant.static")
    (job,) = jobs("quant.static")
    with pytest.raises(CompressbenchError, match="^CompressbenchError: quant.static failed on purpose$"):
        search_workflow._result(job, store, cache)
    assert store.get(job.key()) is None
    assert Policy(rerun_failed=True, store_failures=False) == search_workflow.POLICY


def test_what_a_workflow_does_with_an_outcome_happens_before_it_is_stored_and_may_stop_the_drive(tmp_path, runs, cache):
    store = Store(tmp_path / "results.db")
    seen: list[bool] = []

    def stop_at_static(outcome):
        seen.append(store.get(outcome.job.key()) is not None)
        if outcome.job.recipe["name"] == "quant.static":
            raise CompressbenchError("stop here")

    with pytest.raises(CompressbenchError, match="stop here"):
        drive(jobs("none", "quant.static", "quant.dynamic"), store, cache, COMPRESS_LIKE, on_outcome=stop_at_static)
    assert seen == [False, False]
    assert [run.recipe for run in store.runs()] == ["none"]  # finished work stays; nothing after the stop ran


def test_outcomes_come_back_in_the_order_given_and_a_repeated_job_runs_once(tmp_path, runs, cache):
    store = Store(tmp_path / "results.db")
    outcomes = drive(jobs("quant.dynamic", "none", "quant.dynamic"), store, cache, study_workflow.POLICY)
    assert [o.job.recipe["name"] for o in outcomes] == ["quant.dynamic", "none", "quant.dynamic"]
    assert runs.ran == ["quant.dynamic", "none"]


@pytest.mark.parametrize("name", ["default", "smoke", "full", "runtimes", "text"])
def test_the_shipped_studies_plan_the_same_run_keys_as_before_the_restructuring(name):
    """Keys computed from the commit before the job driver and the workflows package (2f9f9ae): stored results
    and caches made before stay valid. Regenerated only where a shipped recipe or study setting changed on purpose
    (issue 27: `deep-compression` at 92% / 4-bit fc indices; the default study with three compression seeds)."""
    expected = json.loads((FIXTURES / "study_keys.json").read_text())[name]
    jobs, _ = plan(load_study(Path(__file__).parent.parent / "studies" / f"{name}.yaml"))
    planned = {f"{j.dataset.name} / {j.model.name} / {j.recipe['name']} / seed {j.seed}": j.key() for j in jobs}
    assert planned == expected


def test_after_each_job_the_time_left_is_estimated_from_those_that_ran():
    assert time_left([30.0, 50.0], 3) == " [dim](about 2 min left for 3 more)[/dim]"
    assert time_left([12.0], 2) == " [dim](about 24 s left for 2 more)[/dim]"
    assert time_left([12.0], 0) == ""
