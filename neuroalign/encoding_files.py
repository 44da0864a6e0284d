"""Encoding models for activation files: read the layers, match the brain responses by
stimulus id, fit and score (:func:`neuroalign.analysis.encoding.layerwise_encoding`), write.

The file-level wrapper of the encoding analysis, beside :mod:`neuroalign.workflows`' wrappers
of the others. A layer with more features than stimuli is read as its n × n linear kernel,
accumulated over stimulus blocks in float32 products
(:func:`neuroalign.analysis.encoding_kernels.layer_kernel`) and fitted in the dual form; a
smaller layer is read into memory whole, as float64.
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
    stream_kernels: bool | None = None,
) -> xr.Dataset:
    """Cross-validated encoding scores of an activation file's layers for brain responses.

    Args:
        path: activation file (``neuroalign extract``).
        brain: a registered response data set (``neuroalign.data.RESPONSE_DATA``) or a
            responses netCDF (:func:`neuroalign.data.read_assembly`).
        layers: layer names (default: every layer in the file).
        folds, alphas, seed, device, n_splits: as :func:`layerwise_encoding`.
        out: write the results to this netCDF file (through a temporary name).
        stream_kernels: read layers as streamed linear kernels (True), whole (False), or the
            first when a layer has more features than stimuli (None).

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
    from neuroalign.analysis.encoding_kernels import LinearKernel, layer_kernel
    from neuroalign.analysis.streaming import layer_blocks
    from neuroalign.data.registry import load_brain_responses

    responses = load_brain_responses(brain)
    tree = open_activations(path, chunks=None)
    try:
        names = layer_names(tree) if layers is None else (
            [layers] if isinstance(layers, str) else list(layers))
        ids = np.asarray(tree["stimulus_id"].values).astype(str)
        activations: dict[str, np.ndarray | LinearKernel] = {}
        for name in names:
            n_features = layer_blocks(path, name).shape[1]
            if stream_kernels or (stream_kernels is None and n_features > len(ids)):
                activations[name] = layer_kernel(path, name)
            else:
                activations[name] = np.asarray(flatten(tree, name).values, dtype=np.float64)
    finally:
        tree.close()
    ds = layerwise_encoding(activations, responses, stimulus_id=ids, folds=folds, alphas=alphas,
                            seed=seed, device=device, n_splits=n_splits)
    ds.attrs.update(activations=str(path), brain=str(brain))
    if out is not None:
        from neuroalign.workflows import save_results

        save_results(ds, out)
    return ds
