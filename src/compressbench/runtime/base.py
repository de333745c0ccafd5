"""The runtime contract: a registry of what can serve a model, each opening sessions with one interface.

A runtime names the artifact kinds it opens and the precisions it executes. A torch module reaches a runtime
that opens ONNX through an export (done by the measuring code); nothing else converts. Every session reports the
runtime, its version, its thread count and the precision it *actually executes* (read back from the runtime
where it can tell, so a silent fallback is never reported as a speed-up).
"""

from __future__ import annotations

import importlib.util
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from compressbench.artifacts import artifact_kinds, describe_kind, kind_of
from compressbench.errors import CompressbenchError
from compressbench.registry import Registry

PRECISIONS = ("fp32", "bf16", "fp16")


class Session(Protocol):
    info: dict[str, Any]

    def run(self, x: np.ndarray) -> np.ndarray: ...


def run_many(session: Session, x: np.ndarray, calls: int) -> float:
    """Serve `calls` batches the way the session's runtime serves concurrent requests (its own `run_many`: parallel
    sessions, an asynchronous queue over streams), or one after another; the wall seconds they took."""
    if hasattr(session, "run_many"):
        return session.run_many(x, calls)
    started = time.perf_counter()
    for _ in range(calls):
        session.run(x)
    return time.perf_counter() - started


@dataclass(frozen=True)
class Runtime:
    name: str
    package: str  # importable module that must be installed
    install: str  # how to install it, for the one-line error
    open: Callable[..., Session]  # open(artifact, threads, precision, options) -> Session
    description: str
    opens: tuple[str, ...]  # artifact kinds it loads
    precisions: tuple[str, ...] = ("fp32",)
    # The artifact as this runtime really runs it, where it converts on load (OpenVINO: an ONNX graph to its IR):
    # what a deployer of a model measured on it ships.
    served_form: Callable[[Any], Any] | None = None

    def missing(self) -> str | None:
        """None when installed, else the one line that says how to install it."""
        if importlib.util.find_spec(self.package) is None:
            return f"runtime {self.name} is not installed: {self.install}"
        return None

    def serves(self, kind: str, precision: str = "fp32") -> bool:
        """Whether it can serve an artifact of `kind` in `precision` (a torch module through an ONNX export)."""
        readable = kind in self.opens or any(k in self.opens for k in artifact_kinds.get(kind).reaches)
        return readable and precision in self.precisions

    def why_not(self, kind: str, precision: str = "fp32") -> str:
        if precision not in self.precisions:
            return f"runtime {self.name} has no {precision} CPU kernels; use a runtime that executes {precision}"
        return f"runtime {self.name} needs {' or '.join(map(describe_kind, self.opens))}; this is {describe_kind(kind)}"


runtimes: Registry[Runtime] = Registry("runtime")


def register_runtime(runtime: Runtime) -> Runtime:
    return runtimes.register(runtime.name)(runtime)


def list_runtimes() -> list[str]:
    return runtimes.names()


def installed_runtimes() -> list[str]:
    return [name for name in runtimes.names() if runtimes.get(name).missing() is None]


def serving_runtimes(kind: str, precision: str = "fp32") -> list[str]:
    """The registered runtimes that can serve an artifact of `kind` in `precision`."""
    return [name for name in runtimes.names() if runtimes.get(name).serves(kind, precision)]


def served_form(artifact: Any, runtime: str) -> Any:
    """`artifact` as `runtime` runs it (itself unless the runtime converts it on load)."""
    convert = runtimes.get(runtime).served_form
    return convert(artifact) if convert is not None else artifact


def open_session(
    artifact: Any, runtime: str, threads: int = 1, precision: str = "fp32", options: dict[str, Any] | None = None
) -> Session:
    """A session of `runtime` on `artifact`; `options` are the runtime's own session settings (ONNX Runtime's
    optimisation level, execution mode, parallel sessions; OpenVINO's performance hint and streams), as recorded in a
    run and a manifest. None: the latency-bound defaults."""
    spec = runtimes.get(runtime)
    if problem := spec.missing():
        raise CompressbenchError(problem)
    if precision not in PRECISIONS:
        raise CompressbenchError(f"unknown precision {precision!r} (known: {', '.join(PRECISIONS)})")
    kind = kind_of(artifact).name
    if kind not in spec.opens or precision not in spec.precisions:
        raise CompressbenchError(spec.why_not(kind, precision))
    if options:
        return spec.open(artifact, threads, precision, options)
    return spec.open(artifact, threads, precision)
