"""DataBundle: deterministic train / val / test / calibration splits, normalised with train statistics."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np

from compressbench.errors import CompressbenchError


@dataclass(frozen=True)
class DataSpec:
    """What a model is built from: the shape of one input and the number of classes."""

    name: str
    input_shape: tuple[int, ...]
    num_classes: int
    # Augmentations that keep the label (e.g. horizontal flip is fine for clothes, not for digits).
    augmentations: tuple[str, ...] = ()
    # How inputs were normalised (`NORMALISATIONS`), with the train split's statistics: one scalar each for
    # "global", one per feature for "per-feature", none for "none" (the loader's inputs are taken as they are).
    normalisation: str = "global"
    mean: float | tuple[float, ...] = 0.0
    std: float | tuple[float, ...] = 1.0
    # Token-id inputs (text): the tokenizer's vocabulary size. Ids travel as float32 (exact below 2^24) so that every
    # split, loader and training loop handles one array type; a text model's exported graph takes int64 and the
    # runtimes' sessions cast to it.
    vocab_size: int | None = None
    # Inputs as the model takes them. Integer inputs (token ids from a user's data) stay int64 end to end; a model
    # with several inputs (input_ids, attention_mask, ...) gets them packed along axis 1 of x, in this order, and
    # each graph takes them by these names (`models.NamedInputs` unpacks them for a torch module).
    input_dtype: str = "float32"
    input_names: tuple[str, ...] = ()

    @property
    def tokens(self) -> bool:
        return self.vocab_size is not None

    @property
    def torch_dtype(self) -> str:
        return "int64" if self.input_dtype.startswith("int") else "float32"


@dataclass(frozen=True)
class Split:
    x: np.ndarray  # float32 or int64 (DataSpec.input_dtype), (N, *input_shape)
    y: np.ndarray  # int64, (N,)

    def __len__(self) -> int:
        return len(self.y)


@dataclass(frozen=True)
class DataBundle:
    spec: DataSpec
    train: Split
    val: Split
    test: Split
    calibration: Split
    notes: dict[str, object] = field(default_factory=dict)

    def split(self, name: str) -> Split:
        if name not in ("train", "val", "test", "calibration"):
            raise CompressbenchError(f"unknown split {name!r} (known: train, val, test, calibration)")
        return getattr(self, name)

    def recalibrated(self, seed: int) -> DataBundle:
        """The same splits with the calibration samples drawn afresh from the train split by `seed`: a seed of the
        compression step varies which samples calibrate, while the baseline's train / val split stays as it was
        trained on. A bundle without a train split keeps its calibration."""
        if not len(self.train):
            return self
        chosen = np.random.default_rng(seed).choice(len(self.train), min(len(self.calibration), len(self.train)),
                                                    replace=False)  # fmt: skip
        calibration = Split(self.train.x[chosen], self.train.y[chosen])
        return dataclasses.replace(self, calibration=calibration, notes={**self.notes, "calibration_seed": seed})


NORMALISATIONS = {
    "global": "one mean and standard deviation over every input value of the train split",
    "per-feature": "each feature standardised by its own train-split mean and standard deviation",
    "none": "inputs taken as the loader returns them (the loader's own normalisation)",
}


def resolve_normalisation(asked: str, raw_rank: int, source: str) -> str:
    """'auto' means per-feature for tabular inputs (N, F), whose features live on their own scales, and one global
    mean / std for images and signals, whose values share one scale."""
    if asked == "auto":
        return "per-feature" if raw_rank == 2 else "global"
    if asked not in NORMALISATIONS:
        raise CompressbenchError(f"{source}: normalisation {asked!r} is not one of auto, {', '.join(NORMALISATIONS)}")
    return asked


def check_arrays(source: str, x: np.ndarray, y: np.ndarray, num_classes: int | None = None) -> None:
    """Validate one (x, y) pair from a loader; errors name the source so a user knows which file or function."""
    if not isinstance(x, np.ndarray) or not isinstance(y, np.ndarray):
        raise CompressbenchError(f"{source}: expected numpy arrays, got {type(x).__name__} and {type(y).__name__}")
    if x.ndim < 2:
        raise CompressbenchError(f"{source}: inputs must have shape (N, ...) with N samples, got {x.shape}")
    if y.ndim != 1 or len(y) != len(x):
        raise CompressbenchError(f"{source}: labels must have shape ({len(x)},), got {y.shape}")
    if len(x) == 0:
        raise CompressbenchError(f"{source}: no samples")
    if not np.issubdtype(y.dtype, np.integer):
        raise CompressbenchError(f"{source}: labels must be integers, got dtype {y.dtype}")
    if y.min() < 0 or (num_classes is not None and y.max() >= num_classes):
        raise CompressbenchError(f"{source}: labels must lie in [0, {num_classes}), got [{y.min()}, {y.max()}]")
    if not np.issubdtype(x.dtype, np.number) or not np.isfinite(x.astype(np.float64)).all():
        raise CompressbenchError(f"{source}: inputs must be finite numbers, got dtype {x.dtype}")


def make_bundle(
    name: str,
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_test: np.ndarray,
    y_test: np.ndarray,
    *,
    seed: int,
    val_size: int | float,
    calibration_size: int,
    train_limit: int | None = None,
    num_classes: int | None = None,
    augmentations: tuple[str, ...] = (),
    normalisation: str = "global",
    vocab_size: int | None = None,
) -> DataBundle:
    """Split train into train/val (shuffled by `seed`), draw calibration from train, normalise by train statistics
    (`NORMALISATIONS`; never the val or test split's).

    Inputs of shape (N, H, W) or (N, L) gain a channel axis: models always see (N, C, ...). Token ids (`vocab_size`
    given) stay (N, L) and are never normalised.
    """
    if vocab_size is not None:
        for part, x in (("train", x_train), ("test", x_test)):
            check_token_ids(f"{name} {part}", x, vocab_size)
        normalisation = "none"
    normalisation = resolve_normalisation(normalisation, x_train.ndim, name)
    num_classes = num_classes or int(max(y_train.max(), y_test.max())) + 1
    check_arrays(f"{name} train", x_train, y_train, num_classes)
    check_arrays(f"{name} test", x_test, y_test, num_classes)
    if x_train.shape[1:] != x_test.shape[1:]:
        raise CompressbenchError(f"{name}: train inputs {x_train.shape[1:]} and test inputs {x_test.shape[1:]} differ")
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(y_train))
    n_val = int(round(val_size * len(order))) if isinstance(val_size, float) else int(val_size)
    if not 0 < n_val < len(order):
        raise CompressbenchError(f"{name}: val_size {val_size} leaves no train or no val samples ({len(order)} in all)")
    val_idx, train_idx = order[:n_val], order[n_val:]
    if train_limit is not None:
        train_idx = train_idx[:train_limit]
    calibration_idx = train_idx[: min(calibration_size, len(train_idx))]

    if vocab_size is None:
        x_train, x_test = _with_channel_axis(x_train), _with_channel_axis(x_test)
    x_train, x_test = x_train.astype(np.float32), x_test.astype(np.float32)
    if normalisation == "per-feature":
        mean = x_train[train_idx].mean(axis=0)
        std = x_train[train_idx].std(axis=0)
        std[std == 0] = 1.0  # a constant feature stays constant (zero) rather than dividing by zero
    elif normalisation == "global":
        mean, std = float(x_train[train_idx].mean()), float(x_train[train_idx].std()) or 1.0
    else:
        mean, std = 0.0, 1.0

    def split(x: np.ndarray, y: np.ndarray, idx: np.ndarray | None = None) -> Split:
        xs = x if idx is None else x[idx]
        ys = y if idx is None else y[idx]
        return Split(((xs - mean) / std).astype(np.float32), ys.astype(np.int64))

    if np.ndim(mean) == 0:
        stats = (float(mean), float(std))
    else:
        stats = (tuple(mean.ravel().tolist()), tuple(std.ravel().tolist()))
    spec = DataSpec(name, tuple(x_train.shape[1:]), num_classes, augmentations, normalisation, *stats, vocab_size)
    return DataBundle(
        spec,
        train=split(x_train, y_train, train_idx),
        val=split(x_train, y_train, val_idx),
        test=split(x_test, y_test),
        calibration=split(x_train, y_train, calibration_idx),
        notes={"seed": seed, "normalisation": normalisation, "how": NORMALISATIONS[normalisation]},
    )


def check_token_ids(source: str, x: np.ndarray, vocab_size: int) -> None:
    """Token ids: (N, L) integers in [0, vocab_size), and below 2^24 so that float32 carries them exactly."""
    if x.ndim != 2:  # the zoo's text loaders; a user's several inputs are checked by the intake that reads them
        raise CompressbenchError(f"{source}: token ids must have shape (N, sequence length), got {x.shape}")
    if not 0 < vocab_size <= 2**24:
        raise CompressbenchError(f"{source}: vocab_size {vocab_size} must lie in [1, 2^24] (ids travel as float32)")
    if not np.array_equal(x, np.round(x)) or x.min() < 0 or x.max() >= vocab_size:
        raise CompressbenchError(
            f"{source}: token ids must be integers in [0, {vocab_size}), got values in [{x.min()}, {x.max()}]"
        )


def _with_channel_axis(x: np.ndarray) -> np.ndarray:
    return x[:, None] if x.ndim in (2, 3) else x
