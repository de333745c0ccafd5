"""The search's report: its Pareto front with each trial's recipe on hover, the best feasible trial against the fixed
recipes it started from, every trial, and which parameters mattered (Optuna's fANOVA importances, per plan).

The trials are ordinary stored runs too: `compressbench report` and `recommend` on the search's folder read them as
any study's."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from compressbench.ranking import feasible, figure_of
from compressbench.reporting.sections import Cell, Section, Table, render_html, render_markdown
from compressbench.reporting.write import laid_out, pareto_front

SEARCH_NAME = "search"


def write_search_report(out: Path | str, storage: str | None = None) -> list[Path]:
    """Write search.html and search.md into `out` from the study in `storage` (default: out/search.db)."""
    import optuna

    out = Path(out)
    storage = storage or f"sqlite:///{out / 'search.db'}"
    study = optuna.load_study(study_name=SEARCH_NAME, storage=storage)
    attrs = study.user_attrs
    title = f"compressbench search: {attrs.get('model', '?')} on {attrs.get('dataset', '?')}"
    sections = search_sections(study)
    written = []
    for fmt, render in (("html", render_html), ("md", render_markdown)):
        path = out / f"search.{fmt}"
        path.write_text(render(title, sections))
        written.append(path)
    return written


def search_sections(study: Any) -> list[Section]:
    attrs = study.user_attrs
    objective, batch, budget = attrs.get("objective", "latency"), attrs.get("batch"), attrs.get("max_accuracy_drop")
    trials = [t for t in study.get_trials(deepcopy=False) if "speedup" in t.user_attrs]
    if not trials:
        return [Section("", note="No trial has finished yet.")]
    within = [t for t in trials if feasible(t)]
    best = max(within, key=lambda t: figure_of(t, objective), default=None)
    fixed = [t for t in within if t.user_attrs.get("fixed")]
    best_fixed = max(fixed, key=lambda t: figure_of(t, objective), default=None)
    unit = f"speed-up at batch {batch}" if objective == "latency" else "size ratio (fp32 parameters / stored bytes)"
    how = (
        f"Objective: {unit}, within {budget:g} pt of the baseline's test accuracy (a constraint: trials over it are "
        f"shown, never chosen). Every trial is a stored job measured like a study's: latency on its runtime "
        f"({attrs.get('runtime', 'auto')}; 'auto' times every installed runtime and keeps the fastest), median of "
        "interleaved blocks against the baseline; size as the stored artifact's bytes."
    )
    stopped = study.user_attrs.get("stopped", "trial count reached")
    summary = f"{len(trials)} trials, {len(within)} within the budget; stopped: {stopped}. " + (
        _against(best, best_fixed, objective) if best is not None else "No trial is within the budget."
    )
    sections = [
        Section("", note=summary + " " + how),
        Section("Best feasible trial and the fixed recipes", tables=[_best_table(best, best_fixed)]),
        Section(
            "Pareto front",
            note="Accuracy drop against the objective for every finished trial; the line joins the feasible trials "
            "no other feasible trial beats on both. Hover a point for its recipe.",
            figures=lambda: _figures(trials, objective, batch, budget),
        ),
        _importance_section(study, trials, objective),
        Section("Every trial", tables=[_trials_table(study)], folded=True),
    ]
    return sections


_IMPORTANCE_NOTE = (
    "Optuna's fANOVA importances, per plan (a parameter exists only in the plans that draw it), on the objective and "
    "on the accuracy drop; each column sums to 1 within a plan. Plans with fewer than 3 finished trials are left out: "
    "a forest on so few points says nothing."
)


def _importance_section(study: Any, trials: list[Any], objective: str) -> Section:
    table = _importances(study, trials, objective)
    if not table[1]:
        return Section("Which parameters mattered", note="No plan has 3 finished trials yet: " + _IMPORTANCE_NOTE)
    return Section("Which parameters mattered", note=_IMPORTANCE_NOTE, tables=[table])


def _against(best: Any, best_fixed: Any, objective: str) -> str:
    word = "faster" if objective == "latency" else "smaller"
    text = f"Best feasible: trial {best.number}, {_label(best)} ({figure_of(best, objective):.2f}x {word})."
    if best_fixed is None:
        return text + " No fixed recipe is within the budget."
    ratio = figure_of(best, objective) / figure_of(best_fixed, objective)
    return text + (
        f" The best fixed recipe, {_label(best_fixed)}, gives {figure_of(best_fixed, objective):.2f}x: "
        f"the search is {ratio:.2f}x better on the objective."
    )


def _label(trial: Any) -> str:
    fixed = trial.user_attrs.get("fixed")
    return f"{fixed} ({trial.user_attrs['recipe']})" if fixed else trial.user_attrs["recipe"]


def _row(trial: Any) -> list[str | Cell]:
    attrs = trial.user_attrs
    budget = Cell("yes", "good") if feasible(trial) else Cell("no", "bad")
    return [
        str(trial.number),
        attrs["recipe"],
        f"fixed: {attrs['fixed']}" if attrs.get("fixed") else "search",
        attrs.get("runtime", ""),
        f"{attrs['accuracy_drop_pt']:+.2f}",
        f"{attrs['speedup']:.2f}x",
        f"{attrs['size_ratio']:.1f}x",
        budget,
    ]


HEADER = ["trial", "recipe", "origin", "runtime", "drop (pt)", "speed-up", "smaller", "within budget"]


def _best_table(best: Any, best_fixed: Any) -> Table:
    rows = [[label, *_row(trial)[1:]] for label, trial in (("best", best), ("best fixed", best_fixed)) if trial]
    return ["", *HEADER[1:]], rows


def _trials_table(study: Any) -> Table:
    rows = []
    for trial in study.get_trials(deepcopy=False):
        if "speedup" in trial.user_attrs:
            rows.append(_row(trial))
        else:
            rows.append([str(trial.number), trial.user_attrs.get("recipe", "?"), "", "", "", "", "", trial.state.name])
    return HEADER, rows


def _importances(study: Any, trials: list[Any], objective: str) -> Table:
    import optuna

    rows: list[list[str | Cell]] = []
    plans = sorted({t.params.get("plan") for t in trials if "plan" in t.params})
    for plan in plans:
        of_plan = [t for t in trials if t.params.get("plan") == plan]
        params = sorted(set.intersection(*(set(t.params) for t in of_plan)) - {"plan"})
        if len(of_plan) < 3 or not params:
            continue
        figures = {}
        for target_name, target in (
            (objective, lambda t: figure_of(t, objective)),
            ("accuracy drop", lambda t: t.user_attrs["accuracy_drop_pt"]),
        ):
            evaluator = optuna.importance.FanovaImportanceEvaluator(seed=0)
            try:
                figures[target_name] = optuna.importance.get_param_importances(
                    study, evaluator=evaluator, params=params, target=target
                )
            except RuntimeError:  # every trial of the plan gave the same figure: no parameter mattered
                figures[target_name] = dict.fromkeys(params, 0.0)
        for param in params:
            rows.append([plan, param, *(f"{figures[name].get(param, 0.0):.2f}" for name in figures)])
    return ["plan", "parameter", f"importance for {objective}", "importance for accuracy drop"], rows


def _figures(trials: list[Any], objective: str, batch: Any, budget: float) -> list[Any]:
    import plotly.graph_objects as go

    figures = []
    for axis, label in (("speedup", f"speed-up at batch {batch} (x)"), ("size_ratio", "smaller than fp32 (x)")):
        figure = go.Figure()
        groups = (
            ("fixed recipes", [t for t in trials if t.user_attrs.get("fixed")], "diamond", None),
            ("search, within budget", [t for t in trials if not t.user_attrs.get("fixed") and feasible(t)], "circle",
             None),
            ("search, over budget", [t for t in trials if not t.user_attrs.get("fixed") and not feasible(t)], "x",
             "#999"),
        )  # fmt: skip
        for name, group, symbol, colour in groups:
            if group:
                figure.add_trace(
                    go.Scatter(
                        x=[t.user_attrs[axis] for t in group],
                        y=[t.user_attrs["accuracy_drop_pt"] for t in group],
                        mode="markers",
                        name=name,
                        marker={"symbol": symbol, "size": 9, **({"color": colour} if colour else {})},
                        hovertext=[f"trial {t.number}: {_label(t)} on {t.user_attrs['runtime']}" for t in group],
                        hovertemplate="%{hovertext}<br>%{x:.2f}x, drop %{y:+.2f} pt<extra></extra>",
                    )
                )
        within = [t for t in trials if feasible(t)]
        # pareto_front keeps lower x and higher y: the negated gain and the negated drop.
        points = [(-t.user_attrs[axis], -t.user_attrs["accuracy_drop_pt"]) for t in within]
        front = [within[i] for i in pareto_front(points)]
        figure.add_trace(
            go.Scatter(
                x=[t.user_attrs[axis] for t in front],
                y=[t.user_attrs["accuracy_drop_pt"] for t in front],
                mode="lines",
                name="Pareto front (within budget)",
                line={"dash": "dash"},
            )
        )
        figure.add_hline(y=budget, line={"dash": "dot"}, annotation_text="budget")
        title = f"accuracy drop vs {'speed-up' if axis == 'speedup' else 'size'}"
        figures.append(laid_out(figure, title, label, "accuracy drop (pt; lower is better)"))
    return figures
