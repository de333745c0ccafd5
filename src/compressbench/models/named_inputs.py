"""A model that takes several named inputs (input_ids, attention_mask, token_type_ids) inside a pipeline that moves
one array per batch: the inputs travel packed along axis 1, in the data's order, and are unpacked by name here."""

from __future__ import annotations

import torch
from torch import nn


class NamedInputs(nn.Module):
    """`forward(x)` calls `model(**{name: x[:, i]})`; the ONNX export gives the graph one input per name (with
    dynamic batch and sequence axes), and the runtimes' sessions feed them by name."""

    def __init__(self, model: nn.Module, names: tuple[str, ...], dtype: str = "int64") -> None:
        super().__init__()
        self.model = model
        self.input_names = tuple(names)
        self.dtype = dtype

    def unpacked(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """The inputs by name, in the data's type (the all-zeros examples that trace a model are float32)."""
        x = x.to(getattr(torch, self.dtype))
        return {name: x[:, i] for i, name in enumerate(self.input_names)}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(**self.unpacked(x))

    def __getattr__(self, name: str):
        """`embed` and the other methods of the wrapped model, where it has them (a sentence encoder's `embed`)."""
        try:
            return super().__getattr__(name)
        except AttributeError:
            if name == "embed" and hasattr(self.model, "embed"):
                return lambda x: self.model.embed(**self.unpacked(x))
            raise
