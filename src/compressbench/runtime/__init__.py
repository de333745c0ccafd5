"""The runtimes a model is served on: export to ONNX and the sessions latency and accuracy are measured on."""

from compressbench.runtime.export import export_onnx, verify_onnx
from compressbench.runtime.sessions import Session, list_runtimes, open_session

__all__ = ["Session", "export_onnx", "list_runtimes", "open_session", "verify_onnx"]
