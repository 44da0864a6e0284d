"""Inference for RSA: bootstrap intervals, tests of model/layer differences, model-vs-model RSA.

Two sources of variability (Schütt et al. 2023, eLife 12:e82566, "Statistical inference on
representational geometries"):

- stimuli: resampling stimuli (with replacement; pairs of a stimulus with its own copy are
  dropped, as in rsatoolbox) asks how the result would change with other stimuli of the same
  kind, for these subjects;
- subjects: resampling subjects asks how it would change with other subjects, on these stimuli;
- both ('both'): stimuli and subjects resampled independently in each sample. This plain
  two-factor bootstrap is conservative: its variance counts the measurement noise twice (once
  through each factor), so its intervals are too wide rather than too narrow (Schütt et al.
  2023 give a correction, not applied here).

Tests of a difference between two model (or layer) RDMs in their similarity with the brain:

- ``test="bootstrap"``: paired bootstrap — the same resamples for both RDMs; the difference of
  their subject-mean similarities in each sample gives a percentile interval and a two-sided
  p-value, p = min(1, 2·(min(#{d* <= 0}, #{d* >= 0}) + 1) / (n_boot + 1));
- ``test="ttest"``: paired t-test over subjects (scipy.stats.ttest_rel on the per-subject
  similarities, df = n_subjects - 1) with the t interval of the mean difference. It treats the
  stimuli as fixed (generalises to new subjects only) and needs at least 3 subjects.

Every function takes rsatoolbox RDMs whose `stimulus_id` pattern descriptors name the stimuli;
model RDMs are reordered to the brain RDMs' order by id (`rsa.check_and_reorder`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import scipy.stats
import xarray as xr

from neuroalign.analysis.rsa import (
    COMPARE_METHODS,
    _check_method,
    _resampled_vectors,
    check_and_reorder,
    compare,
    noise_ceiling,
)

__all__ = [
    "RESAMPLE",
    "TESTS",
    "bootstrap_rsa",
    "bootstrap_samples",
    "difference_test",
    "rsa_matrix",
]

RESAMPLE = ("stimuli", "subjects", "both")
TESTS = ("bootstrap", "ttest")


def _labels(
    rdms, descriptor: str | Sequence[str] | None, name: str = "model_rdms"
) -> tuple[str, list[str]]:
    """(dim name, one unique label per RDM) from one or several rdm descriptors."""
    if descriptor is None:
        descriptor = next(
            (d for d in ("layer", "model", "name") if d in rdms.rdm_descriptors), "index"
        )
    names = [descriptor] if isinstance(descriptor, str) else list(descriptor)
    for d in names:
        if d not in rdms.rdm_descriptors:
            raise ValueError(
                f"the descriptor of {name} must be among its rdm descriptors "
                f"{list(rdms.rdm_descriptors)}; got {d!r}"
            )
    labels = ["/".join(str(rdms.rdm_descriptors[d][i]) for d in names) for i in range(rdms.n_rdm)]
    repeated = sorted({s for s in labels if labels.count(s) > 1})
    if repeated:
        raise ValueError(
            f"the labels of {name} from descriptor {descriptor!r} repeat: {repeated[:10]}; "
            "give a descriptor (or a list of descriptors) that tells the RDMs apart"
        )
    dim = "model" if names == ["index"] else "_".join(names)
    return dim, labels


def _subjects(brain_rdms, subject_descriptor: str | None) -> tuple[np.ndarray, np.ndarray, str]:
    """(subject names, averaging (n_brain, n_subject) matrix, descriptor used)."""
    group_by = subject_descriptor or "index"
    if group_by not in brain_rdms.rdm_descriptors:
        raise ValueError(
            f"subject_descriptor must be one of {list(brain_rdms.rdm_descriptors)}; got "
            f"{subject_descriptor!r}"
        )
    if np.isnan(brain_rdms.get_vectors()).any():
        raise ValueError("brain_rdms hold NaN dissimilarities")
    subjects, which = np.unique(
        np.asarray(brain_rdms.rdm_descriptors[group_by]).astype(str), return_inverse=True
    )
    averaging = np.zeros((brain_rdms.n_rdm, len(subjects)))
    averaging[np.arange(brain_rdms.n_rdm), which] = 1
    return subjects, averaging / averaging.sum(axis=0), group_by


def _check_common(method, resample, n_boot, ci) -> None:
    _check_method("method", method, COMPARE_METHODS)
    _check_method("resample", resample, RESAMPLE)
    if not isinstance(n_boot, int | np.integer) or n_boot < 1:
        raise ValueError(f"n_boot must be a positive integer; got {n_boot!r}")
    if not 0 < ci < 1:
        raise ValueError(f"ci must be in (0, 1); got {ci!r}")


def _per_subject(model_rdms, brain_rdms, method, averaging, idx=None) -> np.ndarray:
    """Similarities (n_model, n_subject); on resampled stimuli idx when given."""
    if idx is None:
        return compare(model_rdms, brain_rdms, method) @ averaging
    model = _resampled_vectors(model_rdms.get_matrices(), idx)
    brain = _resampled_vectors(brain_rdms.get_matrices(), idx)
    return compare(model, brain, method) @ averaging


def bootstrap_samples(
    model_rdms,
    brain_rdms,
    method: str = "spearman",
    *,
    resample: str = "stimuli",
    subject_descriptor: str | None = None,
    n_boot: int = 1000,
    seed: int = 0,
) -> np.ndarray:
    """Subject-mean similarity of each model RDM in each bootstrap sample.

    Args:
        model_rdms: RDMs (n_model RDMs) with a stimulus_id pattern descriptor.
        brain_rdms: RDMs, one or more per subject (several RDMs of a subject are averaged).
        method: comparison method, one of COMPARE_METHODS.
        resample: 'stimuli', 'subjects' or 'both' (see the module docstring).
        subject_descriptor: rdm descriptor naming each brain RDM's subject; None: one RDM a
            subject.
        n_boot: number of bootstrap samples.
        seed: seed of the numpy Generator; the same seed gives the same resamples for any
            model RDMs, so samples of different calls are paired.

    Returns:
        np.ndarray (n_boot, n_model).
    """
    _check_common(method, resample, n_boot, 0.5)
    model_rdms = check_and_reorder(model_rdms, brain_rdms)
    subjects, averaging, _ = _subjects(brain_rdms, subject_descriptor)
    n, k = brain_rdms.n_cond, len(subjects)
    if resample != "stimuli" and k < 2:
        raise ValueError(f"resample={resample!r} needs at least 2 subjects; got {k}")
    rng = np.random.default_rng(seed)
    fixed = (
        _per_subject(model_rdms, brain_rdms, method, averaging) if resample == "subjects" else None
    )
    out = np.empty((n_boot, model_rdms.n_rdm))
    for b in range(n_boot):
        idx = rng.integers(0, n, size=n) if resample != "subjects" else None
        who = rng.integers(0, k, size=k) if resample != "stimuli" else np.arange(k)
        sims = (
            fixed if idx is None else _per_subject(model_rdms, brain_rdms, method, averaging, idx)
        )
        out[b] = np.nanmean(sims[:, who], axis=1)
    return out


def bootstrap_rsa(
    model_rdms,
    brain_rdms,
    method: str = "spearman",
    *,
    resample: str = "stimuli",
    subject_descriptor: str | None = None,
    model_descriptor: str | Sequence[str] | None = None,
    n_boot: int = 1000,
    seed: int = 0,
    ci: float = 0.95,
) -> xr.Dataset:
    """Similarity of model RDMs with brain RDMs, with percentile bootstrap intervals.

    Args:
        model_rdms: RDMs (n_model), e.g. from `rsa.calc_rdms` (one per layer).
        brain_rdms: RDMs, one or more per subject.
        method: one of COMPARE_METHODS.
        resample: 'stimuli', 'subjects' or 'both'.
        subject_descriptor: rdm descriptor naming the subjects (None: one RDM a subject).
        model_descriptor: rdm descriptor(s) naming the model RDMs (labels joined by '/');
            default 'layer', else 'model', else 'name', else the index. Its name is the dim.
        n_boot, seed: see `bootstrap_samples`.
        ci: interval coverage.

    Returns:
        xr.Dataset, dims (<model dim>, subject, bootstrap): `similarity` (model, subject),
        `mean`, `sem`, `ci_lo`, `ci_hi` (model), `samples` (bootstrap, model), scalar
        `noise_ceiling_lower` / `noise_ceiling_upper` (NaN with one subject) — with the dim
        'layer' this is what `plots.plot_layerwise_rsa` draws.
    """
    _check_common(method, resample, n_boot, ci)
    dim, labels = _labels(model_rdms, model_descriptor)
    ordered = check_and_reorder(model_rdms, brain_rdms)
    subjects, averaging, group_by = _subjects(brain_rdms, subject_descriptor)
    similarity = _per_subject(ordered, brain_rdms, method, averaging)
    samples = bootstrap_samples(
        ordered,
        brain_rdms,
        method,
        resample=resample,
        subject_descriptor=subject_descriptor,
        n_boot=n_boot,
        seed=seed,
    )
    lo, hi = np.nanpercentile(samples, [(1 - ci) / 2 * 100, (1 + ci) / 2 * 100], axis=0)
    k = len(subjects)
    nc = noise_ceiling(brain_rdms, method, group_by) if k > 1 else (np.nan, np.nan)
    return xr.Dataset(
        {
            "similarity": ((dim, "subject"), similarity),
            "mean": (dim, similarity.mean(axis=1)),
            "sem": (
                dim,
                similarity.std(axis=1, ddof=1) / np.sqrt(k)
                if k > 1
                else np.full(len(labels), np.nan),
            ),
            "ci_lo": (dim, lo),
            "ci_hi": (dim, hi),
            "samples": (("bootstrap", dim), samples),
            "noise_ceiling_lower": ((), float(nc[0])),
            "noise_ceiling_upper": ((), float(nc[1])),
        },
        coords={dim: np.array(labels, dtype=str), "subject": subjects},
        attrs={
            "metric": "rsa",
            "compare_method": method,
            "rdm_method": str(model_rdms.dissimilarity_measure),
            "brain": str(brain_rdms.descriptors.get("name", "brain RDMs")),
            "resample": resample,
            "subject_descriptor": group_by,
            "n_boot": int(n_boot),
            "seed": int(seed),
            "ci": float(ci),
        },
    )


def _bootstrap_p(diff: np.ndarray) -> float:
    """Two-sided bootstrap p-value of a zero difference, with the +1 correction."""
    diff = diff[np.isfinite(diff)]
    if np.all(diff == 0):
        return 1.0
    tail = min(int((diff <= 0).sum()), int((diff >= 0).sum()))
    return float(min(1.0, 2 * (tail + 1) / (diff.size + 1)))


def difference_test(
    model_rdms,
    brain_rdms,
    method: str = "spearman",
    *,
    test: str = "bootstrap",
    resample: str = "stimuli",
    subject_descriptor: str | None = None,
    model_descriptor: str | Sequence[str] | None = None,
    n_boot: int = 1000,
    seed: int = 0,
    ci: float = 0.95,
) -> xr.Dataset:
    """Tests of every pair of model RDMs (layer A vs layer B, model A vs model B).

    The difference is mean-over-subjects similarity of A minus that of B. For two models with
    several layers each, concatenate their RDMs (`rsatoolbox.rdm.concat`) with a descriptor
    telling them apart (e.g. model_descriptor=['model', 'layer']). No correction for multiple
    comparisons is applied.

    Args:
        model_rdms: RDMs (n_model >= 2).
        brain_rdms: RDMs, one or more per subject.
        method: one of COMPARE_METHODS.
        test: 'bootstrap' (paired, over `resample`) or 'ttest' (paired t-test over subjects);
            see the module docstring.
        resample: for the bootstrap: 'stimuli', 'subjects' or 'both'.
        subject_descriptor, model_descriptor, n_boot, seed, ci: see `bootstrap_rsa`.

    Returns:
        xr.Dataset, dims (<dim>_a, <dim>_b): `difference`, `p_value`, `ci_lo`, `ci_hi`, and
        `t` (ttest only); the diagonal is difference 0, p 1. attrs: test, resample, method.
    """
    _check_common(method, resample, n_boot, ci)
    _check_method("test", test, TESTS)
    dim, labels = _labels(model_rdms, model_descriptor)
    if len(labels) < 2:
        raise ValueError(f"difference_test needs at least 2 model RDMs; got {len(labels)}")
    ordered = check_and_reorder(model_rdms, brain_rdms)
    subjects, averaging, group_by = _subjects(brain_rdms, subject_descriptor)
    per_subject = _per_subject(ordered, brain_rdms, method, averaging)  # (model, subject)
    mean = per_subject.mean(axis=1)
    m = len(labels)
    difference = mean[:, None] - mean[None, :]
    p = np.ones((m, m))
    lo, hi = np.zeros((m, m)), np.zeros((m, m))
    data = {}
    if test == "bootstrap":
        samples = bootstrap_samples(
            ordered,
            brain_rdms,
            method,
            resample=resample,
            subject_descriptor=subject_descriptor,
            n_boot=n_boot,
            seed=seed,
        )
        q = [(1 - ci) / 2 * 100, (1 + ci) / 2 * 100]
        for a in range(m):
            for b in range(m):
                if a != b:
                    d = samples[:, a] - samples[:, b]
                    p[a, b] = _bootstrap_p(d)
                    lo[a, b], hi[a, b] = np.nanpercentile(d, q)
    else:
        k = len(subjects)
        if k < 3:
            raise ValueError(f"test='ttest' needs at least 3 subjects; got {k}")
        t = np.zeros((m, m))
        crit = scipy.stats.t.ppf((1 + ci) / 2, df=k - 1)
        for a in range(m):
            for b in range(m):
                d = per_subject[a] - per_subject[b]
                if a == b or np.all(d == d[0]) and d[0] == 0:
                    continue
                result = scipy.stats.ttest_rel(per_subject[a], per_subject[b])
                t[a, b], p[a, b] = result.statistic, result.pvalue
                half = crit * d.std(ddof=1) / np.sqrt(k)
                lo[a, b], hi[a, b] = d.mean() - half, d.mean() + half
        data["t"] = ((f"{dim}_a", f"{dim}_b"), t)
    dims = (f"{dim}_a", f"{dim}_b")
    labels = np.array(labels, dtype=str)
    return xr.Dataset(
        {
            "difference": (dims, difference),
            "p_value": (dims, p),
            "ci_lo": (dims, lo),
            "ci_hi": (dims, hi),
            **data,
        },
        coords={dims[0]: labels, dims[1]: labels},
        attrs={
            "test": test,
            "resample": resample if test == "bootstrap" else "none",
            "compare_method": method,
            "subject_descriptor": group_by,
            "n_subjects": len(subjects),
            "n_boot": int(n_boot) if test == "bootstrap" else 0,
            "seed": int(seed),
            "ci": float(ci),
        },
    )


def rsa_matrix(
    rdms_a,
    rdms_b=None,
    method: str = "spearman",
    *,
    descriptor: str | Sequence[str] = "layer",
) -> xr.DataArray:
    """Model-vs-model RSA: the similarity of every RDM of one set with every RDM of another.

    For layers x layers of two models, checkpoints or seeds: build each set with
    `rsa.calc_rdms(..., descriptors={'seed': s})` and label the RDMs by one or several
    descriptors (labels joined by '/').

    Args:
        rdms_a: RDMs (n_a), with a stimulus_id pattern descriptor.
        rdms_b: RDMs (n_b) over the same stimuli (any order: matched by id); None: rdms_a.
        method: one of COMPARE_METHODS.
        descriptor: rdm descriptor(s) labelling the RDMs of both sets.

    Returns:
        xr.DataArray (layer_a, layer_b) named 'similarity'; the other rdm descriptors with one
        value per RDM are extra coords `<name>_a` / `<name>_b`. attrs: compare_method.
    """
    _check_method("method", method, COMPARE_METHODS)
    rdms_b = rdms_a if rdms_b is None else rdms_b
    _, labels_a = _labels(rdms_a, descriptor, "rdms_a")
    _, labels_b = _labels(rdms_b, descriptor, "rdms_b")
    ordered_b = check_and_reorder(rdms_b, rdms_a)
    values = compare(rdms_a, ordered_b, method)
    coords = {"layer_a": np.array(labels_a, dtype=str), "layer_b": np.array(labels_b, dtype=str)}
    skip = {"index", *([descriptor] if isinstance(descriptor, str) else descriptor)}
    for suffix, rdms in (("a", rdms_a), ("b", rdms_b)):
        for key, column in rdms.rdm_descriptors.items():
            if key not in skip and len(column) == rdms.n_rdm:
                coords[f"{key}_{suffix}"] = (f"layer_{suffix}", np.asarray(column))
    return xr.DataArray(
        values,
        dims=("layer_a", "layer_b"),
        coords=coords,
        name="similarity",
        attrs={"compare_method": method},
    )
