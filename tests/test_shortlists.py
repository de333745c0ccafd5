"""Shortlists from data: the default study, `compress --recipes auto` and the search's first trials take their recipes
from one table, and a recipe is shortlisted where the input meets what its techniques declare they need."""

from __future__ import annotations

import fnmatch
import hashlib
import textwrap
import tomllib
from pathlib import Path

import optuna
import pytest
from torch import nn

from compressbench.data import load_dataset
from compressbench.errors import CompressbenchError
from compressbench.models import build_model
from compressbench.recipes import TABLE, builtin_recipes, list_recipes, load_recipe, named_recipes, shortlist_names
from compressbench.techniques import Need, techniques
from compressbench.workflows import compress_model as compress_module
from compressbench.workflows.compress_model import _search_plans, _shortlist
from compressbench.workflows.search_space import LATENCY_PLANS, SIZE_PLANS, SearchSpace, params_of, suggest_recipe
from compressbench.workflows.shortlists import input_meets, shortlist
from compressbench.workflows.study import load_study, plan

ROOT = Path(__file__).parents[1]

# The recipes as the default study, text study and compress defined them inline before the table held them: the same
# canonical recipe (name included) is the same run key.
INLINE_BEFORE = {
    "prune.magnitude-80": {"name": "prune.magnitude-80", "steps": [{"technique": "prune.magnitude", "sparsity": 0.8}]},
    "prune.channels-50": {"name": "prune.channels-50", "steps": [{"technique": "prune.channels", "ratio": 0.5}]},
    "prune.nm-2:4": {"name": "prune.nm-2:4", "steps": [{"technique": "prune.nm"}]},
    "prune.channels-30": {"name": "prune.channels-30", "steps": [{"technique": "prune.channels", "ratio": 0.3}]},
    "prune.heads-50": {"name": "prune.heads-50", "steps": [{"technique": "prune.heads", "heads": 0.5}]},
    "distill.kd-half": {
        "name": "distill.kd-half",
        "steps": [{"technique": "distill.kd", "width": 0.5, "epochs": 10}],
    },
}
# Named recipes added to the table after it replaced the inline ones (for transformers: layer dropping, per-channel
# dynamic int8).
ADDED_SINCE = {"distill.kd-3-layers", "quant.dynamic-per-channel"}
# sha256 of the sorted keys of the study's planned jobs, joined by newlines, computed on the study files and code as
# they were before the table existed (each recipe inline): `plan(load_study(...))`, `job.key()`.
KEYS_BEFORE = {
    # Since issue 27 (deep-compression at 92% / 4-bit fc; three compression seeds): the table's names still plan these.
    "default": (79, "66097596d151861eda0a702b9edfdbd6865bc86ad3933d1541738268e139d3b2"),
    "text": (18, "10e2d8ea6faff20de429627a91f29aaff006ccf8620a475ce7e53ad88d7c032d"),
}
# SearchSpace.fixed() as it was written out by hand before it read the table, for the size objective's plans with
# every int8 technique: the parameters the first trials of a search are enqueued with.
FIXED_BEFORE = {
    "quant.static": {"plan": "quant", "int8": "quant.static", "calibration": "minmax", "float_layers": "auto"},
    "quant.dynamic": {"plan": "quant", "int8": "quant.dynamic", "float_layers": "none"},
    "quant.nncf": {"plan": "quant", "int8": "quant.nncf"},
    "prune.channels-50": {"plan": "prune", "prune_ratio": 0.5, "fine_tune_epochs": 4, "prune_ratios": "uniform"},
    "prune+quant": {
        "plan": "prune+quant",
        "prune_ratio": 0.5,
        "fine_tune_epochs": 4,
        "prune_ratios": "uniform",
        "int8": "quant.static",
        "calibration": "minmax",
        "float_layers": "auto",
    },
    "distill.kd": {"plan": "distill", "student_width": 0.5},
    "distill+prune+quant": {
        "plan": "distill+prune+quant",
        "student_width": 0.5,
        "prune_ratio": 0.25,
        "fine_tune_epochs": 4,
        "prune_ratios": "uniform",
        "int8": "quant.static",
        "calibration": "minmax",
        "float_layers": "auto",
    },
    "deep-compression": {
        "plan": "deep-compression",
        "sparsity": 0.92,  # issue 27: the recipe reaches the paper's 40x (was 0.9, 4 epochs, 5-bit fc)
        "fine_tune_epochs": 8,
        "conv_bits": 8,
        "fc_bits": 4,
    },
}
# What a zoo-like CNN / MLP factory taking width= offers, train split aside.
FACTORY = frozenset({Need.TORCH_MODULE, Need.NO_ATTENTION_LAYERS, Need.WIDTH_FACTORY, Need.DEPTH_FACTORY})


def _names(recipes) -> list[str]:
    return [load_recipe(recipe).name for recipe in recipes]


def _mlp() -> nn.Module:
    return nn.Sequential(nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, 10))


# --- the table ---------------------------------------------------------------------------------------------------


def test_every_named_recipe_of_the_table_loads_by_name_and_is_listed_beside_the_recipe_files():
    assert set(INLINE_BEFORE) | ADDED_SINCE == set(named_recipes())
    for name in named_recipes():
        assert load_recipe(name).name == name and name in list_recipes()
    assert "shortlists" not in builtin_recipes() and "shortlists" not in list_recipes()  # the table is no recipe
    for name in ("auto", "search"):
        assert all(load_recipe(reference) for reference in shortlist_names(name))
    with pytest.raises(CompressbenchError, match="unknown shortlist 'atuo'.*did you mean 'auto'"):
        shortlist_names("atuo")


def test_the_wheel_carries_the_table():
    package_data = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    inside = TABLE.relative_to(TABLE.parents[1]).as_posix()
    assert any(fnmatch.fnmatch(inside, pattern) for pattern in package_data["compressbench"])


@pytest.mark.parametrize("name", sorted(INLINE_BEFORE))
def test_a_named_recipe_is_exactly_the_recipe_that_was_written_inline(name):
    assert load_recipe(name).canonical() == load_recipe(INLINE_BEFORE[name]).canonical()


@pytest.mark.parametrize("study", sorted(KEYS_BEFORE))
def test_a_study_naming_the_table_s_recipes_plans_the_jobs_it_planned_with_them_inline(study):
    spec = load_study(ROOT / "studies" / f"{study}.yaml")
    named = [recipe for recipe in spec.recipes if isinstance(recipe, str) and recipe in INLINE_BEFORE]
    assert named  # the study names them rather than defining them
    inline = spec.model_copy(update={"recipes": [INLINE_BEFORE.get(r, r) if isinstance(r, str) else r
                                                 for r in spec.recipes]})  # fmt: skip
    keys = sorted(job.key() for job in plan(spec)[0])
    assert keys == sorted(job.key() for job in plan(inline)[0])
    count, digest = KEYS_BEFORE[study]
    assert (len(keys), hashlib.sha256("\n".join(keys).encode()).hexdigest()) == (count, digest)


# --- what techniques need ----------------------------------------------------------------------------------------


def test_a_technique_that_trains_needs_a_train_split_and_torch_code_because_it_trains():
    for name in techniques.names():
        technique = techniques.get(name)
        needs = technique.needs_for(technique.Config())
        assert ({Need.TRAIN_SPLIT, Need.TORCH_MODULE} <= needs) == technique.trains, name


def test_each_technique_declares_what_it_needs_of_the_input():
    def needs(steps):
        return load_recipe({"name": "r", "steps": steps}).needs()

    assert Need.ATTENTION_LAYERS in needs([{"technique": "prune.heads"}])
    assert Need.NO_ATTENTION_LAYERS in needs([{"technique": "prune.channels"}])
    assert needs([{"technique": "quant.nncf"}]) == {Need.OPENVINO}
    assert needs([{"technique": "precision.bf16"}]) == {Need.BF16_CPU}
    assert needs([{"technique": "quant.static"}]) == needs([{"technique": "quant.dynamic"}]) == set()
    # distill.kd rebuilds the teacher's model smaller: narrower needs a factory taking width, shallower (a
    # transformer's student) one taking depth, and a student named outright neither.
    assert Need.WIDTH_FACTORY in needs([{"technique": "distill.kd", "width": 0.5}])
    shallower = needs([{"technique": "distill.kd", "width": 1, "depth": 3}])
    assert Need.DEPTH_FACTORY in shallower and Need.WIDTH_FACTORY not in shallower
    assert not {Need.WIDTH_FACTORY, Need.DEPTH_FACTORY} & needs([{"technique": "distill.kd", "student": "mlp"}])
    # A recipe needs what any of its steps needs.
    assert needs([{"technique": "prune.channels"}, {"technique": "quant.nncf"}]) >= {Need.OPENVINO, Need.TRAIN_SPLIT}


# --- compress --recipes auto -------------------------------------------------------------------------------------


def _shortlist_before(has_train: bool, distillable: bool, openvino: bool, bf16: bool) -> list[str]:
    """compress_model's `auto` as it was written by hand before the table, with per-channel dynamic int8 since."""
    chosen = ["none", "quant.dynamic", "quant.dynamic-per-channel", "quant.static"] + (
        ["quant.nncf"] if openvino else []
    )
    if has_train:
        chosen += ["prune.channels-30", "prune.channels-50", "prune+quant"]
        chosen += ["distill.kd-half"] if distillable else []
    return chosen + (["precision.bf16"] if bf16 else [])


@pytest.mark.parametrize("has_train", [True, False])
@pytest.mark.parametrize("width", [True, False])
@pytest.mark.parametrize("openvino", [True, False])
@pytest.mark.parametrize("bf16", [True, False])
def test_auto_shortlists_what_it_did_before_for_a_cnn_or_mlp_factory(has_train, width, openvino, bf16):
    meets = (FACTORY if width else FACTORY - {Need.WIDTH_FACTORY}) | {
        need for need, met in ((Need.TRAIN_SPLIT, has_train), (Need.OPENVINO, openvino), (Need.BF16_CPU, bf16)) if met
    }
    chosen, _ = _shortlist("auto", frozenset(meets))
    assert _names(chosen) == _shortlist_before(has_train, width, openvino, bf16)
    for recipe in chosen:  # the very recipes (and so the keys) of before
        if isinstance(recipe, str) and recipe in INLINE_BEFORE:
            assert load_recipe(recipe).canonical() == load_recipe(INLINE_BEFORE[recipe]).canonical()


def test_without_a_train_split_only_post_training_recipes_are_shortlisted_and_the_others_are_left_out_for_want_of_one():
    meets = input_meets(_mlp(), factory=None, train_split=False)
    chosen, left_out = shortlist("auto", meets)
    assert not any(step.technique.trains for recipe in chosen for step in recipe.steps)
    assert {"none", "quant.dynamic", "quant.static"} <= {recipe.name for recipe in chosen}
    reasons = {item.recipe: item.reason for item in left_out}
    for name in ("prune.channels-30", "prune.channels-50", "prune+quant", "distill.kd-half"):
        assert reasons[name] == Need.TRAIN_SPLIT.unmet == "it trains or fine-tunes, and the data has no train split"
    assert len(left_out) == len(reasons)  # each listed once


def test_an_onnx_graph_gets_the_post_training_recipes_and_the_rest_are_left_out_as_needing_torch_code():
    chosen, left_out = shortlist("auto", input_meets(None, factory=None, train_split=True))
    assert {"none", "quant.dynamic", "quant.static"} <= {recipe.name for recipe in chosen}
    assert {item.recipe for item in left_out} >= {"prune.channels-30", "prune.heads-50", "distill.kd-half"}
    assert all(item.reason == Need.TORCH_MODULE.unmet for item in left_out if item.recipe.startswith("prune"))


def test_an_encoder_with_attention_layers_gets_prune_heads_and_not_prune_channels_and_the_left_out_list_says_why():
    tokens = load_dataset("synthetic-tokens")
    meets = input_meets(build_model("transformer", tokens.spec), factory="transformer", train_split=True)
    assert Need.ATTENTION_LAYERS in meets and Need.NO_ATTENTION_LAYERS not in meets
    chosen, left_out = _shortlist("auto", meets)
    names = _names(chosen)
    assert {"prune.heads-50", "distill.kd-half", "distill.kd-3-layers", "quant.dynamic-per-channel"} <= set(names)
    assert not {"prune.channels-30", "prune.channels-50", "prune+quant"} & set(names)
    reasons = {item.recipe: str(item) for item in left_out}
    for name in ("prune.channels-30", "prune.channels-50", "prune+quant"):
        assert "cannot trace multi-head attention, and the model has attention layers" in reasons[name]


def test_a_cnn_or_mlp_is_not_offered_head_pruning_for_it_has_no_attention_layers():
    chosen, left_out = shortlist("auto", input_meets(_mlp(), factory=None, train_split=True))
    assert not {"prune.heads-50", "distill.kd-3-layers"} & {recipe.name for recipe in chosen}
    unmet = {item.recipe: item.unmet for item in left_out}
    assert unmet["prune.heads-50"][0] == Need.ATTENTION_LAYERS and Need.ATTENTION_LAYERS in unmet["distill.kd-3-layers"]


def test_a_factory_that_takes_no_width_is_not_offered_a_narrower_student(tmp_path):
    code = tmp_path / "factories.py"
    code.write_text(textwrap.dedent("""
        from torch import nn

        def fixed(spec):
            return nn.Sequential(nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, 10))

        def scalable(spec, width=1.0):
            return nn.Sequential(nn.Linear(64, round(16 * width)), nn.ReLU(), nn.Linear(round(16 * width), 10))
    """))  # fmt: skip
    fixed = input_meets(_mlp(), factory=f"{code}:fixed", train_split=True)
    scalable = input_meets(_mlp(), factory=f"{code}:scalable", train_split=True)
    assert Need.WIDTH_FACTORY not in fixed and Need.WIDTH_FACTORY in scalable
    assert "distill.kd-half" in {recipe.name for recipe in shortlist("auto", scalable)[0]}
    left_out = {item.recipe: item.reason for item in shortlist("auto", fixed)[1]}
    assert left_out["distill.kd-half"] == Need.WIDTH_FACTORY.unmet
    # A module handed over as an instance cannot be rebuilt at another width either.
    assert Need.WIDTH_FACTORY not in input_meets(_mlp(), factory=None, train_split=True)


class _Stop(Exception):
    pass


def test_compress_auto_logs_what_it_left_out_once_with_why_before_anything_runs(tmp_path, monkeypatch):
    (tmp_path / "user.py").write_text(textwrap.dedent("""
        import numpy as np
        from torch import nn

        def build(spec):
            return nn.Sequential(nn.Linear(8, 4), nn.ReLU(), nn.Linear(4, 3))

        def test_only():
            rng = np.random.default_rng(0)
            return rng.normal(size=(90, 8)).astype(np.float32), np.arange(90) % 3
    """))  # fmt: skip
    from safetensors.torch import save_file

    user = tmp_path / "user.py"
    namespace: dict = {}
    exec(user.read_text(), namespace)
    save_file(namespace["build"](None).state_dict(), tmp_path / "w.safetensors")
    messages: list[str] = []
    monkeypatch.setattr(compress_module, "log", messages.append)
    monkeypatch.setattr(compress_module, "drive", lambda *a, **k: (_ for _ in ()).throw(_Stop()))
    with pytest.raises(_Stop):  # stopped where the jobs would start running
        compress_module.compress_model(f"{user}:build", f"{user}:test_only", weights=tmp_path / "w.safetensors",
                                       out=tmp_path / "out", recipes="auto")  # fmt: skip
    [message] = [m for m in messages if "left out" in m]
    for name in ("prune.channels-30", "prune.channels-50", "prune+quant", "distill.kd-half", "prune.heads-50"):
        assert message.count(f"{name} (") == 1
    assert f"prune.channels-50 ({Need.TRAIN_SPLIT.unmet})" in message


# --- the search's first trials -----------------------------------------------------------------------------------


def test_the_search_starts_with_the_table_s_recipes_as_the_parameters_it_always_enqueued():
    every = SearchSpace(SIZE_PLANS, ("quant.static", "quant.dynamic", "quant.nncf"))
    assert list(every.fixed().items()) == list(FIXED_BEFORE.items())
    latency = SearchSpace(LATENCY_PLANS, ("quant.static", "quant.dynamic"))
    assert list(latency.fixed()) == ["quant.static", "quant.dynamic", "prune.channels-50", "prune+quant",
                                     "distill.kd", "distill+prune+quant"]  # fmt: skip
    assert list(SearchSpace(("quant",), ("quant.static", "quant.dynamic")).fixed()) == ["quant.static", "quant.dynamic"]


@pytest.mark.parametrize("name", sorted(FIXED_BEFORE))
def test_params_of_is_the_inverse_of_suggest_recipe(name):
    params = params_of(name)
    assert params == FIXED_BEFORE[name]
    space = SearchSpace(SIZE_PLANS, ("quant.static", "quant.dynamic", "quant.nncf"))
    suggested = load_recipe(suggest_recipe(optuna.trial.FixedTrial(params), space)).canonical()["steps"]
    recipe = load_recipe(name).canonical()["steps"]
    # The same steps, but for the control student a trial never trains (it is judged against the teacher).
    assert [{k: v for k, v in s.items() if k != "control"} for s in suggested] == [
        {k: v for k, v in s.items() if k != "control"} for s in recipe
    ]


@pytest.mark.parametrize(
    ("steps", "error"),
    [
        ([{"technique": "prune.nm"}], "is no plan of the search's"),
        ([{"technique": "prune.magnitude"}, {"technique": "quant.static"}], "is no plan of the search's"),
        ([{"technique": "distill.kd", "width": 0.375}], r"student_width 0.375 is not one of \[0.25, 0.5, 0.75\]"),
        ([{"technique": "prune.channels", "ratio": 0.33}], "prune_ratio 0.33 is not one of 0.2..0.7 by 0.05"),
        ([{"technique": "prune.channels", "importance": "l1"}], r"step 1 \(prune.channels\): field 'importance'"),
        ([{"technique": "distill.kd", "epochs": 10}], r"step 1 \(distill.kd\): field 'epochs' is 10"),
    ],
)
def test_params_of_refuses_a_recipe_the_search_cannot_draw(steps, error):
    with pytest.raises(CompressbenchError, match=error):
        params_of({"name": "mine", "steps": steps})


def test_the_search_s_plans_are_those_whose_steps_the_input_can_take():
    trains = FACTORY | {Need.TRAIN_SPLIT}
    assert _search_plans("latency", trains) == list(LATENCY_PLANS)
    assert _search_plans("size", trains) == list(SIZE_PLANS)
    assert _search_plans("size", FACTORY) == ["quant"]  # no train split
    assert _search_plans("latency", frozenset()) == ["quant"]  # an ONNX graph
    assert not any(p.startswith("distill") for p in _search_plans("latency", trains - {Need.WIDTH_FACTORY}))
    attention = trains - {Need.NO_ATTENTION_LAYERS} | {Need.ATTENTION_LAYERS}
    assert _search_plans("size", attention) == ["quant", "distill", "distill+quant", "deep-compression",
                                                "distill+deep-compression"]  # fmt: skip
