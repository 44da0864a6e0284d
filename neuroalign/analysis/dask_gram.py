"""n × n Gram matrices of dask arrays, computed as dask graphs: the RDMs, CKA and decorrelation
of activation sets larger than one process's (or one worker's) memory, on whatever dask
scheduler is active — a ``dask.distributed.Client`` (a `LocalCluster`, or a Slurm/PBS cluster
from dask-jobqueue), else dask's threads.

The array is cut into blocks of whole stimuli (rows, every feature) of about
``block_bytes``; one task per pair of blocks I ≤ J prepares both blocks (a shift, a centring,
z-scores: a picklable function of the block) and sums the tile G[I, J] = X_I X_Jᵀ over
feature chunks, as `_rdm_gram.block_gram` does in one process. A worker therefore holds two
blocks, their prepared copies and one tile at a time, whatever the size of the set; the
client receives the tiles and assembles the n × n result (n² float64: 3.2 GB at n = 20,000).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

__all__ = ["BLOCK_BYTES", "PEAK_BLOCKS_FLOAT64", "PEAK_BLOCKS_IN_PLACE", "as_dask",
           "centred_gram", "column_stats", "dask_gram", "default_block_bytes", "rdm_gram",
           "zscore_gram"]

#: the names of dask's own schedulers: set (``dask.config.set(scheduler=...)``), they are used
#: even when a distributed client exists
LOCAL_SCHEDULERS = ("threads", "threading", "sync", "synchronous", "single-threaded",
                    "processes", "multiprocessing")

#: the largest default size of one block of rows (uncompressed, in the array's dtype)
BLOCK_BYTES = 128 * 2**20


#: blocks a tile task holds at its peak, as multiples of one block as read: the RDMs and the
#: encoding kernel prepare their blocks in place, in the blocks' own float32 (measured: 2.6
#: blocks above the worker's baseline); CKA and decorrelation make float64 copies of both
#: blocks (7-10 blocks, measured)
PEAK_BLOCKS_IN_PLACE = 4
PEAK_BLOCKS_FLOAT64 = 10


def default_block_bytes(peak_blocks: int = PEAK_BLOCKS_FLOAT64) -> int:
    """The dask config value ``neuroalign.block_bytes`` if set (``dask.config.set(...)``),
    else `BLOCK_BYTES` without a ``dask.distributed`` client; with one, the smallest worker's
    free memory (70 % of its limit less what it uses) over ``peak_blocks``, the blocks a tile
    task holds at its peak (`PEAK_BLOCKS_IN_PLACE`, `PEAK_BLOCKS_FLOAT64`). A block also has
    few enough rows that its tiles (rows² float64) are no larger than one block."""
    import dask

    given = dask.config.get("neuroalign.block_bytes", None)
    if given:
        return int(given)
    try:
        from distributed import get_client

        client = get_client()
    except (ImportError, ValueError):  # no distributed, or no client
        return BLOCK_BYTES
    limits = {address: w.get("memory_limit") for address, w in
              client.scheduler_info()["workers"].items()}
    used = client.run(_resident_bytes)  # now, after the workers hand freed memory back
    # free: below the 80 % at which dask pauses a worker, with a margin for the heap's growth
    free = [int(0.7 * limit) - used.get(address, 0) for address, limit in limits.items() if limit]
    if not free:  # workers without a memory limit
        return BLOCK_BYTES
    return max(2**20, min(f // peak_blocks for f in free))


def _resident_bytes() -> int:
    """A worker's resident memory once glibc has handed its freed blocks back to the OS (the
    memory a previous computation freed would otherwise count as used)."""
    import psutil

    from neuroalign._memory import release_freed_memory

    release_freed_memory()
    return psutil.Process().memory_info().rss


def as_dask(x):
    """x's dask array if x is one or an xarray object backed by one, else None."""
    data = getattr(x, "data", None) if not hasattr(x, "dask") else x
    if data is None or not hasattr(data, "dask") or not hasattr(data, "to_delayed"):
        return None
    return data


def _rows(x, block_bytes: int | None):
    """x as (n, D) in blocks of whole rows of about ``block_bytes`` (default:
    `default_block_bytes()`)."""
    n = x.shape[0]
    d = math.prod(x.shape[1:])
    block_bytes = block_bytes or default_block_bytes()
    if n == 0 or d == 0:
        raise ValueError(f"x holds no {'stimuli' if n == 0 else 'features'}: shape {x.shape}")
    # rows of at most block_bytes, and few enough that a tile (rows² float64) is no larger
    rows = max(1, min(n, block_bytes // max(1, d * x.dtype.itemsize), math.isqrt(block_bytes // 8)))
    x = x.rechunk({0: rows, **{axis: -1 for axis in range(1, x.ndim)}})
    return x.reshape(n, d) if x.ndim != 2 else x


class _Unread:
    """A block of rows that its task reads itself (with dask's synchronous scheduler, inside
    the task). Were the blocks the tasks' inputs, the scheduler would keep each in a worker's
    memory until the last of its tiles is done: every block at once, the whole set."""

    def __init__(self, array):
        self.array = array

    def read(self) -> np.ndarray:
        """The block, stored piece by piece into one array (compute() would also hold every
        piece and their concatenation: four times the block at its peak)."""
        import dask.array as da

        out = np.empty(self.array.shape, self.array.dtype)
        da.store(self.array, out, scheduler="sync", lock=False)
        return out


def _blocks(rows) -> tuple[np.ndarray, list[_Unread]]:
    """(row bounds, the unread blocks) of a `_rows` array."""
    import dask

    bounds = np.cumsum((0, *rows.chunks[0]))
    # each block's graph culled to the pieces it reads: a task then carries its own block's
    # keys, not the whole array's graph (or, for an array made from memory, all its data)
    return bounds, [_Unread(dask.optimize(rows[a:b])[0])
                    for a, b in zip(bounds[:-1], bounds[1:], strict=True)]


def _block_stats(block: _Unread) -> tuple[int, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(rows, min, max, mean, sum of squared deviations) per feature of one block, float64."""
    from neuroalign._memory import release_freed_memory

    b = block.read()
    b = b.reshape(len(b), -1)
    mean = b.mean(axis=0, dtype=np.float64)
    dev = np.subtract(b, mean, dtype=np.float64)
    done = len(b), b.min(axis=0), b.max(axis=0), mean, np.einsum("ij,ij->j", dev, dev)
    del b, dev
    release_freed_memory()  # as after a tile
    return done


def _same(value):
    return value


def _merge_stats(a: tuple, b: tuple) -> tuple:
    """Two blocks' `_block_stats` as one (Chan et al.'s pairwise update of mean and M2)."""
    n, low, high, mean, m2 = a
    nb, lb, hb, mb, m2b = b
    total = n + nb
    delta = mb - mean
    return (total, np.minimum(low, lb), np.maximum(high, hb), mean + delta * (nb / total),
            m2 + m2b + delta**2 * (n * nb / total))


def column_stats(x, block_bytes: int | None = None) -> dict[str, np.ndarray]:
    """Per-feature min, max, mean and std (ddof=1, float64) of a dask array: one task per
    block of rows (each reading its own block), merged pairwise in a tree, so that no worker
    holds more than a few blocks' statistics (5 × D values each)."""
    import dask

    _, blocks = _blocks(_rows(x, block_bytes))
    level = [dask.delayed(_block_stats, pure=False)(b) for b in blocks]
    while len(level) > 1:
        pairs = [dask.delayed(_merge_stats, pure=False)(a, b)
                 for a, b in zip(level[::2], level[1::2], strict=False)]
        level = pairs + ([level[-1]] if len(level) % 2 else [])
    (n, low, high, mean, m2), = dask.compute(level[0])
    std = np.sqrt(m2 / (n - 1)) if n > 1 else np.full_like(m2, np.nan)
    return {"min": low, "max": high, "mean": mean, "std": std}


def _tile(a: _Unread, b: _Unread | None, prepare: Callable, chunk_size: int):
    """(the tile A Bᵀ summed in float64 over feature chunks, row sums of A when b is None)."""
    from neuroalign._memory import release_freed_memory
    from neuroalign.analysis._rdm_gram import tile

    pa = prepare(a.read())
    if b is None:
        done = tile(pa, None, chunk_size), pa.sum(axis=1, dtype=np.float64)
    else:
        done = tile(pa, prepare(b.read()), chunk_size), None
    del pa
    # the blocks' memory back to the OS: a worker's resident size is what the next block
    # size is computed from, and what dask pauses or restarts a worker for
    release_freed_memory()
    return done


def dask_gram(x, prepare: Callable, chunk_size: int = 4096,
              block_bytes: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(G, s): the Gram matrix of the prepared rows of a dask array and their row sums.

    Args:
        x: dask array (n, ...), trailing dims flattened into features.
        prepare: block (rows, D) -> the array to multiply (its dtype is the products'
            precision; a module-level function or a ``functools.partial`` of one, so that it
            pickles to the workers).
        chunk_size: features per product.
        block_bytes: the size of one block of rows (a worker holds two and their copies);
            default `default_block_bytes()` (for float64 copies of the blocks).

    Returns:
        G (n, n) float64 and s (n,) float64, computed on the active dask scheduler.
    """
    import dask

    rows = _rows(x, block_bytes)
    bounds, blocks = _blocks(rows)
    shared = dask.delayed(_same, pure=False)(prepare)  # its arrays once in the graph
    tasks = {(i, j): dask.delayed(_tile, pure=False)(blocks[i], None if i == j else blocks[j],
                                                    shared, chunk_size)
             for i in range(len(blocks)) for j in range(i, len(blocks))}
    n = rows.shape[0]
    gram, sums = np.empty((n, n)), np.empty(n)
    for (i, j), (block, row_sums) in _finished(tasks):
        rows_i, rows_j = slice(bounds[i], bounds[i + 1]), slice(bounds[j], bounds[j + 1])
        gram[rows_i, rows_j] = block
        gram[rows_j, rows_i] = block.T
        if row_sums is not None:
            sums[rows_i] = row_sums
    return gram, sums


def _finished(tasks: dict):
    """(key, result) of every delayed task, as each finishes. With a ``dask.distributed``
    client each tile is fetched and released as soon as it is done (a tqdm bar counts them):
    computed together, the workers would keep every tile until the last one, n² / 2 float64
    values between them. Without one, dask's active scheduler computes them in this process."""
    import dask

    try:
        from distributed import as_completed, get_client

        client = get_client()
        if dask.config.get("scheduler", None) in LOCAL_SCHEDULERS:
            raise ValueError("a local scheduler is chosen over the client")
    except (ImportError, ValueError):  # no distributed, no client, or a local scheduler set
        (done,) = dask.compute(tasks)
        yield from done.items()
        return
    from tqdm.auto import tqdm

    keys = list(tasks)
    futures = client.compute([tasks[k] for k in keys])
    index = {f.key: k for f, k in zip(futures, keys, strict=True)}
    finished = as_completed(futures, with_results=True)
    del futures  # from here on, a tile's future lives until its result is taken
    with tqdm(total=len(keys), desc="Gram tiles", unit="tile", leave=False) as bar:
        for future, result in finished:
            key = index[future.key]
            del future  # the last reference: the worker lets go of the tile
            bar.update()
            yield key, result


def rdm_gram(x, method: str, chunk_size: int = 4096,
             block_bytes: int | None = None) -> tuple[np.ndarray, np.ndarray, int]:
    """(G, s, D) of `_rdm_gram.chunk_gram` for a dask array, from row-block tiles."""
    from functools import partial

    from neuroalign.analysis._rdm_gram import SHIFT_ROWS, column_shift, prepared_block, working

    n, d = x.shape[0], math.prod(x.shape[1:])
    col_shift = None
    if method == "euclidean":
        first = _Unread(x[:SHIFT_ROWS]).read()  # in this process: no worker holds a whole chunk
        col_shift = column_shift(working(first.reshape(len(first), d), None))
    block_bytes = block_bytes or default_block_bytes(PEAK_BLOCKS_IN_PLACE)  # shifted in place
    gram, sums = dask_gram(x, partial(prepared_block, method=method, chunk_size=chunk_size,
                                      col_shift=col_shift), chunk_size, block_bytes)
    return gram, sums if method == "correlation" else np.zeros(n), d


def _centred(block: np.ndarray, mean: np.ndarray) -> np.ndarray:
    return np.subtract(block.reshape(len(block), -1), mean, dtype=np.float64)


def centred_gram(x, chunk_size: int = 4096, block_bytes: int | None = None) -> np.ndarray:
    """X_c X_cᵀ in float64 of a dask array (features centred over all stimuli): `cka.gram`."""
    from functools import partial

    block_bytes = block_bytes or default_block_bytes()  # once: it asks every worker
    rows = _rows(x, block_bytes)
    mean = column_stats(rows, block_bytes)["mean"]
    mean = np.where(np.isfinite(mean), mean, 0.0)  # so that only the rows holding a NaN show it
    gram, _ = dask_gram(rows, partial(_centred, mean=mean), chunk_size, block_bytes)
    return gram


def _zscores(block: np.ndarray, mean: np.ndarray, scale: np.ndarray,
             keep: np.ndarray | None) -> np.ndarray:
    z = np.subtract(block.reshape(len(block), -1), mean, dtype=np.float64)
    z /= scale
    return z if keep is None else z[:, keep]


def zscore_gram(x, units: str, eps: float, chunk_size: int = 4096,
                block_bytes: int | None = None) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """(ZZᵀ float64, column stats) of a dask array's z-scores as `decorrelation` makes them:
    constant units left out (``units="varying"``) or all units over ``std + eps``."""
    from functools import partial

    block_bytes = block_bytes or default_block_bytes()  # once: it asks every worker
    stats = column_stats(x, block_bytes)
    if not (np.isfinite(stats["min"]).all() and np.isfinite(stats["max"]).all()):
        bad = np.flatnonzero(~(np.isfinite(stats["min"]) & np.isfinite(stats["max"])))
        raise ValueError(f"x has NaN or infinite values in features {bad[:5].tolist()}"
                         f"{' ...' if len(bad) > 5 else ''}")
    varying = stats["max"] != stats["min"]
    if units == "varying":
        keep = None if varying.all() else varying
        scale = np.where(varying, stats["std"], 1.0)
    else:
        keep, scale = None, stats["std"] + eps
    prepare = partial(_zscores, mean=stats["mean"], scale=scale, keep=keep)
    gram, _ = dask_gram(x, prepare, chunk_size, block_bytes)
    stats["varying"] = varying
    return gram, stats
