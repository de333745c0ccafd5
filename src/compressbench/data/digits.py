"""scikit-learn's bundled 8x8 handwritten digits (1,797 images): small, real, and always available."""

from __future__ import annotations

import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from compressbench.data import RawDataset, datasets


@datasets.register("digits")
def load() -> RawDataset:
    bunch = load_digits()
    x = (bunch.images / 16.0).astype(np.float32)
    y = bunch.target.astype(np.int64)
    # A fixed test split (not the job seed), so every seed is scored on the same images.
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.25, random_state=0, stratify=y)
    return RawDataset(x_train, y_train, x_test, y_test, num_classes=10, augmentations=())
