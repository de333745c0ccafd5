"""The stored forms of an ONNX graph: what a deployer can ship in place of `model.onnx`, each with its way back.

A pruned or weight-shared model is served dense (the runtime multiplies its zeros), so its `model.onnx` is no smaller
than the baseline's; what shrinks is the form it is stored and shipped in. Two forms are measured, both lossless and
both loadable: zstd-19 of the file (`model.onnx.zst`; any zstd tool, or `compressbench decode`, gives `model.onnx`
back) and compressbench's encoding (`model.cbw`, `runtime.encoding`: sparse relative indices, shared codebooks and
Huffman codes, as Deep Compression stores a network; `compressbench decode` reads it). The smaller is a candidate's
stored size, and `compress --objective size` hands back that form, never a size no file has.

Both are artifact kinds: `write` stores the graph in the form, `load` gives the ONNX graph back, so `verify` measures
what the form decodes to.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import onnx
import zstandard

from compressbench.artifacts import ONNX, ArtifactKind, artifact_kinds, register_artifact_kind
from compressbench.errors import CompressbenchError
from compressbench.runtime.encoding import ENCODED_NAME, decode_file, encode_graph

ZSTD_LEVEL = 19
ZSTD_NAME = "model.onnx.zst"
ZSTD_KIND, ENCODED_KIND = "onnx-zstd", "onnx-encoded"


@dataclass(frozen=True)
class StoredForm:
    """One stored form of a graph: its artifact kind, the file it writes, its bytes, and those bytes by part."""

    kind: str
    file: str
    payload: bytes
    parts: dict[str, int]

    @property
    def size(self) -> int:
        return len(self.payload)


STORED_FORMS = {
    ZSTD_KIND: f"zstd-{ZSTD_LEVEL} of model.onnx ({ZSTD_NAME}; `zstd -d` or `compressbench decode` gives model.onnx)",
    ENCODED_KIND: f"compressbench encoding ({ENCODED_NAME}: sparse relative indices, shared codebooks, Huffman codes; "
    "`compressbench decode` gives model.onnx)",
}


def zstd_compressed(payload: bytes) -> bytes:
    return zstandard.ZstdCompressor(level=ZSTD_LEVEL).compress(payload)


def zstd_form(proto: onnx.ModelProto, serialised: bytes | None = None) -> StoredForm:
    compressed = zstd_compressed(serialised if serialised is not None else proto.SerializeToString())
    return StoredForm(ZSTD_KIND, ZSTD_NAME, compressed, {"zstd(model.onnx)": len(compressed)})


def encoded_form(proto: onnx.ModelProto, serialised: bytes | None = None) -> StoredForm:
    encoded = encode_graph(proto)
    return StoredForm(ENCODED_KIND, ENCODED_NAME, encoded.payload, encoded.parts)


FORM_OF = {ZSTD_KIND: zstd_form, ENCODED_KIND: encoded_form}


def stored_forms(proto: onnx.ModelProto, serialised: bytes | None = None) -> list[StoredForm]:
    """Both stored forms of `proto` (`serialised`: its bytes, when the caller has them), smallest first."""
    return sorted((form(proto, serialised) for form in FORM_OF.values()), key=lambda form: form.size)


def decode_stored(path: Path | str) -> onnx.ModelProto:
    """The ONNX graph in a stored form: a `model.cbw` or `model.onnx.zst` file, or a folder holding one."""
    path = Path(path)
    if path.is_dir():
        found = [name for name in (ENCODED_NAME, ZSTD_NAME) if (path / name).is_file()]
        if not found:
            raise CompressbenchError(f"{path}: holds neither {ENCODED_NAME} nor {ZSTD_NAME}: nothing to decode")
        path = path / found[0]
    if path.name.endswith(".zst"):
        try:
            return onnx.load_from_string(zstandard.ZstdDecompressor().decompress(path.read_bytes()))
        except (OSError, zstandard.ZstdError) as error:
            raise CompressbenchError(f"{path}: not a zstd-compressed ONNX file ({error})") from error
    return decode_file(path)


def _write(kind: str):
    def write(proto: onnx.ModelProto, folder: Path) -> list[str]:
        form = FORM_OF[kind](proto)
        (folder / form.file).write_bytes(form.payload)
        return [form.file]

    return write


def _stored_kind(kind: str, description: str, load) -> ArtifactKind:
    graph = artifact_kinds.get(ONNX)
    return ArtifactKind(
        kind,
        description,
        recognises=lambda _: False,  # in memory it is an ONNX graph; only a folder holds this form
        serialise=lambda proto: FORM_OF[kind](proto).payload,
        write=_write(kind),
        load=load,
        describe=graph.describe,
        cut=graph.cut,
    )


register_artifact_kind(_stored_kind(ZSTD_KIND, "an ONNX graph compressed with zstd",
                                    lambda folder: decode_stored(folder / ZSTD_NAME)))  # fmt: skip
register_artifact_kind(_stored_kind(ENCODED_KIND, "an ONNX graph in compressbench's encoding",
                                    lambda folder: decode_stored(folder / ENCODED_NAME)))  # fmt: skip
