"""Technique plug-ins. Importing this package registers every built-in technique."""

from compressbench.techniques import (  # noqa: E402,F401  (registers)
    distill,
    huffman,
    precision,
    prune_channels,
    prune_heads,
    prune_magnitude,
    prune_nm,
    quant_dynamic,
    quant_nncf,
    quant_qat,
    quant_static,
    weight_sharing,
)
from compressbench.techniques.base import (
    Candidate,
    Context,
    Need,
    Technique,
    TechniqueConfig,
    list_techniques,
    register_technique,
    techniques,
)

__all__ = [
    "Candidate",
    "Context",
    "Need",
    "Technique",
    "TechniqueConfig",
    "list_techniques",
    "register_technique",
    "techniques",
]
