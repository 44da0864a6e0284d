"""RDMs: computed from activations, aligned by stimulus id.

RDMs are `rsatoolbox.rdm.RDMs` with the pattern descriptor `stimulus_id`, so model and brain
RDMs are matched by stimulus name, never by position alone. Dissimilarities follow rsatoolbox
(Nili et al. 2014, rsatoolbox.readthedocs.io) and are computed from the n × n Gram matrix
accumulated in float64 over feature chunks (`_rdm_gram`), so a layer never has to fit in
memory:

    G = Σ_chunks X_c X_cᵀ,  s = Σ_chunks X_c·1,  D = number of features
    euclidean   : (G_ii + G_jj - 2 G_ij) / D          (rsatoolbox: squared, per channel)
    correlation : 1 - Gc_ij / sqrt(Gc_ii Gc_jj),  Gc = G - s sᵀ / D   (patterns centred
                  over features)
    cosine      : 1 - G_ij / sqrt(G_ii G_jj)          (rsatoolbox has no cosine RDM)

Precision. Each chunk's product X_c X_cᵀ is computed in the input's precision — float32 for
float32 data, as activation files hold, at twice float64's speed and half its memory — and
summed in float64. The float32 rounding error of one chunk's sum grows with its length (about
√k·2⁻²⁴ relative for k features), so the chunk (`chunk_size`; by default as wide as 128 MiB
of float32 for the n stimuli allows, between 1,024 and 16,384 features) bounds
it; before the product the rows are shifted so that a large mean does not swamp the part of G
the RDM keeps (correlation: each row by its mean over the first chunk; euclidean: every feature
by its mean over the first 64 stimuli; both leave the RDM unchanged). The RDM of float32
input is then within 1e-6 of a float64 computation (euclidean: 1e-6 of its largest
distance; tests/analysis/test_analysis_rdm_precision.py, benchmarks/bench_rdm.py measure
~1e-7); float64 input is computed in float64 and matches rsatoolbox to 1e-10.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import numpy as np
import rsatoolbox

from neuroalign.analysis._rdm_gram import block_gram, chunk_gram
from neuroalign.analysis.dask_gram import as_dask, rdm_gram
from neuroalign.analysis.streaming import StimulusBlocks, feature_chunks

__all__ = [
    "RDM_METHODS",
    "calc_rdm",
    "calc_rdms",
    "match_stimuli",
]

RDM_METHODS = ("correlation", "cosine", "euclidean")
_MEASURE_NAMES = {
    "correlation": "correlation",
    "cosine": "cosine",
    "euclidean": "squared euclidean",
}


def rdm_method_of(rdms) -> str:
    """The `rdm_method` name of RDMs from `calc_rdm` (their dissimilarity measure otherwise)."""
    measure = str(rdms.dissimilarity_measure)
    return next((k for k, v in _MEASURE_NAMES.items() if v == measure), measure)


def check_choice(name: str, value: str, valid: tuple[str, ...]) -> None:
    """Raises ValueError unless `value` is one of `valid`, naming the argument."""
    if value not in valid:
        raise ValueError(f"{name} must be one of {list(valid)}; got {value!r}")


def check_ids(stimulus_id, n: int | None = None, *, name: str = "stimulus_id") -> np.ndarray:
    """`stimulus_id` as a 1-D str array of unique ids (of length n when given)."""
    ids = np.asarray(stimulus_id).astype(str)
    if ids.ndim != 1:
        raise ValueError(f"{name} must be 1-D (one id per stimulus); got shape {ids.shape}")
    if n is not None and ids.size != n:
        raise ValueError(f"{name} has {ids.size} ids but the activations have {n} stimuli")
    values, counts = np.unique(ids, return_counts=True)
    if (counts > 1).any():
        raise ValueError(f"{name} holds duplicated ids: {values[counts > 1].tolist()[:20]}")
    return ids


def _row_names(stimulus_id, rows) -> list:
    """The ids of `rows` for an error message (the row numbers if the ids do not fit)."""
    ids = np.asarray(stimulus_id).astype(str)
    rows = np.asarray(rows)
    return (ids[rows] if ids.ndim == 1 and ids.size > rows.max(initial=-1) else rows).tolist()[:20]


def _rdm_from_gram(gram, sums, n_features: int, rdm_method: str, stimulus_id):
    """The n × n RDM from the shifted Gram matrix, row sums and feature count (see
    `_rdm_gram`), in place of `gram`; the NaN and degenerate-row checks read its diagonal."""
    lib = np if isinstance(gram, np.ndarray) else _torch()
    diag = lib.diagonal(gram)
    bad = ~lib.isfinite(diag)  # a NaN or inf anywhere in a row reaches its diagonal
    if bool(bad.any()):
        rows = np.flatnonzero(_numpy(bad))
        raise ValueError(
            f"activations hold NaN/infinite values for stimuli {_row_names(stimulus_id, rows)}"
        )
    if rdm_method == "euclidean":
        sq = diag.clone() if lib is not np else diag.copy()
        gram *= -2.0
        gram += sq[:, None]
        gram += sq[None, :]
        gram /= n_features
        return gram
    if rdm_method == "correlation":
        for start in range(0, len(sums), 256):  # in row blocks: no second n × n matrix
            part = slice(start, start + 256)
            gram[part] -= lib.outer(sums[part] / n_features, sums)
        what = "constant over features (correlation is undefined)"
    else:
        what = "all zero (cosine is undefined)"
    degenerate = _numpy(~(diag > 0))
    if degenerate.any():
        raise ValueError(
            f"the activation patterns of stimuli "
            f"{_row_names(stimulus_id, np.flatnonzero(degenerate))} are {what}"
        )
    norm = lib.sqrt(diag)
    gram /= norm[:, None]
    gram /= norm[None, :]
    gram *= -1.0
    gram += 1.0
    return gram


def _torch():
    import torch

    return torch


def _numpy(a) -> np.ndarray:
    return a if isinstance(a, np.ndarray) else a.cpu().numpy()


#: bytes of one float32 feature chunk of the n stimuli (`auto_chunk_size`)
CHUNK_BYTES = 128 * 2**20


def auto_chunk_size(n_stimuli: int) -> int:
    """Features per chunk for n stimuli: 128 MiB of float32, between 1,024 and 16,384."""
    return int(min(16384, max(1024, CHUNK_BYTES // (4 * max(1, n_stimuli)))))


def calc_rdm(
    x,
    stimulus_id,
    rdm_method: str = "correlation",
    descriptors: Mapping[str, object] | None = None,
    chunk_size: int | None = None,
    device=None,
) -> rsatoolbox.rdm.RDMs:
    """One RDM from activations, as rsatoolbox defines it, accumulated over feature chunks.

    Matches `rsatoolbox.rdm.calc_rdm(rsatoolbox.data.Dataset(x), method=rdm_method)` for
    'correlation' and 'euclidean' (squared distance / n_features): to float64 rounding for
    float64 input, within 1e-6 of float64 for float32 input (see the module docstring);
    'cosine' is 1 - cosine similarity (scipy's `pdist(x, "cosine")`). The data are read once;
    NaN/infinite values and constant (correlation) or all-zero (cosine) patterns are errors
    naming the stimuli.

    Args:
        x: activations (n_stimuli, n_features, ...) — numpy, torch (any device), or a lazy
            array sliced chunk by chunk (dask, xarray, netCDF4 variable); or an iterable of
            (n_stimuli, n_chunk) arrays, streamed; or a file's layer read in stimulus blocks
            (`streaming.layer_blocks`).
        stimulus_id: (n_stimuli,) unique ids, in the row order of x.
        rdm_method: one of 'correlation', 'cosine', 'euclidean'.
        descriptors: rdm descriptors, one value each, e.g. {'model': 'mae', 'layer': 'block3'}.
        chunk_size: features per chunk (and per float32 product) when x is an array or blocks;
            default `auto_chunk_size` of the number of stimuli (wider chunks make fewer,
            faster BLAS products; the width bounds the float32 rounding, see above).
        device: where the products run (default: x's device if a tensor, else the CPU); on
            the CPU they run in numpy, elsewhere in torch (a file's stimulus blocks: the CPU).

    Returns:
        rsatoolbox.rdm.RDMs with one RDM, pattern_descriptors {'stimulus_id': ids, 'index'},
        rdm_descriptors from `descriptors`, dissimilarity_measure set.
    """
    check_choice("rdm_method", rdm_method, RDM_METHODS)
    if chunk_size is None:
        chunk_size = auto_chunk_size(len(stimulus_id))
    if not isinstance(chunk_size, int | np.integer) or chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive integer; got {chunk_size!r}")
    if isinstance(x, StimulusBlocks):
        gram, sums, n_features = block_gram(x, rdm_method, int(chunk_size))
    elif as_dask(x) is not None:  # a dask graph of row-block tiles, on the active scheduler
        gram, sums, n_features = rdm_gram(as_dask(x), rdm_method, int(chunk_size))
    else:
        gram, sums, n_features = chunk_gram(feature_chunks(x, chunk_size), rdm_method, device)
    n = gram.shape[0]
    rdm = _rdm_from_gram(gram, sums, n_features, rdm_method, stimulus_id)
    ids = check_ids(stimulus_id, n)
    rdm = _numpy(rdm)
    vector = np.concatenate([rdm[i, i + 1 :] for i in range(n)])  # the upper triangle, by rows
    rdm_descriptors = {k: [v] for k, v in (descriptors or {}).items()}
    return rsatoolbox.rdm.RDMs(
        dissimilarities=vector[None, :],
        dissimilarity_measure=_MEASURE_NAMES[rdm_method],
        rdm_descriptors=rdm_descriptors,
        pattern_descriptors={"stimulus_id": ids.tolist()},
    )


def calc_rdms(
    activations: Mapping[str, object] | Iterable[tuple[str, object]],
    stimulus_id,
    rdm_method: str = "correlation",
    descriptors: Mapping[str, object] | None = None,
    chunk_size: int | None = None,
    device=None,
) -> rsatoolbox.rdm.RDMs:
    """One RDM per layer (see `calc_rdm`), concatenated, with the rdm descriptor `layer`.

    Args:
        activations: {layer_name: x} or an iterable of (layer_name, x); each x is any input
            `calc_rdm` takes (read one layer at a time).
        stimulus_id: (n_stimuli,) ids in the row order of every layer's activations.
        rdm_method: one of RDM_METHODS.
        descriptors: extra rdm descriptors shared by all layers (e.g. {'model': 'mae',
            'seed': 0}), so that RDMs of several models can be concatenated and told apart.
        chunk_size, device: see `calc_rdm`.

    Returns:
        rsatoolbox.rdm.RDMs, one RDM per layer in input order.
    """
    items = activations.items() if isinstance(activations, Mapping) else activations
    rdms = []
    for name, x in items:
        try:
            rdms.append(
                calc_rdm(
                    x,
                    stimulus_id,
                    rdm_method,
                    {**(descriptors or {}), "layer": str(name)},
                    chunk_size,
                    device,
                )
            )
        except ValueError as err:
            raise ValueError(f"layer {name!r}: {err}") from err
    if not rdms:
        raise ValueError("activations is empty: give at least one (layer_name, x)")
    # rsatoolbox's concat of a single RDMs drops its rdm descriptors
    return rdms[0] if len(rdms) == 1 else rsatoolbox.rdm.concat(rdms)


def match_stimuli(rdms, stimulus_id: Sequence[str], *, name: str = "RDMs"):
    """A copy of `rdms` with its patterns in the order of `stimulus_id`, matched by name.

    Args:
        rdms: RDMs with a `stimulus_id` pattern descriptor.
        stimulus_id: (n,) the ids in the wanted order (e.g. another RDMs' `stimulus_id`
            pattern descriptor, or a `StimulusSet.stimulus_id`).
        name: what to call `rdms` in error messages.

    Returns:
        New RDMs whose `stimulus_id` descriptor equals `stimulus_id` and whose 'index'
        pattern descriptor is 0..n-1.

    Raises:
        ValueError: no `stimulus_id` descriptor, repeated ids, or the two sets of ids differ
            (the message lists the ids found on one side only).
    """
    if "stimulus_id" not in rdms.pattern_descriptors:
        raise ValueError(
            f"{name} have no 'stimulus_id' pattern descriptor (they have "
            f"{list(rdms.pattern_descriptors)}); stimuli are matched by id, not by position"
        )
    have = check_ids(rdms.pattern_descriptors["stimulus_id"], name=f"the stimulus ids of {name}")
    want = check_ids(stimulus_id, name="the requested stimulus ids")
    have_set, want_set = set(have.tolist()), set(want.tolist())
    missing = [s for s in want.tolist() if s not in have_set]
    extra = [s for s in have.tolist() if s not in want_set]
    if missing or extra:
        raise ValueError(
            f"stimulus ids differ: {len(missing)} requested ids missing from {name} "
            f"{missing[:20]}, {len(extra)} ids of {name} not requested {extra[:20]}. Stimuli "
            "are matched by id, never by position: extract the activations from the stimulus "
            "set the brain data belongs to (e.g. --stimuli kriegeskorte92 or cichy92), whose "
            "ids the brain loaders use, or give a folder's images those ids with a CSV of "
            "file,stimulus_id (extract --stimulus-ids map.csv; "
            "StimulusSet.from_folder(folder, stimulus_ids='map.csv'))"
        )
    position = {s: i for i, s in enumerate(have.tolist())}
    out = rdms.copy()
    out.reorder(np.array([position[s] for s in want.tolist()]))
    out.pattern_descriptors["index"] = list(range(len(want)))
    return out


def resampled_vectors(matrices: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """Upper triangles of RDMs (k, n, n) on resampled patterns idx; pairs of a stimulus with
    its own copy are NaN (trivially zero, excluded from comparisons as rsatoolbox does)."""
    rows, cols = np.triu_indices(len(idx), k=1)
    vectors = matrices[:, idx[rows], idx[cols]]
    vectors[:, idx[rows] == idx[cols]] = np.nan
    return vectors
