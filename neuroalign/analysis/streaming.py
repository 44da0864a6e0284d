"""Feature chunks: a layer read (n_stimuli, chunk) at a time, so it never has to fit in memory.

Every stimulus-by-stimulus quantity of the analyses (the n × n Gram matrix behind RDMs, CKA
and the decorrelation L) is a sum over features, so it can be accumulated over feature chunks
that each hold all n stimuli. `feature_chunks` slices any array along its features (numpy,
torch, xarray/dask, or a netCDF4 variable of any rank); `layer_chunks` does so on one layer of
an activation file, reading only the chunk it yields. A file is chunked along stimuli, so a
feature chunk decompresses every disk chunk of the layer: `layer_blocks` reads a layer in
groups of whole stimuli instead, each disk chunk once, for the RDM's block Gram matrix.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

__all__ = [
    "LAYER_READ_BYTES",
    "StimulusBlocks",
    "feature_chunks",
    "feature_slices",
    "file_layers",
    "is_array",
    "is_chunks",
    "layer_blocks",
    "layer_chunks",
]


def is_array(x) -> bool:
    """True for array-likes sliced by `feature_chunks` (numpy, torch, xarray, dask, netCDF4)."""
    return hasattr(x, "shape") and hasattr(x, "__getitem__") and hasattr(x, "ndim")


def is_chunks(x) -> bool:
    """True for an iterable of (n, chunk) arrays: an iterator, or a list/tuple of arrays.

    A nested list of numbers, or a list of 1-D rows, is an array, not chunks.
    """
    if is_array(x) or isinstance(x, str | bytes):
        return False
    if isinstance(x, list | tuple):
        return len(x) > 0 and is_array(x[0]) and x[0].ndim >= 2  # not a list of rows
    return isinstance(x, Iterable)


def feature_slices(shape: tuple[int, ...], chunk_size: int) -> Iterator[tuple]:
    """Index tuples covering an array (n, ...) in C order of its trailing (feature) dims.

    Each selection holds all n stimuli and at most `chunk_size` features (at least one element
    of the last dim), in pieces of even size (a narrow last piece makes a slow BLAS product), so flattening the selected blocks and concatenating them gives the
    features in the order of `x.reshape(n, -1)`.

    Args:
        shape: (n, d1, d2, ...) the array's shape.
        chunk_size: maximum number of features per selection.

    Yields:
        tuples of ints and slices, starting with slice(None) (all stimuli).
    """
    trailing = tuple(int(s) for s in shape[1:])
    if not trailing:
        raise ValueError(f"feature_slices needs an array (n, features, ...); got shape {shape}")
    if math.prod(trailing) == 0:
        return
    # the outermost axis whose inner block fits in a chunk is sliced; axes before it are indexed
    axis = next(a for a in range(len(trailing)) if math.prod(trailing[a + 1 :]) <= chunk_size)
    step = max(1, chunk_size // math.prod(trailing[axis + 1 :]))
    step = -(-trailing[axis] // -(-trailing[axis] // step))  # even pieces: no narrow last one
    for outer in np.ndindex(*trailing[:axis]):
        for start in range(0, trailing[axis], step):
            yield (slice(None), *outer, slice(start, min(start + step, trailing[axis])))


def feature_chunks(x, chunk_size: int = 4096) -> Iterator:
    """Yields (n, chunk) pieces of x along its features, or x's own pieces if x is an iterable.

    Arrays are sliced first and loaded second, so lazy arrays (xarray/dask, netCDF4 variables)
    are read one chunk at a time. Torch tensors stay tensors (on their device); everything
    else becomes numpy.

    Args:
        x: array (n_stimuli, ...) — trailing dims are the features, in C order — or an
            iterable of (n_stimuli, chunk) arrays (yielded as they are).
        chunk_size: maximum features per chunk when x is an array.

    Yields:
        (n_stimuli, chunk) arrays (numpy, or torch for torch input).
    """
    if not isinstance(chunk_size, int | np.integer) or chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive integer; got {chunk_size!r}")
    if is_array(x):
        if len(x.shape) < 2:
            raise ValueError(
                f"x must have shape (n_stimuli, n_features, ...); got {tuple(x.shape)}"
            )
        is_torch = hasattr(x, "detach")
        if is_torch:
            x = x.detach()
        for sel in feature_slices(tuple(x.shape), chunk_size):
            block = x[sel]
            if is_torch:
                yield block.reshape(block.shape[0], -1)
            else:
                block = np.asarray(getattr(block, "values", block))  # xarray -> numpy
                yield block.reshape(block.shape[0], -1)
    elif isinstance(x, Iterable) and not isinstance(x, str | bytes):
        yield from x
    else:
        raise TypeError(
            "x must be an array (n_stimuli, n_features, ...) or an iterable of (n_stimuli, chunk) "
            f"arrays; got {type(x).__name__}"
        )


def layer_chunks(path: str | Path, layer: str, chunk_size: int = 4096) -> Iterator[np.ndarray]:
    """Feature chunks of one layer of an activation file, read straight from its HDF5 dataset.

    Only the selected block is read from disk (a compressed file decompresses whole HDF5
    chunks — one batch of stimuli, all features — per read, so uncompressed files stream
    fastest). The file is opened when iteration starts and closed when it ends.

    Args:
        path: activation file (neuroalign.activations layout).
        layer: module path (`encoder.block3`) or group path (`encoder/block3`).
        chunk_size: maximum features per chunk.

    Yields:
        (n_stimuli, chunk) float32 arrays, features in the order of `activations.flatten`.
    """
    if not isinstance(chunk_size, int | np.integer) or chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive integer; got {chunk_size!r}")
    path, group = _layer_group(path, layer)
    return _read_chunks(path, group, chunk_size)


def file_layers(path: str | Path) -> list[str]:
    """The layers of an activation file (module paths, in file order), from its attributes."""
    import h5py

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Activation file {path} does not exist.")
    with h5py.File(path, "r") as f:
        layers = f.attrs.get("layers", "")
    layers = layers.decode() if isinstance(layers, bytes) else str(layers)
    return [n for n in layers.split(",") if n]


def _layer_group(path: str | Path, layer: str) -> tuple[Path, str]:
    """(path, the layer's netCDF group) after checking that both exist."""
    from neuroalign.activations import group_path

    names = file_layers(path)  # check the layer now, not at the first chunk
    key = str(layer).strip("/")
    by_group = {group_path(n): n for n in names}
    if key not in names and key not in by_group:
        close = difflib.get_close_matches(key, names, n=3, cutoff=0.5)
        hint = f" Did you mean {close}?" if close else ""
        raise ValueError(f"No layer {layer!r} in {path}.{hint} It holds {names[:20]}.")
    return Path(path), group_path(by_group.get(key, key))


def _read_chunks(path: Path, group: str, chunk_size: int) -> Iterator[np.ndarray]:
    import h5py

    from neuroalign.activations.reader import layer_read_errors

    # h5py: reads a selection into one new array (netCDF4 allocates about twice as much)
    with layer_read_errors(path, group), h5py.File(path, "r") as f:
        yield from feature_chunks(f[group]["activation"], chunk_size)


#: the most a layer read in stimulus blocks holds in memory at once (two groups of rows)
LAYER_READ_BYTES = 512 * 2**20


class StimulusBlocks:
    """One layer of an activation file, read in groups of whole stimuli (rows, all features).

    The file is chunked along `presentation` (a batch of stimuli × all features per HDF5
    chunk), so reading whole rows decompresses each disk chunk once, where reading feature
    chunks decompresses every disk chunk once per feature chunk. Groups are whole disk chunks,
    as many as fit half of `max_bytes` (all the layer when it fits `max_bytes`).

    Attributes:
        shape: (n_stimuli, n_features).
        bounds: [(start, stop)] rows of each group.
    """

    def __init__(self, path: Path, group: str, max_bytes: int):
        import h5py

        from neuroalign.activations.reader import layer_read_errors

        self.path, self.group = path, group
        with layer_read_errors(path, group), h5py.File(path, "r") as f:
            var = f[group]["activation"]
            shape = tuple(int(s) for s in var.shape)
            disk_rows = var.chunks[0] if var.chunks else shape[0]
        n, d = shape[0], math.prod(shape[1:])
        self.shape = (n, d)
        row_bytes = 4 * max(d, 1)
        rows = n if n * row_bytes <= max_bytes else max_bytes // 2 // row_bytes
        rows = max(disk_rows, rows // disk_rows * disk_rows) if rows < n else n
        self.bounds = [(a, min(a + rows, n)) for a in range(0, n, max(rows, 1))]

    def read(self, i: int) -> np.ndarray:
        """Group i as a (rows, n_features) float32 array."""
        import h5py

        from neuroalign.activations.reader import layer_read_errors

        start, stop = self.bounds[i]
        with layer_read_errors(self.path, self.group), h5py.File(self.path, "r") as f:
            block = f[self.group]["activation"][start:stop]
        return block.reshape(stop - start, -1)


def layer_blocks(path: str | Path, layer: str, max_bytes: int = LAYER_READ_BYTES) -> StimulusBlocks:
    """One layer of an activation file to be read in groups of stimuli (`StimulusBlocks`), the
    file's own chunk order: `calc_rdm` computes its Gram matrix block by block.

    Args:
        path: activation file (neuroalign.activations layout).
        layer: module path (`encoder.block3`) or group path (`encoder/block3`).
        max_bytes: memory for the layer's rows at once: the whole layer when it fits, else two
            groups of rows (then each group is read once per other group, in pairs).
    """
    if not isinstance(max_bytes, int | np.integer) or max_bytes < 1:
        raise ValueError(f"max_bytes must be a positive integer; got {max_bytes!r}")
    return StimulusBlocks(*_layer_group(path, layer), int(max_bytes))
