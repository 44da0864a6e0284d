"""Activation chunks as HDF5 stores them: the chunk size, BitRound, and shuffle + deflate.

The writer encodes chunks itself (in threads, without the GIL) and hands HDF5 the finished
bytes; they are what HDF5's own shuffle and deflate filters would write, so every netCDF/HDF5
reader decodes them.
"""

from __future__ import annotations

import zlib

import numpy as np

from neuroalign.activations.schema import FLOAT16_MANTISSA_BITS

__all__ = ["MAX_CHUNK_BYTES", "bitround", "chunk_length", "encode_chunk"]

#: a batch larger than this is split into equal smaller chunks (a divisor of the batch size),
#: so a reader inflates little to reach one stimulus; a single stimulus larger than this is
#: one chunk of its own
MAX_CHUNK_BYTES = 4 * 2**20


def chunk_length(b: int, per_stimulus_bytes: int) -> int:
    """Presentations per chunk: the largest divisor of the batch size whose chunk stays under
    MAX_CHUNK_BYTES (a divisor, so every batch covers whole chunks); 1 if none does."""
    for chunk in range(b, 0, -1):
        if b % chunk == 0 and chunk * per_stimulus_bytes <= MAX_CHUNK_BYTES:
            return chunk
    return 1


def _load_deflate():
    """The fastest zlib-format deflate at hand: ISA-L's (python-isal, ~6x zlib's speed at
    level 1, same stream format, so every HDF5 reader inflates it), else the standard zlib."""
    try:
        from isal import isal_zlib

        return isal_zlib.compress
    except ImportError:  # python-isal has no wheel for this platform
        return zlib.compress


_DEFLATE = _load_deflate()
#: ISA-L's levels are 0-3; higher levels are zlib's own
FAST_DEFLATE_MAX_LEVEL = 3


def bitround(values: np.ndarray, mantissa_bits: int = FLOAT16_MANTISSA_BITS) -> np.ndarray:
    """float32 values rounded to ``mantissa_bits`` explicit mantissa bits (of 23).

    netCDF-C's BitRound quantisation: add half of the dropped bits' range, then zero them.
    """
    drop = 23 - mantissa_bits
    bits = np.array(values, dtype=np.float32, copy=True).view(np.uint32)
    bits += np.uint32(1 << (drop - 1))
    bits &= np.uint32((0xFFFFFFFF << drop) & 0xFFFFFFFF)
    return bits.view(np.float32)


def encode_chunk(chunk: np.ndarray, level: int | None) -> bytes:
    """A chunk as HDF5 stores it: raw bytes, or for deflate HDF5's byte shuffle (all first
    bytes, then all second bytes, ...) followed by a zlib stream."""
    raw = np.ascontiguousarray(chunk, dtype=np.float32)
    if level is None:
        return raw.tobytes()
    shuffled = raw.view(np.uint8).reshape(-1, raw.itemsize).T.copy()
    deflate = _DEFLATE if level <= FAST_DEFLATE_MAX_LEVEL else zlib.compress
    return deflate(shuffled, level)
