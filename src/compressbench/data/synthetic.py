"""A tiny learnable image task for tests: class-dependent blobs on 12x12 noise."""

from __future__ import annotations

import numpy as np

from compressbench.data import RawDataset, datasets


@datasets.register("synthetic")
def load(n_train: int = 600, n_test: int = 200, size: int = 12, num_classes: int = 4) -> RawDataset:
    rng = np.random.default_rng(1234)
    templates = rng.normal(0, 1, (num_classes, size, size)).astype(np.float32)

    def sample(n: int) -> tuple[np.ndarray, np.ndarray]:
        y = rng.integers(0, num_classes, n)
        x = templates[y] + rng.normal(0, 1.5, (n, size, size)).astype(np.float32)
        return x.astype(np.float32), y.astype(np.int64)

    x_train, y_train = sample(n_train)
    x_test, y_test = sample(n_test)
    return RawDataset(x_train, y_train, x_test, y_test, num_classes=num_classes, augmentations=("crop",))
