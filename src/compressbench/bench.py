"""Unstable: the measuring pieces the scripts in `benchmarks/` compose by hand (export, sessions, interleaved latency,
accuracy, MACs, the int8 graph quantizers, a zoo model and its data, the fortunes texts, a technique's context).
Not part of the public API (`compressbench.__all__`): these names may change or go without notice. Programs should
use the public verbs."""

from compressbench.cache import default_cache_dir
from compressbench.data import load_dataset
from compressbench.data.text import FORTUNE_TOPICS, fortune_texts
from compressbench.measure import environment, measure_accuracy, measure_latency_interleaved
from compressbench.measure.environment import cpu_info
from compressbench.measure.size import count_macs
from compressbench.models import build_model
from compressbench.runtime import export_onnx, onnx_to_openvino, open_session
from compressbench.techniques import Context
from compressbench.techniques.quant_dynamic import quantize_dynamic_graph
from compressbench.techniques.quant_static import preprocess, quantize_static_graph
from compressbench.training import evaluate

__all__ = [
    "FORTUNE_TOPICS",
    "Context",
    "build_model",
    "count_macs",
    "cpu_info",
    "default_cache_dir",
    "environment",
    "evaluate",
    "export_onnx",
    "fortune_texts",
    "load_dataset",
    "measure_accuracy",
    "measure_latency_interleaved",
    "onnx_to_openvino",
    "open_session",
    "preprocess",
    "quantize_dynamic_graph",
    "quantize_static_graph",
]
