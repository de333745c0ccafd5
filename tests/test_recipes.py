import pytest

from compressbench.errors import CompressbenchError
from compressbench.recipes import load_recipe


def test_a_technique_name_is_a_one_step_recipe_with_every_default_filled_in():
    recipe = load_recipe("quant.dynamic")
    assert recipe.canonical() == {
        "name": "quant.dynamic",
        "steps": [
            {
                "technique": "quant.dynamic",
                "family": "quantization",
                "op_types": ["MatMul", "Gemm"],
                "exclude": [],
                "per_channel": False,
                "weight_type": "int8",
                "max_accuracy_drop_pt": 1.0,
                "min_speedup": 1.05,
                "selection_samples": 2000,
            }
        ],
    }
    assert load_recipe("none").steps == ()


def test_a_stored_canonical_recipe_loads_back_and_its_family_is_not_part_of_the_key():
    from compressbench.hashing import config_hash
    from compressbench.runner.job import make_job

    canonical = load_recipe("prune+quant").canonical()
    assert [step["family"] for step in canonical["steps"]] == ["pruning", "quantization"]
    assert load_recipe(canonical).canonical() == canonical
    job = make_job("digits", "mlp", canonical)
    unlabelled = {**canonical, "steps": [{k: v for k, v in s.items() if k != "family"} for s in canonical["steps"]]}
    # The key an earlier version computed (its canonical steps had no family) is the key now: stored runs resume.
    assert job.key() == config_hash({**job.identity(), "recipe": unlabelled})


def test_yaml_recipe_file(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text("steps:\n  - technique: quant.dynamic\n    per_channel: true\n")
    recipe = load_recipe(str(path))
    assert recipe.name == "mine" and recipe.steps[0].config.per_channel is True


def test_a_misspelt_field_names_the_step_and_suggests_the_field(tmp_path):
    path = tmp_path / "typo.yaml"
    path.write_text("steps:\n  - technique: quant.dynamic\n    per_chanel: true\n")
    with pytest.raises(
        CompressbenchError,
        match=r"typo.yaml: step 1 \(quant.dynamic\): field 'per_chanel'.*did you mean 'per_channel'",
    ):
        load_recipe(str(path))


def test_a_bad_value_names_the_field():
    with pytest.raises(CompressbenchError, match=r"step 1 \(quant.dynamic\): field 'op_types.0'"):
        load_recipe({"name": "x", "steps": [{"technique": "quant.dynamic", "op_types": ["Matmul"]}]})


def test_an_unknown_technique_suggests_the_close_one():
    with pytest.raises(CompressbenchError, match="did you mean 'quant.dynamic'"):
        load_recipe({"name": "x", "steps": [{"technique": "quant.dynamc"}]})
    with pytest.raises(CompressbenchError, match="unknown recipe 'quant.dynamc'.*did you mean 'quant.dynamic'"):
        load_recipe("quant.dynamc")


def test_a_module_step_after_a_graph_step_is_refused_naming_both_steps():
    steps = [{"technique": "quant.dynamic"}, {"technique": "quant.dynamic"}]
    with pytest.raises(
        CompressbenchError,
        match=r"step 2 \(quant.dynamic\) needs a torch module, but step 1 \(quant.dynamic\) produced an ONNX graph",
    ):
        load_recipe({"name": "twice", "steps": steps})


@pytest.mark.parametrize(
    "name",
    [pytest.param("deep-compression", marks=pytest.mark.slow), "distill+quant", "prune+quant", "distill+prune+quant"],
)
def test_every_built_in_hybrid_runs_end_to_end(name):
    from conftest import FAST_MEASURE, QUICK_TRAINING

    from compressbench import compress

    result = compress("synthetic", "lenet5", name, training=QUICK_TRAINING, measure=FAST_MEASURE)
    steps = [step["step"] for step in result.steps]
    assert steps == [step.technique.name for step in load_recipe(name).steps]
    assert result.candidate.accuracy > 0.5
    assert result.compression_ratio > 1.5  # every hybrid stores the model smaller than its fp32 parameters
    if name == "deep-compression":  # stored as compressbench's encoding, a file that exists, broken down by part
        assert result.candidate.stored_form == "onnx-encoded" and len(result.candidate.storage) > 1
        assert sum(result.candidate.storage.values()) == result.candidate.stored_bytes


def test_the_stored_size_is_the_served_graphs_own_after_a_graph_step():
    from conftest import FAST_MEASURE, QUICK_TRAINING

    from compressbench import compress

    recipe = {"name": "sparse-then-int8", "steps": [{"technique": "prune.magnitude", "fine_tune_epochs": 1},
                                                    {"technique": "quant.dynamic"}]}  # fmt: skip
    result = compress("synthetic", "mlp", recipe, training=QUICK_TRAINING, measure=FAST_MEASURE)
    candidate = result.candidate  # the int8 graph's stored forms, whatever the sparse step before it expected
    assert candidate.stored_bytes == min(candidate.zstd_bytes, candidate.encoded_bytes) < candidate.size_bytes
    assert sum(candidate.storage.values()) == candidate.stored_bytes


def test_measuring_every_step_gives_the_stage_by_stage_breakdown_from_one_run():
    from conftest import FAST_MEASURE, QUICK_TRAINING

    from compressbench.cache import Cache, default_cache_dir
    from compressbench.runner.job import make_job, run_job

    job = make_job("synthetic", "mlp", "deep-compression", training=QUICK_TRAINING, measure=FAST_MEASURE)
    result = run_job(job, Cache(default_cache_dir()), measure_every_step=True)
    pruned, shared, coded = result.stages
    assert [len(stage.steps) for stage in result.stages] == [1, 2, 3]  # each stage keeps only its own steps
    assert coded == result.model_copy(update={"stages": None})
    # Sharing stores the pruned model smaller. The stored file Huffman-codes its streams whatever the recipe says, so
    # the coding step changes the technique's own account (its record), not the file; it is lossless either way.
    stored = [stage.candidate.stored_bytes for stage in (pruned, shared, coded)]
    assert stored[0] > stored[1] == stored[2]
    assert coded.steps[-1]["bytes_after"] < coded.steps[-1]["bytes_before"]
    assert shared.candidate.accuracy == coded.candidate.accuracy
