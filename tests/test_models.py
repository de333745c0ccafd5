import pytest
import torch

from compressbench.data import DataSpec, load_dataset
from compressbench.errors import CompressbenchError
from compressbench.models import ModelConfig, build_model, list_models

IMAGE = DataSpec("img", (1, 28, 28), 10)
SMALL_IMAGE = DataSpec("small", (1, 8, 8), 10)
SIGNAL = DataSpec("sig", (1, 40), 10)
TOKENS = DataSpec("tok", (16,), 10, normalisation="none", vocab_size=64)


@pytest.mark.parametrize(
    ("name", "spec", "params"),
    [
        ("mlp", IMAGE, 266_610),
        ("lenet5", IMAGE, 61_706),
        ("resnet", IMAGE, 174_970),
        ("conv1d", SIGNAL, 37_610),
        ("transformer", TOKENS, 109_002),
    ],
)
def test_zoo_models_have_their_published_sizes(name, spec, params):
    model = build_model(name, spec)
    assert sum(p.numel() for p in model.parameters()) == params
    assert model(torch.zeros(3, *spec.input_shape)).shape == (3, 10)


def test_every_family_builds_on_small_inputs_and_width_shrinks_it():
    for name in list_models():
        if name == "minilm":
            continue  # pretrained: its width is fixed (tests/test_transformers.py checks the refusal)
        spec = {"conv1d": SIGNAL, "transformer": TOKENS}.get(name, SMALL_IMAGE)
        full = sum(p.numel() for p in build_model(name, spec).parameters())
        half = sum(p.numel() for p in build_model(ModelConfig(name=name, width=0.5), spec).parameters())
        assert half < 0.5 * full, name


def test_resnet_depth_adds_blocks():
    assert len(build_model(ModelConfig(name="resnet", depth=3), IMAGE).blocks) == 9


def test_image_model_on_signals_is_refused_clearly():
    with pytest.raises(CompressbenchError, match=r"model 'lenet5' takes images \(C, H, W\), but dataset 'sig'"):
        build_model("lenet5", SIGNAL)


def test_user_model_factory(tmp_path):
    (tmp_path / "mymodel.py").write_text(
        "import math, torch\n"
        "def build(spec):\n"
        "    size = math.prod(spec.input_shape)\n"
        "    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(size, spec.num_classes))\n"
        "def wrong(spec):\n"
        "    return torch.nn.Flatten()\n"
    )
    spec = load_dataset("digits").spec
    assert build_model(f"{tmp_path}/mymodel.py:build", spec)(torch.zeros(1, 1, 8, 8)).shape == (1, 10)
    with pytest.raises(CompressbenchError, match=r"output shape \(2, 64\) for 2 inputs; expected \(2, 10\)"):
        build_model(f"{tmp_path}/mymodel.py:wrong", spec)


def test_unknown_model_suggests():
    with pytest.raises(CompressbenchError, match="did you mean 'lenet5'"):
        build_model("lenet", IMAGE)
