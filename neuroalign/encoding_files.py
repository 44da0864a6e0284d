"""Encoding models for activation files: read the layers, match the brain responses by
stimulus id, fit and score (:func:`neuroalign.analysis.encoding.layerwise_encoding`), write.

The file-level wrapper of the encoding analysis, beside :mod:`neuroalign.workflows`' wrappers
of the others. Layers are read into memory one at a time, as float64 (a streamed dual form
over feature chunks is not here yet).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import xarray as xr

__all__ = ["encoding_from_file"]


def encoding_from_file(
    path: str | Path,
    brain: str = "cowley-v4",
    layers=None,
    *,
    folds: int = 5,
    alphas=None,
    seed: int = 0,
    device: str | None = None,
    n_splits: int = 100,
    out: str | Path | None = None,
) -> xr.Dataset:
    """Cross-validated encoding scores of an activation file's layers for brain responses.

    Args:
        path: activation file (``neuroalign extract``).
        brain: a registered response data set (``neuroalign.data.RESPONSE_DATA``) or a
            responses netCDF (:func:`neuroalign.data.read_assembly`).
        layers: layer names (default: every layer in the file).
        folds, alphas, seed, device, n_splits: as :func:`layerwise_encoding`.
        out: write the results to this netCDF file (through a temporary name).

    Returns:
        The Dataset of :func:`layerwise_encoding`, with attributes ``activations`` and
        ``brain``.

    Raises:
        ValueError: a stimulus of the file missing from the responses (a few are named), a
            layer not in the file, and the errors of :func:`layerwise_encoding`.
    """
    from neuroalign.activations import flatten, open_activations
    from neuroalign.activations.reader import layer_names
    from neuroalign.analysis.encoding import layerwise_encoding
    from neuroalign.data.registry import load_brain_responses

    responses = load_brain_responses(brain)
    tree = open_activations(path, chunks=None)
    try:
        names = layer_names(tree) if layers is None else (
            [layers] if isinstance(layers, str) else list(layers))
        ids = np.asarray(tree["stimulus_id"].values).astype(str)
        activations = {
            name: np.asarray(flatten(tree, name).values, dtype=np.float64) for name in names
        }
    finally:
        tree.close()
    ds = layerwise_encoding(activations, responses, stimulus_id=ids, folds=folds, alphas=alphas,
                            seed=seed, device=device, n_splits=n_splits)
    ds.attrs.update(activations=str(path), brain=str(brain))
    if out is not None:
        from neuroalign.workflows import save_results

        save_results(ds, out)
    return ds
