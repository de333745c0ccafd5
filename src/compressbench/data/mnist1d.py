"""MNIST-1D (Greydanus 2020), generated locally and deterministically by the `mnist1d` package."""

from __future__ import annotations

import contextlib
import io

import numpy as np

from compressbench.data import RawDataset, datasets


@datasets.register("mnist1d")
def load() -> RawDataset:
    from mnist1d.data import get_dataset_args, make_dataset

    args = get_dataset_args()  # the paper's defaults: 4,000 train / 1,000 test, 40 points, seed 42
    with contextlib.redirect_stdout(io.StringIO()):  # the generator prints; never downloads
        data = make_dataset(args)
    return RawDataset(
        np.asarray(data["x"], np.float32),
        np.asarray(data["y"], np.int64),
        np.asarray(data["x_test"], np.float32),
        np.asarray(data["y_test"], np.int64),
        num_classes=10,
        normalisation="global",  # (N, 40) signals, not tabular features: one scale for every point
    )
