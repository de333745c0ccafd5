"""The stored form of a compressed ONNX graph's weights: a lossless file, `model.cbw`, in which pruning and weight
sharing pay in bytes, and its decoder.

Why this form. Deep Compression (Han, Mao & Dally, ICLR 2016) stores a pruned, weight-shared network as, per layer,
the positions of its non-zeros as short *relative indices*, one small *index* per stored weight into a *codebook* of
shared values, and a Huffman code over both streams. Elsewhere in compressbench that size is an account kept by the
techniques; this module writes the file itself, from the served ONNX graph alone (whatever pruning or sharing did to
the weights is found in their values), and `decode_graph` gives the graph back with every tensor bit for bit.

The file (integers little-endian):

    offset 0    magic, 8 bytes: 89 43 42 57 0D 0A 1A 0A (b"\\x89CBW\\r\\n\\x1a\\n"; as PNG's, broken by text mode)
    offset 8    format version, uint16 (FORMAT_VERSION)
    offset 10   header length H, uint32
    offset 14   header: H bytes, zstd-compressed UTF-8 JSON
    14 + H      body: every stream, back to back; each {"offset", "length"} in the header counts from here

The header is {"body_bytes", "body_crc32", "graph", "tensors"}. "graph" locates the model with the data of the
encoded tensors removed (an ONNX ModelProto, zstd level 19): the structure, every name and shape, and every tensor
left as it was (not float32, fewer than MIN_ELEMENTS elements, or stored outside the model). Each entry of "tensors"
is one float32 tensor:

    name, dims          its name (a Constant's: the node's output) and shape, checked against the graph's copy
    home, index, field  "initializer": graph.initializer[index]; "constant": the `value` of graph.node[index]; the
                        TensorProto field its data came from and goes back to ("raw_data" or "float_data")
    positions           null: every element is stored, in row-major order. Otherwise only the non-zeros are
                        (+0.0 and -0.0 are zeros), placed by a stream of Deep Compression relative indices of
                        `bits` bits (see `relative_index`): entry i lands at cumsum(field + 1)[i] - 1, so a field
                        counts the zeros skipped; a run too long for one field takes filler entries holding +0.0.
    zero_signs          null, or (sparse tensors only) one bit per zero of the tensor in row-major order, 1 for
                        -0.0 (`weight * mask` writes one for each pruned negative weight): "bits" (np.packbits), or
                        "zstd" of those bytes.
    values              one float32 per stored entry, in order. "fp32": little-endian. "zstd-planes": those bytes
                        as four planes (every value's first byte, then every second byte, ...: the sign-and-exponent
                        plane compresses, the mantissa planes hardly), zstd-compressed; about 8% smaller than zstd of
                        the plain bytes for trained weights. "codebook": shared values, one codebook per slice along
                        `axis` (null: one for the whole tensor; 0: per output channel, as for a conv whose batch norm
                        was folded into per-channel scaled shared values). `sizes` holds each codebook's length
                        (uint16 per slice), `codebook` their float32 values back to back, and the stream `indices`
                        one index per entry into the codebook of the slice the entry lands in.

A stream (positions, indices) is {"coding", "bits", "count", "alphabet", "offset", "length", "table"}. "fixed":
`count` numbers of `bits` bits, most significant bit first, the last byte padded with zero bits. "huffman": a
canonical Huffman code (codes of one length are consecutive, in symbol order, as in DEFLATE) whose table is `alphabet`
bytes in the body, one code length per symbol (0: unused, at most MAX_CODE_BITS), then the codewords, most
significant bit first, padded to a whole byte. A stream is Huffman-coded only where code plus table is smaller than
its fixed width, so coding never makes it larger.

Each tensor takes the smallest of the forms tried: dense or sparse (with the relative-index width in 2..12 that
minimises positions plus values), each with fp32, zstd-planes (more than 256 distinct values), one codebook, or a
codebook per slice of an axis (at most 256 values in each).
"""

from __future__ import annotations

import heapq
import json
import math
import struct
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import zstandard

from compressbench.errors import CompressbenchError

MAGIC = b"\x89CBW\r\n\x1a\n"
FORMAT_VERSION = 1
ENCODED_SUFFIX = ".cbw"
ENCODED_NAME = "model" + ENCODED_SUFFIX
MIN_ELEMENTS = 64  # smaller tensors (biases, norms) stay in the graph, where zstd takes them with the structure
POSITION_BITS = range(2, 13)  # relative-index widths tried
MAX_CODEBOOK = 256  # values per codebook (8-bit indices at most)
MAX_CODE_BITS = 16  # longest Huffman codeword: the decoder's look-up table has 2**16 entries
GRAPH_ZSTD_LEVEL = 19  # the graph and header are small: the strongest level costs little
VALUES_ZSTD_LEVEL = 9  # float bits: level 19 takes 10-100x longer (0.8 s for 4 MB) and saves under 1%
_PREFIX = struct.Struct("<8sHI")  # magic, version, header length
_NEGATIVE_ZERO = np.uint32(0x8000_0000)
_MAGNITUDE = np.uint32(0x7FFF_FFFF)

GRAPH_PART, HEADERS_PART, CODEBOOKS_PART, TABLES_PART = "graph (zstd)", "headers", "codebooks", "huffman tables"
FP32_PART, ZSTD_PART, SIGNS_PART = "values (fp32)", "values (zstd)", "zero signs"


@dataclass(frozen=True)
class Encoded:
    """An encoded graph: the whole file, and its bytes by part (they sum to len(payload))."""

    payload: bytes
    parts: dict[str, int]


# Deep Compression's relative indices


def relative_index(positions: np.ndarray, bits: int) -> tuple[np.ndarray, np.ndarray]:
    """Encode the flat positions of the non-zeros (strictly increasing) with `bits`-bit relative indices.

    Deep Compression's sparse format (Han, Mao & Dally 2016, section 2): each stored entry keeps, in `bits` bits, the
    number of zeros skipped since the previous stored entry: 0 to 2**bits - 1, i.e. an index difference of 1 to
    2**bits (positions come back as cumsum(field + 1) - 1). A run of zeros longer than 2**bits - 1 does not fit one
    field, so a *filler* entry is stored: field 2**bits - 1, placed on the 2**bits-th position of the run and holding
    a zero value. Each filler covers 2**bits positions, so a run of z zeros before a non-zero takes z // 2**bits
    fillers. A filler is a real entry: it takes an index field and a value slot (a zero weight, or the zero code of a
    codebook). Zeros after the last non-zero are never stored (the decoder knows the tensor's size).

    Returns (fields, filler): one field per stored entry, in order, and a mask of the entries that are fillers
    (the others are the non-zeros, in the order of `positions`). len(fields) is the number of stored entries.
    """
    if bits < 1:
        raise ValueError(f"relative indices need at least 1 bit, got {bits}")
    positions = np.asarray(positions, dtype=np.int64).reshape(-1)
    zeros = np.diff(positions, prepend=-1) - 1  # zeros skipped before each non-zero
    if (zeros < 0).any():
        raise ValueError("positions must be strictly increasing and non-negative")
    span = 2**bits
    fillers = zeros // span
    ends = np.cumsum(fillers + 1) - 1  # where each non-zero lands in the stream, after its fillers
    fields = np.full(int(ends[-1]) + 1 if len(ends) else 0, span - 1, dtype=np.int64)
    fields[ends] = zeros - fillers * span
    filler = np.ones(len(fields), dtype=bool)
    filler[ends] = False
    return fields, filler


# Canonical Huffman coding, vectorised


def huffman_lengths(counts: np.ndarray) -> np.ndarray:
    """Huffman code length of each symbol from its count (0 for a symbol that does not occur; a lone symbol takes
    1 bit). Ties go to the lower symbol. Lengths are capped at MAX_CODE_BITS: where the optimal code would be longer
    (symbols rarer than about 1 in 2**11), the count of codes per length is rebalanced as in JPEG (ITU T.81 annex
    K.3) and the most frequent symbols take the shortest codes."""
    counts = np.asarray(counts, dtype=np.int64).reshape(-1)
    lengths = np.zeros(len(counts), dtype=np.int64)
    used = np.flatnonzero(counts > 0)
    if len(used) <= 1:
        lengths[used] = 1
        return lengths
    k = len(used)
    heap = [(count, node) for node, count in enumerate(counts[used].tolist())]
    heapq.heapify(heap)
    parent, node = [0] * (2 * k - 1), k
    while len(heap) > 1:
        (first, a), (second, b) = heapq.heappop(heap), heapq.heappop(heap)
        parent[a] = parent[b] = node
        heapq.heappush(heap, (first + second, node))
        node += 1
    depth = [0] * (2 * k - 1)
    for node in range(2 * k - 3, -1, -1):  # children are numbered before their parent; the root is last
        depth[node] = depth[parent[node]] + 1
    found = np.asarray(depth[:k], dtype=np.int64)
    if found.max() > MAX_CODE_BITS:
        found = _limited(found, counts[used])
    lengths[used] = found
    return lengths


def _limited(lengths: np.ndarray, counts: np.ndarray) -> np.ndarray:
    per_length = np.bincount(lengths).tolist()
    for longest in range(len(per_length) - 1, MAX_CODE_BITS, -1):
        while per_length[longest] > 0:  # two siblings at the bottom: one moves up, one joins a shorter leaf
            shorter = longest - 2
            while per_length[shorter] == 0:
                shorter -= 1
            per_length[longest] -= 2
            per_length[longest - 1] += 1
            per_length[shorter + 1] += 2
            per_length[shorter] -= 1
    limited = np.empty_like(lengths)
    limited[np.lexsort((np.arange(len(counts)), -counts))] = np.repeat(
        np.arange(MAX_CODE_BITS + 1), per_length[: MAX_CODE_BITS + 1]
    )
    return limited


def canonical_codes(lengths: np.ndarray) -> np.ndarray:
    """The canonical codeword of each symbol (as an integer of its length) from the code lengths: by length, then
    symbol, each code is the previous plus one, shifted left when the length grows."""
    lengths = np.asarray(lengths, dtype=np.int64).reshape(-1)
    codes = np.zeros(len(lengths), dtype=np.int64)
    used = np.flatnonzero(lengths)
    code, previous = 0, 0
    for symbol, length in zip(used[np.argsort(lengths[used], kind="stable")].tolist(),
                              np.sort(lengths[used], kind="stable").tolist(), strict=True):  # fmt: skip
        code <<= length - previous
        if code >> length:
            raise ValueError("the code lengths over-subscribe the code space (their Kraft sum is above 1)")
        codes[symbol], code, previous = code, code + 1, length
    return codes


def _pack(values: np.ndarray, widths: np.ndarray | int) -> bytes:
    """values[i] in widths[i] bits (at most 16), most significant bit first, back to back, zero-padded to a byte."""
    values = np.asarray(values, dtype=np.int64).reshape(-1)
    if len(values) == 0 or (np.isscalar(widths) and widths == 0):
        return b""
    aligned = (values << (16 - np.asarray(widths, dtype=np.int64))).astype(">u2")
    bits = np.unpackbits(aligned.view(np.uint8)).reshape(-1, 16)
    kept = bits[:, :widths] if np.isscalar(widths) else bits[np.arange(16) < np.asarray(widths)[:, None]]
    return np.packbits(kept).tobytes()


def _unpack(data: bytes, width: int, count: int) -> np.ndarray:
    """`count` numbers of `width` bits from `_pack`."""
    if len(data) != math.ceil(count * width / 8):
        raise ValueError(f"{count} numbers of {width} bits take {math.ceil(count * width / 8)} bytes, not {len(data)}")
    if width == 0:
        return np.zeros(count, dtype=np.int64)
    bits = np.unpackbits(np.frombuffer(data, dtype=np.uint8))[: count * width].reshape(count, width)
    return bits.astype(np.int64) @ (1 << np.arange(width - 1, -1, -1, dtype=np.int64))


def _decode_codes(data: bytes, codes: np.ndarray, lengths: np.ndarray, count: int) -> tuple[np.ndarray, int]:
    """`count` symbols of a prefix code (symbol s has codeword codes[s] of lengths[s] bits, 0: unused) and the bits
    they took. A table over every window of the longest codeword's length gives the symbol and length starting at
    each bit of the stream (numpy); walking from one codeword to the next is a Python loop of one addition per
    symbol (about 0.1 s per million)."""
    if count == 0:
        return np.zeros(0, dtype=np.int64), 0
    longest = int(lengths.max(initial=0))
    if longest == 0 or longest > MAX_CODE_BITS:
        raise ValueError(f"the code table's longest codeword has {longest} bits (1 to {MAX_CODE_BITS} allowed)")
    symbol_at = np.zeros(1 << longest, dtype=np.int64)
    length_at = np.zeros(1 << longest, dtype=np.uint8)  # 0: no codeword starts with these bits
    for symbol in np.flatnonzero(lengths).tolist():
        length = int(lengths[symbol])
        start = int(codes[symbol]) << (longest - length)
        symbol_at[start : start + (1 << (longest - length))] = symbol
        length_at[start : start + (1 << (longest - length))] = length
    raw = np.frombuffer(data, dtype=np.uint8)
    padded = np.concatenate([raw, np.zeros(2, dtype=np.uint8)]).astype(np.uint32)
    three = (padded[:-2] << 16) | (padded[1:-1] << 8) | padded[2:]  # the 24 bits from each byte on
    shifts = (24 - longest - np.arange(8)).astype(np.uint32)
    window = ((three[:, None] >> shifts) & ((1 << longest) - 1)).reshape(-1)  # `longest` bits from every bit on
    steps = np.zeros(len(window) + MAX_CODE_BITS + 1, dtype=np.uint8)  # past the end: 0, so a walk stops there
    steps[: len(window)] = length_at[window]
    starts = np.empty(count, dtype=np.int64)
    out, step, bit = memoryview(starts), memoryview(steps), 0
    for i in range(count):
        out[i] = bit
        bit += step[bit]
    if bit > len(window) or not steps[starts].all():
        raise ValueError(f"the stream of {len(data)} bytes holds fewer than its {count} symbols")
    return symbol_at[window[starts]], bit


def code_lengths(symbols: np.ndarray) -> dict[int, int]:
    """Huffman code length of each symbol that occurs (a lone symbol still takes 1 bit)."""
    values, counts = np.unique(np.asarray(symbols).reshape(-1), return_counts=True)
    return dict(zip(values.tolist(), huffman_lengths(counts).tolist(), strict=True))


def canonical_code(lengths: dict[int, int]) -> dict[int, str]:
    """Canonical Huffman codewords (as bit strings) from code lengths."""
    symbols = sorted(lengths)
    codes = canonical_codes(np.asarray([lengths[s] for s in symbols], dtype=np.int64))
    return {s: format(int(c), f"0{lengths[s]}b") for s, c in zip(symbols, codes, strict=True)}


def huffman_encode(symbols: np.ndarray) -> tuple[bytes, dict[int, str]]:
    """The canonically Huffman-coded stream (padded with zero bits to a whole byte) and its code."""
    symbols = np.asarray(symbols).reshape(-1)
    if len(symbols) == 0:
        return b"", {}
    values, inverse, counts = np.unique(symbols, return_inverse=True, return_counts=True)
    lengths = huffman_lengths(counts)
    codes = canonical_codes(lengths)
    inverse = inverse.reshape(-1)
    words = {v: format(int(c), f"0{n}b") for v, c, n in zip(values.tolist(), codes, lengths, strict=True)}
    return _pack(codes[inverse], lengths[inverse]), words


def huffman_decode(payload: bytes, words: dict[int, str], n: int) -> np.ndarray:
    """The first `n` symbols of a stream coded with `words` (any prefix code)."""
    symbols = sorted(words)
    lengths = np.asarray([len(words[s]) for s in symbols], dtype=np.int64)
    codes = np.asarray([int(words[s], 2) for s in symbols], dtype=np.int64)
    return np.asarray(symbols, dtype=np.int64)[_decode_codes(payload, codes, lengths, n)[0]]


# The container


class _Body:
    """The body as it is written: its chunks, their bytes by part, and where each went."""

    def __init__(self) -> None:
        self.chunks: list[bytes] = []
        self.parts: dict[str, int] = {}
        self.size = 0

    def add(self, part: str, data: bytes) -> dict[str, int]:
        where = {"offset": self.size, "length": len(data)}
        if data:
            self.chunks.append(data)
            self.parts[part] = self.parts.get(part, 0) + len(data)
            self.size += len(data)
        return where


def _stream_size(counts: np.ndarray, bits: int) -> tuple[np.ndarray, bool, int]:
    """(code lengths, whether to Huffman-code, bytes) of a stream with these counts of symbols 0, 1, ... (the
    alphabet is len(counts)): Huffman where code plus table is smaller than `bits` bits per symbol."""
    lengths = huffman_lengths(counts)
    coded = math.ceil(int((counts * lengths).sum()) / 8) + len(counts)
    fixed = math.ceil(int(counts.sum()) * bits / 8)
    return lengths, coded < fixed, min(coded, fixed)


class _Stream:
    """Small non-negative integers below `alphabet`, Huffman-coded or `bits` bits each, whichever is smaller."""

    def __init__(self, symbols: np.ndarray, bits: int, alphabet: int) -> None:
        self.symbols, self.bits, self.alphabet = symbols, bits, alphabet
        self.lengths, self.huffman, self.size = _stream_size(np.bincount(symbols, minlength=alphabet), bits)

    def write(self, body: _Body, what: str) -> dict[str, Any]:
        stream = {"bits": self.bits, "count": len(self.symbols), "alphabet": self.alphabet}
        if not self.huffman:
            return {"coding": "fixed", **stream, "table": None,
                    **body.add(f"{what} (fixed-width)", _pack(self.symbols, self.bits))}  # fmt: skip
        table = body.add(TABLES_PART, self.lengths.astype(np.uint8).tobytes())
        codes = canonical_codes(self.lengths)
        data = _pack(codes[self.symbols], self.lengths[self.symbols])
        return {"coding": "huffman", **stream, "table": table, **body.add(f"{what} (huffman)", data)}


@dataclass(frozen=True)
class _Form:
    """One way to store a tensor's data: its bytes, and how to write it (returns the header's fields)."""

    size: int
    write: Callable[[_Body], dict[str, Any]]


def _zstd(data: bytes, level: int) -> bytes:
    return zstandard.ZstdCompressor(level=level, write_checksum=True).compress(data)


def _value_forms(values: np.ndarray, positions: np.ndarray, dims: list[int]) -> list[_Form]:
    """The ways to store entry values (uint32 bits) at flat `positions` of a tensor of shape `dims`."""
    fp32 = values.astype("<u4").tobytes()
    forms = [_Form(len(fp32), lambda body: {"form": "fp32", **body.add(FP32_PART, fp32)})]
    distinct = len(_sorted_unique(values))
    if distinct > MAX_CODEBOOK:
        planes = np.ascontiguousarray(np.frombuffer(fp32, dtype=np.uint8).reshape(-1, 4).T).tobytes()
        packed = _zstd(planes, VALUES_ZSTD_LEVEL)
        forms.append(_Form(len(packed), lambda body: {"form": "zstd-planes", **body.add(ZSTD_PART, packed)}))
    axes = [None] + [axis for axis in range(len(dims)) if len(dims) > 1 and dims[axis] > 1]
    for axis in axes:
        if distinct <= MAX_CODEBOOK * (1 if axis is None else dims[axis]):
            form = _codebook_form(values, positions, dims, axis)
            if form is not None:
                forms.append(form)
    return forms


def _sorted_unique(values: np.ndarray) -> np.ndarray:
    """np.unique by a sort (numpy's hash-based unique takes 0.5 s for a million floats' bits; this, 0.04 s)."""
    ordered = np.sort(values)
    return ordered[np.concatenate([[True], ordered[1:] != ordered[:-1]])] if len(ordered) else ordered


def _slices(positions: np.ndarray, dims: list[int], axis: int | None) -> np.ndarray:
    if axis is None:
        return np.zeros(len(positions), dtype=np.int64)
    return (positions // math.prod(dims[axis + 1 :])) % dims[axis]


def _codebook_form(values: np.ndarray, positions: np.ndarray, dims: list[int], axis: int | None) -> _Form | None:
    """Codebooks per slice along `axis` (None: one), each ordered by frequency so that one Huffman code fits the
    indices of every slice; None where a slice has more than MAX_CODEBOOK values."""
    slices = 1 if axis is None else dims[axis]
    keys = (_slices(positions, dims, axis).astype(np.uint64) << np.uint64(32)) | values.astype(np.uint64)
    unique = _sorted_unique(keys)
    slice_of = (unique >> np.uint64(32)).astype(np.int64)
    sizes = np.bincount(slice_of, minlength=slices)
    if sizes.max() > MAX_CODEBOOK:
        return None
    inverse = np.searchsorted(unique, keys)
    counts = np.bincount(inverse, minlength=len(unique))
    order = np.lexsort((unique, -counts, slice_of))
    rank = np.empty(len(unique), dtype=np.int64)
    rank[order] = np.arange(len(unique)) - (np.cumsum(sizes) - sizes)[slice_of[order]]
    codebook = (unique[order] & np.uint64(0xFFFF_FFFF)).astype("<u4").tobytes()
    size_bytes = sizes.astype("<u2").tobytes()
    alphabet = int(sizes.max())
    stream = _Stream(rank[inverse], (alphabet - 1).bit_length() if alphabet else 0, alphabet)

    def write(body: _Body) -> dict[str, Any]:
        return {"form": "codebook", "axis": axis, "sizes": body.add(CODEBOOKS_PART, size_bytes),
                "codebook": body.add(CODEBOOKS_PART, codebook), "indices": stream.write(body, "indices")}  # fmt: skip

    return _Form(len(size_bytes) + len(codebook) + stream.size, write)


def _position_bits(nonzero: np.ndarray, values: np.ndarray) -> int:
    """The relative-index width that minimises positions plus values: values as one codebook where they fit one
    (the fillers' zero among them), else fp32."""
    distinct, counts = np.unique(values, return_counts=True)

    def size(bits: int) -> int:
        fields, filler = relative_index(nonzero, bits)
        fillers = int(filler.sum())
        if len(distinct) + (fillers > 0) <= MAX_CODEBOOK:
            value_counts = np.append(counts, fillers) if fillers else counts
            values_size = _stream_size(value_counts, (len(value_counts) - 1).bit_length())[2]
        else:
            values_size = 4 * len(fields)
        return _Stream(fields, bits, 2**bits).size + values_size

    return min(POSITION_BITS, key=size)


def _tensor_form(bits: np.ndarray, dims: list[int]) -> _Form:
    """The smallest way to store one float32 tensor (given as its uint32 bits, flat)."""
    dense = [_Form(form.size, lambda body, form=form: {"positions": None, "zero_signs": None,
                                                       "values": form.write(body)})
             for form in _value_forms(bits, np.arange(len(bits)), dims)]  # fmt: skip
    nonzero = np.flatnonzero(bits & _MAGNITUDE)
    if len(nonzero) == len(bits):
        return min(dense, key=lambda form: form.size)
    width = _position_bits(nonzero, bits[nonzero])
    fields, filler = relative_index(nonzero, width)
    positions = _Stream(fields, width, 2**width)
    placed = np.cumsum(fields + 1) - 1  # where each stored entry lands
    values = np.where(filler, np.uint32(0), bits[placed]).astype(np.uint32)
    signs = _zero_signs(bits)

    def sparse(form: _Form) -> _Form:
        def write(body: _Body) -> dict[str, Any]:
            written = {"positions": positions.write(body, "positions"),
                       "zero_signs": signs.write(body) if signs else None}  # fmt: skip
            return {**written, "values": form.write(body)}

        return _Form(positions.size + (signs.size if signs else 0) + form.size, write)

    candidates = dense + [sparse(form) for form in _value_forms(values, placed, dims)]
    return min(candidates, key=lambda form: form.size)


def _zero_signs(bits: np.ndarray) -> _Form | None:
    negative = bits[(bits & _MAGNITUDE) == 0] == _NEGATIVE_ZERO
    if not negative.any():
        return None
    packed = np.packbits(negative).tobytes()
    squeezed = _zstd(packed, VALUES_ZSTD_LEVEL)
    coding, data = ("zstd", squeezed) if len(squeezed) < len(packed) else ("bits", packed)
    return _Form(len(data), lambda body: {"coding": coding, "count": len(negative), **body.add(SIGNS_PART, data)})


def _weights(model: onnx.ModelProto) -> Iterator[tuple[str, int, str, onnx.TensorProto]]:
    """(home, index, name, tensor) of every tensor that may be encoded: initializers, then Constant node values."""
    for index, tensor in enumerate(model.graph.initializer):
        yield "initializer", index, tensor.name, tensor
    for index, node in enumerate(model.graph.node):
        if node.op_type == "Constant" and node.domain in ("", "ai.onnx") and node.output:
            for attribute in node.attribute:
                if attribute.name == "value" and attribute.type == onnx.AttributeProto.TENSOR:
                    yield "constant", index, node.output[0], attribute.t


def _float_bits(tensor: onnx.TensorProto) -> tuple[str, np.ndarray] | None:
    """(field, flat uint32 bits) of a float32 tensor worth encoding, else None."""
    elements = math.prod(tensor.dims)
    if (tensor.data_type != onnx.TensorProto.FLOAT or elements < MIN_ELEMENTS
            or tensor.data_location == onnx.TensorProto.EXTERNAL):  # fmt: skip
        return None
    if len(tensor.raw_data) == 4 * elements:
        return "raw_data", np.frombuffer(tensor.raw_data, dtype="<u4").astype(np.uint32)
    if len(tensor.float_data) == elements and not tensor.raw_data:
        return "float_data", np.asarray(tensor.float_data, dtype=np.float32).view(np.uint32)
    return None


def encode_graph(proto: onnx.ModelProto) -> Encoded:
    """The `model.cbw` file of `proto`: every float32 tensor of MIN_ELEMENTS or more in its smallest lossless form,
    the rest of the graph zstd-compressed. `decode_graph` reverses it."""
    skeleton = onnx.ModelProto()
    skeleton.CopyFrom(proto)
    chosen = []
    for home, index, name, tensor in _weights(skeleton):
        found = _float_bits(tensor)
        if found is None:
            continue
        field, bits = found
        entry = {"name": name, "home": home, "index": index, "dims": list(tensor.dims), "field": field}
        chosen.append((entry, _tensor_form(bits, list(tensor.dims))))
        tensor.ClearField(field)
    body = _Body()
    header: dict[str, Any] = {"graph": body.add(GRAPH_PART, _zstd(skeleton.SerializeToString(), GRAPH_ZSTD_LEVEL))}
    header["tensors"] = [{**entry, **form.write(body)} for entry, form in chosen]
    data = b"".join(body.chunks)
    header.update(body_bytes=len(data), body_crc32=zlib.crc32(data))
    packed = _zstd(json.dumps(header, separators=(",", ":")).encode(), GRAPH_ZSTD_LEVEL)
    prefix = _PREFIX.pack(MAGIC, FORMAT_VERSION, len(packed))
    return Encoded(prefix + packed + data, {HEADERS_PART: len(prefix) + len(packed), **body.parts})


def read_header(payload: bytes) -> dict[str, Any]:
    """The header of a `model.cbw` payload (where each tensor is and the form it took), after checking the file."""
    return _split(payload)[0]


def _split(payload: bytes) -> tuple[dict[str, Any], bytes]:
    start = bytes(payload[: len(MAGIC)])
    if not start:
        raise CompressbenchError(f"{ENCODED_NAME} is empty (0 bytes)")
    if start != MAGIC[: len(start)]:
        raise CompressbenchError(
            f"not a compressbench weights file ({ENCODED_NAME}): it starts with {start!r}, not the magic {MAGIC!r}"
        )
    if len(payload) < _PREFIX.size:
        raise CompressbenchError(f"{ENCODED_NAME} is truncated: {len(payload)} bytes, less than its "
                                 f"{_PREFIX.size}-byte prefix")  # fmt: skip
    _, version, header_bytes = _PREFIX.unpack_from(payload)
    if version != FORMAT_VERSION:
        raise CompressbenchError(f"{ENCODED_NAME} has format version {version}, which this compressbench does not "
                                 f"know (it reads version {FORMAT_VERSION}): upgrade compressbench")  # fmt: skip
    end = _PREFIX.size + header_bytes
    if len(payload) < end:
        raise CompressbenchError(f"{ENCODED_NAME} is truncated: its header needs {header_bytes} bytes, "
                                 f"{len(payload) - _PREFIX.size} are left")  # fmt: skip
    try:
        header = json.loads(zstandard.ZstdDecompressor().decompress(bytes(payload[_PREFIX.size : end])))
        body_bytes, crc = int(header["body_bytes"]), int(header["body_crc32"])
        if not isinstance(header["graph"], dict) or not isinstance(header["tensors"], list):
            raise TypeError("'graph' is not an object or 'tensors' is not a list")
    except (zstandard.ZstdError, ValueError, KeyError, TypeError) as error:
        raise CompressbenchError(f"{ENCODED_NAME} has a corrupt header: {error}") from error
    body = bytes(payload[end:])
    if len(body) < body_bytes:
        raise CompressbenchError(f"{ENCODED_NAME} is truncated: its body has {len(body)} of its {body_bytes} bytes")
    if len(body) > body_bytes:
        raise CompressbenchError(f"{ENCODED_NAME} is corrupt: {len(body) - body_bytes} bytes after the end of its body")
    if zlib.crc32(body) != crc:
        raise CompressbenchError(f"{ENCODED_NAME} is corrupt: its body's CRC-32 is {zlib.crc32(body):#010x}, the "
                                 f"header says {crc:#010x}")  # fmt: skip
    return header, body


def _chunk(body: bytes, where: dict[str, int]) -> bytes:
    offset, length = int(where["offset"]), int(where["length"])
    if offset < 0 or length < 0 or offset + length > len(body):
        raise ValueError(f"bytes {offset}..{offset + length} lie outside the {len(body)}-byte body")
    return body[offset : offset + length]


def _read_stream(body: bytes, stream: dict[str, Any]) -> np.ndarray:
    count, bits, alphabet = int(stream["count"]), int(stream["bits"]), int(stream["alphabet"])
    data = _chunk(body, stream)
    if stream["coding"] == "fixed":
        symbols = _unpack(data, bits, count)
    elif stream["coding"] == "huffman":
        lengths = np.frombuffer(_chunk(body, stream["table"]), dtype=np.uint8).astype(np.int64)
        if len(lengths) != alphabet:
            raise ValueError(f"a code table of {len(lengths)} lengths for an alphabet of {alphabet}")
        symbols, used = _decode_codes(data, canonical_codes(lengths), lengths, count)
        if math.ceil(used / 8) != len(data):
            raise ValueError(f"{count} symbols took {used} bits of a {len(data)}-byte stream")
    else:
        raise ValueError(f"unknown stream coding {stream['coding']!r}")
    if count and symbols.max() >= max(alphabet, 1):
        raise ValueError(f"a symbol above the alphabet of {alphabet}")
    return symbols


def _read_values(body: bytes, values: dict[str, Any], positions: np.ndarray, dims: list[int]) -> np.ndarray:
    form, count = values["form"], len(positions)
    if form == "fp32":
        data = _chunk(body, values)
    elif form == "zstd-planes":
        planes = np.frombuffer(zstandard.ZstdDecompressor().decompress(_chunk(body, values)), dtype=np.uint8)
        if len(planes) != 4 * count:
            raise ValueError(f"{len(planes)} bytes of values for {count} entries")
        data = np.ascontiguousarray(planes.reshape(4, count).T).tobytes()
    elif form == "codebook":
        axis = values["axis"]
        sizes = np.frombuffer(_chunk(body, values["sizes"]), dtype="<u2").astype(np.int64)
        codebook = np.frombuffer(_chunk(body, values["codebook"]), dtype="<u4").astype(np.uint32)
        if len(sizes) != (1 if axis is None else dims[axis]) or sizes.sum() != len(codebook):
            raise ValueError(f"{len(sizes)} codebook sizes summing to {sizes.sum()} for {len(codebook)} values")
        indices, slices = _read_stream(body, values["indices"]), _slices(positions, dims, axis)
        if len(indices) != count or (indices >= sizes[slices]).any():
            raise ValueError("an index beyond its codebook, or a stream of the wrong length")
        return codebook[(np.cumsum(sizes) - sizes)[slices] + indices]
    else:
        raise ValueError(f"unknown value form {form!r}")
    if len(data) != 4 * count:
        raise ValueError(f"{len(data)} bytes of values for {count} entries")
    return np.frombuffer(data, dtype="<u4").astype(np.uint32)


def _read_tensor(body: bytes, entry: dict[str, Any]) -> np.ndarray:
    dims = [int(d) for d in entry["dims"]]
    elements = math.prod(dims)
    if entry["positions"] is None:
        positions = np.arange(elements)
    else:
        positions = np.cumsum(_read_stream(body, entry["positions"]) + 1) - 1
        if len(positions) and positions[-1] >= elements:
            raise ValueError(f"relative indices reach position {positions[-1]} of {elements}")
    bits = np.zeros(elements, dtype=np.uint32)
    bits[positions] = _read_values(body, entry["values"], positions, dims)
    if entry["zero_signs"] is not None:
        signs = entry["zero_signs"]
        data = _chunk(body, signs)
        if signs["coding"] == "zstd":
            data = zstandard.ZstdDecompressor().decompress(data)
        zeros = np.flatnonzero(bits == 0)
        if len(zeros) != int(signs["count"]) or len(data) != math.ceil(len(zeros) / 8):
            raise ValueError(f"{signs['count']} zero signs in {len(data)} bytes for {len(zeros)} zeros")
        bits[zeros[np.unpackbits(np.frombuffer(data, dtype=np.uint8))[: len(zeros)].astype(bool)]] = _NEGATIVE_ZERO
    return bits


def _home(model: onnx.ModelProto, entry: dict[str, Any]) -> onnx.TensorProto:
    index = int(entry["index"])
    if entry["home"] == "initializer" and index < len(model.graph.initializer):
        tensor = model.graph.initializer[index]
        if tensor.name == entry["name"]:
            return tensor
    if entry["home"] == "constant" and index < len(model.graph.node):
        node = model.graph.node[index]
        found = [a.t for a in node.attribute if a.name == "value" and a.type == onnx.AttributeProto.TENSOR]
        if node.op_type == "Constant" and found and list(node.output[:1]) == [entry["name"]]:
            return found[0]
    raise ValueError(f"the graph has no {entry['home']} {entry['name']!r} at index {index}")


def decode_graph(payload: bytes) -> onnx.ModelProto:
    """The graph `encode_graph` wrote into `payload`, every tensor bit for bit as it was."""
    header, body = _split(payload)
    model = onnx.ModelProto()
    try:
        model.ParseFromString(zstandard.ZstdDecompressor().decompress(_chunk(body, header["graph"])))
    except Exception as error:  # zstd, protobuf and a malformed header each raise their own
        raise CompressbenchError(f"{ENCODED_NAME} is corrupt: its graph does not decode ({error})") from error
    for entry in header["tensors"]:
        try:
            tensor = _home(model, entry)
            if list(tensor.dims) != list(entry["dims"]) or tensor.data_type != onnx.TensorProto.FLOAT:
                raise ValueError(f"dims {entry['dims']} in the header, {list(tensor.dims)} in the graph")
            bits = _read_tensor(body, entry)
            if entry["field"] == "float_data":
                tensor.float_data.extend(bits.view(np.float32).tolist())
            elif entry["field"] == "raw_data":
                tensor.raw_data = bits.astype("<u4").tobytes()
            else:
                raise ValueError(f"unknown tensor field {entry['field']!r}")
        except (ValueError, KeyError, TypeError, IndexError, zstandard.ZstdError) as error:
            name = entry.get("name") if isinstance(entry, dict) else None
            raise CompressbenchError(f"{ENCODED_NAME} is corrupt: tensor {name!r}: {error}") from error
    return model


def encode_file(proto: onnx.ModelProto, path: str | Path) -> Encoded:
    """Write `proto` encoded to `path` (a directory gets ENCODED_NAME inside it)."""
    path = Path(path)
    encoded = encode_graph(proto)
    (path / ENCODED_NAME if path.is_dir() else path).write_bytes(encoded.payload)
    return encoded


def decode_file(path: str | Path) -> onnx.ModelProto:
    """The graph stored in `path` (a `.cbw` file, or a directory holding ENCODED_NAME)."""
    path = Path(path)
    file = path / ENCODED_NAME if path.is_dir() else path
    if not file.is_file():
        raise CompressbenchError(f"{file}: no such file (expected an encoded graph, {ENCODED_NAME})")
    try:
        return decode_graph(file.read_bytes())
    except CompressbenchError as error:
        raise CompressbenchError(f"{file}: {error}") from error
