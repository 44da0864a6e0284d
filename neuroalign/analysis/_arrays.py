"""Turning user inputs (numpy, torch, xarray) into 2-D float arrays: (n_stimuli, n_features)."""

from __future__ import annotations

import numpy as np


def as_matrix(x, *, name: str = "x", dtype=np.float64) -> np.ndarray:
    """Returns `x` as a 2-D numpy array, trailing dims flattened into features.

    Args:
        x: array-like (n_stimuli, ...) — numpy, torch (any device), xarray or dask.
        name: what to call the input in error messages.
        dtype: numpy dtype of the result.

    Returns:
        np.ndarray (n_stimuli, n_features).
    """
    if hasattr(x, "detach"):  # torch.Tensor, without importing torch
        x = x.detach().cpu().numpy()
    arr = np.asarray(x)
    if arr.ndim < 2:
        raise ValueError(
            f"{name} must have shape (n_stimuli, n_features, ...); got an array of shape {arr.shape}"
        )
    if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
        raise TypeError(f"{name} must hold real numbers; got dtype {arr.dtype}")
    arr = arr.reshape(arr.shape[0], -1).astype(dtype, copy=False)
    if arr.shape[0] < 2 or arr.shape[1] < 1:
        raise ValueError(f"{name} needs at least 2 stimuli and 1 feature; got shape {arr.shape}")
    return arr


def check_finite(x: np.ndarray, *, name: str = "x") -> None:
    """Raises ValueError if `x` holds NaN or infinite values, saying how many and where."""
    bad = ~np.isfinite(x)
    if bad.any():
        rows = np.unique(np.nonzero(bad)[0])
        raise ValueError(
            f"{name} holds {int(bad.sum())} NaN/infinite values, in stimuli (rows) "
            f"{rows[:10].tolist()}{' ...' if rows.size > 10 else ''}"
        )
