"""Technique plug-ins. Importing this package registers every built-in technique."""

from compressbench.techniques import distill, quant_dynamic  # noqa: E402,F401  (registers)
from compressbench.techniques.base import (
    Candidate,
    Context,
    Form,
    Technique,
    TechniqueConfig,
    list_techniques,
    register_technique,
    techniques,
)

__all__ = [
    "Candidate",
    "Context",
    "Form",
    "Technique",
    "TechniqueConfig",
    "list_techniques",
    "register_technique",
    "techniques",
]
