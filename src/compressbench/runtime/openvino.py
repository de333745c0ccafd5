"""Intel OpenVINO on the CPU: opens ONNX graphs (converted on load) and its own models (NNCF's int8 output)."""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from compressbench.artifacts import ONNX, OPENVINO, ArtifactKind, is_onnx, register_artifact_kind
from compressbench.errors import CompressbenchError
from compressbench.runtime.base import Runtime, Session, register_runtime

HINTS = {"fp32": "f32", "bf16": "bf16", "fp16": "f16"}


@dataclass
class OpenVinoSession:
    """fp32 forced unless a lower precision is asked for (its default on bf16-capable CPUs is bf16), the low-overhead
    call path (one reused infer request, shared-memory input tensors), and one compiled model per input shape, with
    every axis static, as the artifact is served on data of one shape. A static batch axis alone ran faster than a
    dynamic one here, but with height and width left dynamic a third-party CNN ran 18.2 ms at batch 32 where a plain
    compile ran 14.3 ms (AMD Zen 4, 1 thread): all axes are fixed to the shape of the data."""

    model: Any  # openvino.Model
    threads: int = 1
    precision: str = "fp32"
    options: dict[str, Any] | None = None  # the deployment's settings: performance hint and streams (`OPTIONS`)
    info: dict[str, Any] = field(init=False)

    def __post_init__(self) -> None:
        import openvino as ov

        self._ov = ov
        self._core = ov.Core()
        self._options = compile_options(self.options)
        self._compiled: dict[tuple[str, ...], tuple[Any, Any]] = {}
        self._queues: dict[tuple[str, ...], Any] = {}
        self.concurrency = 1  # batches in flight in `run_many`: its queue's infer requests, once opened
        self._dtypes = [port.element_type.to_dtype() for port in self.model.inputs]  # float32, or int64 for ids
        self.info = {
            "runtime": "openvino",
            "version": ov.__version__,
            "threads": self.threads,
            "requested_precision": self.precision,
            "options": self._options,
        }
        probe = list(self.model.inputs[0].partial_shape)  # batch 1, the other axes as the model declares them
        probe[0] = 1
        if len(self.model.inputs) > 1:  # packed: (batch, inputs, ...)
            probe.insert(1, len(self.model.inputs))
        self.info["precision"] = self._executed_precision(self.compiled_for(probe)[0])

    def compiled_for(self, shape: list[Any] | tuple[int, ...]) -> tuple[Any, Any]:
        """The compiled model (and its infer request) for batches of `shape` (several inputs packed along axis 1
        each get that shape without it)."""
        key = tuple(str(d) for d in shape)
        if key not in self._compiled:
            model = self.model.clone()
            if len(model.inputs) == 1:
                model.reshape(self._ov.PartialShape(list(shape)))
            else:
                each = self._ov.PartialShape([shape[0], *shape[2:]])
                model.reshape({port.any_name: each for port in model.inputs})
            config = {
                "INFERENCE_NUM_THREADS": self.threads,
                "INFERENCE_PRECISION_HINT": HINTS[self.precision],
                "PERFORMANCE_HINT": self._options["hint"],
            }
            if self._options["streams"] != "auto":
                config["NUM_STREAMS"] = self._options["streams"]
            try:
                compiled = self._core.compile_model(model, "CPU", config)
            except Exception as error:
                raise CompressbenchError(f"openvino cannot compile the model: {openvino_cause(error)}") from error
            self._compiled[key] = (compiled, compiled.create_infer_request())
        return self._compiled[key]

    def _executed_precision(self, compiled: Any) -> str:
        """What the compute layers run in, from the runtime model's rt_info: int8, bf16, fp16 or fp32."""
        compute = {"Convolution", "FullyConnected", "MatMul", "GroupConvolution"}
        seen = set()
        for op in compiled.get_runtime_model().get_ops():
            info = op.get_rt_info()
            if info["layerType"].astype(str) in compute:
                seen.add(info["runtimePrecision"].astype(str))
        if seen & {"u8", "i8"}:
            return "int8"
        for name, tag in (("bf16", "bf16"), ("fp16", "f16")):
            if tag in seen:
                return name
        return "fp32"

    def run_many(self, x: np.ndarray, calls: int) -> float:
        """Serve `calls` batches as OpenVINO's throughput mode does (an asynchronous queue of its optimal number of
        infer requests, spread over its streams); the wall seconds they took."""
        compiled, _ = self.compiled_for(x.shape)
        key = tuple(str(d) for d in x.shape)
        if key not in self._queues:
            self._queues[key] = self._ov.AsyncInferQueue(
                compiled, int(compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS"))
            )
            self.info["streams"] = int(compiled.get_property("NUM_STREAMS"))
            self.info["infer_requests"] = len(self._queues[key])
        self.concurrency = len(self._queues[key])
        queue = self._queues[key]
        inputs = self._inputs(x)
        started = time.perf_counter()
        for _ in range(calls):
            queue.start_async(inputs, share_inputs=True)
        queue.wait_all()
        return time.perf_counter() - started

    def _inputs(self, x: np.ndarray) -> list[np.ndarray]:
        if len(self._dtypes) == 1:
            return [np.ascontiguousarray(x, dtype=self._dtypes[0])]
        return [np.ascontiguousarray(x[:, i], dtype=dtype) for i, dtype in enumerate(self._dtypes)]

    def run(self, x: np.ndarray) -> np.ndarray:
        _, request = self.compiled_for(x.shape)
        if len(self._dtypes) == 1:  # shared with the array, which must live until infer() returns
            x = np.ascontiguousarray(x, dtype=self._dtypes[0])
            request.set_input_tensor(self._ov.Tensor(x, shared_memory=True))
        else:
            for i, dtype in enumerate(self._dtypes):
                request.set_input_tensor(i, self._ov.Tensor(np.ascontiguousarray(x[:, i], dtype=dtype)))
        request.infer()
        return request.get_output_tensor().data.copy()


# The deployment's settings, with the values a latency-bound single-stream server uses: OpenVINO's performance hint
# (THROUGHPUT runs several streams, each on its share of the threads) and the number of streams ("auto": the hint's).
DEFAULT_OPTIONS: dict[str, Any] = {"hint": "LATENCY", "streams": 1}


def compile_options(options: dict[str, Any] | None) -> dict[str, Any]:
    """`options` over the defaults, each checked; THROUGHPUT without streams leaves their number to the hint."""
    given = dict(options or {})
    if given.get("hint") == "THROUGHPUT" and "streams" not in given:
        given["streams"] = "auto"
    chosen = {**DEFAULT_OPTIONS, **given}
    if unknown := sorted(set(chosen) - set(DEFAULT_OPTIONS)):
        raise CompressbenchError(f"openvino: unknown session option(s) {unknown} (known: {sorted(DEFAULT_OPTIONS)})")
    if chosen["hint"] not in ("LATENCY", "THROUGHPUT"):
        raise CompressbenchError(f"openvino: session option hint={chosen['hint']!r}: LATENCY or THROUGHPUT")
    if chosen["streams"] != "auto" and (not isinstance(chosen["streams"], int) or chosen["streams"] < 1):
        raise CompressbenchError(f"openvino: session option streams={chosen['streams']!r}: 'auto' or at least 1")
    return chosen


def openvino_cause(error: BaseException) -> str:
    """An OpenVINO exception whole, on one line. Its text opens with where it was raised ("Exception from
    src/inference/src/cpp/core.cpp:84:", "Check 'false' failed at ...:151:"): the cause is on the lines after, so
    the first line alone says nothing. Source locations are dropped; every other line is kept."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    causes = [line for line in lines if not line.startswith(("Exception from ", "Check '"))]
    return " ".join(causes or lines) or type(error).__name__


def onnx_to_openvino(proto: onnx.ModelProto) -> Any:
    import openvino as ov

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "model.onnx"
        onnx.save(proto, path)
        try:
            return ov.Core().read_model(path)
        except Exception as error:
            raise CompressbenchError(f"openvino cannot read the ONNX model: {openvino_cause(error)}") from error


def ir_bytes(model: Any) -> bytes:
    """The saved IR (xml + bin)."""
    return b"".join(ir_parts(model))


def ir_parts(model: Any) -> tuple[bytes, bytes]:
    """The saved IR's xml and weights, kept in fp32 (no silent fp16 compression): also the form in which an OpenVINO
    model pickles."""
    import openvino as ov

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "model.xml"
        ov.save_model(model, path, compress_to_fp16=False)
        return path.read_bytes(), path.with_suffix(".bin").read_bytes()


def from_ir_parts(parts: tuple[bytes, bytes]) -> Any:
    import openvino as ov

    xml, weights = parts
    return ov.Core().read_model(xml.decode(), ov.Tensor(np.frombuffer(weights, dtype=np.uint8).copy()))


def _open(artifact: Any, threads: int, precision: str, options: dict[str, Any] | None = None) -> Session:
    model = onnx_to_openvino(artifact) if is_onnx(artifact) else artifact
    session = OpenVinoSession(model, threads, precision, options)
    if precision != "fp32" and session.info["precision"] not in (precision, "int8"):
        raise CompressbenchError(
            f"openvino was asked for {precision} but executes {session.info['precision']} on this CPU "
            f"(no hardware support); refusing to report it as a {precision} result"
        )
    return session


def _write_ir(model: Any, folder: Path) -> list[str]:
    """The IR as measured: weights kept in fp32 (`ov.save_model` would compress them to fp16 by default)."""
    import openvino as ov

    ov.save_model(model, folder / "model.xml", compress_to_fp16=False)
    return ["model.xml", "model.bin"]


def _read_ir(folder: Path) -> Any:
    import openvino as ov

    return ov.Core().read_model(folder / "model.xml")


def _describe_ir(model: Any) -> dict[str, Any]:
    def ports(values) -> list[dict[str, Any]]:
        """Each port as an ONNX graph's are described: a dynamic axis by name ("?" in OpenVINO), numpy's dtype."""
        return [
            {"name": p.any_name, "shape": [d.get_length() if d.is_static else "?" for d in p.partial_shape],
             "dtype": np.dtype(p.element_type.to_dtype()).name}
            for p in values
        ]  # fmt: skip

    return {"inputs": ports(model.inputs), "outputs": ports(model.outputs)}


def _cut_ir(model: Any, tensor: str) -> Any:
    import openvino as ov

    for op in model.get_ops():
        for port in op.outputs():
            if tensor in port.get_names():
                return ov.Model([port], model.get_parameters(), "embedding")
    raise CompressbenchError(f"the OpenVINO model has no tensor {tensor!r} to read")


def as_served(artifact: Any) -> Any:
    """What OpenVINO runs: an ONNX graph is converted on load, so its IR is that conversion."""
    return onnx_to_openvino(artifact) if is_onnx(artifact) else artifact


register_artifact_kind(
    ArtifactKind(
        OPENVINO,
        "an OpenVINO model",
        lambda a: type(a).__module__.startswith("openvino"),
        ir_bytes,
        write=_write_ir,
        load=_read_ir,
        describe=_describe_ir,
        cut=_cut_ir,
        pack=ir_parts,
        unpack=from_ir_parts,
        ops=lambda model: [op.get_type_name() for op in model.get_ops()],
    )
)
register_runtime(
    Runtime(
        name="openvino",
        package="openvino",
        install="pip install 'compressbench[openvino]' (OpenVINO and NNCF, about 380 MB)",
        open=_open,
        description="Intel OpenVINO, CPU plugin (fp32 forced; int8 from QDQ or NNCF models)",
        opens=(ONNX, OPENVINO),
        precisions=("fp32", "bf16", "fp16"),
        served_form=as_served,
    )
)
