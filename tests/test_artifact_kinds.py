"""A new artifact kind is one registration: a toy kind, its runtime and the technique that makes it, all defined in
this file alone, go through compress (written, described in the manifest) and verify (loaded, measured again)."""

from __future__ import annotations

import dataclasses
import io
import json
import textwrap
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest
import torch
from conftest import FAST_LATENCY
from torch import nn

import compressbench as cb
from compressbench.artifacts import ArtifactKind, artifact_kinds, register_artifact_kind
from compressbench.runtime import Runtime, register_runtime, runtimes
from compressbench.techniques import Technique, TechniqueConfig, register_technique, techniques

TOY = "toy-npz"


@dataclass
class LayerStack:
    """Dense layers with ReLU between them, weights stored in float16 and computed in float32."""

    layers: list[tuple[np.ndarray, np.ndarray]]

    def __call__(self, x: np.ndarray) -> np.ndarray:
        for number, (weight, bias) in enumerate(self.layers):
            x = x @ weight.astype(np.float32).T + bias.astype(np.float32)
            if number < len(self.layers) - 1:
                x = np.maximum(x, 0)
        return x


def _bytes(stack: LayerStack) -> bytes:
    buffer = io.BytesIO()
    arrays = {f"w{i}": weight for i, (weight, _) in enumerate(stack.layers)}
    np.savez(buffer, **arrays, **{f"b{i}": bias for i, (_, bias) in enumerate(stack.layers)})
    return buffer.getvalue()


def _write(stack: LayerStack, folder) -> list[str]:
    (folder / "model.npz").write_bytes(_bytes(stack))
    return ["model.npz"]


def _load(folder) -> LayerStack:
    arrays = np.load(folder / "model.npz")
    return LayerStack([(arrays[f"w{i}"], arrays[f"b{i}"]) for i in range(len(arrays.files) // 2)])


def _describe(stack: LayerStack) -> dict[str, Any]:
    inputs = [{"name": "x", "shape": ["batch", stack.layers[0][0].shape[1]], "dtype": "float32"}]
    return {"inputs": inputs, "outputs": [{"name": "logits", "shape": ["batch", stack.layers[-1][0].shape[0]]}]}


@dataclass
class StackSession:
    stack: LayerStack
    info: dict[str, Any] = field(default_factory=lambda: {"runtime": "toy-numpy", "version": np.__version__,
                                                          "threads": 1, "precision": "fp32"})  # fmt: skip

    def run(self, x: np.ndarray) -> np.ndarray:
        return self.stack(x)


class ToLayerStack(Technique):
    name = "toy.layer_stack"
    family = "quantization"
    produces = TOY
    summary = "dense layers to a float16 numpy stack (a test's own technique)"

    class Config(TechniqueConfig):
        pass

    def apply(self, candidate, context):
        linear = [m for m in candidate.module.modules() if isinstance(m, nn.Linear)]
        layers = [(m.weight.detach().numpy().astype(np.float16), m.bias.detach().numpy().astype(np.float16))
                  for m in linear]  # fmt: skip
        return dataclasses.replace(candidate, artifact=LayerStack(layers))


@pytest.fixture
def toy_kind():
    register_artifact_kind(ArtifactKind(TOY, "a numpy layer stack", lambda a: isinstance(a, LayerStack), _bytes,
                                        write=_write, load=_load, describe=_describe, cut=lambda a, t: a))  # fmt: skip
    register_runtime(Runtime(name="toy-numpy", package="numpy", install="pip install numpy", description="numpy",
                             open=lambda stack, threads, precision: StackSession(stack), opens=(TOY,)))  # fmt: skip
    register_technique(ToLayerStack)
    yield
    techniques.unregister(ToLayerStack.name)
    runtimes.unregister("toy-numpy")
    artifact_kinds.unregister(TOY)


DATA = textwrap.dedent(
    """
    import numpy as np
    from sklearn.datasets import load_digits


    def make():
        x, y = load_digits(return_X_y=True)
        return (x[1400:] / 16.0).astype(np.float32), y[1400:]
    """
)


def _trained_mlp() -> nn.Module:
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    inputs, labels = torch.from_numpy((x[:1400] / 16.0).astype(np.float32)), torch.from_numpy(y[:1400])
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(150):
        optimiser.zero_grad()
        nn.functional.cross_entropy(model(inputs), labels).backward()
        optimiser.step()
    return model.eval()


def test_a_kind_registered_in_a_test_goes_through_compress_and_verify(toy_kind, tmp_path):
    (tmp_path / "digits_data.py").write_text(DATA)
    model = _trained_mlp()
    out = cb.compress_model(model, f"{tmp_path / 'digits_data.py'}:make", out=tmp_path / "out",
                            recipes=["toy.layer_stack"], objective="size", latency=FAST_LATENCY)  # fmt: skip
    manifest = json.loads((out.out / "manifest.json").read_text())
    assert out.chosen == "toy.layer_stack"
    assert manifest["artifact"]["kind"] == TOY and manifest["artifact"]["runtime"] == "toy-numpy"
    assert list(manifest["artifact"]["files"]) == ["model.npz"]
    assert manifest["artifact"]["inputs"]["inputs"] == [{"name": "x", "shape": ["batch", 64], "dtype": "float32"}]
    checked = cb.verify(out.out)
    assert checked["runtime"] == "toy-numpy"
    assert checked["accuracy"]["here"] == pytest.approx(manifest["compressed"]["accuracy"])
