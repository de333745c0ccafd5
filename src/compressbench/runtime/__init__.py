"""The runtimes a model is served on: export to ONNX and the sessions latency and accuracy are measured on."""

from compressbench.runtime.export import export_onnx, verify_onnx
from compressbench.runtime.sessions import (
    Session,
    installed_runtimes,
    is_openvino_model,
    list_runtimes,
    open_session,
    runtimes,
)

__all__ = [
    "Session",
    "export_onnx",
    "installed_runtimes",
    "is_openvino_model",
    "list_runtimes",
    "open_session",
    "runtimes",
    "verify_onnx",
]
