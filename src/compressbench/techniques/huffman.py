"""`encode.huffman`: Huffman-code the weight-sharing index stream and the sparse position stream (Deep Compression's
last stage). A size technique: the runtime model is unchanged; its record holds the coded size by part, the account
the technique expects. The figure a run reports is the real file's (`runtime.stored`: the served graph encoded, which
Huffman-codes every stream where that is smaller, whether or not this step ran).

Each layer's index stream and position stream gets its own canonical Huffman code; the code table is stored as one
byte (a code length) per symbol of the alphabet, and every coded stream is padded to whole bytes. A stream whose code
plus table would not be smaller than its fixed-width form stays fixed-width (small layers with 8-bit alphabets), so
coding never makes a model larger; one byte per layer records which form each of its streams took. The code is
`runtime.encoding`'s, the one that writes such streams into a real file (`model.cbw`) from the served graph.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from compressbench.errors import CompressbenchError
from compressbench.runtime.encoding import huffman_lengths
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
    _, counts = np.unique(np.asarray(symbols).reshape(-1), return_counts=True)
    return math.ceil(int((counts * huffman_lengths(counts)).sum()) / 8)


class HuffmanConfig(TechniqueConfig):
    pass


@register_technique
class HuffmanCoding(Technique):
    name = "encode.huffman"
    Config = HuffmanConfig
    family = "coding"
    requires = (WeightSharing.name,)
    summary = "Huffman coding of weight-sharing indices and sparse positions (Deep Compression); size only"
    seeded = False

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
        before = sum(shared[-1]["storage"].values())
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
