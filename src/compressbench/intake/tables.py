"""Tables of texts (or numeric features) and labels: CSV, JSONL or Parquet, read in chunks.

`--text-column` (default `text`) holds the texts, tokenized as the model's folder declares (`preprocessing` kind
`tokenizer`); without a text column every column but the label is a numeric feature. `--label-column` (default
`label`) holds integers or names (mapped through the model's own `label2id` when it has one, else sorted). A column
`split` with values `train` / `test` (`validation` / `val` count as test) splits the rows; without it every row is
evaluation data and calibration samples are held out of it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd

from compressbench.data import DatasetConfig, DataSource, data_sources
from compressbench.data.user import GivenData
from compressbench.errors import CompressbenchError
from compressbench.intake.stream import READ_BATCH, streamed
from compressbench.intake.text import Tokenizing
from compressbench.weights import weights_fingerprint

SUFFIXES = (".csv", ".jsonl", ".parquet")
DEFAULT_TEXT, DEFAULT_LABEL = "text", "label"
TRAIN, TEST = "train", ("test", "validation", "val")


def is_table(name: str) -> bool:
    return name.lower().endswith(SUFFIXES)


def chunks(path: Path, columns: list[str] | None = None) -> Iterator[pd.DataFrame]:
    """The table in chunks of READ_BATCH rows (only `columns` when given)."""
    suffix = path.suffix.lower()
    try:
        if suffix == ".parquet":
            import pyarrow.parquet as pq

            for batch in pq.ParquetFile(path).iter_batches(batch_size=READ_BATCH, columns=columns):
                yield batch.to_pandas()
        elif suffix == ".csv":
            yield from pd.read_csv(path, chunksize=READ_BATCH, usecols=columns)
        else:
            for frame in pd.read_json(path, lines=True, chunksize=READ_BATCH):
                yield frame[columns] if columns else frame
    except (ValueError, KeyError, OSError) as error:
        raise CompressbenchError(f"data {path}: cannot read it as {suffix[1:]}: {str(error).splitlines()[0]}") from None


def header(path: Path) -> list[str]:
    return list(next(chunks(path)).columns)


def read_table(config: DatasetConfig) -> GivenData:
    path = Path(config.name)
    if not path.is_file():
        raise CompressbenchError(f"data {path}: no such file")
    columns = header(path)
    label = config.label_column or DEFAULT_LABEL
    text = config.text_column or (DEFAULT_TEXT if DEFAULT_TEXT in columns else None)
    for field, column in (("--label-column", label), ("--text-column", text)):
        if column is not None and column not in columns:
            raise CompressbenchError(f"data {path}: {field} {column!r} is not a column (columns: {', '.join(columns)})")
    wanted = [label, *(["split"] if "split" in columns else [])]
    frame = pd.concat(list(chunks(path, wanted)), ignore_index=True)
    preprocessing = config.preprocessing or {}
    labels, names = _labels(frame[label], path, label, preprocessing.get("label2id"))
    is_train = _train_rows(frame, path)
    key = _key(config)
    if text is not None:
        tokenizing = Tokenizing.of(preprocessing, f"data {path}")
        x = streamed(key, len(frame), tokenizing.sample_shape, "int64",
                     (tokenizing(_texts(part[text], path, text)) for part in chunks(path, [text])),
                     f"tokenizing {path.name}")  # fmt: skip
        extra = {"input_names": tokenizing.input_names, "vocab_size": tokenizing.vocab_size}
    else:
        features = [c for c in columns if c not in (label, "split")]
        x = streamed(key, len(frame), (len(features),), "float32",
                     (_features(part, path) for part in chunks(path, features)), f"reading {path.name}")  # fmt: skip
        extra = {}
    num_classes = int(preprocessing.get("num_classes") or labels.max() + 1)
    notes = {"classes": names, "preprocessing": preprocessing or {"kind": "none: numeric features as they are"}}
    if is_train is None:
        return GivenData((x, labels), None, num_classes, notes=notes, **extra)
    train, test = np.flatnonzero(is_train), np.flatnonzero(~is_train)
    return GivenData((x[test], labels[test]), (x[train], labels[train]), num_classes, notes=notes, **extra)


def _labels(column: pd.Series, path: Path, name: str, label2id: dict | None) -> tuple[np.ndarray, list[str] | None]:
    if column.isna().any():
        raise CompressbenchError(f"data {path}: column {name!r} has {int(column.isna().sum())} empty labels")
    if pd.api.types.is_integer_dtype(column):
        if column.min() < 0:
            raise CompressbenchError(f"data {path}: column {name!r} has negative labels")
        return column.to_numpy(np.int64), None
    values = column.astype(str)
    if label2id:
        unknown = sorted(set(values) - set(label2id))
        if unknown:
            raise CompressbenchError(
                f"data {path}: labels {unknown[:5]} in column {name!r} are not among the model's "
                f"({', '.join(sorted(label2id))})"
            )
        return values.map(label2id).to_numpy(np.int64), sorted(label2id, key=label2id.get)
    names = sorted(set(values))
    return values.map({n: i for i, n in enumerate(names)}).to_numpy(np.int64), names


def _train_rows(frame: pd.DataFrame, path: Path) -> np.ndarray | None:
    if "split" not in frame:
        return None
    split = frame["split"].astype(str).str.lower()
    unknown = sorted(set(split) - {TRAIN, *TEST})
    if unknown:
        raise CompressbenchError(f"data {path}: column 'split' has {unknown}; expected train, test or validation")
    is_train = (split == TRAIN).to_numpy()
    if is_train.all() or not is_train.any():
        return None
    return is_train


def _texts(column: pd.Series, path: Path, name: str) -> list[str]:
    if column.isna().any():
        raise CompressbenchError(f"data {path}: column {name!r} has empty texts")
    return column.astype(str).tolist()


def _features(frame: pd.DataFrame, path: Path) -> np.ndarray:
    bad = [c for c in frame.columns if not pd.api.types.is_numeric_dtype(frame[c])]
    if bad:
        raise CompressbenchError(f"data {path}: columns {bad} are not numbers; name the text column with --text-column")
    return frame.to_numpy(np.float32)


def _key(config: DatasetConfig) -> str:
    identity = {"data": fingerprint(config), "text": config.text_column, "label": config.label_column,
                "preprocessing": config.preprocessing}  # fmt: skip
    return hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()[:24]


def fingerprint(config: DatasetConfig) -> str:
    return weights_fingerprint(config.name)


data_sources.register("table")(
    DataSource("a CSV, JSONL or Parquet file of texts (or features) and labels", is_table, read_table, fingerprint)
)
