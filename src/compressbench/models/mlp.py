"""Fully connected networks; the default is LeNet-300-100 (LeCun et al. 1998), Deep Compression's MLP."""

from __future__ import annotations

import math

from torch import nn

from compressbench.data import DataSpec
from compressbench.models import ModelFamily, models, scaled

HIDDEN = (300, 100)


class MLP(nn.Module):
    def __init__(self, in_features: int, hidden: tuple[int, ...], num_classes: int) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Flatten()]
        for width_in, width_out in zip((in_features, *hidden), hidden, strict=False):
            layers += [nn.Linear(width_in, width_out), nn.ReLU()]
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(hidden[-1] if hidden else in_features, num_classes)

    def forward(self, x):
        return self.classifier(self.features(x))


def build(spec: DataSpec, width: float, depth: int | None) -> MLP:
    hidden = HIDDEN if depth is None else tuple(HIDDEN[0] // (2**i) for i in range(depth))
    return MLP(math.prod(spec.input_shape), tuple(scaled(h, width) for h in hidden), spec.num_classes)


models.register("mlp")(
    ModelFamily(
        build,
        None,
        "LeNet-300-100 fully connected network (266k params on 28x28)",
        training={"epochs": 20, "lr": 1e-3, "schedule": "cosine", "patience": 4, "min_steps": 3000},
    )
)
