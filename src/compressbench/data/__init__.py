"""Dataset registry: each loader returns raw arrays; `load_dataset` turns them into a deterministic DataBundle."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

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

__all__ = [
    "DataBundle",
    "DataSpec",
    "DatasetConfig",
    "RawDataset",
    "Split",
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

    @model_serializer(mode="wrap")
    def _identity(self, dump: Any) -> dict[str, Any]:
        """`as_given` appears only when set, so other datasets keep the keys they had before it existed."""
        fields = dump(self)
        if not fields.get("as_given"):
            fields.pop("as_given", None)
        return fields


def list_datasets() -> list[str]:
    return datasets.names()


_cache: dict[tuple[DatasetConfig, int], DataBundle] = {}


def load_dataset(config: DatasetConfig | str, seed: int = 0) -> DataBundle:
    """Load and split a dataset; the same (config, seed) always gives the same bundle (cached in-process)."""
    if isinstance(config, str):
        config = DatasetConfig(name=config)
    key = (config, seed)
    if key not in _cache:
        _cache[key] = _load(config, seed)
    return _cache[key]


def _load(config: DatasetConfig, seed: int) -> DataBundle:
    from compressbench.data.user import as_given_bundle, is_user_reference, load_user_data

    if config.as_given:
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
