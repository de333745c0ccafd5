"""Dataset registry: each loader returns raw arrays; `load_dataset` turns them into a deterministic DataBundle."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_serializer

from compressbench.data.bundle import (
    DataBundle,
    DataSpec,
    Split,
    check_arrays,
    make_bundle,
    resolve_normalisation,
)
from compressbench.errors import CompressbenchError
from compressbench.registry import Registry

if TYPE_CHECKING:
    from compressbench.data.user import GivenData

__all__ = [
    "DataBundle",
    "DataSpec",
    "DatasetConfig",
    "RawDataset",
    "Split",
    "DataSource",
    "data_source_of",
    "data_sources",
    "datasets",
    "list_datasets",
    "load_dataset",
]


@dataclass(frozen=True)
class RawDataset:
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    num_classes: int
    augmentations: tuple[str, ...] = ()
    # auto: per-feature for tabular (N, F) inputs, one global mean / std otherwise; or global, per-feature, none.
    normalisation: str = "auto"
    # Set for text: inputs are (N, L) token ids of this vocabulary (padding id 0), never normalised.
    vocab_size: int | None = None


class Loader(Protocol):
    def __call__(self) -> RawDataset: ...


datasets: Registry[Loader] = Registry("dataset")


class DatasetConfig(BaseModel):
    """Which data and how it is split. `name` is a registered dataset or a user loader `module:function`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    val_size: int | float = Field(0.1, gt=0, description="validation samples (int) or fraction of train (float)")
    calibration_size: int = Field(512, ge=1, description="calibration samples drawn from the train split")
    train_limit: int | None = Field(None, ge=1, description="use at most this many training samples")
    test_limit: int | None = Field(None, ge=1, description="evaluate on at most this many test samples")
    as_given: bool = Field(
        False,
        description="a trained model's data: inputs exactly as the loader returns them (no normalisation, no "
        "added axis), and the train split optional (then calibration is held out of the evaluation data)",
    )
    text_column: str | None = Field(None, description="a table's column of texts (or None: every other column "
                                    "but the label is a numeric feature)")  # fmt: skip
    label_column: str | None = Field(None, description="a table's column of labels (integers or names)")
    preprocessing: dict[str, Any] | None = Field(
        None,
        description="how a file's texts or images become the model's inputs (a tokenizer and sequence length; a "
        "resize, crop, mean / std and layout): declared by the model it is read for, recorded in the manifest and "
        "applied identically at calibration, evaluation and verify",
    )

    @model_serializer(mode="wrap")
    def _identity(self, dump: Any) -> dict[str, Any]:
        """Fields added after keys were first stored appear only when set, so other datasets keep their keys."""
        fields = dump(self)
        for name in ("as_given", "text_column", "label_column", "preprocessing"):
            if not fields.get(name):
                fields.pop(name, None)
        return fields


@dataclass(frozen=True)
class DataSource:
    """A kind of data reference that is a file or folder (a table, arrays, an image folder): `matches(name)` says
    whether a name is one, `read(config)` gives its arrays with the config's preprocessing applied, and
    `fingerprint(config)` the content hash that makes a run's key change when the data does."""

    description: str
    matches: Callable[[str], bool]
    read: Callable[[DatasetConfig], GivenData]
    fingerprint: Callable[[DatasetConfig], str]


data_sources: Registry[DataSource] = Registry("data source")


def data_source_of(name: str) -> DataSource | None:
    """The registered source that reads `name` (the intake package registers them), or None."""
    return next((data_sources.get(kind) for kind in data_sources if data_sources.get(kind).matches(name)), None)


def list_datasets() -> list[str]:
    return datasets.names()


_cache: dict[tuple[str, int], DataBundle] = {}


def load_dataset(config: DatasetConfig | str, seed: int = 0) -> DataBundle:
    """Load and split a dataset; the same (config, seed) always gives the same bundle (cached in-process)."""
    if isinstance(config, str):
        config = DatasetConfig(name=config)
    key = (config.model_dump_json(), seed)  # a config holding a preprocessing mapping is not hashable
    if key not in _cache:
        _cache[key] = _load(config, seed)
    return _cache[key]


def _load(config: DatasetConfig, seed: int) -> DataBundle:
    from compressbench.data.user import as_given_bundle, is_user_reference, load_user_data

    if config.as_given or data_source_of(config.name) is not None:
        return as_given_bundle(config, seed)
    raw = load_user_data(config.name) if is_user_reference(config.name) else datasets.get(config.name)()
    if isinstance(raw, DataBundle):
        return raw
    x_test, y_test = raw.x_test, raw.y_test
    if config.test_limit is not None:
        x_test, y_test = x_test[: config.test_limit], y_test[: config.test_limit]
    return make_bundle(
        config.name,
        raw.x_train,
        raw.y_train,
        x_test,
        y_test,
        seed=seed,
        val_size=config.val_size,
        calibration_size=config.calibration_size,
        train_limit=config.train_limit,
        num_classes=raw.num_classes,
        augmentations=raw.augmentations,
        normalisation=raw.normalisation,
        vocab_size=raw.vocab_size,
    )


def _check_loader_output(source: str, raw: object) -> RawDataset | DataBundle:
    if isinstance(raw, RawDataset | DataBundle):
        return raw
    if isinstance(raw, tuple) and len(raw) == 4:
        x_train, y_train, x_test, y_test = raw
    elif isinstance(raw, dict) and {"x_train", "y_train", "x_test", "y_test"} <= raw.keys():
        x_train, y_train, x_test, y_test = (raw[k] for k in ("x_train", "y_train", "x_test", "y_test"))
    else:
        raise CompressbenchError(
            f"{source}: must return a DataBundle, a RawDataset, a tuple (x_train, y_train, x_test, y_test) "
            f"or a dict with those keys (and optionally 'normalisation'); got {type(raw).__name__}"
        )
    normalisation = raw.get("normalisation", "auto") if isinstance(raw, dict) else "auto"
    for part, (x, y) in {"train": (x_train, y_train), "test": (x_test, y_test)}.items():
        check_arrays(f"{source} {part}", x, y)
    num_classes = int(max(np.max(y_train), np.max(y_test))) + 1
    resolve_normalisation(normalisation, np.ndim(x_train), source)  # a misspelt choice fails here, by name
    return RawDataset(x_train, y_train, x_test, y_test, num_classes, normalisation=normalisation)


# Register the built-in datasets.
from compressbench.data import digits, fashion_mnist, mnist1d, synthetic, text  # noqa: E402,F401
