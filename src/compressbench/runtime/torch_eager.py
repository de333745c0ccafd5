"""PyTorch eager mode: the runtime a model is trained in (inference mode, fixed threads, optional autocast)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from compressbench.artifacts import TORCH
from compressbench.errors import CompressbenchError
from compressbench.runtime.base import Runtime, Session, register_runtime


@dataclass
class TorchEagerSession:
    module: nn.Module
    threads: int = 1
    precision: str = "fp32"
    info: dict[str, Any] = field(init=False)

    def __post_init__(self) -> None:
        self.module.eval()
        self._dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(self.precision)
        self.info = {
            "runtime": "torch",
            "version": torch.__version__,
            "threads": self.threads,
            "precision": self.precision,
        }

    def run(self, x: np.ndarray) -> np.ndarray:
        previous = torch.get_num_threads()
        torch.set_num_threads(self.threads)
        try:
            with torch.inference_mode(), torch.autocast("cpu", self._dtype, enabled=self._dtype is not None):
                return self.module(torch.from_numpy(x)).float().numpy()
        finally:
            torch.set_num_threads(previous)


def _open(artifact: nn.Module, threads: int, precision: str, options: dict[str, Any] | None = None) -> Session:
    if options:
        raise CompressbenchError(f"torch: no session options (got {sorted(options)}); it runs the module as it is")
    return TorchEagerSession(artifact, threads, precision)


register_runtime(
    Runtime(
        name="torch",
        package="torch",
        install="pip install torch==2.13.0",
        open=_open,
        description="PyTorch eager, inference mode",
        opens=(TORCH,),
        precisions=("fp32", "bf16", "fp16"),
    )
)
