"""The dual form of encoding from a layer's n × n linear kernel, accumulated from a file.

A layer with many more features than stimuli needs only K = X Xᵀ for ridge in the dual form.
:func:`layer_kernel` sums it block by block over the activation file
(:func:`neuroalign.analysis.streaming.layer_blocks` and the block Gram of RSA,
``_rdm_gram.block_gram``): products in float32, summed in float64, so the layer never sits
in memory as float64, and beyond the read budget not whole either.

The kernel is of features shifted by one constant vector (the mean of the first stimuli, which
keeps the float32 products accurate); every fold centres it on its training stimuli, which
removes any such shift: for training mean m, (xₐ − m)·(x_b − m) = Kₐb − rₐ − c_b + g with rₐ
the mean of row a over the training columns, c_b the mean of column b over the training rows
and g the training block's mean. That is the kernel of the features :class:`RidgeEncoder`
centres, for the training rows and the held-out rows alike, so both give the same fit.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sklearn.model_selection import KFold

__all__ = ["LinearKernel", "kernel_fit_predict", "layer_kernel"]


@dataclass(frozen=True)
class LinearKernel:
    """A layer given by its (n_stimuli, n_stimuli) linear kernel, float64, in place of its
    features (``layerwise_encoding`` accepts one as a layer); ``n_features`` is the layer's."""

    gram: np.ndarray
    n_features: int

    def __len__(self) -> int:
        return len(self.gram)


def layer_kernel(path: str | Path, layer: str, max_bytes: int | None = None,
                 chunk_size: int = 4096) -> LinearKernel:
    """The linear kernel of one layer of an activation file, read in stimulus blocks.

    Args:
        path, layer: the activation file and the layer's module or group path.
        max_bytes: memory for the layer's rows at once (default ``LAYER_READ_BYTES``).
        chunk_size: features per float32 product.

    Raises:
        ValueError: NaN or infinite activations (the rows holding them are counted).
    """
    from neuroalign.analysis._rdm_gram import block_gram
    from neuroalign.analysis.streaming import LAYER_READ_BYTES, layer_blocks

    blocks = layer_blocks(path, layer, max_bytes or LAYER_READ_BYTES)
    gram, _, n_features = block_gram(blocks, "euclidean", int(chunk_size))
    bad = ~np.isfinite(np.diag(gram))  # a NaN or infinity makes its row's diagonal non-finite
    if bad.any():
        raise ValueError(f"layer {layer!r} holds NaN or infinite values in {int(bad.sum())} "
                         f"stimuli (e.g. row {int(np.flatnonzero(bad)[0])})")
    return LinearKernel(gram, int(n_features))


def _centred(gram: np.ndarray, rows: np.ndarray, train: np.ndarray) -> np.ndarray:
    """gram[rows, train] centred on the training stimuli (module docstring)."""
    block = gram[np.ix_(train, train)]
    col, g = block.mean(axis=0), block.mean()
    part = gram[np.ix_(rows, train)]
    return part - part.mean(axis=1, keepdims=True) - col[None, :] + g


def kernel_fit_predict(kernel: LinearKernel, y: np.ndarray, train: np.ndarray,
                       test: np.ndarray, alphas, inner_folds: int = 5,
                       device: str | None = None, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(predictions of the ``test`` rows, chosen alphas) of ridge in the dual form, fitted on
    the ``train`` rows (boolean masks) as :class:`RidgeEncoder` with ``solver="kernel"``."""
    from himalaya.kernel_ridge import KernelRidgeCV

    from neuroalign.analysis.encoding import ALPHAS, _himalaya_backend

    train, test = np.flatnonzero(train), np.flatnonzero(test)
    if inner_folds > len(train) or inner_folds < 2:
        raise ValueError(f"inner_folds must be between 2 and the {len(train)} training stimuli; "
                         f"got {inner_folds}")
    alphas = np.asarray(ALPHAS if alphas is None else alphas, dtype=np.float64)
    dtype = np.float64 if device is None else np.float32
    cv = KFold(inner_folds, shuffle=True, random_state=seed)
    with _himalaya_backend(device) as backend:
        model = KernelRidgeCV(alphas=alphas, kernel="precomputed", fit_intercept=True, cv=cv,
                              warn=False)
        model.fit(_centred(kernel.gram, train, train).astype(dtype), y[train].astype(dtype))
        predicted = model.predict(_centred(kernel.gram, test, train).astype(dtype))
        predicted = np.asarray(backend.to_numpy(predicted), dtype=np.float64)
        best = np.asarray(backend.to_numpy(model.best_alphas_), dtype=np.float64)
    nearest = np.abs(np.log(best)[:, None] - np.log(alphas)[None, :]).argmin(axis=1)
    return predicted.reshape(len(test), -1), alphas[nearest]
