"""Write the study report as Markdown and as one self-contained HTML file (plotly.js inlined, works offline).

`report_sections` builds the report once, as a list of `Section`s in reading order; `render_markdown` and
`render_html` draw any such list. To add a section, append one `Section` in `report_sections`: both formats get it.
"""

from __future__ import annotations

import json
import statistics
from collections import defaultdict
from functools import partial
from pathlib import Path
from typing import Any

from compressbench.errors import CompressbenchError
from compressbench.ranking import NO_MECHANISM, RecipeSummary, by_model, recommend, summarise_runs
from compressbench.reporting.claims import CLAIMS, Verdict, hybrids_vs_parts, judge_claims
from compressbench.reporting.sections import Cell, Section, Table, render_html, render_markdown
from compressbench.results import size_words
from compressbench.store import Run, RunResult, Store

RUNTIMES_TITLE = "The same candidates on every runtime"
RUNTIMES_NOTE = (
    "Speed-up of each candidate on each installed runtime against the baseline on ONNX Runtime fp32 (median "
    "latencies, one interleaved pass), with the precision the runtime executed; 'kept' is the fastest at the "
    "target batch, whose figures the tables below report."
)


def pareto_front(points: list[tuple[float, float]]) -> list[int]:
    """Indices of the points no other point beats on both axes (lower x, higher y), sorted by x."""
    order = sorted(range(len(points)), key=lambda i: (points[i][0], -points[i][1]))
    front, best_y = [], float("-inf")
    for i in order:
        if points[i][1] > best_y:
            front.append(i)
            best_y = points[i][1]
    return front


def _pct(value: float) -> str:
    return f"{value * 100:.2f}"


def recipe_table(group: list[RecipeSummary]) -> Table:
    batches = list(group[0].speedup)
    header = [
        "recipe",
        "runtime",
        "accuracy % (95% CI)",
        "Δ pt",
        *[f"b{b} ms: baseline → this" for b in batches],
        *[f"speed-up b{b} (95% CI)" for b in batches],
        "speed mechanism",
        "file KiB",
        "file vs baseline",
        "stored KiB (form)",
        "compression",
        "MACs",
        *(["peak MB (model), load s"] if (probed := any(s.footprint for s in group)) else []),
        "flags",
    ]
    rows = []
    for s in sorted(group, key=lambda s: (s.recipe != "none", s.recipe)):
        seeds = f" ±{s.accuracy.spread * 100:.2f} ({s.accuracy.n} seeds)" if s.accuracy.n > 1 else ""
        accuracy = f"{_pct(s.accuracy.mean)}{seeds} [{_pct(s.accuracy_ci[0])}, {_pct(s.accuracy_ci[1])}]"
        if s.control:
            accuracy += f"; alone {_pct(s.control['accuracy'].mean)}"
        rows.append(
            [
                f"{s.recipe} (runtime only)" if s.runtime_only else s.recipe,
                s.runtime,
                accuracy,
                f"{-s.accuracy_drop_pt.mean:+.2f}",
                *[f"{s.baseline_latency_ms[b].mean:.4g} → {s.latency_ms[b].mean:.4g}" for b in batches],
                *[speed_cell(s, b) for b in batches],
                mechanism_cell(s),
                f"{s.size_bytes / 1024:.1f}",
                size_words(s.size_ratio),
                f"{s.stored_bytes / 1024:.1f}"
                + (f" ({STORED_FILES.get(s.stored_form, s.stored_form)})" if s.stored_form else ""),
                f"{s.compression_ratio:.1f}x",
                f"{s.macs:,}",
                *([footprint_cell(s.footprint)] if probed else []),
                "; ".join(s.flags),
            ]
        )
    return header, rows


def footprint_cell(footprint: dict[str, Any] | None) -> str:
    """Peak memory of a fresh process serving it, the model's share, and its load time: "182 (121), 0.20"."""
    if not footprint:
        return "—"
    return f"{footprint['peak_rss_mb']:.0f} ({footprint['model_rss_mb']:.0f}), {footprint['load_s']:.2f}"


def speed_cell(summary: RecipeSummary, batch: str) -> str:
    """The speed-up (the ratio of the row's two latencies) and its interval: "2.87x [2.80, 2.93]"."""
    figure = f"{summary.speedup[batch].mean:.2f}x"
    if batch in summary.speedup_ci:
        low, high = summary.speedup_ci[batch]
        figure += f" [{low:.2f}, {high:.2f}]"
    return figure


def mechanism_cell(summary: RecipeSummary) -> str:
    if summary.speed_mechanism is None:
        return "not recorded"
    return "; ".join(summary.speed_mechanism) or NO_MECHANISM


# The stored forms' files (runtime.stored; the report reads stored results only, so it names them here).
STORED_FILES = {"onnx-encoded": "model.cbw", "onnx-zstd": "model.onnx.zst"}
TONES = {"holds": "good", "does not hold": "bad", "not measured": "none"}
EMBEDDINGS_TITLE = "Sentence embeddings against the fp32 model"
EMBEDDINGS_NOTE = (
    "Text encoders only. For every test text, the cosine between the candidate's sentence embedding (the classifier's "
    "input, read from the artifact as its runtime serves it) and the fp32 baseline's, and the share of its 10 nearest "
    "neighbours in the baseline's embedding space still among its 10 nearest in the candidate's (mean over texts)."
)


def verdict_matrix(verdicts: list[Verdict], claim_text: dict[str, str]) -> Table:
    """Claims down, (dataset, model) across: one coloured word a cell, the figure and conditions on hover."""
    columns = list(dict.fromkeys((v.dataset, v.model) for v in verdicts))
    cells = {(v.claim, v.dataset, v.model): v for v in verdicts}
    rows: list[list[str | Cell]] = []
    for claim in dict.fromkeys(v.claim for v in verdicts):
        row: list[str | Cell] = [claim_text[claim]]
        for dataset, model in columns:
            v = cells.get((claim, dataset, model))
            if v is None:
                row.append(Cell("—", "none"))
                continue
            word = v.verdict.split(" (")[0]
            shown = v.verdict if v.verdict.endswith(" seeds)") else word  # "holds (2 of 3 seeds)"
            row.append(Cell(shown, TONES.get(word, "unsure"), f"{v.verdict}: {v.why}. {v.conditions}"))
        rows.append(row)
    return ["claim", *[f"{dataset} / {model}" for dataset, model in columns]], rows


def family_label(summary: RecipeSummary) -> str:
    return "hybrid" if len(summary.families) > 1 else next(iter(summary.families), "baseline")


def overview_figure(summaries: list[RecipeSummary], max_accuracy_drop: float, batch: str) -> list[Any]:
    """One chart for the whole study: for every model, the best recipe of each family (speed-up at `batch` vs
    accuracy drop)."""
    import plotly.graph_objects as go

    figure = go.Figure()
    symbols = {"pruning": "triangle-up", "quantization": "square", "distillation": "diamond", "hybrid": "star"}
    for (dataset, model), group in by_model(summaries).items():
        best = {}
        for summary in group:
            if summary.recipe == "none" or not summary.usable or batch not in summary.speedup:
                continue
            family = family_label(summary)
            within = summary.accuracy_drop_pt.mean <= max_accuracy_drop
            rank = (within, summary.speedup[batch].mean if within else -summary.accuracy_drop_pt.mean)
            if family not in best or rank > best[family][0]:
                best[family] = (rank, summary)
        chosen = [summary for _, summary in best.values()]
        if not chosen:
            continue
        speed = [s.speedup[batch].mean for s in chosen]
        low, high = zip(*(s.speedup_ci.get(batch, (x, x)) for s, x in zip(chosen, speed, strict=True)), strict=True)
        figure.add_trace(
            go.Scatter(
                x=speed,
                error_x={
                    "type": "data",
                    "symmetric": False,
                    "array": [h - x for h, x in zip(high, speed, strict=True)],
                    "arrayminus": [x - lo for x, lo in zip(speed, low, strict=True)],
                },  # fmt: skip
                y=[s.accuracy_drop_pt.mean for s in chosen],
                mode="markers",
                name=f"{dataset} / {model}",
                marker={"size": 11, "symbol": [symbols.get(family_label(s), "circle") for s in chosen]},
                hovertext=[f"{s.recipe} ({family_label(s)}) on {s.runtime}" for s in chosen],
                hovertemplate="%{hovertext}<br>%{x:.2f}x, drop %{y:+.2f} pt<extra>%{fullData.name}</extra>",
            )
        )
    figure.add_hline(y=max_accuracy_drop, line={"dash": "dot"}, annotation_text=f"budget {max_accuracy_drop:g} pt")
    figure.add_vline(x=1.0, line={"dash": "dot"})
    figure.update_layout(
        xaxis_title=f"speed-up at batch {batch} (x, vs ONNX Runtime fp32)",
        yaxis_title="accuracy drop (pt; lower is better)",
        xaxis_type="log",
        height=480,
        margin={"t": 30, "l": 60, "r": 20, "b": 50},
        legend={"title": "marker: ▲ pruning ■ int8 ◆ distillation ★ hybrid"},
    )
    return [figure]


def runtime_table(runs: list[Run]) -> Table:
    """For runs measured with `runtime: auto`: each candidate's speed-up on every runtime vs ONNX Runtime fp32
    (mean over seeds), the precision that runtime executed, and which one was kept; the baseline's fp32 row first."""
    groups: dict[tuple[str, str, str], list[RunResult]] = defaultdict(list)
    for run in runs:
        if run.status == "ok" and run.result and run.result.candidate.runtimes:
            groups[(run.dataset, run.model, run.recipe)].append(run.result)
    if not groups:
        return [], []
    names = sorted({rt for results in groups.values() for r in results for rt in r.candidate.runtimes or {}})
    batches = list(next(iter(groups.values()))[0].speedup)
    header = ["dataset", "model", "recipe", *[f"{rt} b{b}" for rt in names for b in batches], "kept"]

    def cells(results: list[RunResult], side: str) -> list[str]:
        row = []
        for runtime in names:
            for batch in batches:
                measured = [(getattr(r, side).runtimes or {}).get(runtime, {}) for r in results]
                if any("latency_ms" not in m for m in measured):
                    row.append("skipped" if batch == batches[0] else "")
                    continue
                speedups = [
                    r.baseline.latency_ms[batch] / m["latency_ms"][batch]
                    for r, m in zip(results, measured, strict=True)
                ]
                row.append(f"{statistics.fmean(speedups):.2f}x {measured[0]['runtime']['precision']}")
        return row

    rows, seen = [], set()
    for (dataset, model, recipe), results in sorted(
        groups.items(), key=lambda g: (g[0][:2], g[0][2] != "none", g[0][2])
    ):
        if (dataset, model) not in seen:
            seen.add((dataset, model))
            rows.append([dataset, model, "baseline fp32", *cells(results, "baseline"), "onnxruntime (reference)"])
        if recipe != "none":
            rows.append([dataset, model, recipe, *cells(results, "candidate"), results[0].runtime])
    return header, rows


def embedding_table(runs: list[Run]) -> Table:
    """Each text-encoder candidate's embedding fidelity (mean over seeds); students of another width are named."""
    groups: dict[tuple[str, str, str], list[dict[str, Any]]] = defaultdict(list)
    for run in runs:
        if run.status == "ok" and run.result and run.result.candidate.embedding and run.recipe != "none":
            groups[(run.dataset, run.model, run.recipe)].append(run.result.candidate.embedding)
    rows = []
    for (dataset, model, recipe), measured in sorted(groups.items()):
        if not all(m.get("comparable", True) for m in measured):
            rows.append([dataset, model, recipe, "—", "—", "—", measured[0].get("why", "")])
            continue
        mean = {key: statistics.fmean(m[key] for m in measured) for key in ("cosine_mean", "cosine_min")}
        kept = _pct(statistics.fmean(m["top_k_agreement"] for m in measured))
        where = f"{measured[0]['runtime']}, {measured[0]['samples']} texts"
        rows.append([dataset, model, recipe, f"{mean['cosine_mean']:.4f}", f"{mean['cosine_min']:.4f}", kept, where])
    return ["dataset", "model", "recipe", "cosine (mean)", "cosine (min)", "top-10 kept (%)", "measured on"], rows


def first_line(text: str | None) -> str:
    return next(iter((text or "").splitlines()), "")


def report_sections(store: Store, meta: dict[str, Any], max_accuracy_drop: float = 1.0) -> list[Section]:
    """Every section of the report in reading order: the one place that decides what the report says."""
    runs = store.runs()
    if not runs:
        raise CompressbenchError(f"{store.path}: no runs stored yet")
    failed = [r for r in runs if r.status == "failed"]
    if len(failed) == len(runs):
        raise CompressbenchError(
            f"{store.path}: every one of the {len(runs)} stored runs failed; nothing to report "
            f"(first error: {first_line(failed[0].error)})"
        )
    # The report reads the latency profile's runs; runs timed for a throughput server get their own section (a
    # store holding only those is reported from them).
    throughput = [r for r in runs if serving_of(r) == "throughput"]
    runs = [r for r in runs if serving_of(r) != "throughput"] or throughput
    summaries = summarise_runs(runs)
    # The study's smallest and largest timed batch sizes (1 and 256 by default; a text study times 1 and 32).
    timed = sorted({int(b) for r in runs if r.status == "ok" and r.result for b in r.result.speedup}) or [1, 256]
    small, large = timed[0], timed[-1]
    sections: list[Section] = []
    if meta.get("traded_away"):
        sections.append(Section("", lead="What this profile traded away:", note=meta["traded_away"]))
    claim_text = {c.key: c.text for c in CLAIMS}
    seeds = sorted({r.seed for r in runs if r.status == "ok"})
    per_seed = {seed: summarise_runs([r for r in runs if r.seed == seed]) for seed in seeds} if len(seeds) > 1 else None
    judged = judge_claims(summaries, per_seed)
    sections.append(
        Section(
            "Do the claims hold?",
            note="Hover a verdict for its figure and conditions. A verdict is inconclusive, not negative, when its "
            "baseline is more than 1 pt under the reference (the shipped baseline of that model) or its fine-tuning "
            "ran under 300 optimiser steps.",
            tables=[verdict_matrix(judged, claim_text)],
        )
    )
    sections.append(
        Section(
            "Best of each family, every model",
            note=f"Accuracy drop against speed-up at batch {large}: for each model, the fastest recipe of "
            f"each family within {max_accuracy_drop:g} pt (or, when none is, the one that lost least). Hover a point "
            "for its recipe.",
            figures=partial(overview_figure, summaries, max_accuracy_drop, str(large)),
        )
    )
    if meta.get("description"):
        sections.append(Section("", note=meta["description"]))
    sections.append(Section(f"Recommendation (accuracy budget {max_accuracy_drop:g} pt)"))
    for objective, batch in (("latency", small), ("latency", large), ("size", large)):
        answers = recommend(summaries, max_accuracy_drop, objective, batch)  # type: ignore[arg-type]
        rows = [[a.dataset, a.model, a.label(a.best) or "—", a.label(a.runner_up) or "—", a.reason] for a in answers]
        title = f"Objective: {objective}" + (f", batch {batch}" if objective == "latency" else "")
        sections.append(Section(title, level=3, tables=[(["dataset", "model", "best", "runner-up", "why"], rows)]))
    verdicts: Table = (
        ["claim", "dataset", "model", "verdict", "measured", "conditions"],
        [[claim_text[v.claim], v.dataset, v.model, v.verdict, v.why, v.conditions] for v in judged],
    )
    sections.append(Section("Every verdict with its figure and conditions", tables=[verdicts], folded=True))
    hybrids: Table = (
        ["dataset", "model", "hybrid", "best single technique of its families", "measured", "wins"],
        [[h.dataset, h.model, h.hybrid, h.against, h.figure, h.winner] for h in hybrids_vs_parts(summaries)],
    )
    if hybrids[1]:
        sections.append(Section("Hybrids against their best single technique", tables=[hybrids]))
    runtimes = runtime_table(runs)
    if runtimes[1]:
        sections.append(Section(RUNTIMES_TITLE, note=RUNTIMES_NOTE, tables=[runtimes]))
    embeddings = embedding_table(runs)
    if embeddings[1]:
        sections.append(Section(EMBEDDINGS_TITLE, note=EMBEDDINGS_NOTE, tables=[embeddings]))
    if throughput and throughput is not runs:
        sections += throughput_sections(throughput, summaries, max_accuracy_drop)
    for (dataset, model), group in by_model(summaries).items():
        sections.append(
            Section(f"{dataset} / {model}", tables=[recipe_table(group)], figures=partial(pareto_figures, group))
        )
    if failed:
        items = [f"{r.dataset} / {r.model} / {r.recipe} / seed {r.seed}: {first_line(r.error)}" for r in failed]
        sections.append(Section("Failed runs", items=items))
    sections.append(Section("How every number was measured", items=[*footer_lines(runs), baseline_origins(runs)]))
    return sections


def serving_of(run: Run) -> str:
    return (run.result.measurement.get("serving") if run.result else None) or "latency"


THROUGHPUT_NOTE = (
    "Batches served concurrently on {threads} thread(s) at batch {batch}: ONNX Runtime with its intra-op threads in "
    "one session or split over parallel sessions, OpenVINO with its THROUGHPUT hint and asynchronous infer requests; "
    "each candidate's session settings were tried in a short interleaved pass and the faster kept (the settings "
    "column, which `compress` writes into the manifest and `verify` applies). Samples per second = batch / the "
    "median wall time per batch, baseline and candidate interleaved; speed-up with its 95% interval as for latency. "
    "Scaling: these samples per second over the same candidate's at one thread (the latency profile's runs at this "
    "batch), where both were measured."
)


def throughput_sections(
    runs: list[Run], latency_summaries: list[RecipeSummary], max_accuracy_drop: float
) -> list[Section]:
    """The throughput profile: samples per second per candidate with the session settings that served them, its
    scaling from one thread, and the recommendation for a throughput-bound service beside the latency one."""
    summaries = summarise_runs(runs)
    measured = next(r.result for r in runs if r.status == "ok" and r.result)
    threads, batch = measured.measurement["latency"]["threads"], int(measured.measurement["target_batch"])
    key = str(batch)
    one_thread = {(s.dataset, s.model, s.recipe): s for s in latency_summaries if key in s.latency_ms}
    settings = {(r.dataset, r.model, r.recipe): r.result.candidate.runtime.get("options", {})
                for r in runs if r.status == "ok" and r.result}  # fmt: skip
    sections = [Section(f"Throughput: every core ({threads} threads), batch {batch}",
                        note=THROUGHPUT_NOTE.format(threads=threads, batch=batch))]  # fmt: skip
    rows = []
    for (dataset, model), group in by_model(summaries).items():
        for s in sorted(group, key=lambda s: (s.recipe != "none", s.recipe)):
            if key not in s.latency_ms:
                continue
            rate = batch * 1000 / s.latency_ms[key].mean
            single = one_thread.get((dataset, model, s.recipe))
            scaling = f"{rate / (batch * 1000 / single.latency_ms[key].mean):.2f}x" if single else "—"
            options = ", ".join(f"{k} {v}" for k, v in settings.get((dataset, model, s.recipe), {}).items())
            rows.append([dataset, model, s.recipe, s.runtime, options or "—",
                         f"{batch * 1000 / s.baseline_latency_ms[key].mean:,.0f} → {rate:,.0f}", speed_cell(s, key),
                         scaling, footprint_cell(s.footprint), f"{-s.accuracy_drop_pt.mean:+.2f}"])  # fmt: skip
    header = ["dataset", "model", "recipe", "runtime", "session settings", "samples/s: baseline → this",
              f"speed-up b{batch} (95% CI)", "scaling from 1 thread", "peak MB (model), load s", "Δ pt"]  # fmt: skip
    sections.append(Section("Samples per second", level=3, tables=[(header, rows)]))
    served = {(a.dataset, a.model): a for a in recommend(latency_summaries, max_accuracy_drop, "latency", batch)}
    by_recipe = {(s.dataset, s.model, s.recipe): s for s in summaries}
    answers = []
    for a in recommend(summaries, max_accuracy_drop, "latency", batch):
        other = served.get((a.dataset, a.model))
        latency_choice = (other.label(other.best) or "keep the baseline") if other else "—"
        chosen = a.label(a.best) or "keep the baseline"
        if other is None:
            verdict = "—"
        elif latency_choice == chosen:
            verdict = "same"
        else:
            verdict = _differs(a.best, other.best and by_recipe.get((a.dataset, a.model, other.best.recipe)), key)
        answers.append([a.dataset, a.model, chosen, latency_choice, verdict, a.reason])
    sections.append(Section(f"Recommendation for a throughput server (accuracy budget {max_accuracy_drop:g} pt)",
                            level=3, tables=[(["dataset", "model", f"throughput, {threads} threads",
                                               f"latency, batch {batch}", "", "why"], answers)]))  # fmt: skip
    return sections


def _differs(throughput_pick: RecipeSummary | None, latency_pick: RecipeSummary | None, batch: str) -> str:
    """Says "differs" when the throughput server's pick serves more than the latency pick does on every core, beyond both
    95% intervals; when the intervals overlap the two serve alike and the choice between them is noise."""
    if throughput_pick is None or latency_pick is None:
        return "differs"
    if batch not in throughput_pick.speedup_ci or batch not in latency_pick.speedup_ci:
        return "differs"
    if throughput_pick.speedup_ci[batch][0] > latency_pick.speedup_ci[batch][1]:
        return "differs"
    return f"differs, within the intervals ({latency_pick.recipe}: {speed_cell(latency_pick, batch)} here)"


def baseline_origins(runs: list[Run]) -> str:
    """Which baselines came with the package and which were trained on this machine."""
    origins: dict[str, set[str]] = defaultdict(set)
    for run in runs:
        if run.status == "ok" and run.result:
            origin = run.result.baseline_training.get("origin", "trained here")
            origins[origin].add(f"{run.dataset} / {run.model}")
    parts = [f"{origin}: {', '.join(sorted(pairs))}" for origin, pairs in sorted(origins.items())]
    return "Baselines " + "; ".join(parts) + " (shipped ones are the package's, trained with the family's settings)."


def study_meta(folder: Path) -> dict[str, Any]:
    path = folder / "study.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def footer_lines(runs: list[Run]) -> list[str]:
    """How the numbers were measured, from the newest successful run and the runtime setting of every model."""
    measured = [r for r in runs if r.status == "ok" and r.result]
    env, latency = measured[-1].result.environment, measured[-1].result.measurement["latency"]
    runtime_settings: dict[str, set[str]] = defaultdict(set)
    for run in measured:
        setting = run.result.measurement
        label = setting["runtime"]
        if label == "auto":
            label += f" over {', '.join(setting.get('compare') or []) or 'every installed runtime'}"
        runtime_settings[label].add(run.model)
    chosen = {label: sorted(models) for label, models in sorted(runtime_settings.items())}
    versions = ", ".join(f"{k} {v}" for k, v in env["versions"].items())
    where = (
        next(iter(chosen))
        if len(chosen) == 1
        else "; ".join(f"{setting} for {', '.join(models)}" for setting, models in chosen.items())
    )
    if any(label.startswith("auto") for label in chosen):
        where += (
            " (auto: those runtimes timed in the same interleaved pass, the fastest at the target batch kept, the "
            "baseline always ONNX Runtime fp32)"
        )
    return [
        f"Runtime {where}; {latency['threads']} intra-op thread(s); batch sizes "
        f"{', '.join(map(str, latency['batch_sizes']))}; warm-up {latency['warmup_s']} s per session and batch; "
        f"{latency['blocks']} timed blocks of about {latency['block_s']} s per session, baseline and candidate "
        "interleaved in one process; latency is the median time per call, speed-up the ratio of the candidate's "
        "median to its own interleaved baseline's (the two latencies in its row), with a 95% interval from the "
        "paired blocks (ratio x exp(± t x sd / sqrt(n)) of the per-block log ratios; with several seeds, every seed's "
        "blocks pooled around the ratio of the mean latencies). "
        "A speed-up is credited (recommendation, verdicts) only when the served model does less or cheaper work "
        f"than the baseline and the lower end of its interval is above 1x; otherwise: {NO_MECHANISM}, or not "
        "distinguishable from 1x.",
        "Accuracy: top-1 on the test split from the exported model as the runtime runs it, with a 95% Wilson "
        "interval; with several seeds, mean ± standard deviation over seeds.",
        "Size: bytes of the deployable file (ONNX with the weights inside, or OpenVINO IR); stored = the smallest "
        "form that exists as a file and loads back: model.onnx.zst (zstd-19) or model.cbw (compressbench's lossless "
        "encoding: sparse relative indices, shared codebooks, Huffman codes; `compressbench decode`), an IR as its "
        "file; compression = fp32 parameter bytes / stored bytes.",
        f"CPU {env['cpu']['model']} ({env['cpu']['cores']} cores; flags: {', '.join(env['cpu']['flags']) or 'none'}); "
        f"Python {env['python']}; {versions}.",
    ]


def pareto_figures(group: list[RecipeSummary]) -> list[Any]:
    import plotly.graph_objects as go

    figures = []
    batch = "256" if "256" in group[0].latency_ms else list(group[0].latency_ms)[-1]
    for axis, label, value in (
        ("latency", f"latency at batch {batch} (ms, median)", lambda s: s.latency_ms[batch].mean),
        ("size", "stored size (KiB)", lambda s: s.stored_bytes / 1024),
    ):
        points = [(value(s), s.accuracy.mean * 100) for s in group]
        front = pareto_front(points)
        figure = go.Figure()
        figure.add_trace(
            go.Scatter(
                x=[p[0] for p in points],
                y=[p[1] for p in points],
                mode="markers",
                name="recipes",
                hovertext=[f"{s.recipe} on {s.runtime}" for s in group],
                hovertemplate="%{hovertext}<br>%{x:.3g}, %{y:.2f}%<extra></extra>",
                error_y={"type": "data", "array": [s.accuracy.spread * 100 for s in group], "visible": True},
            )
        )
        figure.add_trace(
            go.Scatter(
                x=[points[i][0] for i in front],
                y=[points[i][1] for i in front],
                mode="lines",
                name="Pareto front",
                line={"dash": "dash"},
            )
        )
        figures.append(laid_out(figure, f"accuracy vs {axis}", label, "test accuracy (%)"))
    return figures


def laid_out(figure: Any, title: str, x_title: str, y_title: str) -> Any:
    """A report figure's one layout: title, axis titles, height and margins."""
    figure.update_layout(title=title, xaxis_title=x_title, yaxis_title=y_title, height=420,
                         margin={"t": 50, "l": 60, "r": 20, "b": 50})  # fmt: skip
    return figure


def write_report(
    folder: Path | str, formats: tuple[str, ...] = ("html", "md"), max_accuracy_drop: float = 1.0
) -> list[Path]:
    """Write report.md and/or report.html next to the study's results.db; return the paths written."""
    folder = Path(folder)
    database = folder / "results.db"
    if not database.is_file():
        raise CompressbenchError(f"no results database at {database}")
    meta = study_meta(folder)
    sections = report_sections(Store(database), meta, max_accuracy_drop)
    title = f"compressbench report: {meta.get('name', 'study')}"
    written = []
    for fmt in formats:
        path = folder / f"report.{fmt}"
        path.write_text(render_markdown(title, sections) if fmt == "md" else render_html(title, sections))
        written.append(path)
    return written
