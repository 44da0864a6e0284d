"""RSA: model RDMs compared with subjects' brain RDMs, through one subject-aggregation engine.

The engine (`pool_subjects`, `subject_similarity`, `bootstrap_samples`) is what every RSA
result goes through: `layerwise_rsa` here, and `bootstrap_rsa` and `difference_test` in
`rsa_inference`. Its rules, written once:

- **Subjects.** `subject_descriptor` names the rdm descriptor saying whose RDM each brain RDM
  is (None: every RDM is a subject). Subjects are ordered by the sorted values of that
  descriptor: numerically for numbers (1, 2, 10), lexically for anything else ('s1', 's10',
  's2'); the `subject` coordinate keeps the values' type.
- **Sessions.** Several RDMs of one subject (sessions, runs) are pooled by `pool_sessions`:
  'rdms' (the default) averages the subject's RDMs into one, then compares — as Kriegeskorte et
  al. (2008) did, and less noisy for rank-based comparisons; 'similarities' compares the model
  with every RDM, then averages the subject's similarities. Noise ceilings are computed on the
  same pooled RDMs (with 'similarities', rsatoolbox averages each subject's similarities).
- **Result.** The similarity of a model RDM is the mean over subjects; the SEM is over subjects.
- **Bootstrap.** One seeded loop (`bootstrap_samples`) resamples stimuli, subjects or both (see
  `rsa_inference`); the same seed gives the same resamples for any model RDMs, so samples are
  paired. Pairs of a stimulus with its own copy are dropped, as rsatoolbox does.
- **NaN policy.** A resample in which a model's similarity with some subject is undefined
  (rsatoolbox returns NaN) yields NaN for that model in that resample — the subject mean is a
  plain mean, not a mean over the subjects left — and that resample is dropped from the model's
  intervals and p-values (nan-aware percentiles), with a warning saying how many resamples were
  dropped. Brain RDMs holding NaN are an error.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Mapping, Sequence
from typing import NamedTuple

import numpy as np
import rsatoolbox
import xarray as xr

from neuroalign.analysis.rdms import (
    RDM_METHODS,
    calc_rdms,
    check_choice,
    match_stimuli,
    rdm_method_of,
    resampled_vectors,
)

__all__ = [
    "COMPARE_METHODS",
    "POOL_SESSIONS",
    "RESAMPLE",
    "Subjects",
    "bootstrap_samples",
    "compare",
    "layerwise_rsa",
    "noise_ceiling",
    "pool_subjects",
    "subject_similarity",
]

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
POOL_SESSIONS = ("rdms", "similarities")
RESAMPLE = ("stimuli", "subjects", "both")


def compare(model_rdms, brain_rdms, compare_method: str = "spearman", sigma_k=None) -> np.ndarray:
    """Similarity of every model RDM with every brain RDM (`rsatoolbox.rdm.compare`).

    Methods (see rsatoolbox.rdm.compare): 'spearman' (rank correlation), 'rho-a' (Spearman
    without tie correction), 'tau-a' (Kendall without tie correction, for models with ties),
    'kendall'/'tau-b', 'corr' (Pearson), 'cosine', 'corr_cov' / 'cosine_cov' (whitened, Diedrichsen
    et al. 2021), 'neg_riem_dist', 'bures', 'bures_metric'.

    Args:
        model_rdms: RDMs (n_model RDMs) or array (n_model, n_pairs).
        brain_rdms: RDMs (n_brain RDMs) over the same stimuli, in the same order
            (see `rdms.match_stimuli`).
        compare_method: one of COMPARE_METHODS.
        sigma_k: pattern covariance for 'corr_cov' / 'cosine_cov' (default identity).

    Returns:
        np.ndarray (n_model, n_brain).
    """
    check_choice("compare_method", compare_method, COMPARE_METHODS)
    return rsatoolbox.rdm.compare(model_rdms, brain_rdms, method=compare_method, sigma_k=sigma_k)


class Subjects(NamedTuple):
    """Brain RDMs grouped by subject, as the engine compares them (see `pool_subjects`)."""

    rdms: rsatoolbox.rdm.RDMs  # RDMs compared: one per subject ('rdms'), or every brain RDM ('similarities')
    averaging: np.ndarray  # (rdms.n_rdm, n_subject): similarities @ averaging -> per subject
    labels: np.ndarray  # (n_subject,) subject labels, in the documented order
    descriptor: str  # the rdm descriptor naming the subjects ('index': one RDM a subject)
    pool_sessions: str


def _subject_order(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(sorted unique labels, index of each value's label): numbers numerically, else as str."""
    if values.dtype.kind not in "iufb":
        values = values.astype(str)
    return np.unique(values, return_inverse=True)


def pool_subjects(
    brain_rdms, subject_descriptor: str | None = None, pool_sessions: str = "rdms"
) -> Subjects:
    """The one place where brain RDMs become subjects (see the module docstring).

    Args:
        brain_rdms: RDMs, one or more per subject.
        subject_descriptor: rdm descriptor naming the subject of each RDM; None: every RDM is
            a subject.
        pool_sessions: 'rdms' (average a subject's RDMs, then compare) or 'similarities'
            (compare each RDM, then average a subject's similarities).

    Returns:
        Subjects(rdms, averaging, labels, descriptor, pool_sessions).
    """
    check_choice("pool_sessions", pool_sessions, POOL_SESSIONS)
    group_by = subject_descriptor or "index"
    if group_by not in brain_rdms.rdm_descriptors:
        raise ValueError(
            f"subject_descriptor must be one of {list(brain_rdms.rdm_descriptors)}; got "
            f"{subject_descriptor!r}"
        )
    vectors = brain_rdms.get_vectors()
    if np.isnan(vectors).any():
        bad = np.nonzero(np.isnan(vectors).any(axis=1))[0].tolist()
        raise ValueError(f"brain_rdms hold NaN dissimilarities (RDMs {bad[:20]})")
    labels, which = _subject_order(np.asarray(brain_rdms.rdm_descriptors[group_by]))
    which = which.ravel()
    k = len(labels)
    if pool_sessions == "rdms" and k < brain_rdms.n_rdm:
        pooled = np.stack([vectors[which == j].mean(axis=0) for j in range(k)])
        rdms = rsatoolbox.rdm.RDMs(
            dissimilarities=pooled,
            dissimilarity_measure=brain_rdms.dissimilarity_measure,
            descriptors=dict(brain_rdms.descriptors),
            rdm_descriptors={} if group_by == "index" else {group_by: list(labels)},
            pattern_descriptors={
                key: list(v) for key, v in brain_rdms.pattern_descriptors.items() if key != "index"
            },
        )
        return Subjects(rdms, np.eye(k), labels, group_by, pool_sessions)
    averaging = np.zeros((brain_rdms.n_rdm, k))
    averaging[np.arange(brain_rdms.n_rdm), which] = 1
    return Subjects(brain_rdms, averaging / averaging.sum(axis=0), labels, group_by, pool_sessions)


def subject_similarity(
    model_rdms, subjects: Subjects, compare_method: str = "spearman", idx=None
) -> np.ndarray:
    """Similarity (n_model, n_subject) of model RDMs (in the brain's stimulus order) with each
    subject; on the resampled stimuli `idx` when given (self-pairs dropped)."""
    if idx is None:
        return compare(model_rdms, subjects.rdms, compare_method) @ subjects.averaging
    model = resampled_vectors(model_rdms.get_matrices(), idx)
    brain = resampled_vectors(subjects.rdms.get_matrices(), idx)
    return compare(model, brain, compare_method) @ subjects.averaging


def noise_ceiling(
    brain_rdms,
    compare_method: str = "spearman",
    subject_descriptor: str | None = None,
    pool_sessions: str = "rdms",
) -> tuple[float, float]:
    """Noise ceiling of brain RDMs (`rsatoolbox.inference.boot_noise_ceiling`).

    Lower bound: each subject compared with the pooled RDM of all other subjects (leave one
    out); upper bound: each subject compared with the pooled RDM of all subjects. Pooling across
    subjects is the one suited to the method (rank-averaged for spearman, ...). A subject's
    sessions are pooled first as `pool_subjects` says.

    Args:
        brain_rdms: RDMs, one or more per subject.
        compare_method: one of COMPARE_METHODS.
        subject_descriptor: rdm descriptor naming the subjects (None: one RDM a subject).
        pool_sessions: 'rdms' or 'similarities' (see `pool_subjects`).

    Returns:
        (lower, upper) floats.
    """
    check_choice("compare_method", compare_method, COMPARE_METHODS)
    return _noise_ceiling(pool_subjects(brain_rdms, subject_descriptor, pool_sessions), compare_method)


def _noise_ceiling(subjects: Subjects, compare_method: str) -> tuple[float, float]:
    if len(subjects.labels) < 2:
        raise ValueError(
            f"a noise ceiling needs RDMs of at least 2 subjects; brain_rdms has "
            f"{len(subjects.labels)} value(s) of {subjects.descriptor!r}"
        )
    lower, upper = rsatoolbox.inference.boot_noise_ceiling(
        subjects.rdms, method=compare_method, rdm_descriptor=subjects.descriptor
    )
    return float(lower), float(upper)


def check_bootstrap(compare_method, resample, n_boot, ci, *, allow_zero: bool = False) -> None:
    """Checks the arguments every RSA function shares."""
    check_choice("compare_method", compare_method, COMPARE_METHODS)
    check_choice("resample", resample, RESAMPLE)
    if not isinstance(n_boot, int | np.integer) or n_boot < (0 if allow_zero else 1):
        what = "a non-negative" if allow_zero else "a positive"
        raise ValueError(f"n_boot must be {what} integer; got {n_boot!r}")
    if not 0 < ci < 1:
        raise ValueError(f"ci must be in (0, 1); got {ci!r}")


def bootstrap_aligned(model, subjects: Subjects, compare_method, resample, n_boot, seed) -> np.ndarray:
    """(n_boot, n_model) subject-mean similarities of model RDMs in the brain's stimulus order."""
    n, k = subjects.rdms.n_cond, len(subjects.labels)
    if resample != "stimuli" and k < 2:
        raise ValueError(f"resample={resample!r} needs at least 2 subjects; got {k}")
    rng = np.random.default_rng(seed)
    fixed = subject_similarity(model, subjects, compare_method) if resample == "subjects" else None
    out = np.empty((n_boot, model.n_rdm))
    for b in range(n_boot):
        idx = rng.integers(0, n, size=n) if resample != "subjects" else None
        who = rng.integers(0, k, size=k) if resample != "stimuli" else np.arange(k)
        sims = subject_similarity(model, subjects, compare_method, idx) if fixed is None else fixed
        out[b] = sims[:, who].mean(axis=1)  # NaN if any subject's similarity is undefined
    dropped = np.isnan(out).any(axis=1).sum()
    if dropped:
        warnings.warn(
            f"{dropped} of {n_boot} bootstrap resamples gave an undefined (NaN) similarity for "
            "some model RDM and are dropped from its intervals and p-values",
            RuntimeWarning,
            stacklevel=3,
        )
    return out


def bootstrap_samples(
    model_rdms,
    brain_rdms,
    compare_method: str = "spearman",
    *,
    resample: str = "stimuli",
    subject_descriptor: str | None = None,
    pool_sessions: str = "rdms",
    n_boot: int = 1000,
    seed: int = 0,
) -> np.ndarray:
    """Subject-mean similarity of each model RDM in each bootstrap sample.

    Args:
        model_rdms: RDMs (n_model RDMs) with a stimulus_id pattern descriptor.
        brain_rdms: RDMs, one or more per subject.
        compare_method: one of COMPARE_METHODS.
        resample: 'stimuli', 'subjects' or 'both' (see `rsa_inference`).
        subject_descriptor, pool_sessions: see `pool_subjects`.
        n_boot: number of bootstrap samples.
        seed: seed of the numpy Generator; the same seed gives the same resamples for any
            model RDMs, so samples of different calls are paired.

    Returns:
        np.ndarray (n_boot, n_model); NaN where a resample is undefined (see the NaN policy).
    """
    check_bootstrap(compare_method, resample, n_boot, 0.5)
    subjects = pool_subjects(brain_rdms, subject_descriptor, pool_sessions)
    model = align(model_rdms, subjects.rdms)
    return bootstrap_aligned(model, subjects, compare_method, resample, n_boot, seed)


def align(model_rdms, brain_rdms):
    """`model_rdms` in the stimulus order of `brain_rdms` (matched by stimulus_id)."""
    if "stimulus_id" not in brain_rdms.pattern_descriptors:
        raise ValueError(
            f"brain_rdms have no 'stimulus_id' pattern descriptor (they have "
            f"{list(brain_rdms.pattern_descriptors)}); stimuli are matched by id, not by position"
        )
    return match_stimuli(
        model_rdms, brain_rdms.pattern_descriptors["stimulus_id"], name="the model RDMs"
    )


def percentile_interval(samples: np.ndarray, ci: float) -> tuple[np.ndarray, np.ndarray]:
    """Nan-aware percentile interval of coverage `ci` over the first axis of `samples`."""
    lo, hi = np.nanpercentile(samples, [(1 - ci) / 2 * 100, (1 + ci) / 2 * 100], axis=0)
    return lo, hi


def rsa_dataset(
    model,
    subjects: Subjects,
    compare_method: str,
    dim: str,
    labels: Sequence[str],
    *,
    n_boot: int,
    resample: str,
    seed: int,
    ci: float,
    keep_samples: bool,
    attrs: Mapping[str, object],
) -> xr.Dataset:
    """The RSA result of model RDMs (in the brain's stimulus order): similarity per subject,
    mean and SEM over subjects, noise ceiling, bootstrap interval (and samples)."""
    similarity = subject_similarity(model, subjects, compare_method)  # (model, subject)
    k = len(subjects.labels)
    lower, upper = _noise_ceiling(subjects, compare_method) if k > 1 else (np.nan, np.nan)
    sem = similarity.std(axis=1, ddof=1) / np.sqrt(k) if k > 1 else np.full(len(labels), np.nan)
    data = {
        "similarity": ((dim, "subject"), similarity),
        "mean": (dim, similarity.mean(axis=1)),
        "sem": (dim, sem),
        "noise_ceiling_lower": ((), float(lower)),
        "noise_ceiling_upper": ((), float(upper)),
    }
    if n_boot:
        samples = bootstrap_aligned(model, subjects, compare_method, resample, n_boot, seed)
        data["ci_lo"], data["ci_hi"] = ((dim, v) for v in percentile_interval(samples, ci))
        if keep_samples:
            data["samples"] = (("bootstrap", dim), samples)
    return xr.Dataset(
        data,
        coords={dim: np.array(labels, dtype=str), "subject": subjects.labels},
        attrs={
            "metric": "rsa",
            **attrs,
            "compare_method": compare_method,
            "subject_descriptor": subjects.descriptor,
            "pool_sessions": subjects.pool_sessions,
            "n_boot": int(n_boot),
            "resample": resample,
            "seed": int(seed),
            "ci": float(ci),
        },
    )


def layerwise_rsa(
    activations: Mapping[str, object] | Iterable[tuple[str, object]] | rsatoolbox.rdm.RDMs,
    stimulus_id,
    brain_rdms,
    *,
    rdm_method: str = "correlation",
    compare_method: str = "spearman",
    subject_descriptor: str | None = None,
    pool_sessions: str = "rdms",
    n_boot: int = 0,
    resample: str = "stimuli",
    seed: int = 0,
    ci: float = 0.95,
    brain_name: str | None = None,
    chunk_size: int = 4096,
    device=None,
) -> xr.Dataset:
    """RSA of each layer's RDM against subject brain RDMs, with noise ceiling and bootstrap CI.

    Layer RDMs (`rdms.calc_rdms`, or given ready) through the engine of this module.

    Args:
        activations: {layer_name: x (n_stimuli, n_features, ...)} or an iterable of
            (layer_name, x) pairs, any input `calc_rdm` takes; or ready model RDMs with an rdm
            descriptor 'layer' (then stimulus_id is None: the RDMs carry their ids).
        stimulus_id: (n_stimuli,) ids in the row order of the activations.
        brain_rdms: RDMs with a 'stimulus_id' pattern descriptor, one or more per subject.
        rdm_method: one of RDM_METHODS (ignored for ready RDMs).
        compare_method: one of COMPARE_METHODS.
        subject_descriptor, pool_sessions: see `pool_subjects`.
        n_boot: if > 0, percentile bootstrap CI of the subject-mean similarity.
        resample: what the bootstrap resamples: 'stimuli', 'subjects' or 'both'.
        seed: bootstrap seed.
        ci: coverage of the bootstrap interval.
        brain_name: name of the brain RDMs for plots (default: brain_rdms.descriptors['name'],
            else 'brain RDMs').
        chunk_size, device: see `calc_rdm`.

    Returns:
        xr.Dataset, dims (layer, subject): `similarity` (layer, subject); `mean`, `sem`
        (layer; sem is NaN with one subject); `ci_lo`, `ci_hi` (layer) when n_boot > 0;
        scalar `noise_ceiling_lower`, `noise_ceiling_upper` (NaN with one subject).
        attrs: rdm_method, compare_method, brain, subject_descriptor, pool_sessions, n_boot,
        resample, seed, ci.
    """
    check_bootstrap(compare_method, resample, n_boot, ci, allow_zero=True)
    subjects = pool_subjects(brain_rdms, subject_descriptor, pool_sessions)
    if isinstance(activations, rsatoolbox.rdm.RDMs):
        if stimulus_id is not None:
            raise ValueError("stimulus_id must be None for ready model RDMs (they carry their ids)")
        if "layer" not in activations.rdm_descriptors:
            raise ValueError(
                "ready model RDMs need an rdm descriptor 'layer' (as calc_rdms gives); they have "
                f"{list(activations.rdm_descriptors)}"
            )
        model_rdms, rdm_method = activations, rdm_method_of(activations)
    else:
        check_choice("rdm_method", rdm_method, RDM_METHODS)
        model_rdms = calc_rdms(activations, stimulus_id, rdm_method, chunk_size=chunk_size, device=device)
    labels = [str(v) for v in model_rdms.rdm_descriptors["layer"]]
    brain = brain_name or str(brain_rdms.descriptors.get("name", "brain RDMs"))
    return rsa_dataset(
        align(model_rdms, subjects.rdms), subjects, compare_method, "layer", labels,
        n_boot=n_boot, resample=resample, seed=seed, ci=ci, keep_samples=False,
        attrs={"rdm_method": rdm_method, "brain": brain},
    )
