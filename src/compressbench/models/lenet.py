"""LeNet-5 (LeCun et al. 1998) with ReLU and max-pooling, sized to the input."""

from __future__ import annotations

from torch import nn

from compressbench.data import DataSpec
from compressbench.models import ModelFamily, models, scaled


class LeNet5(nn.Module):
    def __init__(self, in_channels: int, size: tuple[int, int], num_classes: int, width: float) -> None:
        super().__init__()
        c1, c2, f1, f2 = (scaled(c, width) for c in (6, 16, 120, 84))
        # The classic 28x28 layout (conv 5x5 pad 2, pool, conv 5x5, pool); small inputs keep the second padding.
        pad2 = 0 if min(size) // 2 >= 10 else 2
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, c1, 5, padding=2),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(c1, c2, 5, padding=pad2),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        h, w = ((s // 2 + 2 * pad2 - 4) // 2 for s in size)
        self.classifier_hidden = nn.Sequential(
            nn.Flatten(), nn.Linear(c2 * h * w, f1), nn.ReLU(), nn.Linear(f1, f2), nn.ReLU()
        )
        self.classifier = nn.Linear(f2, num_classes)

    def forward(self, x):
        return self.classifier(self.classifier_hidden(self.features(x)))


def build(spec: DataSpec, width: float, depth: int | None) -> LeNet5:
    channels, height, width_px = spec.input_shape
    return LeNet5(channels, (height, width_px), spec.num_classes, width)


models.register("lenet5")(
    ModelFamily(
        build,
        3,
        "LeNet-5 convolutional network (61k params on 28x28)",
        training={"epochs": 20, "lr": 1e-3, "weight_decay": 5e-4, "schedule": "cosine", "min_steps": 3000},
    )
)
