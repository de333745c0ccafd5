"""Small shared definitions about torch modules: running one in eval mode without losing its training mode, and
the one list of layer types whose weights the techniques prune, share and quantize and whose MACs are counted.

A leaf module (it imports only torch): `measure/`, `runtime/` and `models/` use it and must not import
`compressbench.training`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from torch import nn

# Convolutions of every dimensionality: MACs per output element are in_channels / groups * prod(kernel_size), and
# a weight is (out_channels, in_channels / groups, *kernel), the same layout for 1-D, 2-D and 3-D.
CONV_LAYERS: tuple[type[nn.Module], ...] = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
# The layers whose weights are pruned, shared, quantized and counted: convolutions and fully connected layers.
PRUNABLE_LAYERS: tuple[type[nn.Module], ...] = (*CONV_LAYERS, nn.Linear)


@contextmanager
def evaluating(model: nn.Module) -> Iterator[nn.Module]:
    """Run the body with `model` in eval mode; on exit (an exception included) every submodule gets back the
    training flag it had, so a model in training with a frozen (eval) submodule comes back exactly as it was."""
    before = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for module, training in before:
            module.training = training
