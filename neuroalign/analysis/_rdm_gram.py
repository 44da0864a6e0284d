"""The n × n Gram matrix behind an RDM: products in the input's precision, summed in float64.

Every RDM of `rdms` is a function of G = X Xᵀ (after a shift, below), the row sums s = X·1
and the number of features D. G is accumulated over feature chunks of at most `chunk_size`
features: each chunk's product is computed in the chunk's precision (float32 for float32
or float16 data, float64 otherwise) and added to a float64 G. On the CPU the product runs in
numpy, where ``c @ c.T`` on one buffer is BLAS syrk (half the multiply-adds of a general
product); on another device it is a torch product.

Shifts keep the float32 products accurate where the data's mean is large (the part of G
that the RDM subtracts away would otherwise swamp the part it keeps):
- correlation: each row minus its mean over the first chunk of features (per row, so the
  correlation is unchanged, and exact for a constant row);
- euclidean: each feature minus its mean over the first `SHIFT_ROWS` stimuli (the same
  vector for every row, so distances are unchanged);
- cosine: no shift (cosine is not shift-invariant).

The data are read once, and nothing else runs over them: a NaN or infinite value makes its
row's Gram diagonal non-finite (so does, in float32, a value whose square overflows, beyond
~1e19), and a constant row has a zero centred diagonal,
so both checks read only the n diagonal values.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

__all__ = ["SHIFT_ROWS", "block_gram", "chunk_gram", "column_shift", "prepared_block", "tile"]

#: stimuli whose mean is the per-feature shift of a euclidean RDM
SHIFT_ROWS = 64


def _product_dtype(dtype) -> str:
    """'float32' for float32/float16/bfloat16 data, else 'float64' (integers, float64)."""
    name = str(dtype).removeprefix("torch.")
    return "float32" if name in ("float32", "float16", "bfloat16") else "float64"


def _is_cpu(device) -> bool:
    return str(device) == "cpu" or getattr(device, "type", None) == "cpu"


def working(chunk, device):
    """`chunk` as a 2-D array to multiply, in the precision `_product_dtype` gives: numpy when
    the work runs on the CPU (device None: the tensor's device, else the CPU), else a torch
    tensor on `device`."""
    is_tensor = hasattr(chunk, "detach")
    target = device if device is not None else (chunk.device if is_tensor else "cpu")
    if _is_cpu(target):
        arr = chunk.detach().cpu().numpy() if is_tensor else np.asarray(chunk)
        arr = arr.reshape(arr.shape[0], -1)
        return arr.astype(_product_dtype(arr.dtype), copy=False)
    import torch

    t = chunk.detach() if is_tensor else torch.as_tensor(np.asarray(chunk))
    dtype = getattr(torch, _product_dtype(t.dtype))
    return t.to(device=target, dtype=dtype).reshape(t.shape[0], -1)


def _mean(c, axis: int, keepdims: bool = False):
    """The mean of c along an axis, summed in float64, in c's precision."""
    if isinstance(c, np.ndarray):
        return c.mean(axis=axis, dtype=np.float64, keepdims=keepdims).astype(c.dtype)
    return c.double().mean(dim=axis, keepdim=keepdims).to(c.dtype)


def column_shift(c):
    """The mean of the first `SHIFT_ROWS` rows of c, with 0 where it is not finite: a NaN
    there would spread to every row, and the NaN check must name only the rows holding it."""
    v = _mean(c[:SHIFT_ROWS], 0)
    if isinstance(v, np.ndarray):
        return np.where(np.isfinite(v), v, v.dtype.type(0))
    return v.nan_to_num(0.0, 0.0, 0.0)


def _zeros(like, n: int, *shape: int):
    if isinstance(like, np.ndarray):
        return np.zeros((n, *shape))
    import torch

    return torch.zeros((n, *shape), dtype=torch.float64, device=like.device)


def _row_sums(c):
    if isinstance(c, np.ndarray):
        return c.sum(axis=1, dtype=np.float64)
    import torch

    return c.sum(dim=1, dtype=torch.float64)


def _shifted(c, shift, buffer):
    """c - shift (a row or a column vector), and the buffer it is in. For numpy, written into
    ``buffer`` when it has c's shape: one buffer reused chunk after chunk (a fresh array each
    chunk faults its pages in anew). Not torch's threaded subtraction: its OpenMP threads
    then compete with the BLAS threads of the next product (measured slower overall)."""
    if not isinstance(c, np.ndarray):
        return c - shift, None
    if buffer is None or buffer.shape != c.shape:
        buffer = np.empty(c.shape, c.dtype)
    np.subtract(c, shift, out=buffer)
    return buffer, buffer


def _product(a, b):
    """a bᵀ in a's precision. For numpy, ``a @ a.T`` (b is a) is BLAS syrk: half the work."""
    return a @ b.T


def chunk_gram(chunks: Iterable, method: str, device=None):
    """(G, s, D) from (n, k) feature chunks: G and s of the shifted data (module docstring;
    s is zero except for correlation).

    Raises ValueError for chunks of different numbers of stimuli or no features.
    """
    n = gram = sums = row_shift = buffer = None
    n_features = 0
    for i, c in enumerate(working(c, device) for c in chunks):  # one chunk in memory at a time
        if n is None:
            n = c.shape[0]
            gram, sums = _zeros(c, n, n), _zeros(c, n)
            row_shift = _mean(c, 1, keepdims=True) if method == "correlation" else None
        elif c.shape[0] != n:
            raise ValueError(f"feature chunk {i} has {c.shape[0]} stimuli; chunk 0 had {n}")
        if row_shift is not None:
            c, buffer = _shifted(c, row_shift, buffer)
        elif method == "euclidean":
            c, buffer = _shifted(c, column_shift(c), buffer)
        gram += _product(c, c)
        if row_shift is not None:  # only correlation centres with the row sums
            sums += _row_sums(c)
        n_features += c.shape[1]
    if n_features == 0 or gram is None:
        raise ValueError("x holds no features (an empty array or an empty iterable of chunks)")
    return gram, sums, n_features


def prepared_block(x, method: str, chunk_size: int, col_shift=None) -> np.ndarray:
    """A block of whole rows as `block_gram` multiplies it: a fresh float32/float64 array,
    shifted as the module docstring says (euclidean: by ``col_shift``, the same for every
    block; correlation: each row by its mean over the first ``chunk_size`` features)."""
    x = np.require(working(x, None), requirements="W")  # a fresh array: shifted in place
    if method == "correlation":
        x -= _mean(x[:, :chunk_size], 1, keepdims=True)
    elif method == "euclidean":
        x -= col_shift
    return x


def tile(a: np.ndarray, b: np.ndarray | None, chunk_size: int) -> np.ndarray:
    """A Bᵀ (A Aᵀ when b is None), each feature chunk's product in the blocks' precision,
    summed in float64."""
    out = np.zeros((a.shape[0], a.shape[0] if b is None else b.shape[0]))
    for start in range(0, a.shape[1], chunk_size):
        ca = a[:, start : start + chunk_size]
        cb = ca if b is None else b[:, start : start + chunk_size]
        out += _product(ca, cb)
    return out


def block_gram(blocks, method: str, chunk_size: int):
    """(G, s, D) as `chunk_gram`, from a layer read in blocks of whole stimuli.

    `blocks` (a `streaming.StimulusBlocks`) holds the layer in groups of rows; the Gram's block
    G[I, J] = X_I X_Jᵀ is summed over feature chunks of `chunk_size` as in `chunk_gram`. Group
    I is read once for its own block and once for each pair (J, I), J < I; a layer that fits
    the memory budget is one group, read once. The products run on the CPU, in numpy.
    """
    n, n_features = blocks.shape
    gram, sums = np.zeros((n, n)), np.zeros(n)
    col_shift = None

    def read(g: int) -> np.ndarray:
        nonlocal col_shift
        x = blocks.read(g)
        if method == "euclidean" and col_shift is None:
            col_shift = column_shift(working(x, None))
        return prepared_block(x, method, chunk_size, col_shift)

    if n_features == 0:
        raise ValueError("x holds no features (an empty array or an empty iterable of chunks)")
    bounds = [slice(*b) for b in blocks.bounds]
    for i, rows_i in enumerate(bounds):
        xi = read(i)
        gram[rows_i, rows_i] = tile(xi, None, chunk_size)
        if method == "correlation":
            sums[rows_i] = _row_sums(xi)
        for j in range(i + 1, len(bounds)):
            gram[rows_i, bounds[j]] = tile(xi, read(j), chunk_size)
    for i, rows_i in enumerate(bounds):  # the lower blocks mirror the upper ones
        for rows_j in bounds[i + 1 :]:
            gram[rows_j, rows_i] = gram[rows_i, rows_j].T
    return gram, sums, n_features
