"""Report, claims and recommendation on a stored fixture (hand-written runs with known figures)."""

import json
import math
import re
from html import unescape

import pytest
from typer.testing import CliRunner

from compressbench.cli import app
from compressbench.errors import CompressbenchError
from compressbench.reporting import judge_claims, recommend, summarise_runs, write_report
from compressbench.reporting.claims import hybrids_vs_parts
from compressbench.reporting.sections import Section, render_html, render_markdown
from compressbench.reporting.write import pareto_front, report_sections
from compressbench.store import RunResult, Store

ENVIRONMENT = {
    "cpu": {"model": "test CPU", "cores": 2, "flags": ["avx2"]},
    "python": "3.11",
    "platform": "linux",
    "versions": {"onnxruntime": "1.32"},
}
MEASUREMENT = {
    "runtime": "onnxruntime",
    "latency": {"threads": 1, "batch_sizes": [1, 256], "warmup_s": 1.0, "blocks": 15, "block_s": 0.2},
}
BASELINE = {
    "accuracy": 0.90,
    "latency_ms": {"1": 1.0, "256": 10.0},
    "size_bytes": 1000,
    "stored_bytes": 900,
    "params": 250,
    "nonzero_params": 250,
    "macs": 100,
    "accuracy_ci": [0.89, 0.91],
    "runtime": {"runtime": "onnxruntime"},
}


def put(
    store, recipe, steps, accuracy, speedup, size_ratio, seed=0, flags=(), model="mlp", control=None, recorded=None,
    runtime="onnxruntime", stored_form=None, profile="",
):  # fmt: skip
    """Store one hand-written run; `recorded` adds result fields (baseline_training, the steps' records); `runtime`
    is the candidate's (the baseline is on ONNX Runtime)."""
    candidate = {
        **BASELINE,
        "runtime": {"runtime": runtime},
        "accuracy": accuracy,
        "accuracy_ci": [accuracy - 0.01, accuracy + 0.01],
        "latency_ms": {b: ms / speedup[b] for b, ms in BASELINE["latency_ms"].items()},
        "size_bytes": int(1000 / size_ratio),
        "stored_bytes": int(900 / size_ratio),
        **({"stored_form": stored_form} if stored_form else {}),
    }
    result = {
        "dataset": "digits",
        "model": model,
        "recipe": recipe,
        "seed": seed,
        "baseline": BASELINE,
        "candidate": candidate,
        "speedup": speedup,
        "size_ratio": size_ratio,
        "compression_ratio": 1000 / candidate["stored_bytes"],
        "accuracy_drop_pt": (0.90 - accuracy) * 100,
        "flags": list(flags),
        "environment": ENVIRONMENT,
        "measurement": MEASUREMENT,
    }
    if control is not None:
        result["control"] = {**candidate, "accuracy": control}
    result.update(recorded or {})
    config = {
        "dataset": {"name": "digits"},
        "model": {"name": model},
        "seed": seed,
        "recipe": {"name": recipe, "steps": [{"technique": t} for t in steps]},
    }
    store.put(f"{model}-{recipe}-{seed}{profile}", config, result=RunResult.model_validate(result))


@pytest.fixture
def fixture_store(tmp_path):
    store = Store(tmp_path / "results.db")
    put(store, "none", [], 0.90, {"1": 1.0, "256": 1.0}, 1.0)
    put(store, "prune.channels", ["prune.channels"], 0.895, {"1": 1.6, "256": 2.1}, 2.0)
    put(store, "quant.static", ["quant.static"], 0.899, {"1": 0.8, "256": 1.5}, 3.9)
    put(store, "quant.static", ["quant.static"], 0.897, {"1": 0.9, "256": 1.6}, 3.9, seed=1)
    put(store, "prune+quant", ["prune.channels", "quant.static"], 0.893, {"1": 1.2, "256": 3.0}, 7.0)
    put(store, "distill.kd", ["distill.kd"], 0.85, {"1": 2.0, "256": 4.0}, 4.0, control=0.84)
    put(store, "quant.dynamic", ["quant.dynamic"], 0.20, {"1": 9.0, "256": 9.0}, 4.0, flags=["accuracy collapsed"])
    put(store, "quant.dynamic", ["quant.dynamic"], 0.88, {"1": 0.5, "256": 0.7}, 3.9, model="lenet5")
    put(store, "none", [], 0.90, {"1": 1.0, "256": 1.0}, 1.0, model="lenet5")
    return store


def test_summaries_average_over_seeds(fixture_store):
    summaries = {(s.model, s.recipe): s for s in summarise_runs(fixture_store.runs())}
    static = summaries[("mlp", "quant.static")]
    # Over seeds, the speed-up is the ratio of the mean latencies (10 ms against 10/1.5 and 10/1.6 ms).
    assert static.seeds == [0, 1] and static.speedup["256"].mean == pytest.approx(10 / ((10 / 1.5 + 10 / 1.6) / 2))
    assert static.accuracy.spread > 0 and static.families == {"quantization"}
    assert summaries[("mlp", "prune+quant")].families == {"pruning", "quantization"}


def test_recommend_latency_never_slower_and_skips_broken_runs(fixture_store):
    summaries = summarise_runs(fixture_store.runs())
    by_model = {a.model: a for a in recommend(summaries, 1.0, "latency", 256)}
    assert by_model["mlp"].best.recipe == "prune+quant" and by_model["mlp"].runner_up.recipe == "prune.channels"
    # lenet5's only compressed recipe is slower than the baseline: keep the baseline.
    assert by_model["lenet5"].best is None and "keep the baseline" in by_model["lenet5"].reason
    # At batch 1 quant.static is slower (0.85x): it is never recommended there.
    batch1 = {a.model: a for a in recommend(summaries, 1.0, "latency", 1)}["mlp"]
    assert batch1.best.recipe == "prune.channels" and batch1.runner_up.recipe == "prune+quant"
    # A looser budget admits distillation (5 pt drop), the fastest at batch 256.
    assert {a.model: a for a in recommend(summaries, 6.0, "latency", 256)}["mlp"].best.recipe == "distill.kd"
    size = {a.model: a for a in recommend(summaries, 1.0, "size")}["mlp"]
    assert size.best.recipe == "prune+quant" and size.runner_up.recipe == "quant.static"


def test_the_uncompressed_model_on_a_faster_runtime_wins_when_no_compression_beats_it(tmp_path):
    """The figures of a third-party CNN measured in one compress run: OpenVINO alone 1.79x at batch 32, NNCF int8
    1.25x, static int8 on ONNX Runtime 0.5x. The answer is the model unchanged on OpenVINO, never the slower int8."""
    store = Store(tmp_path / "results.db")
    put(store, "none", [], 0.90, {"1": 1.27, "256": 1.79}, 1.0, runtime="openvino")
    put(store, "quant.nncf", ["quant.nncf"], 0.899, {"1": 0.74, "256": 1.25}, 0.59, runtime="openvino")
    put(store, "quant.static", ["quant.static"], 0.899, {"1": 0.38, "256": 0.50}, 3.0)
    (answer,) = recommend(summarise_runs(store.runs()), 1.0, "latency", 256)
    assert answer.best.recipe == "none" and answer.best.runtime == "openvino" and answer.best.runtime_only
    assert answer.runner_up is None
    assert answer.reason.startswith("runtime only: the model unchanged on openvino runs 1.79x faster at batch 256")


def test_a_compression_must_beat_the_best_uncompressed_runtime_by_more_than_noise(tmp_path):
    store = Store(tmp_path / "results.db")
    put(store, "none", [], 0.90, {"1": 1.0, "256": 1.50}, 1.0, runtime="openvino")
    put(store, "quant.nncf", ["quant.nncf"], 0.899, {"1": 1.2, "256": 1.55}, 3.0, runtime="openvino")  # < 1.05 x 1.5
    put(store, "prune+quant", ["prune.channels", "quant.static"], 0.895, {"1": 1.1, "256": 2.9}, 7.0,
        runtime="openvino")  # fmt: skip
    (answer,) = recommend(summarise_runs(store.runs()), 1.0, "latency", 256)
    assert (answer.best.recipe, answer.runner_up.recipe) == ("prune+quant", "none")
    assert "(1.93x over the uncompressed model on openvino)" in answer.reason
    # At batch 1 OpenVINO alone is no faster: a 1.2x int8 qualifies against the baseline itself.
    (batch1,) = recommend(summarise_runs(store.runs()), 1.0, "latency", 1)
    assert batch1.best.recipe == "quant.nncf"


def test_a_file_larger_than_the_baselines_is_called_larger(tmp_path):
    store = Store(tmp_path / "results.db")
    put(store, "none", [], 0.90, {"1": 1.0, "256": 1.0}, 1.0)
    put(store, "quant.nncf", ["quant.nncf"], 0.899, {"1": 1.2, "256": 1.5}, 0.59, runtime="openvino")
    assert {run.recipe: run.result.size_change for run in store.runs()} == {
        "none": "1.00x smaller", "quant.nncf": "1.69x larger"
    }  # fmt: skip
    rows = [row for section in report_sections(store, {}) for _, body in section.tables for row in body
            if "quant.nncf" in str(row)]  # fmt: skip
    assert any("1.69x larger" in map(str, row) for row in rows)


def test_claim_verdicts(fixture_store):
    verdicts = {(v.claim, v.model): v for v in judge_claims(summarise_runs(fixture_store.runs()))}
    assert verdicts[("pruning", "mlp")].verdict == "holds"  # 2.1x = 52% less time, 0.5 pt
    assert verdicts[("int8", "mlp")].verdict == "holds"  # 1.55x at 256 within 1 pt
    assert verdicts[("int8", "lenet5")].verdict == "does not hold"  # slower
    assert verdicts[("distillation", "mlp")].verdict == "does not hold"  # 5 pt drop
    assert "student alone 84.00%" in verdicts[("distillation", "mlp")].why
    assert verdicts[("combining", "mlp")].verdict == "holds"
    assert verdicts[("pruning", "lenet5")].verdict == "not measured"


def verdicts_of(store, per_seed=False):
    runs = store.runs()
    seeds = {seed: summarise_runs([r for r in runs if r.seed == seed]) for seed in {r.seed for r in runs}}
    return {(v.claim, v.model): v for v in judge_claims(summarise_runs(runs), seeds if per_seed else None)}


def test_a_negative_verdict_from_an_under_trained_baseline_or_a_short_fine_tune_is_inconclusive(tmp_path):
    starved = Store(tmp_path / "starved.db")
    reference = {"baseline_training": {"reference_accuracy": 0.95}}  # the baseline (90%) is 5 pt under it
    put(starved, "none", [], 0.90, {"1": 1.0, "256": 1.0}, 1.0, recorded=reference)
    put(starved, "distill.kd", ["distill.kd"], 0.85, {"1": 2.0, "256": 4.0}, 4.0, recorded=reference)
    put(starved, "quant.static", ["quant.static"], 0.899, {"1": 1.6, "256": 1.6}, 3.9, recorded=reference)
    verdicts = verdicts_of(starved)
    assert verdicts[("distillation", "mlp")].verdict == "inconclusive (under-trained baseline: 90.0% vs 95.0%)"
    assert verdicts[("int8", "mlp")].verdict == "holds"  # a claim that holds even so still holds
    assert verdicts[("int8", "mlp")].conditions == "baseline 90.00% (reference 95.00%); 1 seed"

    short = Store(tmp_path / "short.db")
    steps = {"steps": [{"step": "prune.channels", "fine_tune_steps": 20}]}
    put(short, "none", [], 0.90, {"1": 1.0, "256": 1.0}, 1.0)
    put(short, "prune.channels", ["prune.channels"], 0.80, {"1": 2.0, "256": 2.0}, 2.0, recorded=steps)
    verdict = verdicts_of(short)[("pruning", "mlp")]
    assert verdict.verdict == "inconclusive (short fine-tuning budget: 20 steps < 300)"
    assert verdict.conditions == "baseline 90.00% (no reference); fine-tuning 20 steps; 1 seed"

    proper = Store(tmp_path / "proper.db")
    close = {"baseline_training": {"reference_accuracy": 0.905}}
    steps = {**close, "steps": [{"step": "prune.channels", "fine_tune_steps": 3000}]}
    put(proper, "none", [], 0.90, {"1": 1.0, "256": 1.0}, 1.0, recorded=close)
    put(proper, "prune.channels", ["prune.channels"], 0.80, {"1": 2.0, "256": 2.0}, 2.0, recorded=steps)
    assert verdicts_of(proper)[("pruning", "mlp")].verdict == "does not hold"


def test_with_several_seeds_a_verdict_says_in_how_many_it_held(tmp_path):
    store = Store(tmp_path / "seeds.db")
    for seed, speedup in enumerate([1.5, 1.6, 1.2]):  # int8 is over 40% faster in two of three seeds
        put(store, "none", [], 0.90, {"1": 1.0, "256": 1.0}, 1.0, seed=seed)
        put(
            store, "quant.static", ["quant.static"], 0.899 - seed / 1000, {"1": speedup, "256": speedup}, 3.9, seed=seed
        )
    verdict = verdicts_of(store, per_seed=True)[("int8", "mlp")]
    assert verdict.verdict == "holds (2 of 3 seeds)" and verdict.why.endswith("held in 2 of 3 seeds")
    assert verdict.conditions == "baseline 90.00% (no reference); 3 seeds, drop spread ±0.10 pt"


def test_each_hybrid_is_compared_with_the_best_single_technique_of_its_families(fixture_store):
    (row,) = hybrids_vs_parts(summarise_runs(fixture_store.runs()))
    # prune+quant: 3.0x at batch 256 vs prune.channels 2.1x, and smaller than quant.static (distillation and the
    # collapsed quant.dynamic are not its parts / not usable).
    assert (row.model, row.hybrid, row.against) == ("mlp", "prune+quant", "prune.channels / quant.static")
    assert "b256 3.00x vs prune.channels 2.10x (1.43x)" in row.figure
    assert "size 7.8x vs quant.static 4.3x (1.80x)" in row.figure  # fp32 params 1000 B / stored 128 B and 230 B
    assert row.winner == "hybrid on speed and size"


def test_pareto_front():
    points = [(1.0, 80.0), (2.0, 90.0), (1.5, 70.0), (3.0, 89.0), (0.5, 60.0)]
    assert pareto_front(points) == [4, 0, 1]


def test_reports_are_written_offline_and_name_how_numbers_were_measured(fixture_store, tmp_path):
    html_path, md_path = write_report(tmp_path)
    page = html_path.read_text()
    assert "<script>" in page and "cdn.plot.ly" not in page.split("<body>")[1]  # plotly.js inlined
    assert "Pareto front" in page and "test CPU" in page
    markdown = md_path.read_text()
    assert "## Do the claims hold?" in markdown and "| prune+quant |" in markdown
    assert "## Hybrids against their best single technique" in markdown
    assert "interleaved in one process" in markdown and "Wilson" in markdown


def test_the_runtime_dimension_shows_every_runtime_and_the_one_kept(fixture_store, tmp_path):
    # lenet5 measured with runtime auto: ONNX Runtime, OpenVINO and torch each timed; NNCF's int8 runs only on
    # OpenVINO, so the other two are recorded as skipped.
    def timed(ms_1, ms_256, precision, runtime):
        runtime_info = {"runtime": runtime, "precision": precision}
        return {"latency_ms": {"1": ms_1, "256": ms_256}, "accuracy": 0.9, "runtime": runtime_info}

    baseline_runtimes = {
        "onnxruntime": timed(1.0, 10.0, "fp32", "onnxruntime"),
        "openvino": timed(2.0, 8.0, "fp32", "openvino"),
        "torch": timed(4.0, 20.0, "fp32", "torch"),
    }
    skipped = {"skipped": "openvino only"}
    candidate_runtimes = {"openvino": timed(1.0, 2.5, "int8", "openvino"), "onnxruntime": skipped, "torch": skipped}
    result = {**fixture_store.runs()[0].result.to_json(), "model": "lenet5", "recipe": "quant.nncf"}
    result["measurement"] = {**MEASUREMENT, "runtime": "auto", "target_batch": 256}
    result["baseline"] = {**BASELINE, "runtimes": baseline_runtimes}
    result["candidate"] = {**result["candidate"], **candidate_runtimes["openvino"], "runtimes": candidate_runtimes}
    result["speedup"] = {"1": 1.0, "256": 4.0}
    config = {"dataset": {"name": "digits"}, "model": {"name": "lenet5"}, "seed": 0,
              "recipe": {"name": "quant.nncf", "steps": [{"technique": "quant.nncf"}]}}  # fmt: skip
    fixture_store.put("lenet5-nncf", config, result=RunResult.model_validate(result))
    _, md_path = write_report(tmp_path)
    markdown = md_path.read_text()
    assert "## The same candidates on every runtime" in markdown
    # columns: onnxruntime b1, b256, openvino b1, b256, torch b1, b256, kept
    baseline_row = "| baseline fp32 | 1.00x fp32 | 1.00x fp32 | 0.50x fp32 | 1.25x fp32 | 0.25x fp32 | 0.50x fp32 |"
    assert f"| digits | lenet5 {baseline_row} onnxruntime (reference) |" in markdown
    assert "| digits | lenet5 | quant.nncf | skipped |  | 1.00x int8 | 4.00x int8 | skipped |  | openvino |" in markdown
    assert "Runtime auto over every installed runtime for lenet5; onnxruntime for lenet5, mlp (auto: " in markdown
    assert "| digits | lenet5 | quant.nncf on openvino |" in markdown  # recommended with its runtime


def test_cli_recommend_and_report(fixture_store, tmp_path):
    runner = CliRunner()
    result = runner.invoke(app, ["recommend", str(tmp_path), "--objective", "latency", "--batch", "256", "--json"])
    assert result.exit_code == 0
    answers = {row["model"]: row for row in json.loads(result.stdout)}
    assert answers["mlp"]["best"] == "prune+quant" and answers["lenet5"]["best"] is None
    assert answers["mlp"]["best_runtime"] == "onnxruntime"
    assert "keep the baseline" in answers["lenet5"]["why"]
    assert runner.invoke(app, ["recommend", str(tmp_path)]).exit_code == 0
    result = runner.invoke(app, ["report", str(tmp_path), "--format", "md"])
    assert result.exit_code == 0 and (tmp_path / "report.md").is_file()


def test_report_without_runs_is_a_clear_error(tmp_path):
    with pytest.raises(CompressbenchError, match="no results database"):
        write_report(tmp_path / "nothing")


def test_a_study_whose_runs_all_failed_is_a_clear_error(tmp_path):
    store = Store(tmp_path / "results.db")
    for seed, error in enumerate(["out of memory\nTraceback ...", "onnx export failed"]):
        config = {"dataset": {"name": "digits"}, "model": {"name": "mlp"}, "seed": seed, "recipe": {"name": "none"}}
        store.put(f"mlp-none-{seed}", config, error=error)
    with pytest.raises(CompressbenchError) as raised:
        write_report(tmp_path)
    message = str(raised.value)
    assert message == (
        f"{store.path}: every one of the 2 stored runs failed; nothing to report (first error: out of memory)"
    )
    assert not isinstance(raised.value.__context__, StopIteration)


def test_markdown_and_html_draw_the_same_sections_in_the_same_order(fixture_store):
    sections = report_sections(fixture_store, {"description": "a study", "traded_away": "nothing"})
    markdown = render_markdown("report", sections)
    page = render_html("report", sections)
    markdown_titles = re.findall(r"^## (.+)$", markdown, flags=re.MULTILINE)
    html_titles = [unescape(title) for title in re.findall(r"<h2>(.*?)</h2>", page)]
    assert markdown_titles == html_titles == [s.title for s in sections if s.title and s.level == 2]
    assert "Do the claims hold?" in markdown_titles and "digits / mlp" in markdown_titles


def test_markdown_never_builds_figures():
    def figures_need_plotly():
        raise AssertionError("Markdown built the figures")

    markdown = render_markdown("report", [Section("plots", note="see the HTML", figures=figures_need_plotly)])
    assert markdown == "# report\n\n## plots\n\nsee the HTML\n"


def chromium() -> str | None:
    import shutil

    return next((path for name in ("chromium", "chromium-browser") if (path := shutil.which(name))), None)


@pytest.mark.skipif(chromium() is None, reason="Chromium is not installed (make setup installs Debian's where it may)")
def test_the_html_report_draws_every_chart_and_table_in_a_real_browser(fixture_store, tmp_path):
    """Render the report headless and read the DOM after its scripts ran: every plotly chart drew its SVG, the
    verdict matrix leads with coloured cells that carry their conditions, and every table is there."""
    import subprocess

    folder = fixture_store.path.parent
    (html_path,) = write_report(folder, formats=("html",))
    page = html_path.read_text()
    charts = page.count('class="plotly-graph-div"')
    command = [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=15000",
               "--dump-dom", html_path.as_uri()]  # fmt: skip
    dom = subprocess.run(command, capture_output=True, text=True, timeout=120, check=True).stdout
    assert charts == 1 + 2 * 2  # the overview, then accuracy vs latency and vs size for each of the two models
    drawn = re.findall(r'<div[^>]*class="[^"]*\bjs-plotly-plot\b[^"]*"', dom)  # plotly marks a graph it drew
    assert len(drawn) == charts and dom.count('class="main-svg"') >= charts
    first_heading = re.search(r"<h2>(.*?)</h2>", dom).group(1)
    assert first_heading == "Do the claims hold?"
    matrix = dom[dom.index("<table") : dom.index("</table>")]
    assert 'class="good"' in matrix and 'class="bad"' in matrix and "title=" in matrix
    assert dom.count("<table") == page.count("<table")


def measured(mechanism, ci_256, ci_1=None):
    """Result fields a run stores since speed-ups carry an interval and a mechanism."""
    return {"speed_mechanism": mechanism, "speedup_ci": {"256": list(ci_256), "1": list(ci_1 or ci_256)}}


def test_a_model_doing_the_baselines_work_is_never_recommended_for_speed(tmp_path):
    """2:4 sparsity served dense on the baseline's runtime measured 1.08x with an interval above 1: the same graph,
    precision and MACs, so the 1.08x is timing noise; a channel-pruned model with fewer MACs is credited."""
    store = Store(tmp_path / "results.db")
    put(store, "none", [], 0.90, {"1": 1.0, "256": 1.0}, 1.0, recorded=measured([], (0.98, 1.02)))
    put(store, "prune.nm", ["prune.nm"], 0.899, {"1": 1.08, "256": 1.08}, 1.0, recorded=measured([], (1.05, 1.11)))
    (answer,) = recommend(summarise_runs(store.runs()), 1.0, "latency", 256)
    assert answer.best is None and "keep the baseline" in answer.reason

    put(store, "prune.channels", ["prune.channels"], 0.897, {"1": 1.3, "256": 1.4}, 2.0,
        recorded=measured(["1.90x fewer MACs"], (1.35, 1.46)))  # fmt: skip
    (answer,) = recommend(summarise_runs(store.runs()), 1.0, "latency", 256)
    assert answer.best.recipe == "prune.channels" and answer.runner_up is None
    assert answer.reason.startswith("1.40x [1.35, 1.46] faster at batch 256 (1.90x fewer MACs)")


def test_a_speedup_whose_interval_reaches_one_is_not_recommended(tmp_path):
    store = Store(tmp_path / "results.db")
    put(store, "none", [], 0.90, {"1": 1.0, "256": 1.0}, 1.0, recorded=measured([], (0.98, 1.02)))
    put(store, "quant.dynamic", ["quant.dynamic"], 0.899, {"1": 1.1, "256": 1.1}, 3.9,
        recorded=measured(["int8 on onnxruntime"], (0.97, 1.25)))  # fmt: skip
    (answer,) = recommend(summarise_runs(store.runs()), 1.0, "latency", 256)
    assert answer.best is None
    verdict = verdicts_of(store)[("int8", "mlp")]
    assert verdict.verdict == "does not hold"
    assert "+0% faster at batch 1 (measured 1.10x [0.97, 1.25], not distinguishable from 1x)" in verdict.why


def test_a_verdict_credits_no_speed_to_a_model_served_dense(tmp_path):
    store = Store(tmp_path / "results.db")
    put(store, "none", [], 0.90, {"1": 1.0, "256": 1.0}, 1.0, recorded=measured([], (0.98, 1.02)))
    put(store, "prune.magnitude", ["prune.magnitude"], 0.899, {"1": 1.5, "256": 1.5}, 1.0,
        recorded=measured([], (1.45, 1.55)))  # fmt: skip
    verdict = verdicts_of(store)[("pruning", "mlp")]
    assert verdict.verdict == "does not hold"
    assert "+0% inference time saved" in verdict.why and "no speed change expected (dense-served)" in verdict.why


def test_every_printed_speedup_is_the_ratio_of_the_latencies_in_its_row(tmp_path):
    store = Store(tmp_path / "results.db")
    for seed, (speed, base_ms) in enumerate([(2.0, 10.0), (2.4, 11.0), (2.2, 9.0)]):
        put(store, "none", [], 0.90, {"1": 1.0, "256": 1.0}, 1.0, seed=seed)
        put(store, "prune.channels", ["prune.channels"], 0.897, {"1": speed, "256": speed}, 2.0, seed=seed,
            recorded={**measured(["2.00x fewer MACs"], (speed * 0.97, speed * 1.03)),
                      "baseline": {**BASELINE, "latency_ms": {"1": base_ms / 10, "256": base_ms}}},
            stored_form="onnx-encoded")  # fmt: skip
    # Each seed's candidate is timed against its own baseline (10, 11 and 9 ms): the row shows their means.
    (table,) = [t for s in report_sections(store, {}) if s.title == "digits / mlp" for t in s.tables]
    header, rows = table
    row = dict(zip(header, next(r for r in rows if r[0] == "prune.channels"), strict=True))
    baseline_ms, candidate_ms = map(float, row["b256 ms: baseline → this"].split(" → "))
    printed = float(row["speed-up b256 (95% CI)"].split("x")[0])
    assert printed == pytest.approx(baseline_ms / candidate_ms, abs=0.006)
    assert row["speed-up b256 (95% CI)"].endswith("[1.94, 2.47]")  # the span of the three seeds' intervals
    assert row["speed mechanism"] == "2.00x fewer MACs"
    assert row["stored KiB (form)"] == "0.4 (model.cbw)"  # 900 / 2 bytes, stored in compressbench's encoding


def test_the_seeds_timing_blocks_are_pooled_into_one_interval(tmp_path):
    """Three seeds timed 2 paired blocks each, log ratios ln 2 ± 0.05: alone each gives ln 2 ± t(1) 12.706 x
    0.0707 / sqrt 2 = ± 0.635, pooled the 6 blocks give ± t(5) 2.5706 x 0.05 x sqrt(6/5) / sqrt 6 = ± 0.05748, so
    2.00x [1.888, 2.118] instead of the envelope of the seeds' own [1.06, 3.78]."""
    store = Store(tmp_path / "results.db")
    low, high = 5 * math.exp(-0.05), 5 * math.exp(0.05)  # candidate block medians, against 10 ms for the baseline
    for seed in range(3):
        timed = {
            "baseline": {**BASELINE, "latency": {"256": {"block_ms": [10.0, 10.0]}}},
            "candidate": {**BASELINE, "accuracy": 0.897, "accuracy_ci": [0.887, 0.907],
                          "latency_ms": {"1": 0.5, "256": 5.0}, "latency": {"256": {"block_ms": [low, high]}}},
        }  # fmt: skip
        put(store, "prune.channels", ["prune.channels"], 0.897, {"1": 2.0, "256": 2.0}, 2.0, seed=seed,
            recorded={**measured(["2.00x fewer MACs"], (1.06, 3.78)), **timed})  # fmt: skip
    (summary,) = summarise_runs(store.runs())
    assert summary.speedup["256"].mean == pytest.approx(2.0)
    assert summary.speedup_ci["256"] == pytest.approx((2 * math.exp(-0.05748), 2 * math.exp(0.05748)), rel=1e-4)
    assert summary.speedup_ci["1"] == (1.06, 3.78)  # no blocks kept at batch 1: the seeds' envelope


def test_throughput_runs_get_their_own_section_and_recommendation(tmp_path):
    """int8 wins one request at a time; on every core the channel-pruned model scales better and serves more samples
    per second: the throughput recommendation differs, and the latency sections read only the latency runs."""
    store = Store(tmp_path / "results.db")
    int8, fewer_macs = measured(["int8 on onnxruntime"], (1.9, 2.1)), measured(["2.00x fewer MACs"], (1.4, 1.6))
    put(store, "none", [], 0.90, {"1": 1.0, "256": 1.0}, 1.0, recorded=measured([], (0.98, 1.02)))
    put(store, "quant.static", ["quant.static"], 0.899, {"1": 2.0, "256": 2.0}, 3.9, recorded=int8)
    put(store, "prune.channels", ["prune.channels"], 0.898, {"1": 1.5, "256": 1.5}, 2.0, recorded=fewer_macs)
    on_two = {**MEASUREMENT, "serving": "throughput", "target_batch": 256,
              "latency": {**MEASUREMENT["latency"], "threads": 2, "batch_sizes": [256]}}  # fmt: skip
    for recipe, speed, ci, mechanism in (("none", 1.0, (0.98, 1.02), []),
                                         ("quant.static", 1.2, (1.1, 1.3), ["int8 on onnxruntime"]),
                                         ("prune.channels", 1.8, (1.7, 1.9), ["2.00x fewer MACs"])):  # fmt: skip
        recorded = {**measured(mechanism, ci), "measurement": on_two}
        put(store, recipe, [recipe] if recipe != "none" else [], 0.899, {"1": speed, "256": speed}, 2.0,
            recorded=recorded, profile="-throughput")  # fmt: skip
    sections = report_sections(store, {})
    titles = [s.title for s in sections]
    assert "Throughput: every core (2 threads), batch 256" in titles
    (rates,) = next(s for s in sections if s.title == "Samples per second").tables
    row = dict(zip(rates[0], next(r for r in rates[1] if r[2] == "prune.channels"), strict=True))
    assert row["samples/s: baseline → this"] == "25,600 → 46,080"  # 256 / 10 ms, and 1.8x that
    assert row["scaling from 1 thread"] == "1.20x"  # 46,080 samples/s against 256 / (10 ms / 1.5) at one thread
    (answer,) = next(s for s in sections if s.title.startswith("Recommendation for a throughput server")).tables
    assert answer[1][0][2:5] == ["prune.channels on onnxruntime", "quant.static on onnxruntime", "differs"]
    (table,) = [t for s in sections if s.title == "digits / mlp" for t in s.tables]
    assert {r[0] for r in table[1]} == {"none", "quant.static", "prune.channels"}
    static = dict(zip(table[0], next(r for r in table[1] if r[0] == "quant.static"), strict=True))
    assert static["speed-up b256 (95% CI)"] == "2.00x [1.90, 2.10]"  # the latency run's, not the throughput run's


def test_a_throughput_pick_within_the_latency_picks_interval_is_not_called_a_different_answer(tmp_path):
    """On every core the pruned model edges past int8 by less than their intervals: the answers differ by name
    only, and the report says so with the latency pick's own throughput figure."""
    store = Store(tmp_path / "results.db")
    put(store, "none", [], 0.90, {"1": 1.0, "256": 1.0}, 1.0, recorded=measured([], (0.98, 1.02)))
    put(store, "quant.static", ["quant.static"], 0.899, {"1": 2.0, "256": 2.0}, 3.9,
        recorded=measured(["int8 on onnxruntime"], (1.9, 2.1)))  # fmt: skip
    put(store, "prune.channels", ["prune.channels"], 0.898, {"1": 1.5, "256": 1.5}, 2.0,
        recorded=measured(["2.00x fewer MACs"], (1.4, 1.6)))  # fmt: skip
    on_two = {**MEASUREMENT, "serving": "throughput", "target_batch": 256,
              "latency": {**MEASUREMENT["latency"], "threads": 2, "batch_sizes": [256]}}  # fmt: skip
    for recipe, speed, ci, mechanism in (("none", 1.0, (0.98, 1.02), []),
                                         ("quant.static", 1.75, (1.65, 1.85), ["int8 on onnxruntime"]),
                                         ("prune.channels", 1.8, (1.7, 1.9), ["2.00x fewer MACs"])):  # fmt: skip
        put(store, recipe, [recipe] if recipe != "none" else [], 0.899, {"1": speed, "256": speed}, 2.0,
            recorded={**measured(mechanism, ci), "measurement": on_two}, profile="-throughput")  # fmt: skip
    (answer,) = next(s for s in report_sections(store, {})
                     if s.title.startswith("Recommendation for a throughput server")).tables  # fmt: skip
    assert answer[1][0][2:5] == ["prune.channels on onnxruntime", "quant.static on onnxruntime",
                                 "differs, within the intervals (quant.static: 1.75x [1.65, 1.85] here)"]  # fmt: skip


def test_the_memory_objective_takes_the_lowest_peak_below_the_baselines(tmp_path):
    store = Store(tmp_path / "results.db")

    def probed(peak):
        return {"peak_rss_mb": peak, "model_rss_mb": peak - 45, "baseline_rss_mb": 45, "load_s": 0.1}

    base = {**BASELINE, "footprint": probed(120)}
    for recipe, peak, accuracy in (("none", 120, 0.90), ("quant.dynamic", 70, 0.899), ("prune.channels", 60, 0.85),
                                   ("distill.kd", 130, 0.899), ("quant.static", 80, 0.899)):  # fmt: skip
        put(
            store,
            recipe,
            [recipe],
            accuracy,
            {"1": 1.0, "256": 1.0},
            2.0,
            recorded={"baseline": base, "candidate": {**base, "accuracy": accuracy, "footprint": probed(peak)}},
        )
    (answer,) = recommend(summarise_runs(store.runs()), 1.0, "memory", 256)
    # prune.channels peaks lowest but loses 5 points; distill.kd peaks above the baseline.
    assert (answer.best.recipe, answer.runner_up.recipe) == ("quant.dynamic", "quant.static")
    assert answer.reason.startswith("peak memory 70 MB vs the baseline's 120 MB (the model's own 25 MB")


def test_the_overview_chart_draws_each_speedup_with_its_interval(tmp_path):
    from compressbench.reporting.write import overview_figure

    store = Store(tmp_path / "results.db")
    put(store, "none", [], 0.90, {"1": 1.0, "256": 1.0}, 1.0)
    put(store, "quant.dynamic", ["quant.dynamic"], 0.899, {"1": 2.0, "256": 2.0}, 3.9,
        recorded=measured(["int8 on onnxruntime"], (1.9, 2.2)))  # fmt: skip
    (figure,) = overview_figure(summarise_runs(store.runs()), 1.0, "256")
    (trace,) = figure.data
    assert list(trace.x) == [pytest.approx(2.0)]
    assert list(trace.error_x.array) == [pytest.approx(0.2)] and list(trace.error_x.arrayminus) == [pytest.approx(0.1)]


def test_a_recipe_within_the_budget_on_average_but_not_in_its_worst_seed_is_not_recommended(tmp_path):
    store = Store(tmp_path / "results.db")
    for seed, accuracy in enumerate([0.895, 0.894, 0.886]):  # drops 0.5, 0.6 and 1.4 pt: mean 0.83, worst 1.4
        put(store, "none", [], 0.90, {"1": 1.0, "256": 1.0}, 1.0, seed=seed)
        put(store, "prune.channels", ["prune.channels"], accuracy, {"1": 1.5, "256": 1.5}, 2.0, seed=seed,
            recorded=measured(["2.00x fewer MACs"], (1.45, 1.55)))  # fmt: skip
    (answer,) = recommend(summarise_runs(store.runs()), 1.0, "latency", 256)
    assert answer.best is None and "within 1 points in every seed" in answer.reason
    (looser,) = recommend(summarise_runs(store.runs()), 1.5, "latency", 256)
    assert looser.reason.endswith("accuracy drop +0.83 pt, worst of 3 seeds +1.40 pt (budget 1.5)")
