"""How and where a number was measured: runtime versions, CPU model and the instruction-set flags that matter."""

from __future__ import annotations

import functools
import os
import platform
from pathlib import Path
from typing import Any

RELEVANT_FLAGS = (
    "avx2",
    "avx512f",
    "avx512_vnni",
    "avx512_bf16",
    "avx512_fp16",
    "amx_tile",
    "amx_int8",
    "amx_bf16",
    "amx_fp16",
    "fma",
)


@functools.cache
def cpu_info() -> dict[str, Any]:
    model, flags = platform.processor() or "unknown", set()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name":
                model = value.strip()
            elif key.strip() == "flags":
                flags = set(value.split())
            if model != "unknown" and flags:
                break
    return {"model": model, "cores": os.cpu_count(), "flags": [f for f in RELEVANT_FLAGS if f in flags]}


@functools.cache
def environment() -> dict[str, Any]:
    import numpy
    import onnx
    import onnxruntime
    import torch

    return {
        "cpu": cpu_info(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "versions": {
            "torch": torch.__version__,
            "onnx": onnx.__version__,
            "onnxruntime": onnxruntime.__version__,
            "numpy": numpy.__version__,
        },
    }
