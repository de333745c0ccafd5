"""A 1-D CNN for signals such as MNIST-1D: three conv-BN-ReLU layers, then a linear classifier."""

from __future__ import annotations

from torch import nn

from compressbench.data import DataSpec
from compressbench.models import ModelFamily, models, scaled


class Conv1dNet(nn.Module):
    def __init__(self, in_channels: int, length: int, num_classes: int, width: float, depth: int) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c_in = in_channels
        for i in range(depth):
            c_out = scaled(32 if i == 0 else 64, width)
            stride = 1 if i == 0 else 2
            layers += [nn.Conv1d(c_in, c_out, 5, stride, 2, bias=False), nn.BatchNorm1d(c_out), nn.ReLU()]
            c_in = c_out
            length = (length - 1) // stride + 1
        self.features = nn.Sequential(*layers, nn.Flatten())
        self.classifier = nn.Linear(c_in * length, num_classes)

    def forward(self, x):
        return self.classifier(self.features(x))


def build(spec: DataSpec, width: float, depth: int | None) -> Conv1dNet:
    channels, length = spec.input_shape
    return Conv1dNet(channels, length, spec.num_classes, width, depth or 3)


models.register("conv1d")(
    ModelFamily(
        build,
        2,
        "1-D CNN, 3 conv layers of 32/64/64 channels, for MNIST-1D",
        training={"epochs": 40, "lr": 3e-3, "weight_decay": 1e-4, "schedule": "cosine", "min_steps": 3000},
    )
)
