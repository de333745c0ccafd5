"""Shared fixtures: an isolated model cache, quiet progress, fast measurement settings, tiny trained models."""

from __future__ import annotations

import os

import pytest

os.environ["COMPRESSBENCH_PROGRESS"] = "off"

from compressbench.cache import Cache  # noqa: E402
from compressbench.measure import LatencySettings  # noqa: E402
from compressbench.measure.compare import MeasureSettings  # noqa: E402
from compressbench.training import TrainConfig  # noqa: E402

FAST_LATENCY = LatencySettings(warmup_s=0.02, blocks=2, block_s=0.01, batch_sizes=(1, 32))
FAST_MEASURE = MeasureSettings(latency=FAST_LATENCY)
QUICK_TRAINING = TrainConfig(epochs=3, lr=3e-3)


@pytest.fixture(scope="session", autouse=True)
def isolated_cache(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cache")
    os.environ["COMPRESSBENCH_CACHE"] = str(folder)
    return Cache(folder)


@pytest.fixture(scope="session")
def cache(isolated_cache) -> Cache:
    return isolated_cache
