"""The runtimes a model is served on: export to ONNX and the sessions latency and accuracy are measured on.

A new runtime is one module here that calls `register_runtime` (and `register_artifact_kind` if it brings its own
model format), plus its import below.
"""

from compressbench.runtime import onnxruntime, openvino, stored, torch_eager  # noqa: F401  (registers)
from compressbench.runtime.base import (
    PRECISIONS,
    Runtime,
    Session,
    installed_runtimes,
    list_runtimes,
    open_session,
    register_runtime,
    runtimes,
    served_form,
    serving_runtimes,
)
from compressbench.runtime.export import export_onnx, verify_onnx
from compressbench.runtime.openvino import onnx_to_openvino

__all__ = [
    "PRECISIONS",
    "Runtime",
    "Session",
    "export_onnx",
    "installed_runtimes",
    "list_runtimes",
    "onnx_to_openvino",
    "open_session",
    "register_runtime",
    "runtimes",
    "served_form",
    "serving_runtimes",
    "verify_onnx",
]
