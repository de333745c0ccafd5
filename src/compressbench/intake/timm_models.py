"""A timm architecture by name with a weights file (`timm:resnet18` and `--weights w.safetensors`): the classes from
the weights' classifier (else the data), and timm's own data config (input size, interpolation, crop, mean / std) as
the image preprocessing.

timm imports torchvision, and torchvision's wheels on PyPI are built against the CUDA build of torch: with the CPU
torch this project pins they fail to import (`operator torchvision::nms does not exist`), so timm is not installed
by the project's setup. Install a CPU torchvision matching torch (from PyTorch's CPU index) and timm to use this.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from compressbench.data import DataSpec
from compressbench.errors import CompressbenchError
from compressbench.models import ModelConfig, ModelSource, model_sources
from compressbench.weights import read_weights

PREFIX = "timm:"
INSTALL = ("timm needs torchvision built for the CPU torch: pip install torchvision --index-url "
           "https://download.pytorch.org/whl/cpu, then pip install timm")  # fmt: skip


def is_timm(name: str) -> bool:
    return name.startswith(PREFIX)


def _timm() -> Any:
    try:
        import timm
    except Exception as error:  # ImportError, or torchvision's own failure to load against a CPU torch
        raise CompressbenchError(f"timm cannot be imported here ({str(error).splitlines()[0]}): {INSTALL}") from None
    return timm


def architecture(name: str) -> str:
    arch = name[len(PREFIX) :]
    if not arch:
        raise CompressbenchError(f"model {name!r}: name the architecture, e.g. timm:resnet18")
    return arch


def create(name: str, num_classes: int) -> nn.Module:
    timm = _timm()
    try:
        return timm.create_model(architecture(name), pretrained=False, num_classes=num_classes)
    except Exception as error:  # an unknown name: timm's own message lists close ones
        raise CompressbenchError(f"model {name!r}: timm cannot create it: {str(error).splitlines()[0]}") from None


def classes_in_weights(name: str, weights: str) -> int | None:
    """The classifier's output count read from the weights (timm's `get_classifier()` names the layer)."""
    probe = create(name, 2)
    classifier = probe.get_classifier()
    prefix = next((n for n, m in probe.named_modules() if m is classifier), None)
    tensor = read_weights(weights).get(f"{prefix}.weight") if prefix else None
    return int(tensor.shape[0]) if tensor is not None else None


def build(config: ModelConfig, spec: DataSpec) -> nn.Module:
    if config.width != 1.0 or config.depth is not None:
        raise CompressbenchError(f"model {config.name}: a timm architecture is built as named (no width or depth)")
    return create(config.name, spec.num_classes)


def preprocessing(name: str, weights: str) -> dict[str, Any]:
    """timm's data config for the architecture, as the image preprocessing (intake.images)."""
    timm = _timm()
    classes = classes_in_weights(name, weights)
    data = timm.data.resolve_data_config({}, model=create(name, classes or 2))
    _, height, width = data["input_size"]
    crop = float(data.get("crop_pct") or 1.0)
    return {
        "kind": "image",
        "size": [int(height), int(width)],
        "resize": int(round(min(height, width) / crop)),
        "interpolation": data.get("interpolation", "bilinear"),
        "mean": [float(v) for v in data["mean"]],
        "std": [float(v) for v in data["std"]],
        "scale": 1 / 255,
        "channels": "RGB",
        "layout": "NCHW",
        "source": "timm.data.resolve_data_config",
        **({"num_classes": classes} if classes else {}),
    }


model_sources.register("timm")(ModelSource("a timm architecture (timm:name) with --weights", is_timm, build,
                                           fingerprint=lambda name: name))  # fmt: skip
