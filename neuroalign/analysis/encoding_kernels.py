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

__all__ = ["LinearKernel", "encoding_features", "fit_dual", "kernel_fit_predict", "layer_kernel",
           "linear_kernel"]


@dataclass(frozen=True)
class LinearKernel:
    """A layer given by its (n_stimuli, n_stimuli) linear kernel, float64, in place of its
    features (``layerwise_encoding`` accepts one as a layer); ``n_features`` is the layer's."""

    gram: np.ndarray
    n_features: int

    def __len__(self) -> int:
        return len(self.gram)


def _checked(gram: np.ndarray, n_features: int, what: str) -> LinearKernel:
    bad = ~np.isfinite(np.diag(gram))  # a NaN or infinity makes its row's diagonal non-finite
    if bad.any():
        raise ValueError(f"{what} holds NaN or infinite values in {int(bad.sum())} "
                         f"stimuli (e.g. row {int(np.flatnonzero(bad)[0])})")
    return LinearKernel(gram, int(n_features))


def linear_kernel(x, chunk_size: int = 4096, name: str = "x") -> LinearKernel:
    """The linear kernel of features in memory or streamed: ``x`` is an array (n_stimuli, ...)
    or an iterable of (n_stimuli, chunk) feature chunks, so only the kernel and one chunk are
    ever held (products in the chunk's precision, summed in float64); or a dask array (or an
    xarray object backed by one), whose kernel is computed blockwise on the active dask
    scheduler (`dask_gram`), so that no process holds more than two blocks of stimuli.

    Raises:
        ValueError: NaN or infinite features (``name`` and the rows are named).
    """
    from neuroalign.analysis._rdm_gram import chunk_gram
    from neuroalign.analysis.dask_gram import as_dask, rdm_gram
    from neuroalign.analysis.streaming import feature_chunks

    if as_dask(x) is not None:  # row-block tiles as a dask graph, on the active scheduler
        gram, _, n_features = rdm_gram(as_dask(x), "euclidean", int(chunk_size))
    else:
        gram, _, n_features = chunk_gram(feature_chunks(x, int(chunk_size)), "euclidean")
    return _checked(gram, n_features, name)


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
    return _checked(gram, n_features, f"layer {layer!r}")


def encoding_features(path: str | Path, layers, stream_kernels: bool | None = None
                      ) -> tuple[np.ndarray, dict[str, np.ndarray | LinearKernel]]:
    """(the file's stimulus ids, {layer: features}) of an activation file's layers for the
    encoding analyses: a layer is its streamed :func:`layer_kernel` when ``stream_kernels`` is
    True, or None and the layer has more features than stimuli; else its flattened features,
    float64, whole in memory."""
    from neuroalign.activations import flatten, open_activations
    from neuroalign.analysis.streaming import layer_blocks

    tree = open_activations(path, chunks=None)
    try:
        ids = np.asarray(tree["stimulus_id"].values).astype(str)
        features: dict[str, np.ndarray | LinearKernel] = {}
        for name in layers:
            n_features = layer_blocks(path, name).shape[1]
            if stream_kernels or (stream_kernels is None and n_features > len(ids)):
                features[name] = layer_kernel(path, name)
            else:
                features[name] = np.asarray(flatten(tree, name).values, dtype=np.float64)
    finally:
        tree.close()
    return ids, features


def _centred(gram: np.ndarray, rows: np.ndarray, train: np.ndarray) -> np.ndarray:
    """gram[rows, train] centred on the training stimuli (module docstring)."""
    block = gram[np.ix_(train, train)]
    col, g = block.mean(axis=0), block.mean()
    part = gram[np.ix_(rows, train)]
    return part - part.mean(axis=1, keepdims=True) - col[None, :] + g


def fit_dual(centred: np.ndarray, y: np.ndarray, alphas, inner_folds: int = 5,
             device: str | None = None, seed: int = 0
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(dual coefficients (n_train, n_targets), intercepts (n_targets,), chosen alphas) of
    ridge in the dual form on a training kernel already centred on its stimuli, one alpha per
    target by shuffled inner K-fold (himalaya's ``KernelRidgeCV``, precomputed kernel).
    Predictions of other stimuli are their centred kernel rows times the dual coefficients,
    plus the intercepts: no primal weights are formed."""
    from himalaya.kernel_ridge import KernelRidgeCV

    from neuroalign.analysis.encoding import ALPHAS, _himalaya_backend

    if inner_folds > len(y) or inner_folds < 2:
        raise ValueError(f"inner_folds must be between 2 and the {len(y)} training stimuli; "
                         f"got {inner_folds}")
    alphas = np.asarray(ALPHAS if alphas is None else alphas, dtype=np.float64)
    dtype = np.float64 if device is None else np.float32
    cv = KFold(inner_folds, shuffle=True, random_state=seed)
    with _himalaya_backend(device) as backend:
        model = KernelRidgeCV(alphas=alphas, kernel="precomputed", fit_intercept=True, cv=cv,
                              warn=False)
        model.fit(centred.astype(dtype, copy=False), y.astype(dtype, copy=False))
        dual = np.asarray(backend.to_numpy(model.dual_coef_), dtype=np.float64)
        intercept = np.asarray(backend.to_numpy(model.intercept_), dtype=np.float64)
        best = np.asarray(backend.to_numpy(model.best_alphas_), dtype=np.float64)
    # himalaya hands back the grid values up to rounding: report the grid's own
    nearest = np.abs(np.log(best)[:, None] - np.log(alphas)[None, :]).argmin(axis=1)
    return dual.reshape(len(y), -1), np.broadcast_to(intercept, dual.shape[1:]), alphas[nearest]


def kernel_fit_predict(kernel: LinearKernel, y: np.ndarray, train: np.ndarray,
                       test: np.ndarray, alphas, inner_folds: int = 5,
                       device: str | None = None, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(predictions of the ``test`` rows, chosen alphas) of ridge in the dual form, fitted on
    the ``train`` rows (boolean masks) as :class:`RidgeEncoder` with ``solver="kernel"``."""
    train, test = np.flatnonzero(train), np.flatnonzero(test)
    dual, intercept, best = fit_dual(_centred(kernel.gram, train, train), y[train], alphas,
                                     inner_folds, device, seed)
    return _centred(kernel.gram, test, train) @ dual + intercept, best
