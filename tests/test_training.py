import numpy as np
import pytest
import torch
from torch import nn

from compressbench.data import Split, load_dataset
from compressbench.models import build_model
from compressbench.modes import evaluating
from compressbench.training import TrainConfig, augment, evaluate, predict_logits, train


def test_training_learns_and_is_deterministic_by_seed():
    data = load_dataset("synthetic")
    config = TrainConfig(epochs=4, lr=3e-3)
    first, second = build_model("mlp", data.spec, seed=7), build_model("mlp", data.spec, seed=7)
    before = evaluate(first, data.test)
    report = train(first, data, config, seed=7)
    train(second, data, config, seed=7)
    assert evaluate(first, data.test) > max(0.8, before + 0.3)
    assert report.epochs_run == 4 and len(report.history) == 4
    for a, b in zip(first.parameters(), second.parameters(), strict=True):
        assert torch.equal(a, b)


def test_early_stopping_restores_the_best_epoch():
    data = load_dataset("synthetic")
    model = build_model("mlp", data.spec)
    # A huge learning rate makes validation accuracy fall after the first epochs.
    report = train(model, data, TrainConfig(epochs=30, lr=0.05, optimizer="sgd", patience=2), seed=0)
    assert report.epochs_run < 30
    assert report.val_accuracy == max(h["val_accuracy"] for h in report.history)
    assert abs(evaluate(model, data.val) - report.val_accuracy) < 1e-9


def test_augmentation_crops_and_flips_within_the_allowed_set():
    x = torch.arange(2 * 1 * 6 * 6, dtype=torch.float32).reshape(2, 1, 6, 6)
    import numpy as np

    flipped = augment(x, ("hflip",), np.random.default_rng(0))
    assert all(torch.equal(f, o) or torch.equal(f, o.flip(-1)) for f, o in zip(flipped, x, strict=True))
    cropped = augment(x, ("crop",), np.random.default_rng(1))
    assert cropped.shape == x.shape and not torch.equal(cropped, x)
    assert torch.equal(augment(x, (), np.random.default_rng(0)), x)


class Breaks(nn.Module):
    """Training, with a frozen (eval) batch norm inside; its forward fails."""

    def __init__(self):
        super().__init__()
        self.norm = nn.BatchNorm1d(4).eval()
        self.head = nn.Linear(4, 2)

    def forward(self, x):
        assert not self.training and not self.norm.training and not self.head.training, "runs in eval mode"
        raise RuntimeError("boom")


def test_evaluating_restores_every_training_flag_even_after_an_exception():
    model = Breaks()
    with pytest.raises(RuntimeError, match="boom"), evaluating(model):
        model(torch.zeros(2, 4))
    assert model.training and model.head.training and not model.norm.training
    with pytest.raises(RuntimeError, match="boom"):  # a user of it: the model is not left in eval mode
        predict_logits(model, Split(np.zeros((3, 4), dtype=np.float32), np.zeros(3, dtype=np.int64)))
    assert model.training and model.head.training and not model.norm.training
