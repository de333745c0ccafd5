"""The search: every trial an ordinary stored job, resumable after a kill, never choosing an over-budget trial."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time

import optuna
import pytest
from conftest import FAST_LATENCY

import compressbench as cb
from compressbench.measure.compare import MeasureSettings
from compressbench.workflows.search import search
from compressbench.workflows.search_space import SearchSpace

MEASURE = MeasureSettings(runtime="onnxruntime", target_batch=32, latency=FAST_LATENCY)
OPTIONS = {"batch": 32, "measure": MEASURE}


def _trials(out):
    study = optuna.load_study(study_name="search", storage=f"sqlite:///{out / 'search.db'}")
    return study.get_trials(deepcopy=False)


def _complete(out):
    try:
        return [t for t in _trials(out) if t.state == optuna.trial.TrialState.COMPLETE]
    except KeyError:  # the worker has created the database but not yet the study
        return []


@pytest.mark.slow
def test_a_search_starts_with_the_fixed_recipes_and_stores_every_trial(tmp_path):
    space = SearchSpace.for_model(trains=True, runtime="onnxruntime")
    outcome = search("digits", "mlp", out=tmp_path, trials=len(space.fixed()) + 1, max_accuracy_drop=1.0, **OPTIONS)
    trials = _complete(tmp_path)
    assert outcome.trials == len(trials) == len(space.fixed()) + 1
    assert [t.params for t in trials[: len(space.fixed())]] == list(space.fixed().values())
    assert trials[0].user_attrs["fixed"] == "quant.static"
    stored = {run.key for run in cb.stored_runs(tmp_path)}
    assert {t.user_attrs["key"] for t in trials} <= stored  # every trial is a stored job (plus the baseline)
    assert outcome.best is not None and outcome.best["accuracy_drop_pt"] <= 1.0
    feasible = [t for t in trials if t.user_attrs["accuracy_drop_pt"] <= 1.0]
    assert outcome.best["speedup"] == max(t.user_attrs["speedup"] for t in feasible)


def test_an_over_budget_trial_is_never_best(tmp_path):
    outcome = search("digits", "mlp", out=tmp_path, trials=2, max_accuracy_drop=-50.0, **OPTIONS)
    assert outcome.trials == 2 and outcome.feasible == 0 and outcome.best is None


def test_the_goal_stops_the_search_at_the_first_feasible_trial_that_reaches_it(tmp_path):
    outcome = search("digits", "mlp", out=tmp_path, trials=6, goal=0.01, max_accuracy_drop=5.0, **OPTIONS)
    assert outcome.trials == 1 and outcome.stopped.startswith("goal 0.01x reached by trial 0")


WORKER = textwrap.dedent(
    """
    import sys
    sys.path.insert(0, {tests!r})
    from conftest import FAST_LATENCY
    from compressbench.measure.compare import MeasureSettings
    from compressbench.workflows.search import search

    measure = MeasureSettings(runtime="onnxruntime", target_batch=32, latency=FAST_LATENCY)
    search("digits", "mlp", out={out!r}, trials={trials}, batch=32, measure=measure)
    """
)


def _worker(tmp_path, trials: int, env: dict) -> subprocess.Popen:
    code = WORKER.format(tests=os.path.dirname(__file__), out=str(tmp_path), trials=trials)
    return subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


@pytest.fixture
def fast_heartbeat(monkeypatch):
    env = {**os.environ, "COMPRESSBENCH_SEARCH_HEARTBEAT": "1", "COMPRESSBENCH_SEARCH_GRACE": "2"}
    monkeypatch.setenv("COMPRESSBENCH_SEARCH_HEARTBEAT", "1")
    monkeypatch.setenv("COMPRESSBENCH_SEARCH_GRACE", "2")
    return env


@pytest.mark.slow
def test_a_killed_search_resumes_without_losing_or_repeating_a_trial(tmp_path, fast_heartbeat):
    worker = _worker(tmp_path, 4, fast_heartbeat)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and (not (tmp_path / "search.db").exists() or len(_complete(tmp_path)) < 2):
        assert worker.poll() is None, worker.stderr.read().decode()[-2000:]
        time.sleep(0.5)
    worker.send_signal(signal.SIGKILL)
    worker.wait()
    done_before = {t.number: t.user_attrs["key"] for t in _complete(tmp_path)}
    time.sleep(3)  # past the grace period: the trial that was running is stale
    search("digits", "mlp", out=tmp_path, trials=4, **OPTIONS)
    complete = _complete(tmp_path)
    assert len(complete) == 4
    assert {t.number: t.user_attrs["key"] for t in complete if t.number in done_before} == done_before  # kept
    keys = [t.user_attrs["key"] for t in complete]
    assert len(keys) == len(set(keys))  # the interrupted trial ran again once, as a retry; nothing twice
    with sqlite3.connect(tmp_path / "results.db") as db:
        assert db.execute("SELECT COUNT(*), COUNT(DISTINCT key) FROM runs").fetchone()[0] == len(set(keys)) + 1


@pytest.mark.slow
def test_two_workers_on_one_storage_lose_and_duplicate_nothing(tmp_path, fast_heartbeat):
    env = {**fast_heartbeat, "COMPRESSBENCH_MACHINE_LOCK": str(tmp_path / "machine.lock")}
    workers = [_worker(tmp_path, 4, env) for _ in range(2)]
    for worker in workers:
        assert worker.wait(timeout=600) == 0, worker.stderr.read().decode()[-2000:]
    complete = _complete(tmp_path)
    assert 4 <= len(complete) <= 5  # both stop at 4 finished; one may be finishing a trial as the other gets there
    numbers = [t.number for t in complete]
    assert len(numbers) == len(set(numbers))
    stored = {run.key for run in cb.stored_runs(tmp_path)}
    assert {t.user_attrs["key"] for t in complete} <= stored


@pytest.mark.slow
def test_a_size_search_starts_from_deep_compression_and_reports_its_front(tmp_path):
    plans = ["quant", "deep-compression"]
    space = SearchSpace.for_model(trains=True, runtime="onnxruntime", objective="size", plans=plans)
    outcome = search("digits", "mlp", out=tmp_path, objective="size", plans=plans, trials=len(space.fixed()),
                     max_accuracy_drop=2.0, **OPTIONS)  # fmt: skip
    trials = _complete(tmp_path)
    deep = next(t for t in trials if t.user_attrs.get("fixed") == "deep-compression")
    shipped = cb.load_recipe("deep-compression").canonical()["steps"]
    assert cb.load_recipe({"name": "fixed", "steps": deep.user_attrs["steps"]}).canonical()["steps"] == shipped
    fixed = [t for t in trials if t.user_attrs.get("fixed") and t.user_attrs["accuracy_drop_pt"] <= 2.0]
    assert outcome.best_fixed["size_ratio"] == max(t.user_attrs["size_ratio"] for t in fixed)
    assert deep.user_attrs["size_ratio"] > 10  # sparse, shared and Huffman-coded: far past int8's 4x
    assert outcome.best is not None and outcome.best["size_ratio"] == max(
        t.user_attrs["size_ratio"] for t in trials if t.user_attrs["accuracy_drop_pt"] <= 2.0
    )
    report = (tmp_path / "search.md").read_text()
    assert outcome.best["recipe"] in report and "Best feasible trial and the fixed recipes" in report
    assert f"{len(trials)} trials" in report
    # The trials are stored runs: the recommendation reads them like a study's.
    (advice,) = cb.recommend(tmp_path, max_accuracy_drop=2.0, objective="size", batch=32)
    assert advice.best is not None and advice.best.recipe in {t.user_attrs["recipe"] for t in trials}
    page = (tmp_path / "search.html").read_text()
    assert "Pareto front (within budget)" in page and "trial 2: deep-compression (search: magnitude 0.92" in page


def test_plans_are_checked_against_the_model():
    with pytest.raises(cb.CompressbenchError, match=r"plans: unknown \['prune\+distill'\]"):
        SearchSpace.for_model(trains=True, plans=["prune+distill"])
    with pytest.raises(cb.CompressbenchError, match=r"plans: \['prune'\] need a torch model with a train split"):
        SearchSpace.for_model(trains=False, plans=["quant", "prune"])
    assert "deep-compression" in SearchSpace.for_model(trains=True, objective="size").plans
    assert "deep-compression" not in SearchSpace.for_model(trains=True, objective="latency").plans
