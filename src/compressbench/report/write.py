"""Write the study report as Markdown and as one self-contained HTML file (plotly.js inlined, works offline)."""

from __future__ import annotations

import html
import json
import statistics
from collections import defaultdict
from pathlib import Path
from typing import Any

from compressbench.errors import CompressbenchError
from compressbench.report.claims import CLAIMS, hybrids_vs_parts, judge_claims
from compressbench.report.recommend import recommend
from compressbench.report.summary import RecipeSummary, by_model, summarise_runs
from compressbench.store import Run, Store

Table = tuple[list[str], list[list[str]]]
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
        *[f"latency b{b} ms" for b in batches],
        *[f"speed-up b{b}" for b in batches],
        "file KiB",
        "size ratio",
        "stored KiB",
        "compression",
        "MACs",
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
                s.recipe,
                s.runtime,
                accuracy,
                f"{-s.accuracy_drop_pt.mean:+.2f}",
                *[f"{s.latency_ms[b].mean:.3f}" for b in batches],
                *[f"{s.speedup[b].mean:.2f}x" for b in batches],
                f"{s.size_bytes / 1024:.1f}",
                f"{s.size_ratio:.2f}x",
                f"{s.stored_bytes / 1024:.1f}",
                f"{s.compression_ratio:.1f}x",
                f"{s.macs:,}",
                "; ".join(s.flags),
            ]
        )
    return header, rows


def runtime_table(runs: list[Run]) -> Table:
    """For runs measured with `runtime: auto`: each candidate's speed-up on every runtime vs ONNX Runtime fp32
    (mean over seeds), the precision that runtime executed, and which one was kept; the baseline's fp32 row first."""
    groups: dict[tuple[str, str, str], list[dict[str, Any]]] = defaultdict(list)
    for run in runs:
        if run.status == "ok" and run.result and "runtimes" in run.result["candidate"]:
            groups[(run.dataset, run.model, run.recipe)].append(run.result)
    if not groups:
        return [], []
    names = sorted({rt for results in groups.values() for r in results for rt in r["candidate"]["runtimes"]})
    batches = list(next(iter(groups.values()))[0]["speedup"])
    header = ["dataset", "model", "recipe", *[f"{rt} b{b}" for rt in names for b in batches], "kept"]

    def cells(results: list[dict[str, Any]], side: str) -> list[str]:
        row = []
        for runtime in names:
            for batch in batches:
                measured = [r[side]["runtimes"].get(runtime, {}) for r in results]
                if any("latency_ms" not in m for m in measured):
                    row.append("skipped" if batch == batches[0] else "")
                    continue
                speedups = [
                    r["baseline"]["latency_ms"][batch] / m["latency_ms"][batch]
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
            rows.append(
                [dataset, model, recipe, *cells(results, "candidate"), results[0]["candidate"]["runtime"]["runtime"]]
            )
    return header, rows


def build_sections(store: Store, max_accuracy_drop: float = 1.0) -> dict[str, Any]:
    runs = store.runs()
    if not runs:
        raise CompressbenchError(f"{store.path}: no runs stored yet")
    summaries = summarise_runs(runs)
    groups = by_model(summaries)
    verdicts = judge_claims(summaries)
    claim_text = {c.key: c.text for c in CLAIMS}
    verdict_table: Table = (
        ["claim", "dataset", "model", "verdict", "measured"],
        [[claim_text[v.claim], v.dataset, v.model, v.verdict, v.why] for v in verdicts],
    )
    hybrid_table: Table = (
        ["dataset", "model", "hybrid", "best single technique of its families", "measured", "wins"],
        [[h.dataset, h.model, h.hybrid, h.against, h.figure, h.winner] for h in hybrids_vs_parts(summaries)],
    )
    recommendations: dict[str, Table] = {}
    for objective, batch in (("latency", 1), ("latency", 256), ("size", 256)):
        answers = recommend(summaries, max_accuracy_drop, objective, batch)  # type: ignore[arg-type]
        title = f"{objective}" + (f", batch {batch}" if objective == "latency" else "")
        recommendations[title] = (
            ["dataset", "model", "best", "runner-up", "why"],
            [
                [
                    a.dataset,
                    a.model,
                    a.label(a.best) or "—",
                    a.label(a.runner_up) or "—",
                    a.reason,
                ]
                for a in answers
            ],
        )
    failed = [r for r in runs if r.status == "failed"]
    first_ok = next(r for r in reversed(runs) if r.status == "ok" and r.result)
    runtime_settings: dict[str, set[str]] = defaultdict(set)
    for run in runs:
        if run.status == "ok" and run.result:
            measured = run.result["measurement"]
            label = measured["runtime"]
            if label == "auto":
                label += f" over {', '.join(measured.get('compare') or []) or 'every installed runtime'}"
            runtime_settings[label].add(run.model)
    return {
        "summaries": summaries,
        "groups": groups,
        "verdicts": verdict_table,
        "hybrids": hybrid_table,
        "recommendations": recommendations,
        "failed": failed,
        "environment": first_ok.result["environment"],
        "measurement": first_ok.result["measurement"],
        "runtime_settings": {setting: sorted(models) for setting, models in sorted(runtime_settings.items())},
        "runtimes": runtime_table(runs),
        "budget": max_accuracy_drop,
    }


def study_meta(folder: Path) -> dict[str, Any]:
    path = folder / "study.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def footer_lines(sections: dict[str, Any]) -> list[str]:
    env, settings = sections["environment"], sections["measurement"]
    latency = settings["latency"]
    versions = ", ".join(f"{k} {v}" for k, v in env["versions"].items())
    chosen = sections["runtime_settings"]
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
        "interleaved in one process; latency is the median time per call, speed-up the ratio of medians.",
        "Accuracy: top-1 on the test split from the exported model as the runtime runs it, with a 95% Wilson "
        "interval; with several seeds, mean ± standard deviation over seeds.",
        "Size: bytes of the ONNX file (weights inside); stored = the smallest faithful form (zstd-19 of the file, "
        "or the technique's encoding); compression = fp32 parameter bytes / stored bytes.",
        f"CPU {env['cpu']['model']} ({env['cpu']['cores']} cores; flags: {', '.join(env['cpu']['flags']) or 'none'}); "
        f"Python {env['python']}; {versions}.",
    ]


def to_markdown(sections: dict[str, Any], meta: dict[str, Any]) -> str:
    def table(t: Table) -> str:
        header, rows = t
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(cell.replace("|", "/") for cell in row) + " |" for row in rows]
        return "\n".join(lines)

    parts = [f"# compressbench report: {meta.get('name', 'study')}", ""]
    if meta.get("description"):
        parts += [meta["description"], ""]
    if meta.get("traded_away"):
        parts += [f"**What this profile traded away:** {meta['traded_away']}", ""]
    parts += [f"## Recommendation (accuracy budget {sections['budget']:g} pt)", ""]
    for title, t in sections["recommendations"].items():
        parts += [f"### Objective: {title}", "", table(t), ""]
    parts += ["## Do the claims hold?", "", table(sections["verdicts"]), ""]
    if sections["hybrids"][1]:
        parts += ["## Hybrids against their best single technique", "", table(sections["hybrids"]), ""]
    if sections["runtimes"][1]:
        parts += [f"## {RUNTIMES_TITLE}", "", RUNTIMES_NOTE, "", table(sections["runtimes"]), ""]
    for (dataset, model), group in sections["groups"].items():
        parts += [f"## {dataset} / {model}", "", table(recipe_table(group)), ""]
    if sections["failed"]:
        parts += ["## Failed runs", ""]
        parts += [
            f"- {r.dataset} / {r.model} / {r.recipe} / seed {r.seed}: {(r.error or '').splitlines()[0]}"
            for r in sections["failed"]
        ]
        parts.append("")
    parts += ["## How every number was measured", ""] + [f"- {line}" for line in footer_lines(sections)]
    return "\n".join(parts) + "\n"


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
                mode="markers+text",
                name="recipes",
                text=[s.recipe for s in group],
                textposition="top center",
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
        figure.update_layout(
            title=f"accuracy vs {axis}",
            xaxis_title=label,
            yaxis_title="test accuracy (%)",
            height=420,
            margin={"t": 50, "l": 60, "r": 20, "b": 50},
        )
        figures.append(figure)
    return figures


def to_html(sections: dict[str, Any], meta: dict[str, Any]) -> str:
    from plotly.offline import get_plotlyjs

    def table(t: Table) -> str:
        header, rows = t
        head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
        body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows)
        return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"

    title = html.escape(f"compressbench report: {meta.get('name', 'study')}")
    parts = [f"<h1>{title}</h1>"]
    if meta.get("description"):
        parts.append(f"<p>{html.escape(meta['description'])}</p>")
    if meta.get("traded_away"):
        parts.append(f"<p><b>What this profile traded away:</b> {html.escape(meta['traded_away'])}</p>")
    parts.append(f"<h2>Recommendation (accuracy budget {sections['budget']:g} pt)</h2>")
    for name, t in sections["recommendations"].items():
        parts += [f"<h3>Objective: {html.escape(name)}</h3>", table(t)]
    parts += ["<h2>Do the claims hold?</h2>", table(sections["verdicts"])]
    if sections["hybrids"][1]:
        parts += ["<h2>Hybrids against their best single technique</h2>", table(sections["hybrids"])]
    if sections["runtimes"][1]:
        parts += [f"<h2>{RUNTIMES_TITLE}</h2>", f"<p>{html.escape(RUNTIMES_NOTE)}</p>", table(sections["runtimes"])]
    for (dataset, model), group in sections["groups"].items():
        parts += [f"<h2>{html.escape(dataset)} / {html.escape(model)}</h2>", table(recipe_table(group))]
        parts += [f.to_html(full_html=False, include_plotlyjs=False) for f in pareto_figures(group)]
    if sections["failed"]:
        items = "".join(
            f"<li>{html.escape(f'{r.dataset} / {r.model} / {r.recipe} / seed {r.seed}: ')}"
            f"{html.escape((r.error or '').splitlines()[0])}</li>"
            for r in sections["failed"]
        )
        parts += ["<h2>Failed runs</h2>", f"<ul>{items}</ul>"]
    parts += [
        "<h2>How every number was measured</h2>",
        "<ul>" + "".join(f"<li>{html.escape(line)}</li>" for line in footer_lines(sections)) + "</ul>",
    ]
    style = (
        "body{font-family:system-ui,sans-serif;margin:2em;max-width:1400px}table{border-collapse:collapse;"
        "margin:1em 0;font-size:13px}td,th{border:1px solid #ccc;padding:3px 6px;text-align:right}"
        "td:first-child,th:first-child{text-align:left}"
    )
    return (
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{title}</title><style>{style}</style>"
        f"<script>{get_plotlyjs()}</script></head><body>{''.join(parts)}</body></html>"
    )


def write_report(
    folder: Path | str, formats: tuple[str, ...] = ("html", "md"), max_accuracy_drop: float = 1.0
) -> list[Path]:
    """Write report.md and/or report.html next to the study's results.db; return the paths written."""
    folder = Path(folder)
    database = folder / "results.db"
    if not database.is_file():
        raise CompressbenchError(f"no results database at {database}")
    sections = build_sections(Store(database), max_accuracy_drop)
    meta = study_meta(folder)
    written = []
    for fmt in formats:
        path = folder / f"report.{fmt}"
        path.write_text(to_markdown(sections, meta) if fmt == "md" else to_html(sections, meta))
        written.append(path)
    return written
