"""Representational similarity analysis: RDMs from activations, comparison with brain RDMs.

RDMs are `rsatoolbox.rdm.RDMs` with the pattern descriptor `stimulus_id`, so model and brain
RDMs are matched by stimulus name, never by position alone. Dissimilarities follow rsatoolbox
(Nili et al. 2014, rsatoolbox.readthedocs.io) and are computed with torch in float64 from the
n × n Gram matrix accumulated over feature chunks, so a layer never has to fit in memory:

    G = Σ_chunks X_c X_cᵀ,  s = Σ_chunks X_c·1,  D = number of features
    euclidean   : (G_ii + G_jj - 2 G_ij) / D          (rsatoolbox: squared, per channel)
    correlation : 1 - Gc_ij / sqrt(Gc_ii Gc_jj),  Gc = G - s sᵀ / D   (patterns centred
                  over features; rows are shifted by their mean over the first chunk first,
                  which keeps the subtraction accurate when means are large)
    cosine      : 1 - G_ij / sqrt(G_ii G_jj)          (rsatoolbox has no cosine RDM)
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from copy import deepcopy

import numpy as np
import rsatoolbox
import xarray as xr

from neuroalign.analysis.streaming import feature_chunks

__all__ = [
    "COMPARE_METHODS",
    "RDM_METHODS",
    "calc_rdm",
    "calc_rdms",
    "check_and_reorder",
    "compare",
    "layerwise_rsa",
    "noise_ceiling",
]

RDM_METHODS = ("correlation", "cosine", "euclidean")
_MEASURE_NAMES = {
    "correlation": "correlation",
    "cosine": "cosine",
    "euclidean": "squared euclidean",
}
COMPARE_METHODS = (
    "spearman",
    "rho-a",
    "tau-a",
    "kendall",
    "tau-b",
    "corr",
    "cosine",
    "corr_cov",
    "cosine_cov",
    "neg_riem_dist",
    "bures",
    "bures_metric",
)


def _check_method(name: str, value: str, valid: tuple[str, ...]) -> None:
    if value not in valid:
        raise ValueError(f"{name} must be one of {list(valid)}; got {value!r}")


def _check_ids(stimulus_id, n: int | None = None, *, name: str = "stimulus_id") -> np.ndarray:
    ids = np.asarray(stimulus_id).astype(str)
    if ids.ndim != 1:
        raise ValueError(f"{name} must be 1-D (one id per stimulus); got shape {ids.shape}")
    if n is not None and ids.size != n:
        raise ValueError(f"{name} has {ids.size} ids but the activations have {n} stimuli")
    values, counts = np.unique(ids, return_counts=True)
    if (counts > 1).any():
        raise ValueError(f"{name} holds duplicated ids: {values[counts > 1].tolist()[:20]}")
    return ids


def calc_rdm(
    x,
    stimulus_id,
    method: str = "correlation",
    descriptors: Mapping[str, object] | None = None,
    chunk_size: int = 4096,
    device=None,
) -> rsatoolbox.rdm.RDMs:
    """One RDM from activations, as rsatoolbox defines it, accumulated over feature chunks.

    Matches `rsatoolbox.rdm.calc_rdm(rsatoolbox.data.Dataset(x), method=method)` for
    'correlation' and 'euclidean' (squared distance / n_features) to float64 rounding;
    'cosine' is 1 - cosine similarity (scipy's `pdist(x, "cosine")`).

    Args:
        x: activations (n_stimuli, n_features, ...) — numpy, torch (any device), or a lazy
            array sliced chunk by chunk (dask, xarray, netCDF4 variable); or an iterable of
            (n_stimuli, n_chunk) arrays, streamed.
        stimulus_id: (n_stimuli,) unique ids, in the row order of x.
        method: one of 'correlation', 'cosine', 'euclidean'.
        descriptors: rdm descriptors, one value each, e.g. {'model': 'mae', 'layer': 'block3'}.
        chunk_size: features per chunk when x is an array.
        device: torch device for the accumulation (default: x's device if a tensor, else cpu).

    Returns:
        rsatoolbox.rdm.RDMs with one RDM, pattern_descriptors {'stimulus_id': ids, 'index'},
        rdm_descriptors from `descriptors`, dissimilarity_measure set.
    """
    import torch

    _check_method("method", method, RDM_METHODS)
    if not isinstance(chunk_size, int | np.integer) or chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive integer; got {chunk_size!r}")
    if device is None:
        device = x.device if hasattr(x, "device") and hasattr(x, "detach") else "cpu"
    f64 = torch.float64
    gram = sums = shift = lo = hi = None
    n_features = 0
    for i, chunk in enumerate(feature_chunks(x, chunk_size)):
        c = chunk if hasattr(chunk, "detach") else torch.from_numpy(np.asarray(chunk))
        c = c.to(device=device, dtype=f64).reshape(c.shape[0], -1)
        if gram is None:
            n = c.shape[0]
            gram = torch.zeros(n, n, dtype=f64, device=device)
            sums = torch.zeros(n, dtype=f64, device=device)
            lo, hi = c.amin(dim=1), c.amax(dim=1)
            shift = c.mean(dim=1, keepdim=True) if method == "correlation" else 0.0
        elif c.shape[0] != n:
            raise ValueError(f"feature chunk {i} has {c.shape[0]} stimuli; chunk 0 had {n}")
        if not bool(torch.isfinite(c).all()):
            bad = (~torch.isfinite(c)).any(dim=1).nonzero().flatten().cpu().numpy()
            ids = np.asarray(stimulus_id).astype(str)[bad] if len(stimulus_id) == n else bad
            raise ValueError(
                f"activations hold NaN/infinite values for stimuli {ids.tolist()[:20]}"
            )
        lo, hi = torch.minimum(lo, c.amin(dim=1)), torch.maximum(hi, c.amax(dim=1))
        c = c - shift
        gram.addmm_(c, c.T)
        sums += c.sum(dim=1)
        n_features += c.shape[1]
    if gram is None or n_features == 0:
        raise ValueError("x holds no features (an empty array or an empty iterable of chunks)")
    ids = _check_ids(stimulus_id, n)

    if method == "euclidean":
        sq = torch.diagonal(gram)
        rdm = (sq[:, None] + sq[None, :] - 2 * gram) / n_features
    else:
        if method == "correlation":
            gram = gram - torch.outer(sums, sums) / n_features
            degenerate = (lo == hi).cpu().numpy()
            what = "constant over features (correlation is undefined)"
        else:
            degenerate = ((lo == 0) & (hi == 0)).cpu().numpy()
            what = "all zero (cosine is undefined)"
        if degenerate.any():
            raise ValueError(
                f"the activation patterns of stimuli {ids[degenerate].tolist()[:20]} are {what}"
            )
        norm = torch.sqrt(torch.diagonal(gram))
        rdm = 1 - gram / torch.outer(norm, norm)
    iu = np.triu_indices(n, k=1)
    vector = rdm.cpu().numpy()[iu]
    rdm_descriptors = {k: [v] for k, v in (descriptors or {}).items()}
    return rsatoolbox.rdm.RDMs(
        dissimilarities=vector[None, :],
        dissimilarity_measure=_MEASURE_NAMES[method],
        rdm_descriptors=rdm_descriptors,
        pattern_descriptors={"stimulus_id": ids.tolist()},
    )


def calc_rdms(
    layers: Mapping[str, object] | Iterable[tuple[str, object]],
    stimulus_id,
    method: str = "correlation",
    descriptors: Mapping[str, object] | None = None,
    chunk_size: int = 4096,
    device=None,
) -> rsatoolbox.rdm.RDMs:
    """One RDM per layer (see `calc_rdm`), concatenated, with the rdm descriptor `layer`.

    Args:
        layers: {layer_name: activations} or an iterable of (layer_name, activations); each
            activations is any input `calc_rdm` takes (read one layer at a time).
        stimulus_id: (n_stimuli,) ids in the row order of every layer's activations.
        method: one of RDM_METHODS.
        descriptors: extra rdm descriptors shared by all layers (e.g. {'model': 'mae',
            'seed': 0}), so that RDMs of several models can be concatenated and told apart.
        chunk_size, device: see `calc_rdm`.

    Returns:
        rsatoolbox.rdm.RDMs, one RDM per layer in input order.
    """
    items = layers.items() if isinstance(layers, Mapping) else layers
    rdms = []
    for name, x in items:
        try:
            rdms.append(
                calc_rdm(
                    x,
                    stimulus_id,
                    method,
                    {**(descriptors or {}), "layer": str(name)},
                    chunk_size,
                    device,
                )
            )
        except ValueError as err:
            raise ValueError(f"layer {name!r}: {err}") from err
    if not rdms:
        raise ValueError("layers is empty: give at least one (layer_name, activations)")
    return rsatoolbox.rdm.concat(rdms)


def compare(model_rdms, brain_rdms, method: str = "spearman", sigma_k=None) -> np.ndarray:
    """Similarity of every model RDM with every brain RDM (`rsatoolbox.rdm.compare`).

    Methods (see rsatoolbox.rdm.compare): 'spearman' (rank correlation), 'rho-a' (Spearman
    without tie correction), 'tau-a' (Kendall without tie correction, for models with ties),
    'kendall'/'tau-b', 'corr' (Pearson), 'cosine', 'corr_cov' / 'cosine_cov' (whitened, Diedrichsen
    et al. 2021), 'neg_riem_dist', 'bures', 'bures_metric'.

    Args:
        model_rdms: RDMs (n_model RDMs) or array (n_model, n_pairs).
        brain_rdms: RDMs (n_brain RDMs) over the same stimuli, in the same order
            (see `check_and_reorder`).
        method: comparison method, one of COMPARE_METHODS.
        sigma_k: pattern covariance for 'corr_cov' / 'cosine_cov' (default identity).

    Returns:
        np.ndarray (n_model, n_brain).
    """
    _check_method("method", method, COMPARE_METHODS)
    return rsatoolbox.rdm.compare(model_rdms, brain_rdms, method=method, sigma_k=sigma_k)


def noise_ceiling(
    brain_rdms, method: str = "spearman", rdm_descriptor: str = "index"
) -> tuple[float, float]:
    """Noise ceiling of brain RDMs (`rsatoolbox.inference.boot_noise_ceiling`).

    Lower bound: each subject compared with the pooled RDM of all other subjects (leave one
    out); upper bound: each subject compared with the pooled RDM of all subjects. Pooling is
    the one suited to the method (rank-averaged for spearman, ...).

    Args:
        brain_rdms: RDMs, one or more per subject.
        method: comparison method, one of COMPARE_METHODS.
        rdm_descriptor: rdm descriptor grouping RDMs by subject ('index': one RDM a subject).

    Returns:
        (lower, upper) floats.
    """
    _check_method("method", method, COMPARE_METHODS)
    if rdm_descriptor not in brain_rdms.rdm_descriptors:
        raise ValueError(
            f"rdm_descriptor must be one of {list(brain_rdms.rdm_descriptors)}; got {rdm_descriptor!r}"
        )
    n_groups = len(np.unique(np.asarray(brain_rdms.rdm_descriptors[rdm_descriptor])))
    if n_groups < 2:
        raise ValueError(
            f"a noise ceiling needs RDMs of at least 2 subjects; brain_rdms has {n_groups} "
            f"value(s) of {rdm_descriptor!r}"
        )
    lower, upper = rsatoolbox.inference.boot_noise_ceiling(
        brain_rdms, method=method, rdm_descriptor=rdm_descriptor
    )
    return float(lower), float(upper)


def check_and_reorder(model_rdms, brain_rdms):
    """Returns a copy of model_rdms with its patterns in brain_rdms' stimulus order.

    Stimuli are matched by the `stimulus_id` pattern descriptor of both; the 'index' pattern
    descriptor of the result is reset to 0..n-1.

    Raises:
        ValueError: a descriptor is missing, ids are duplicated, or the two sets of ids differ
            (the message lists the ids found on one side only).
    """
    for name, rdms in (("model_rdms", model_rdms), ("brain_rdms", brain_rdms)):
        if "stimulus_id" not in rdms.pattern_descriptors:
            raise ValueError(
                f"{name} has no 'stimulus_id' pattern descriptor (it has "
                f"{list(rdms.pattern_descriptors)}); stimuli are matched by id, not by position"
            )
    model_ids = _check_ids(model_rdms.pattern_descriptors["stimulus_id"], name="model stimulus ids")
    brain_ids = _check_ids(brain_rdms.pattern_descriptors["stimulus_id"], name="brain stimulus ids")
    only_model = sorted(set(model_ids.tolist()) - set(brain_ids.tolist()))
    only_brain = sorted(set(brain_ids.tolist()) - set(model_ids.tolist()))
    if only_model or only_brain:
        raise ValueError(
            f"stimulus ids differ between model and brain RDMs: {len(only_model)} only in the "
            f"model RDMs {only_model[:20]}, {len(only_brain)} only in the brain RDMs "
            f"{only_brain[:20]}. Stimuli are matched by id, never by position: extract the "
            "activations from the stimulus set the brain data belongs to (e.g. --stimuli "
            "kriegeskorte92 or cichy92), whose ids the brain loaders use"
        )
    position = {s: i for i, s in enumerate(model_ids)}
    out = deepcopy(model_rdms)
    out.reorder(np.array([position[s] for s in brain_ids]))
    out.pattern_descriptors["index"] = list(range(len(brain_ids)))
    return out


def _resampled_vectors(matrices: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """Upper triangles of RDMs (k, n, n) on resampled patterns idx; pairs of a stimulus with
    its own copy are NaN (trivially zero, excluded from comparisons as rsatoolbox does)."""
    rows, cols = np.triu_indices(len(idx), k=1)
    vectors = matrices[:, idx[rows], idx[cols]]
    vectors[:, idx[rows] == idx[cols]] = np.nan
    return vectors


def layerwise_rsa(
    layers: Mapping[str, object] | Iterable[tuple[str, object]],
    stimulus_id,
    brain_rdms,
    *,
    rdm_method: str = "correlation",
    compare_method: str = "spearman",
    subject_descriptor: str | None = None,
    n_boot: int = 0,
    resample: str = "stimuli",
    seed: int = 0,
    ci: float = 0.95,
    brain_name: str | None = None,
    chunk_size: int = 4096,
    device=None,
) -> xr.Dataset:
    """RSA of each layer's RDM against subject brain RDMs, with noise ceiling and bootstrap CI.

    Args:
        layers: {layer_name: activations (n_stimuli, n_features, ...)} or an iterable of
            (layer_name, activations) pairs; any input `calc_rdm` takes.
        stimulus_id: (n_stimuli,) ids in the row order of the activations.
        brain_rdms: RDMs with a 'stimulus_id' pattern descriptor, one or more per subject.
        rdm_method: one of RDM_METHODS.
        compare_method: one of COMPARE_METHODS.
        subject_descriptor: rdm descriptor naming the subject of each brain RDM (several RDMs
            of a subject, e.g. sessions, are averaged); None: each RDM is a subject.
        n_boot: if > 0, percentile bootstrap CI of the subject-mean similarity (the same
            seeded resamples for every layer; self-pairs of repeated stimuli dropped).
        resample: what the bootstrap resamples: 'stimuli', 'subjects' or 'both' (see
            `rsa_inference`; 'both' is conservative).
        seed: bootstrap seed.
        ci: coverage of the bootstrap interval.
        brain_name: name of the brain RDMs for plots (default: brain_rdms.descriptors['name'],
            else 'brain RDMs').
        chunk_size, device: see `calc_rdm`.

    Returns:
        xr.Dataset, dims (layer, subject): `similarity` (layer, subject); `mean`, `sem`
        (layer; sem is NaN with one subject); `ci_lo`, `ci_hi` (layer) when n_boot > 0;
        scalar `noise_ceiling_lower`, `noise_ceiling_upper` (NaN with one subject).
        attrs: rdm_method, compare_method, brain, n_boot, resample, seed, ci.
    """
    from neuroalign.analysis import rsa_inference  # it imports this module

    _check_method("rdm_method", rdm_method, RDM_METHODS)
    _check_method("compare_method", compare_method, COMPARE_METHODS)
    _check_method("resample", resample, rsa_inference.RESAMPLE)
    if not 0 < ci < 1:
        raise ValueError(f"ci must be in (0, 1); got {ci!r}")
    group_by = subject_descriptor or "index"
    if group_by not in brain_rdms.rdm_descriptors:
        raise ValueError(
            f"subject_descriptor must be one of {list(brain_rdms.rdm_descriptors)}; got "
            f"{subject_descriptor!r}"
        )
    brain_vectors = brain_rdms.get_vectors()
    if np.isnan(brain_vectors).any():
        bad = np.nonzero(np.isnan(brain_vectors).any(axis=1))[0].tolist()
        raise ValueError(f"brain_rdms hold NaN dissimilarities (RDMs {bad})")
    subjects, which = np.unique(
        np.asarray(brain_rdms.rdm_descriptors[group_by]), return_inverse=True
    )
    n_subjects = len(subjects)
    # (n_brain,) -> (n_subjects,) average of each subject's RDMs
    averaging = np.zeros((brain_rdms.n_rdm, n_subjects))
    averaging[np.arange(brain_rdms.n_rdm), which] = 1
    averaging /= averaging.sum(axis=0)

    if n_subjects > 1:
        nc_lower, nc_upper = noise_ceiling(brain_rdms, compare_method, group_by)
    else:
        nc_lower = nc_upper = float("nan")
    if n_boot and resample == "stimuli":
        rng = np.random.default_rng(seed)
        n = brain_rdms.n_cond
        resamples = [rng.integers(0, n, size=n) for _ in range(n_boot)]
        brain_matrices = brain_rdms.get_matrices()
        brain_boot = [_resampled_vectors(brain_matrices, idx) for idx in resamples]

    names, similarity, bounds, models = [], [], [], []
    items = layers.items() if isinstance(layers, Mapping) else layers
    for name, x in items:
        try:
            model = calc_rdm(x, stimulus_id, rdm_method, {"layer": str(name)}, chunk_size, device)
            model = check_and_reorder(model, brain_rdms)
        except ValueError as err:
            raise ValueError(f"layer {name!r}: {err}") from err
        names.append(str(name))
        models.append(model)
        similarity.append(compare(model, brain_rdms, compare_method)[0] @ averaging)
        if n_boot and resample == "stimuli":
            model_matrix = model.get_matrices()
            boot = np.array(
                [
                    (
                        compare(_resampled_vectors(model_matrix, idx), b, compare_method)[0]
                        @ averaging
                    ).mean()
                    for idx, b in zip(resamples, brain_boot, strict=True)
                ]
            )
            bounds.append(np.percentile(boot, [(1 - ci) / 2 * 100, (1 + ci) / 2 * 100]))
    if not names:
        raise ValueError("layers is empty: give at least one (layer_name, activations)")
    if n_boot and resample != "stimuli":
        samples = rsa_inference.bootstrap_samples(
            rsatoolbox.rdm.concat(models),
            brain_rdms,
            compare_method,
            resample=resample,
            subject_descriptor=subject_descriptor,
            n_boot=n_boot,
            seed=seed,
        )
        bounds = np.percentile(samples, [(1 - ci) / 2 * 100, (1 + ci) / 2 * 100], axis=0).T

    similarity = np.array(similarity)  # (layer, subject)
    sem = (
        similarity.std(axis=1, ddof=1) / np.sqrt(n_subjects)
        if n_subjects > 1
        else np.full(len(names), np.nan)
    )
    if subjects.dtype == object:
        subjects = subjects.astype(str)
    brain = brain_name or str(brain_rdms.descriptors.get("name", "brain RDMs"))
    data = {
        "similarity": (("layer", "subject"), similarity),
        "mean": ("layer", similarity.mean(axis=1)),
        "sem": ("layer", sem),
        "noise_ceiling_lower": ((), nc_lower),
        "noise_ceiling_upper": ((), nc_upper),
    }
    if n_boot:
        data["ci_lo"] = ("layer", np.array(bounds)[:, 0])
        data["ci_hi"] = ("layer", np.array(bounds)[:, 1])
    return xr.Dataset(
        data,
        coords={"layer": np.array(names, dtype=str), "subject": subjects},
        attrs={
            "metric": "rsa",
            "rdm_method": rdm_method,
            "compare_method": compare_method,
            "brain": brain,
            "subject_descriptor": group_by,
            "n_boot": int(n_boot),
            "resample": resample,
            "seed": int(seed),
            "ci": float(ci),
        },
    )
