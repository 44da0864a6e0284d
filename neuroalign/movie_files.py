"""Movie encoding from files: clip features and a movie response in, results netCDF out.

The file-level wrapper of :mod:`neuroalign.analysis.movie_encoding`: each feature file
(:func:`neuroalign.data.movies.read_clip_features`) is placed on the movie response's
timeline and resampled to its TR (:func:`neuroalign.analysis.timeseries.timeline_features`),
then fitted alone (:func:`~neuroalign.analysis.movie_encoding.movie_encoding`) or, with
``partition``, as the spaces of one banded model
(:func:`~neuroalign.analysis.movie_encoding.movie_variance_partitioning`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import xarray as xr

__all__ = ["movie_encoding_from_files"]


def movie_encoding_from_files(
    features: Mapping[str, str | Path],
    brain: str | Path,
    *,
    delays: Sequence[float] = (2.0, 4.0, 6.0, 8.0),
    test_runs: Sequence[str] | None = None,
    method: str = "average",
    partition: bool = False,
    alphas=None,
    n_iter: int = 50,
    layer: str | None = None,
    seed: int = 0,
    device: str | None = None,
    out: str | Path | None = None,
) -> xr.Dataset:
    """Encoding scores (or, with ``partition``, unique and shared variance) of clip features
    for a movie response.

    Args:
        features: {name: clip features file}.
        brain: a movie response file (``.nc`` or ``.npz``,
            :func:`neuroalign.data.movies.read_movie_responses`) with a timeline.
        delays, test_runs, alphas, seed, device: as
            :func:`neuroalign.analysis.movie_encoding.movie_encoding`.
        method: how features reach the TR grid (``"average"`` or ``"lanczos"``).
        partition: fit the files as the 2–6 spaces of one banded model (``n_iter`` draws).
        layer: for activation files, the layer (with a ``time`` dim) to read from each.
        out: the results netCDF file (written under a temporary name, then renamed).
    """
    from neuroalign.analysis.movie_encoding import movie_encoding, movie_variance_partitioning
    from neuroalign.analysis.timeseries import timeline_features
    from neuroalign.data.movies import read_clip_features, read_movie_responses
    from neuroalign.workflows import save_results

    if not features:
        raise ValueError("no feature files given")
    responses = read_movie_responses(brain)
    spaces = {}
    for name, path in features.items():
        try:
            spaces[name] = timeline_features(read_clip_features(path, layer=layer), responses, method)
        except ValueError as err:
            raise ValueError(f"{path}: {err}") from err
    common = {"delays": delays, "test_runs": test_runs, "alphas": alphas, "device": device,
              "seed": seed}
    if partition:
        ds = movie_variance_partitioning(spaces, responses, n_iter=n_iter, **common)
    else:
        ds = movie_encoding(spaces, responses, **common)
    ds.attrs.update(brain=str(brain), resample_method=method,
                    features=", ".join(f"{k}={v}" for k, v in features.items()))
    if out is not None:
        save_results(ds, out)
    return ds
