"""Models and data as users have them: a Hugging Face folder, a timm architecture with weights, an image folder, a
table of texts, a .npz of several named inputs. Integer inputs stay integer, several inputs keep their names, and the
preprocessing is declared once, recorded in the manifest and applied again by verify."""

from __future__ import annotations

import json
import sys
import types

import numpy as np
import onnx
import pandas as pd
import pytest
import torch
from conftest import FAST_LATENCY
from onnx import TensorProto, helper
from PIL import Image
from safetensors.torch import save_file
from torch import nn

import compressbench as cb
from compressbench import CompressbenchError
from compressbench.data import DatasetConfig, load_dataset
from compressbench.intake import preprocessing_for
from compressbench.intake.images import preprocess
from compressbench.models import ModelConfig, NamedInputs, build_model
from compressbench.runtime import export_onnx, open_session

WORDS = {"positive": ["good", "great", "fine"], "negative": ["bad", "awful", "poor"]}
FILLER = ["the", "movie", "was", "plot", "a", "very"]


@pytest.fixture(scope="module")
def hf_folder(tmp_path_factory):
    """A random-init BERT with a two-class head and its own WordPiece tokenizer, saved as Hugging Face saves a
    fine-tuned model; and a CSV of texts with label names and a split column."""
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

    root = tmp_path_factory.mktemp("hf")
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS["positive"], *WORDS["negative"], *FILLER]
    (root / "vocab.txt").write_text("\n".join(vocab) + "\n")
    folder = root / "model"
    BertTokenizerFast(vocab_file=str(root / "vocab.txt")).save_pretrained(folder)
    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                        intermediate_size=64, max_position_embeddings=64, num_labels=2,
                        id2label={0: "negative", 1: "positive"}, label2id={"negative": 0, "positive": 1})  # fmt: skip
    BertForSequenceClassification(config).save_pretrained(folder)
    rng = np.random.default_rng(0)
    rows = []
    for i in range(240):
        label = ("negative", "positive")[i % 2]
        words = [*rng.choice(FILLER, int(rng.integers(2, 6))), *rng.choice(WORDS[label], 2)]
        rows.append({"review": " ".join(words), "sentiment": label, "split": "train" if i < 160 else "test"})
    pd.DataFrame(rows).to_csv(root / "reviews.csv", index=False)
    return folder, root / "reviews.csv"


def _table(hf_folder, **config):
    folder, table = hf_folder
    preprocessing = preprocessing_for(str(folder), sequence_length=16)
    return DatasetConfig(name=str(table), as_given=True, text_column="review", label_column="sentiment",
                         preprocessing=preprocessing, **config)  # fmt: skip


def test_a_table_of_texts_becomes_int64_inputs_named_as_the_tokenizer_names_them(hf_folder):
    data = load_dataset(_table(hf_folder))
    assert data.spec.input_names == ("input_ids", "attention_mask", "token_type_ids")
    assert data.spec.input_dtype == "int64" and data.test.x.dtype == np.int64
    assert data.test.x.shape == (80, 3, 16) and len(data.train) + len(data.val) == 160  # the split column
    assert data.notes["classes"] == ["negative", "positive"]  # names through the model's own label2id
    first = pd.read_csv(hf_folder[1]).query("split == 'test'").iloc[0]
    assert data.test.y[0] == {"negative": 0, "positive": 1}[first["sentiment"]]
    assert data.test.x[0, 1].sum() == len(first["review"].split()) + 2  # attention over [CLS] words [SEP]


def test_a_hugging_face_folder_is_built_as_saved_and_exported_with_its_named_int64_inputs(hf_folder):
    from transformers import AutoModelForSequenceClassification

    data = load_dataset(_table(hf_folder))
    model = build_model(ModelConfig(name=str(hf_folder[0])), data.spec)
    assert isinstance(model, NamedInputs)
    reference = AutoModelForSequenceClassification.from_pretrained(hf_folder[0]).eval()
    x = torch.from_numpy(np.ascontiguousarray(data.test.x[:8]))
    with torch.no_grad():
        expected = reference(input_ids=x[:, 0], attention_mask=x[:, 1], token_type_ids=x[:, 2]).logits
        np.testing.assert_allclose(model(x).numpy(), expected.numpy(), atol=1e-5)
    graph = export_onnx(model, data.spec.input_shape, input_dtype=data.spec.input_dtype)
    inputs = [(v.name, v.type.tensor_type.elem_type, [d.dim_param for d in v.type.tensor_type.shape.dim])
              for v in graph.graph.input]  # fmt: skip
    assert inputs == [(name, TensorProto.INT64, ["batch", "sequence"]) for name in data.spec.input_names]
    for runtime in ("onnxruntime", "openvino"):
        got = open_session(graph, runtime).run(data.test.x[:8])
        np.testing.assert_allclose(got, expected.numpy(), atol=1e-4)
    student = build_model(ModelConfig(name=str(hf_folder[0]), depth=1), data.spec)  # layer dropping
    assert len(student.model.model.bert.encoder.layer) == 1


def test_a_folder_without_a_classification_head_is_refused_by_name(hf_folder, tmp_path):
    config = json.loads((hf_folder[0] / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**config, "architectures": ["BertModel"]}))
    with pytest.raises(CompressbenchError, match=r"config.json declares \['BertModel'\], not a .*ForSequenceClass"):
        preprocessing_for(str(tmp_path))


def test_a_missing_column_is_refused_with_the_columns_there_are(hf_folder):
    with pytest.raises(CompressbenchError, match=r"--text-column 'text' is not a column \(columns: review, senti"):
        load_dataset(_table(hf_folder).model_copy(update={"text_column": "text"}))


@pytest.mark.slow
def test_compress_takes_a_hugging_face_folder_and_a_csv_and_verify_reproduces_the_manifest(hf_folder, tmp_path):
    folder, table = hf_folder
    outcome = cb.compress_model(str(folder), str(table), out=tmp_path / "out", text_column="review",
                                label_column="sentiment", sequence_length=16, recipes="quant.dynamic,prune.heads-50",
                                fine_tune_epochs=1, max_accuracy_drop=100, latency=FAST_LATENCY)  # fmt: skip
    manifest = outcome.manifest
    assert [(i["name"], i["dtype"]) for i in manifest["artifact"]["inputs"]["inputs"]] == [
        ("input_ids", "int64"), ("attention_mask", "int64"), ("token_type_ids", "int64")]  # fmt: skip
    assert manifest["preprocessing"]["kind"] == "tokenizer" and manifest["preprocessing"]["max_length"] == 16
    assert manifest["failed"] == {} and set(manifest["candidates"]) == {"none", "quant.dynamic", "prune.heads-50"}
    runs = {run.recipe: run for run in cb.stored_runs(outcome.out)}
    assert runs["quant.dynamic"].result.candidate.embedding["cosine_mean"] > 0.99  # the encoder's pooled output
    checked = cb.verify(outcome.out)
    assert checked["accuracy"]["here"] == pytest.approx(checked["accuracy"]["manifest"])


# --- images through a timm architecture ---------------------------------------------------------------------------


class _TinyCnn(nn.Module):
    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(4))
        self.fc = nn.Linear(8 * 16, num_classes)

    def get_classifier(self) -> nn.Module:
        return self.fc

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x).flatten(1))


@pytest.fixture
def timm_stand_in(monkeypatch):
    """timm's two calls the intake makes (`create_model`, `data.resolve_data_config`), standing in for timm, which
    cannot be installed beside the CPU torch (torchvision's PyPI wheels need CUDA torch)."""
    timm = types.ModuleType("timm")
    timm.create_model = lambda name, pretrained, num_classes: _TinyCnn(num_classes)
    config = {"input_size": (3, 24, 24), "interpolation": "bicubic", "mean": (0.5, 0.4, 0.3), "std": (0.2, 0.25, 0.3),
              "crop_pct": 0.75}  # fmt: skip
    timm.data = types.SimpleNamespace(resolve_data_config=lambda args, model: dict(config))
    monkeypatch.setitem(sys.modules, "timm", timm)
    return config


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory):
    """Two hundred and forty PNGs of two classes (horizontal or vertical stripes) in train/ and test/."""
    root = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    for i in range(240):
        part, label = ("train" if i < 160 else "test"), ("horizontal", "vertical")[i % 2]
        stripes = (np.arange(40)[:, None] // 4 % 2 * 200 + rng.integers(0, 40, (40, 40))).astype(np.uint8)
        pixels = np.stack([stripes if label == "horizontal" else stripes.T] * 3, axis=-1)
        (root / part / label).mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels).save(root / part / label / f"{i}.png")
    return root


def test_timms_data_config_is_the_image_preprocessing(timm_stand_in, image_folder, tmp_path):
    save_file(_TinyCnn(2).state_dict(), tmp_path / "w.safetensors")
    declared = preprocessing_for("timm:tiny", str(tmp_path / "w.safetensors"))
    assert declared["size"] == [24, 24] and declared["resize"] == 32 and declared["interpolation"] == "bicubic"
    assert declared["num_classes"] == 2  # read from the weights' classifier
    data = load_dataset(DatasetConfig(name=str(image_folder), as_given=True, preprocessing=declared))
    assert data.spec.input_shape == (3, 24, 24) and data.notes["classes"] == ["horizontal", "vertical"]
    assert len(data.test) == 80 and len(data.train) + len(data.val) == 160
    path = sorted((image_folder / "test" / "vertical").iterdir())[0]
    with Image.open(path) as image:  # resized to 32 (bicubic), centre crop 24, then scaled and standardised
        pixels = np.asarray(image.convert("RGB").resize((32, 32), Image.Resampling.BICUBIC), np.float32)[4:28, 4:28]
    expected = (pixels / 255 - np.float32(timm_stand_in["mean"])) / np.float32(timm_stand_in["std"])
    position = len(list((image_folder / "test" / "horizontal").iterdir()))  # the first vertical one
    np.testing.assert_allclose(data.test.x[position], expected.transpose(2, 0, 1), atol=1e-5)


def test_an_image_folder_without_preprocessing_is_refused(image_folder):
    with pytest.raises(CompressbenchError, match="an image folder needs the model's image preprocessing"):
        load_dataset(DatasetConfig(name=str(image_folder), as_given=True))


def test_images_preprocess_channels_last_when_the_model_takes_nhwc(tmp_path):
    Image.fromarray(np.full((10, 20, 3), 255, np.uint8)).save(tmp_path / "white.png")
    declared = {"size": [8, 8], "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5], "layout": "NHWC"}
    out = preprocess([tmp_path / "white.png"], declared)
    assert out.shape == (1, 8, 8, 3) and np.allclose(out, 1.0)


def test_compress_takes_an_image_folder_through_a_timm_architecture(timm_stand_in, image_folder, tmp_path):
    torch.manual_seed(0)
    save_file(_TinyCnn(2).state_dict(), tmp_path / "w.safetensors")
    outcome = cb.compress_model("timm:tiny", str(image_folder), weights=tmp_path / "w.safetensors",
                                out=tmp_path / "out", recipes="quant.dynamic,quant.static", max_accuracy_drop=100,
                                latency=FAST_LATENCY)  # fmt: skip
    manifest = outcome.manifest
    assert manifest["preprocessing"]["source"] == "timm.data.resolve_data_config"
    assert manifest["input"]["classes"] == ["horizontal", "vertical"]
    assert manifest["artifact"]["inputs"]["inputs"][0]["dtype"] == "float32"
    checked = cb.verify(outcome.out)
    assert checked["accuracy"]["here"] == pytest.approx(checked["accuracy"]["manifest"])


def test_without_timm_a_timm_model_says_what_it_needs(monkeypatch):
    monkeypatch.setitem(sys.modules, "timm", None)  # import timm raises ImportError
    with pytest.raises(CompressbenchError, match="timm cannot be imported here .*download.pytorch.org/whl/cpu"):
        preprocessing_for("timm:resnet18", "w.safetensors")


# --- a graph of several named inputs, fed from a .npz ---------------------------------------------------------------


def _two_input_graph(path):
    """logits = sum over positions of table[ids] * mask: two int64 inputs, `ids` and `mask`, batch dynamic."""
    table = np.random.default_rng(0).normal(size=(10, 3)).astype(np.float32)
    nodes = [
        helper.make_node("Gather", ["table", "ids"], ["embedded"], axis=0),
        helper.make_node("Cast", ["mask"], ["mask_float"], to=TensorProto.FLOAT),
        helper.make_node("Unsqueeze", ["mask_float", "axes"], ["mask3"]),
        helper.make_node("Mul", ["embedded", "mask3"], ["masked"]),
        helper.make_node("ReduceSum", ["masked", "one"], ["logits"], keepdims=0),
    ]
    graph = helper.make_graph(
        nodes, "two-inputs",
        [helper.make_tensor_value_info("ids", TensorProto.INT64, ["batch", 6]),
         helper.make_tensor_value_info("mask", TensorProto.INT64, ["batch", 6])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 3])],
        [helper.make_tensor("table", TensorProto.FLOAT, table.shape, table.ravel()),
         helper.make_tensor("axes", TensorProto.INT64, [1], [2]),
         helper.make_tensor("one", TensorProto.INT64, [1], [1])],
    )  # fmt: skip
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return table


def test_a_graph_of_two_named_inputs_is_fed_by_name_from_a_npz(tmp_path):
    table = _two_input_graph(tmp_path / "two.onnx")
    rng = np.random.default_rng(1)
    ids, mask = rng.integers(0, 10, (300, 6)), rng.integers(0, 2, (300, 6))
    labels = (table[ids] * mask[..., None]).sum(1).argmax(1)
    np.savez(tmp_path / "data.npz", x_test__ids=ids, x_test__mask=mask, y_test=labels)
    outcome = cb.compress_model(str(tmp_path / "two.onnx"), str(tmp_path / "data.npz"), out=tmp_path / "out",
                                recipes="quant.dynamic", latency=FAST_LATENCY)  # fmt: skip
    manifest = outcome.manifest
    assert manifest["baseline"]["accuracy"] == 1.0  # every sample fed by name: ids as ids, mask as mask
    assert [i["name"] for i in manifest["artifact"]["inputs"]["inputs"]] == ["ids", "mask"]
    assert cb.verify(outcome.out)["accuracy"]["here"] == 1.0


def test_a_npz_whose_inputs_differ_from_the_graphs_is_refused_by_name(tmp_path):
    _two_input_graph(tmp_path / "two.onnx")
    np.savez(tmp_path / "data.npz", x_test__mask=np.zeros((50, 6), np.int64), x_test__ids=np.zeros((50, 6), np.int64),
             y_test=np.zeros(50, np.int64))  # fmt: skip
    with pytest.raises(CompressbenchError, match=r"takes 2 inputs \(ids, mask\); the data gives mask, ids"):
        cb.compress_model(str(tmp_path / "two.onnx"), str(tmp_path / "data.npz"), out=tmp_path / "out",
                          recipes="quant.dynamic", latency=FAST_LATENCY)  # fmt: skip


FACTORY_OF_NAMED_INPUTS = """
import numpy as np
from torch import nn


class Bag(nn.Module):
    def __init__(self):
        super().__init__()
        self.embedding = nn.Embedding(10, 3)

    def forward(self, input_ids, attention_mask):  # several inputs, by name
        return (self.embedding(input_ids) * attention_mask[..., None]).sum(1)


def build(spec):
    assert spec.input_names == ("input_ids", "attention_mask") and spec.input_dtype == "int64"
    return Bag()


def make():
    rng = np.random.default_rng(0)
    ids, mask = rng.integers(0, 10, (200, 5)), rng.integers(0, 2, (200, 5))
    return {"x_test": {"input_ids": ids, "attention_mask": mask}, "y_test": (ids * mask).sum(1) % 3}
"""


def test_a_factory_taking_several_named_inputs_gets_them_by_name_as_int64(tmp_path):
    (tmp_path / "named.py").write_text(FACTORY_OF_NAMED_INPUTS)
    torch.manual_seed(0)
    model = nn.Module()
    model.embedding = nn.Embedding(10, 3)
    save_file(model.state_dict(), tmp_path / "w.safetensors")
    code = tmp_path / "named.py"
    outcome = cb.compress_model(
        f"{code}:build",
        f"{code}:make",
        out=tmp_path / "out",
        weights=tmp_path / "w.safetensors",
        recipes="quant.dynamic",
        latency=FAST_LATENCY,
    )
    inputs = outcome.manifest["artifact"]["inputs"]["inputs"]
    assert [(i["name"], i["dtype"]) for i in inputs] == [("input_ids", "int64"), ("attention_mask", "int64")]


# --- graphs as other exporters write them --------------------------------------------------------------------------


def _conv_graph_with_constant_weights(path, batch="n"):
    """A convolution and a global pool whose weights are `Constant` nodes, as Paddle and tf2onnx write them."""
    weight = np.random.default_rng(0).normal(size=(4, 1, 3, 3)).astype(np.float32)
    nodes = [
        helper.make_node("Constant", [], ["w"], value=helper.make_tensor("wv", TensorProto.FLOAT, weight.shape,
                                                                         weight.ravel())),
        helper.make_node("Conv", ["x", "w"], ["conv"], pads=[1, 1, 1, 1]),
        helper.make_node("GlobalAveragePool", ["conv"], ["pooled"]),
        helper.make_node("Flatten", ["pooled"], ["logits"]),
    ]  # fmt: skip
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, 1, 8, 8])]
    outputs = [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [batch, 4])]
    graph = helper.make_graph(nodes, "constants", inputs, outputs)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), path)
    return weight


def test_weights_held_in_constant_nodes_are_counted_as_parameters(tmp_path):
    from compressbench.measure.size import count_graph_params

    weight = _conv_graph_with_constant_weights(tmp_path / "conv.onnx")
    assert count_graph_params(onnx.load(tmp_path / "conv.onnx")) == (weight.size, weight.size)


def test_dynamic_int8_says_which_op_types_it_looked_for_and_what_the_graph_has(tmp_path):
    _conv_graph_with_constant_weights(tmp_path / "conv.onnx")
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "data.npz", x_test=rng.normal(size=(60, 1, 8, 8)).astype(np.float32),
             y_test=rng.integers(0, 4, 60))  # fmt: skip
    outcome = cb.compress_model(str(tmp_path / "conv.onnx"), str(tmp_path / "data.npz"), out=tmp_path / "out",
                                recipes="quant.dynamic", latency=FAST_LATENCY)  # fmt: skip
    failure = outcome.manifest["failed"]["quant.dynamic"]
    assert "looked for Gemm, MatMul and quantized none: the graph has Conv x1 (a node is quantized only" in failure
    assert "Traceback" not in failure


def test_a_graph_exported_with_a_fixed_batch_of_one_is_served_with_a_dynamic_batch_axis(tmp_path):
    _conv_graph_with_constant_weights(tmp_path / "conv.onnx", batch=1)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(80, 1, 8, 8)).astype(np.float32)
    graph = onnx.load(tmp_path / "conv.onnx")
    one_at_a_time = open_session(graph, "onnxruntime")  # the file as given
    labels = np.concatenate([one_at_a_time.run(x[i : i + 1]).argmax(1) for i in range(80)])
    np.savez(tmp_path / "data.npz", x_test=x, y_test=labels)
    outcome = cb.compress_model(str(tmp_path / "conv.onnx"), str(tmp_path / "data.npz"), out=tmp_path / "out",
                                recipes="quant.static", latency=FAST_LATENCY, batch=8)  # fmt: skip
    assert outcome.manifest["baseline"]["accuracy"] == 1.0  # batches of 8, the same answers as one at a time
    assert outcome.manifest["artifact"]["inputs"]["inputs"][0]["shape"][0] in ("batch", "?")


def test_an_int8_variant_one_runtime_cannot_compile_is_judged_on_the_others(tmp_path, monkeypatch):
    """OpenVINO failed to compile a Paddle classifier's QDQ graph (an Add of two DequantizeLinear outputs) that ONNX
    Runtime runs: the variant is kept for ONNX Runtime, and the step records where it cannot run."""
    from compressbench.techniques import onnx_quant

    opened = onnx_quant.open_session

    def openvino_refuses_int8(graph, runtime, *args, **kwargs):
        if runtime == "openvino" and any(node.op_type == "QuantizeLinear" for node in graph.graph.node):
            raise CompressbenchError("openvino cannot compile the model: [AddTransformation] index '0' out of range")
        return opened(graph, runtime, *args, **kwargs)

    monkeypatch.setattr(onnx_quant, "open_session", openvino_refuses_int8)
    _conv_graph_with_constant_weights(tmp_path / "conv.onnx")
    x = np.random.default_rng(0).normal(size=(120, 1, 8, 8)).astype(np.float32)
    labels = open_session(onnx.load(tmp_path / "conv.onnx"), "onnxruntime").run(x).argmax(1)
    np.savez(tmp_path / "data.npz", x_test=x, y_test=labels)
    outcome = cb.compress_model(str(tmp_path / "conv.onnx"), str(tmp_path / "data.npz"), out=tmp_path / "out",
                                recipes="quant.static", latency=FAST_LATENCY)  # fmt: skip
    assert "quant.static" not in outcome.manifest["failed"]
    steps = json.dumps(outcome.manifest["candidates"]["quant.static"]["steps"])
    assert "cannot_run_on" in steps and "index '0' out of range" in steps


class _BatchOfOne(nn.Module):
    """Flattens with `reshape(1, -1)`, as code written for one input at a time does: the export bakes the 1 in."""

    def __init__(self) -> None:
        super().__init__()
        self.conv, self.fc = nn.Conv2d(1, 2, 3), nn.Linear(72, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.conv(x).reshape(1, -1))


def test_a_graph_that_computes_with_its_fixed_batch_is_refused_with_what_to_do(tmp_path):
    torch.onnx.export(_BatchOfOne(), (torch.zeros(1, 1, 8, 8),), tmp_path / "fixed.onnx", dynamo=False)
    np.savez(tmp_path / "data.npz", x_test=np.zeros((40, 1, 8, 8), np.float32), y_test=np.arange(40) % 3)
    with pytest.raises(CompressbenchError, match="the file fixes its batch axis at 1 and the graph depends on it"):
        cb.compress_model(str(tmp_path / "fixed.onnx"), str(tmp_path / "data.npz"), out=tmp_path / "out",
                          recipes="quant.dynamic", latency=FAST_LATENCY)  # fmt: skip


# --- tables of every format ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".csv", ".jsonl", ".parquet"])
def test_a_table_of_numeric_features_reads_alike_from_csv_jsonl_and_parquet(tmp_path, suffix):
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"a": rng.normal(size=700), "b": rng.normal(size=700), "label": rng.integers(0, 3, 700)})
    path = tmp_path / f"table{suffix}"
    {".csv": lambda: frame.to_csv(path, index=False), ".jsonl": lambda: frame.to_json(path, orient="records",
     lines=True), ".parquet": lambda: frame.to_parquet(path)}[suffix]()  # fmt: skip
    data = load_dataset(DatasetConfig(name=str(path), as_given=True, calibration_size=100))
    assert data.spec.input_shape == (2,) and data.spec.input_dtype == "float32" and data.spec.num_classes == 3
    # no split column: everything is evaluation data, 100 held out for calibration (read in chunks of 256 rows)
    assert len(data.test) == 600 and len(data.calibration) == 100
    together = np.concatenate([data.test.x, data.val.x])
    assert np.allclose(np.sort(together[:, 0]), np.sort(frame["a"].to_numpy(np.float32)))


def test_a_table_whose_features_are_not_numbers_asks_for_the_text_column(tmp_path):
    pd.DataFrame({"sentence": ["a", "b"] * 20, "label": [0, 1] * 20}).to_csv(tmp_path / "t.csv", index=False)
    with pytest.raises(CompressbenchError, match=r"columns \['sentence'\] are not numbers; name the text column"):
        load_dataset(DatasetConfig(name=str(tmp_path / "t.csv"), as_given=True))


def test_what_the_quantizer_leaves_in_the_working_directory_stays_out_of_it(tmp_path, monkeypatch):
    """ONNX Runtime's symbolic shape inference saves `sym_shape_infer_temp.onnx` (and its weights as `<uuid>.data`)
    into the working directory when it gives up, and leaves them: the quantizer runs in a folder of its own."""
    from compressbench.techniques.onnx_quant import quantize_with

    _conv_graph_with_constant_weights(tmp_path / "conv.onnx")
    (tmp_path / "cwd").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")

    def quantizer_that_litters(target):
        onnx.save(onnx.load(tmp_path / "conv.onnx"), "sym_shape_infer_temp.onnx")
        onnx.save(onnx.load(tmp_path / "conv.onnx"), target)

    assert quantize_with("quant.static", quantizer_that_litters).graph.node
    assert list((tmp_path / "cwd").iterdir()) == []


def test_a_hugging_face_folder_fine_tunes_with_small_steps_not_the_generic_settings(hf_folder):
    from compressbench.models import training_defaults

    settings = training_defaults(str(hf_folder[0]))  # pruning's fine-tuning and a student's training start here
    assert settings["lr"] == 5e-5 and settings["epochs"] == 4 and not settings.get("min_steps")
