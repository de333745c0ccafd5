"""A `.npz` file of arrays: `x_test` and `y_test` (`x_train` and `y_train` to fine-tune; `num_classes` optional), the
inputs exactly as the model takes them (signed integers stay int64: token ids). Several named inputs are packed
along axis 1 by the model's own order: `x_test__input_ids`, `x_test__attention_mask`, ... (two underscores)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from compressbench.data import DatasetConfig, DataSource, data_sources
from compressbench.data.bundle import check_arrays
from compressbench.data.user import GivenData
from compressbench.errors import CompressbenchError
from compressbench.weights import weights_fingerprint


def is_npz(name: str) -> bool:
    return name.lower().endswith(".npz")


def read_npz(config: DatasetConfig) -> GivenData:
    path = Path(config.name)
    if not path.is_file():
        raise CompressbenchError(f"data {path}: no such file")
    with np.load(path, allow_pickle=False) as arrays:
        names = _input_names(arrays.files, path)
        parts = {}
        for part in ("test", "train"):
            if f"y_{part}" not in arrays.files:
                continue
            x = np.stack([arrays[f"x_{part}__{n}"] for n in names], axis=1) if names else arrays[f"x_{part}"]
            check_arrays(f"data {path} {part}", x, arrays[f"y_{part}"])
            parts[part] = (x, arrays[f"y_{part}"].astype(np.int64))
        declared = int(arrays["num_classes"]) if "num_classes" in arrays.files else None
    if "test" not in parts:
        raise CompressbenchError(f"data {path}: needs arrays x_test and y_test (has {', '.join(sorted(arrays.files))})")
    num_classes = declared or int(max(y.max() for _, y in parts.values())) + 1
    return GivenData(parts["test"], parts.get("train"), num_classes, input_names=names,
                     notes={"preprocessing": {"kind": "none: the arrays as the file holds them"}})  # fmt: skip


def _input_names(files: list[str], path: Path) -> tuple[str, ...]:
    named = [name.split("__", 1)[1] for name in files if name.startswith("x_test__")]
    if named and "x_test" in files:
        raise CompressbenchError(f"data {path}: holds x_test and x_test__<name> arrays; use one form")
    return tuple(named)


def fingerprint(config: DatasetConfig) -> str:
    return weights_fingerprint(config.name)


data_sources.register("npz")(DataSource("a .npz file of arrays (x_test, y_test; x_train, y_train)", is_npz, read_npz,
                                        fingerprint))  # fmt: skip
