"""`precision.bf16` / `precision.fp16`: run the same weights in a reduced floating-point precision.

Refused up front on a CPU without the instructions: OpenVINO silently falls back to fp32 there, and a fallback
must never be reported as a reduced-precision result.
"""

from __future__ import annotations

from compressbench.errors import CompressbenchError
from compressbench.measure.environment import cpu_info
from compressbench.techniques.base import (
    Candidate,
    Context,
    Need,
    Technique,
    TechniqueConfig,
    register_technique,
)

# CPU flags (as /proc/cpuinfo names them) that give each precision native arithmetic.
NATIVE_FLAGS = {"bf16": ("avx512_bf16", "amx_bf16"), "fp16": ("avx512_fp16", "amx_fp16")}


class PrecisionConfig(TechniqueConfig):
    pass


def check_cpu_supports(precision: str, step: str, flags: list[str] | None = None) -> None:
    flags = cpu_info()["flags"] if flags is None else flags
    if not any(flag in flags for flag in NATIVE_FLAGS[precision]):
        raise CompressbenchError(
            f"{step}: this CPU ({cpu_info()['model']}) lacks {' / '.join(NATIVE_FLAGS[precision])}, so {precision} "
            "would run emulated or fall back to fp32; refused rather than reported as a speed-up"
        )


class _ReducedPrecision(Technique):
    precision: str
    Config = PrecisionConfig
    family = "reduced precision"
    seeded = False  # a cast of the weights

    def apply(self, candidate: Candidate, context: Context) -> Candidate:
        check_cpu_supports(self.precision, self.name)
        candidate.precision = self.precision
        candidate.records.append({"step": self.name, "precision": self.precision})
        return candidate


@register_technique
class Bf16(_ReducedPrecision):
    name = "precision.bf16"
    precision = "bf16"
    needs = frozenset({Need.BF16_CPU})  # only worth it with native bf16 arithmetic (refused without it)
    summary = "execute in bfloat16 (OpenVINO or torch; needs AVX-512 BF16 or AMX)"


@register_technique
class Fp16(_ReducedPrecision):
    name = "precision.fp16"
    precision = "fp16"
    needs = frozenset({Need.FP16_CPU})
    summary = "execute in float16 (OpenVINO or torch; needs AVX-512 FP16 or AMX-FP16)"
