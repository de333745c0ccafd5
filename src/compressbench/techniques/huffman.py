"""`encode.huffman`: Huffman-code the weight-sharing index stream and the sparse position stream (Deep Compression's
last stage). A size technique: the runtime model is unchanged; `candidate.storage` becomes the coded size by part.

Each layer's index stream and position stream gets its own canonical Huffman code; the code table is stored as one
byte (a code length) per symbol of the alphabet, and every coded stream is padded to whole bytes. A stream whose code
plus table would not be smaller than its fixed-width form stays fixed-width (small layers with 8-bit alphabets), so
coding never makes a model larger; one byte per layer records which form each of its streams took.
"""

from __future__ import annotations

import heapq
import math
from collections import Counter
from dataclasses import dataclass
from itertools import count

import numpy as np

from compressbench.errors import CompressbenchError
from compressbench.techniques.base import (
    Candidate,
    Context,
    Technique,
    TechniqueConfig,
    register_technique,
)
from compressbench.techniques.weight_sharing import (
    CODEBOOK_VALUE_BYTES,
    WeightSharing,
    layer_streams,
    other_float_bytes,
)

TABLE_BYTES_PER_SYMBOL = 1  # a canonical code is rebuilt from its code lengths
CHOICE_BYTES_PER_LAYER = 1  # which streams of a layer are coded


def code_lengths(symbols: np.ndarray) -> dict[int, int]:
    """Huffman code length of each symbol that occurs (a lone symbol still takes 1 bit)."""
    frequencies = Counter(symbols.tolist())
    if len(frequencies) == 1:
        return {next(iter(frequencies)): 1}
    tiebreak = count()
    heap = [(f, next(tiebreak), [s]) for s, f in frequencies.items()]
    heapq.heapify(heap)
    lengths = dict.fromkeys(frequencies, 0)
    while len(heap) > 1:
        f1, _, a = heapq.heappop(heap)
        f2, _, b = heapq.heappop(heap)
        for symbol in a + b:
            lengths[symbol] += 1
        heapq.heappush(heap, (f1 + f2, next(tiebreak), a + b))
    return lengths


def canonical_code(lengths: dict[int, int]) -> dict[int, str]:
    """Canonical Huffman codewords (as bit strings) from code lengths."""
    code, previous, words = 0, 0, {}
    for symbol, length in sorted(lengths.items(), key=lambda item: (item[1], item[0])):
        code <<= length - previous
        words[symbol] = format(code, f"0{length}b")
        code += 1
        previous = length
    return words


def encode(symbols: np.ndarray) -> tuple[bytes, dict[int, str]]:
    """The coded stream (padded with zero bits to a whole byte) and its code."""
    words = canonical_code(code_lengths(symbols))
    bits = "".join(words[s] for s in symbols.tolist())
    bits += "0" * (-len(bits) % 8)
    return int(bits, 2).to_bytes(len(bits) // 8, "big") if bits else b"", words


def decode(payload: bytes, words: dict[int, str], n: int) -> np.ndarray:
    lookup = {word: symbol for symbol, word in words.items()}
    bits = "".join(format(byte, "08b") for byte in payload)
    out, current = [], ""
    for bit in bits:
        current += bit
        if current in lookup:
            out.append(lookup[current])
            current = ""
            if len(out) == n:
                break
    return np.asarray(out, dtype=np.int64)


@dataclass(frozen=True)
class StreamSize:
    """How one stream is stored: Huffman-coded (payload + table) or fixed-width, whichever is smaller."""

    payload: int
    table: int
    coded: bool


def stream_size(symbols: np.ndarray, bits: int) -> StreamSize:
    fixed = math.ceil(len(symbols) * bits / 8)
    coded, table = coded_bytes(symbols), TABLE_BYTES_PER_SYMBOL * 2**bits
    return StreamSize(coded, table, True) if coded + table < fixed else StreamSize(fixed, 0, False)


def coded_bytes(symbols: np.ndarray) -> int:
    """Bytes of the coded stream: sum of frequency x code length, padded to a whole byte."""
    if len(symbols) == 0:
        return 0
    lengths = code_lengths(symbols)
    frequencies = Counter(symbols.tolist())
    return math.ceil(sum(frequencies[s] * lengths[s] for s in frequencies) / 8)


class HuffmanConfig(TechniqueConfig):
    pass


@register_technique
class HuffmanCoding(Technique):
    name = "encode.huffman"
    Config = HuffmanConfig
    family = "coding"
    requires = (WeightSharing.name,)
    summary = "Huffman coding of weight-sharing indices and sparse positions (Deep Compression); size only"

    def apply(self, candidate: Candidate, context: Context) -> Candidate:
        shared = [r for r in candidate.records if r["step"] == WeightSharing.name]
        if not shared:
            raise CompressbenchError(
                f"{self.name}: needs a {WeightSharing.name} step before it (it codes that step's index stream)"
            )
        streams = layer_streams(candidate.module, shared[-1]["layers"])
        indices = [stream_size(s.indices, s.bits) for s in streams]
        positions = [
            stream_size(s.positions, s.position_bits) if s.positions is not None and s.position_bits else None
            for s in streams
        ]
        storage = {
            "codebooks": sum(len(s.codebook) * CODEBOOK_VALUE_BYTES for s in streams),
            "indices (huffman)": sum(size.payload for size in indices),
        }
        if any(positions):
            storage["positions (huffman)"] = sum(size.payload for size in positions if size)
        storage["huffman tables"] = CHOICE_BYTES_PER_LAYER * len(streams) + sum(
            size.table for size in [*indices, *positions] if size
        )
        storage["float params"] = other_float_bytes(candidate.module, [s.name for s in streams])
        before = sum(candidate.storage.values()) if candidate.storage else None
        candidate.storage = storage
        per_layer = [
            {"name": s.name, "index_bits": s.bits, "indices": len(s.indices), "indices_coded": index.coded,
             "mean_index_code_bits": round(8 * coded_bytes(s.indices) / max(1, len(s.indices)), 3),
             "positions": 0 if s.positions is None else len(s.positions),
             "positions_coded": bool(position and position.coded)}
            for s, index, position in zip(streams, indices, positions, strict=True)
        ]  # fmt: skip
        candidate.records.append(
            {"step": self.name, "storage": dict(storage), "bytes_before": before, "bytes_after": sum(storage.values()),
             "layers": per_layer}
        )  # fmt: skip
        return candidate
