"""Pure measurement: takes a model and data, returns numbers with how they were measured. Never trains."""

from compressbench.measure.accuracy import AccuracyResult, collapse_flag, measure_accuracy, wilson_interval
from compressbench.measure.environment import environment
from compressbench.measure.latency import LatencySettings, LatencyStats, measure_latency_interleaved
from compressbench.measure.size import SizeResult, measure_size

__all__ = [
    "AccuracyResult",
    "collapse_flag",
    "LatencySettings",
    "LatencyStats",
    "SizeResult",
    "environment",
    "measure_accuracy",
    "measure_latency_interleaved",
    "measure_size",
    "wilson_interval",
]
