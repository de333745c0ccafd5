"""The search's space: which families in which order (a plan), each step's parameters, and the recipe table's
`search` shortlist expressed in it (`params_of`: the first trials of every search). A trial's draw becomes a recipe
whose name is its content, so the same draw is the same job."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from compressbench.errors import CompressbenchError
from compressbench.recipes import Recipe, load_recipe, shortlist_names
from compressbench.runtime import installed_runtimes
from compressbench.techniques import Need

Objective = Literal["latency", "size"]
STUDENT_WIDTHS = (0.25, 0.5, 0.75)
CALIBRATIONS = ("minmax", "percentile")
# Which layers an int8 step keeps in float: its own choice by measured speed within the budget ("auto"), none, or
# the first and last weighted layers (where int8 costs most accuracy in most networks).
FLOAT_LAYERS = ("auto", "none", "first+last")
# Families in order. Deep compression (magnitude pruning -> weight sharing -> Huffman) shrinks the stored file, not
# the float runtime's time: a plan of the size objective.
LATENCY_PLANS = ("quant", "prune", "prune+quant", "distill", "distill+quant", "distill+prune+quant")
SIZE_PLANS = (*LATENCY_PLANS, "deep-compression", "distill+deep-compression")


@dataclass(frozen=True)
class SearchSpace:
    """What a trial may draw: the plans (families in order) and the int8 techniques installed here."""

    plans: tuple[str, ...]
    quantizers: tuple[str, ...]

    @classmethod
    def for_model(
        cls, trains: bool, runtime: str = "auto", objective: Objective = "latency", plans: Sequence[str] | None = None
    ) -> SearchSpace:
        """The plans of the objective (or those named) for a model with torch code and train data; int8 alone for a
        graph or evaluation data. NNCF when its OpenVINO output can be measured (runtime auto or openvino, and
        OpenVINO installed)."""
        nncf = runtime in ("auto", "openvino") and "openvino" in installed_runtimes()
        quantizers = ("quant.static", "quant.dynamic") + (("quant.nncf",) if nncf else ())
        if plans is None:
            return cls((SIZE_PLANS if objective == "size" else LATENCY_PLANS) if trains else ("quant",), quantizers)
        unknown = [plan for plan in plans if plan not in SIZE_PLANS]
        if unknown or not plans:
            raise CompressbenchError(f"plans: unknown {unknown or 'none given'}; choose from {', '.join(SIZE_PLANS)}")
        if not trains and set(plans) != {"quant"}:
            raise CompressbenchError(
                f"plans: {[p for p in plans if p != 'quant']} need a torch model with a train split; "
                "an ONNX graph or evaluation-only data takes 'quant' alone"
            )
        return cls(tuple(dict.fromkeys(plans)), quantizers)

    def fixed(self) -> dict[str, dict[str, Any]]:
        """The recipe table's `search` shortlist as parameters of this space, by recipe name: the first trials of a
        search, each where the space has its plan and its int8 technique."""
        fixed: dict[str, dict[str, Any]] = {}
        for name in shortlist_names("search"):
            params = params_of(name)
            if params["plan"] in self.plans and params.get("int8", self.quantizers[0]) in self.quantizers:
                fixed[name] = params
        return fixed


def suggest_recipe(trial: Any, space: SearchSpace) -> dict[str, Any]:
    """A recipe from the trial's parameters; its name is its content, so the same draw is the same job."""
    plan = trial.suggest_categorical("plan", list(space.plans))
    steps: list[dict[str, Any]] = []
    parts = []
    if plan.startswith("distill"):
        width = trial.suggest_categorical("student_width", list(STUDENT_WIDTHS))
        # The trial is judged against the teacher: the student trained alone (distill.kd's control) is not needed.
        steps.append({"technique": "distill.kd", "width": width, "control": False})
        parts.append(f"distill w{width:g}")
    if "prune" in plan.split("+"):
        ratio = round(trial.suggest_float("prune_ratio", 0.2, 0.7, step=0.05), 2)
        epochs = trial.suggest_int("fine_tune_epochs", 1, 10)
        ratios = trial.suggest_categorical("prune_ratios", ["uniform", "sensitivity"])
        steps.append({"technique": "prune.channels", "ratio": ratio, "ratios": ratios, "fine_tune_epochs": epochs})
        parts.append(f"prune {ratio:.2f} {ratios} ft{epochs}")
    if plan.endswith("deep-compression"):
        sparsity = round(trial.suggest_float("sparsity", 0.5, 0.97, step=0.01), 2)
        epochs = trial.suggest_int("fine_tune_epochs", 1, 10)
        conv_bits, fc_bits = trial.suggest_int("conv_bits", 2, 8), trial.suggest_int("fc_bits", 2, 8)
        # At least 2,000 optimiser steps, as the deep-compression recipe: fewer left small-data models far down.
        steps.append({"technique": "prune.magnitude", "sparsity": sparsity, "schedule": "gradual",
                      "fine_tune_epochs": epochs, "fine_tune_min_steps": 2000})  # fmt: skip
        steps.append({"technique": "quant.weight_sharing", "conv_bits": conv_bits, "fc_bits": fc_bits})
        steps.append({"technique": "encode.huffman"})
        parts.append(f"magnitude {sparsity:.2f} ft{epochs} -> share conv {conv_bits} / fc {fc_bits} bits -> huffman")
    if plan.endswith("quant"):
        quantizer = trial.suggest_categorical("int8", list(space.quantizers))
        step: dict[str, Any] = {"technique": quantizer}
        label = quantizer.removeprefix("quant.")
        if quantizer == "quant.static":
            step["calibration"] = trial.suggest_categorical("calibration", list(CALIBRATIONS))
            label += f" {step['calibration']}"
        if quantizer in ("quant.static", "quant.dynamic"):
            float_layers = trial.suggest_categorical("float_layers", list(FLOAT_LAYERS))
            step["exclude"] = [] if float_layers == "none" else float_layers
            label += f" float:{float_layers}"
        steps.append(step)
        parts.append(label)
    return {"name": "search: " + " -> ".join(parts), "steps": steps}


# Deep compression's steps, as suggest_recipe writes them.
DEEP_COMPRESSION = ("prune.magnitude", "quant.weight_sharing", "encode.huffman")
# Fields a trial sets on its own: a trial is judged against the teacher, so a student's control is not trained.
SEARCH_SETS = {"distill.kd": {"control"}}


def params_of(recipe: str | dict[str, Any] | Recipe) -> dict[str, Any]:
    """The search parameters from which suggest_recipe makes `recipe` (a name, a dict or a Recipe): its inverse, so
    that a named recipe can be a search's first trial. A recipe the space cannot express (a step it never draws, a
    value off its grid, a setting it leaves at the default) is refused, naming the step and the field."""
    recipe = load_recipe(recipe)
    steps = [step.canonical() for step in recipe.steps]
    remaining = list(steps)
    parts: list[str] = []
    params: dict[str, Any] = {}
    if remaining and remaining[0]["technique"] == "distill.kd":
        params["student_width"] = remaining.pop(0)["width"]
        parts.append("distill")
    if remaining and remaining[0]["technique"] == "prune.channels":
        step = remaining.pop(0)
        params |= {"prune_ratio": step["ratio"], "fine_tune_epochs": step["fine_tune_epochs"],
                   "prune_ratios": step["ratios"]}  # fmt: skip
        parts.append("prune")
    if tuple(step["technique"] for step in remaining[: len(DEEP_COMPRESSION)]) == DEEP_COMPRESSION:
        magnitude, sharing, _ = remaining[: len(DEEP_COMPRESSION)]
        del remaining[: len(DEEP_COMPRESSION)]
        params |= {"sparsity": magnitude["sparsity"], "fine_tune_epochs": magnitude["fine_tune_epochs"],
                   "conv_bits": sharing["conv_bits"], "fc_bits": sharing["fc_bits"]}  # fmt: skip
        parts.append("deep-compression")
    if remaining and remaining[0]["technique"] in ("quant.static", "quant.dynamic", "quant.nncf"):
        step = remaining.pop(0)
        params["int8"] = step["technique"]
        if step["technique"] == "quant.static":
            params["calibration"] = step["calibration"]
        if step["technique"] in ("quant.static", "quant.dynamic"):
            exclude = step["exclude"]
            params["float_layers"] = "none" if exclude == [] else exclude
        parts.append("quant")
    plan = "+".join(parts)
    if remaining or plan not in SIZE_PLANS:
        techniques = " -> ".join(step["technique"] for step in steps) or "no step"
        raise CompressbenchError(
            f"search: recipe {recipe.name!r} ({techniques}) is no plan of the search's ({', '.join(SIZE_PLANS)})"
        )
    params = {"plan": plan, **params}
    space = SearchSpace(SIZE_PLANS, (params.get("int8", "quant.static"),))
    drawn = load_recipe(suggest_recipe(_Given(params, recipe.name), space)).canonical()["steps"]
    for number, (step, made) in enumerate(zip(steps, drawn, strict=True), start=1):
        for field in step.keys() - SEARCH_SETS.get(step["technique"], set()):
            if step[field] != made[field]:
                raise CompressbenchError(
                    f"search: recipe {recipe.name!r} step {number} ({step['technique']}): field {field!r} is "
                    f"{step[field]!r}; the search sets {made[field]!r}"
                )
    return params


def plan_needs(plan: str) -> frozenset[Need]:
    """What a plan's steps need of the input (techniques.Need; its int8 step is drawn from what is installed)."""
    recipe = suggest_recipe(_Given({}, plan), SearchSpace((plan,), ("quant.static",)))
    return load_recipe(recipe).needs()


class _Given:
    """A trial that answers with the parameters given, refusing one the space would never draw; a parameter not
    given is the space's first choice (its lowest value)."""

    def __init__(self, params: dict[str, Any], recipe: str) -> None:
        self.params, self.recipe = params, recipe

    def suggest_categorical(self, name: str, choices: list[Any]) -> Any:
        value = self.params.get(name, choices[0])
        if value not in choices:
            raise CompressbenchError(f"search: recipe {self.recipe!r}: {name} {value!r} is not one of {choices}")
        return value

    def suggest_float(self, name: str, low: float, high: float, step: float) -> float:
        value = self.params.get(name, low)
        if not low <= value <= high or abs(round((value - low) / step) * step + low - value) > 1e-9:
            raise CompressbenchError(
                f"search: recipe {self.recipe!r}: {name} {value!r} is not one of {low:g}..{high:g} by {step:g}"
            )
        return value

    def suggest_int(self, name: str, low: int, high: int) -> int:
        value = self.params.get(name, low)
        if not low <= value <= high:
            raise CompressbenchError(f"search: recipe {self.recipe!r}: {name} {value!r} is not in {low}..{high}")
        return value


__all__ = ["LATENCY_PLANS", "SIZE_PLANS", "SearchSpace", "params_of", "plan_needs", "suggest_recipe"]
