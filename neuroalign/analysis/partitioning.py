"""Variance partitioning: how much of a brain RDM several model RDMs explain, uniquely and jointly.

The brain RDM's dissimilarities y (one per stimulus pair) are regressed on the model RDMs'
dissimilarities (ordinary least squares with an intercept), for every subset S of the k models:
R²(S) = 1 - SS_res / SS_tot. Commonality analysis (Mood 1969; Seibold & McPhee 1979; used for
RDMs by e.g. Groen et al. 2018, eLife 7:e32962) splits the full R² into 2^k - 1 parts, one per
nonempty subset S: the variance explained by the models of S together and by no model outside S,

    C(S) = Σ_{T ⊆ S} (-1)^{|T|+1} R²((M \\ S) ∪ T),        R²(∅) = 0,

so that the parts sum to R²(M). For two models A, B: unique A = R²(AB) - R²(B), shared
A&B = R²(A) + R²(B) - R²(AB). A shared part can be negative (suppression: models that explain
more together than the sum of what each explains alone).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from itertools import combinations

import numpy as np
import scipy.stats
import xarray as xr

from neuroalign.analysis.rsa import align

__all__ = ["commonality", "r_squared", "variance_partitioning"]

MAX_MODELS = 6


def r_squared(y: np.ndarray, x: np.ndarray) -> float:
    """R² of the least-squares fit of y (n,) on the columns of x (n, k) plus an intercept."""
    y = np.asarray(y, dtype=np.float64)
    x = np.asarray(x, dtype=np.float64).reshape(len(y), -1)
    if x.shape[1] == 0:
        return 0.0
    design = np.column_stack([np.ones(len(y)), x])
    coef, *_ = np.linalg.lstsq(design, y, rcond=None)
    residual = y - design @ coef
    centred = y - y.mean()
    return float(1.0 - residual @ residual / (centred @ centred))


def commonality(r2: Mapping[frozenset, float], models: Sequence[str]) -> dict[frozenset, float]:
    """Commonality coefficients from the R² of every subset of models (see the module docstring).

    Args:
        r2: {frozenset of model names: R²} for every nonempty subset of `models`.
        models: the k model names.

    Returns:
        {frozenset S: C(S)} for every nonempty subset S.
    """
    everything = frozenset(models)

    def r2_of(subset: frozenset) -> float:
        return r2[subset] if subset else 0.0

    parts = {}
    for size in range(1, len(models) + 1):
        for subset in map(frozenset, combinations(models, size)):
            rest = everything - subset
            parts[subset] = sum(
                (-1) ** (len(t) + 1) * r2_of(rest | frozenset(t))
                for m in range(len(subset) + 1)
                for t in combinations(sorted(subset), m)
            )
    return parts


def _vectors(brain_rdms, model_rdms, descriptor):
    if isinstance(model_rdms, Mapping):
        names = [str(k) for k in model_rdms]
        ordered = [align(r, brain_rdms) for r in model_rdms.values()]
        for name, r in zip(names, ordered, strict=True):
            if r.n_rdm != 1:
                raise ValueError(f"model {name!r} holds {r.n_rdm} RDMs; give one RDM per model")
        return names, np.stack([r.get_vectors()[0] for r in ordered])
    ordered = align(model_rdms, brain_rdms)
    if descriptor is None:
        descriptor = next(
            (d for d in ("model", "layer", "name") if d in model_rdms.rdm_descriptors), "index"
        )
    if descriptor not in model_rdms.rdm_descriptors:
        raise ValueError(
            f"descriptor must be one of {list(model_rdms.rdm_descriptors)}; got {descriptor!r}"
        )
    names = [str(v) for v in model_rdms.rdm_descriptors[descriptor]]
    return names, ordered.get_vectors()


def variance_partitioning(
    brain_rdms,
    model_rdms,
    *,
    descriptor: str | None = None,
    rank: bool = False,
) -> xr.Dataset:
    """Unique and shared variance of a brain RDM explained by 1-6 model RDMs (with one model,
    its one part is its R²).

    Args:
        brain_rdms: RDMs with a stimulus_id pattern descriptor; several RDMs are averaged into
            one first (pool a subject's sessions first with `rsa.pool_subjects`, or call once
            per subject for per-subject results).
        model_rdms: RDMs (k models, one RDM each) or {name: RDMs with one RDM}; matched to the
            brain stimuli by id.
        descriptor: rdm descriptor naming the models (default 'model', else 'layer', else
            'name', else the index).
        rank: regress ranks of the dissimilarities instead of their values (robust to
            monotonic differences between model and brain dissimilarity scales).

    Returns:
        xr.Dataset with
        `r2` (subset): R² of every nonempty subset of models (labels 'A+B');
        `commonality` (part): the commonality of every nonempty subset (labels 'A' for the
        unique part of A, 'A&B' for the part shared by A and B only), with coord `n_models`
        (1 for unique parts); `fraction` (part): commonality / full R²;
        scalar `total_r2` (= R² of all models = sum of the parts).
    """
    names, x = _vectors(brain_rdms, model_rdms, descriptor)
    if not 1 <= len(names) <= MAX_MODELS:
        raise ValueError(f"variance_partitioning takes 1 to {MAX_MODELS} models; got {len(names)}")
    if len(set(names)) != len(names):
        raise ValueError(f"model names repeat: {names}; give a descriptor that tells them apart")
    if any("+" in n or "&" in n for n in names):
        raise ValueError(f"model names must not contain '+' or '&'; got {names}")
    y = brain_rdms.get_vectors().mean(axis=0)
    if not np.isfinite(y).all() or not np.isfinite(x).all():
        raise ValueError("brain and model RDMs must hold finite dissimilarities (found NaN/inf)")
    if np.ptp(y) == 0:
        raise ValueError("the brain RDM is constant: there is no variance to partition")
    if rank:
        y = scipy.stats.rankdata(y)
        x = np.array([scipy.stats.rankdata(v) for v in x])
    column = dict(zip(names, x, strict=True))
    r2 = {}
    for size in range(1, len(names) + 1):
        for subset in combinations(names, size):
            r2[frozenset(subset)] = r_squared(y, np.column_stack([column[m] for m in subset]))
    parts = commonality(r2, names)
    order = [frozenset(s) for size in range(1, len(names) + 1) for s in combinations(names, size)]

    def label(s, sep):
        return sep.join(m for m in names if m in s)

    total = r2[frozenset(names)]
    values = np.array([parts[s] for s in order])
    return xr.Dataset(
        {
            "r2": ("subset", np.array([r2[s] for s in order])),
            "commonality": ("part", values),
            "fraction": ("part", values / total if total > 0 else np.full(len(order), np.nan)),
            "total_r2": ((), total),
        },
        coords={
            "subset": np.array([label(s, "+") for s in order], dtype=str),
            "part": np.array([label(s, "&") for s in order], dtype=str),
            "n_models": ("part", np.array([len(s) for s in order])),
        },
        attrs={
            "metric": "variance partitioning",
            "models": ",".join(names),
            "rank": int(rank),
            "brain": str(brain_rdms.descriptors.get("name", "brain RDMs")),
            "n_brain_rdms": int(brain_rdms.n_rdm),
            "n_pairs": int(len(y)),
        },
    )
