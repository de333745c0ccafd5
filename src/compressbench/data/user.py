"""User data: `package.module:function` or `path/to/file.py:function`, returning arrays or a DataBundle.

For a model the user trained (`DatasetConfig.as_given`), inputs are taken exactly as the loader returns them: the
artifact handed back must take the same inputs, so nothing is normalised or reshaped behind the user's back. The
train split is then optional: without it, calibration and validation samples are held out of the evaluation data,
apart from the samples accuracy is measured on.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from compressbench.data import DataBundle, DatasetConfig, RawDataset, _check_loader_output, data_source_of
from compressbench.data.bundle import DataSpec, Split, check_arrays
from compressbench.errors import CompressbenchError
from compressbench.imports import call_user, is_user_reference, load_reference

__all__ = ["GivenData", "as_given_bundle", "input_dtype", "is_user_reference", "load_user_data"]
# Without a train split: at most this share of the evaluation data is held out for calibration and validation.
HELD_OUT_SHARE = 0.2


def load_user_data(reference: str) -> RawDataset | DataBundle:
    factory = load_reference(reference, what="dataset")
    return _check_loader_output(f"dataset {reference}", call_user(reference, "dataset", factory))


@dataclass(frozen=True)
class GivenData:
    """A trained model's data as its source gives it: test arrays, train arrays or None, and what they are."""

    test: tuple[np.ndarray, np.ndarray]
    train: tuple[np.ndarray, np.ndarray] | None
    num_classes: int
    input_names: tuple[str, ...] = ()
    vocab_size: int | None = None
    notes: dict[str, Any] = field(default_factory=dict)


def as_given_bundle(config: DatasetConfig, seed: int) -> DataBundle:
    """Splits of the data as its source gives it: val and calibration from the train split when there is one, else
    held out of the evaluation data (`notes['held_out']` lists their indices there). The source is a file or folder
    read by a registered `DataSource` (CSV / JSONL / Parquet, .npz, an image folder) or a loader `file.py:function`."""
    source = data_source_of(config.name)
    if source is not None:
        given = source.read(config)
    elif is_user_reference(config.name):
        raw = call_user(config.name, "dataset", load_reference(config.name, what="dataset"))
        train, test, num_classes = _arrays(f"dataset {config.name}", raw)
        given = GivenData(test, train, num_classes, input_names=input_names_of(raw))
    else:
        raise CompressbenchError(
            f"dataset {config.name!r}: a trained model's data comes from a file (CSV, JSONL, Parquet, .npz), an "
            "image folder or your loader ('file.py:function'), which returns the inputs exactly as the model takes them"
        )
    return _given_splits(config, seed, given)


def _given_splits(config: DatasetConfig, seed: int, given: GivenData) -> DataBundle:
    source = f"dataset {config.name}"
    x_test, y_test = given.test
    if config.test_limit is not None:
        x_test, y_test = x_test[: config.test_limit], y_test[: config.test_limit]
    rng = np.random.default_rng(seed)
    notes: dict[str, Any] = {"seed": seed, "normalisation": "none", "how": "inputs exactly as the loader returns them"}
    notes.update(given.notes)
    if given.train is not None:
        x_train, y_train = given.train
        order = rng.permutation(len(y_train))
        n_val = int(round(config.val_size * len(order))) if isinstance(config.val_size, float) else config.val_size
        if not 0 < n_val < len(order):
            raise CompressbenchError(f"{source}: val_size {config.val_size} leaves no train or no val samples")
        val_idx, train_idx = order[:n_val], order[n_val:]
        if config.train_limit is not None:
            train_idx = train_idx[: config.train_limit]
        calibration_idx = train_idx[: config.calibration_size]
        splits = {
            "train": _split(x_train[train_idx], y_train[train_idx]),
            "val": _split(x_train[val_idx], y_train[val_idx]),
            "calibration": _split(x_train[calibration_idx], y_train[calibration_idx]),
            "test": _split(x_test, y_test),
        }
        notes["calibration"] = f"{len(splits['calibration'])} samples of the train split"
    else:
        order = rng.permutation(len(y_test))
        held = min(config.calibration_size, int(len(order) * HELD_OUT_SHARE))
        if held < 1:
            raise CompressbenchError(f"{source}: {len(order)} evaluation samples are too few to hold any out")
        held_idx, test_idx = np.sort(order[:held]), np.sort(order[held:])
        empty = _split(x_test[:0], y_test[:0])
        splits = {
            "train": empty,
            "val": _split(x_test[held_idx], y_test[held_idx]),
            "calibration": _split(x_test[held_idx], y_test[held_idx]),
            "test": _split(x_test[test_idx], y_test[test_idx]),
        }
        notes["held_out"] = held_idx.tolist()
        notes["calibration"] = (
            f"{held} samples held out of the {len(order)} evaluation samples (seed {seed}) for calibration and "
            f"validation; accuracy is measured on the other {len(test_idx)}"
        )
    spec = DataSpec(
        config.name,
        tuple(x_test.shape[1:]),
        given.num_classes,
        (),
        "none",
        0.0,
        1.0,
        vocab_size=given.vocab_size,
        input_dtype=input_dtype(x_test),
        input_names=given.input_names,
    )
    return DataBundle(spec, **splits, notes=notes)


def _arrays(source: str, raw: object) -> tuple[tuple[np.ndarray, np.ndarray] | None, tuple, int]:
    """(train or None, test, classes) from a dict with x_test / y_test (x_train / y_train optional), a tuple
    (x_test, y_test) or (x_train, y_train, x_test, y_test), or a RawDataset."""
    if isinstance(raw, RawDataset):
        raw = {"x_train": raw.x_train, "y_train": raw.y_train, "x_test": raw.x_test, "y_test": raw.y_test}
    if isinstance(raw, tuple) and len(raw) in (2, 4):
        names = ("x_test", "y_test") if len(raw) == 2 else ("x_train", "y_train", "x_test", "y_test")
        raw = dict(zip(names, raw, strict=True))
    if not isinstance(raw, dict) or not {"x_test", "y_test"} <= raw.keys():
        raise CompressbenchError(
            f"{source}: must return a dict with x_test and y_test (x_train and y_train to fine-tune), a tuple "
            f"(x_test, y_test) or (x_train, y_train, x_test, y_test); got {type(raw).__name__}"
        )
    raw = {key: packed(f"{source} {key}", value) if key.startswith("x_") else value for key, value in raw.items()}
    check_arrays(f"{source} test", raw["x_test"], raw["y_test"])
    has_train = raw.get("x_train") is not None or raw.get("y_train") is not None
    if has_train:
        check_arrays(f"{source} train", raw.get("x_train"), raw.get("y_train"))
        if raw["x_train"].shape[1:] != raw["x_test"].shape[1:]:
            raise CompressbenchError(
                f"{source}: train inputs {raw['x_train'].shape[1:]} and test inputs {raw['x_test'].shape[1:]} differ"
            )
    labels = [raw["y_test"], *([raw["y_train"]] if has_train else [])]
    num_classes = int(raw.get("num_classes") or max(int(y.max()) for y in labels) + 1)
    train = (raw["x_train"], raw["y_train"]) if has_train else None
    return train, (raw["x_test"], raw["y_test"]), num_classes


def input_dtype(x: np.ndarray) -> str:
    """Signed integers (token ids, indices) stay int64 end to end; everything else (values, raw uint8 pixels) is
    given to the model as float32."""
    return "int64" if np.issubdtype(x.dtype, np.signedinteger) else "float32"


def input_names_of(raw: object) -> tuple[str, ...]:
    """The names of a loader's several inputs (x_test given as a dict of arrays by name), in its order."""
    x_test = raw.get("x_test") if isinstance(raw, dict) else None
    return tuple(x_test) if isinstance(x_test, dict) else ()


def packed(source: str, x: object) -> object:
    """Several inputs by name (a dict of arrays of one shape and dtype) packed along axis 1, in the dict's order."""
    if not isinstance(x, dict):
        return x
    arrays = list(x.values())
    if not arrays or any(not isinstance(a, np.ndarray) for a in arrays):
        raise CompressbenchError(f"{source}: several inputs must be a dict of numpy arrays by input name")
    if len({(a.shape, a.dtype) for a in arrays}) > 1:
        shapes = ", ".join(f"{name} {a.shape} {a.dtype}" for name, a in x.items())
        raise CompressbenchError(
            f"{source}: several inputs must share one shape and dtype to travel together: {shapes}"
        )
    return np.stack(arrays, axis=1)


def _split(x: np.ndarray, y: np.ndarray) -> Split:
    # Writeable and in memory: a file's inputs arrive memory-mapped read-only from the intake's cache.
    return Split(np.require(x, input_dtype(x), ["C", "W"]), y.astype(np.int64))
