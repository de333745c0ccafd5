"""A user dataset and model, given to compressbench as `file.py:function`:

    .venv/bin/compressbench run --dataset docs/examples/my_model.py:make_data \
        --model docs/examples/my_model.py:build --recipe quant.static

The data here is scikit-learn's 8x8 handwritten digits (1,797 images, 10 classes); swap in your own.
"""

import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import nn


def make_data():
    """Return (x_train, y_train, x_test, y_test): numpy inputs of shape (N, ...) and integer labels of shape (N,).

    Inputs of shape (N, H, W) or (N, L) gain a channel axis; compressbench carves validation and calibration
    samples from the train split and normalises with the train split's statistics (one mean and standard deviation
    for images and signals, one per feature for tabular (N, F) inputs). Return a dict with a "normalisation" key
    ("global", "per-feature" or "none") to choose.
    """
    images, labels = load_digits(return_X_y=True)
    x = (images.reshape(-1, 8, 8) / 16.0).astype(np.float32)
    x_train, x_test, y_train, y_test = train_test_split(
        x, labels.astype(np.int64), test_size=0.25, random_state=0, stratify=labels
    )
    return x_train, y_train, x_test, y_test


def build(spec, width=1.0):
    """Given the DataSpec (spec.input_shape, here (1, 8, 8), and spec.num_classes), return an untrained nn.Module
    that maps a batch to (N, num_classes) logits. `width` scales the hidden layers: distill.kd builds its student
    with width=0.5 (a factory without `width` is refused for it)."""
    channels, height, columns = spec.input_shape
    filters, hidden = max(1, round(32 * width)), max(1, round(128 * width))
    return nn.Sequential(
        nn.Conv2d(channels, filters, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(filters * (height // 2) * (columns // 2), hidden),
        nn.ReLU(),
        nn.Linear(hidden, spec.num_classes),
    )
