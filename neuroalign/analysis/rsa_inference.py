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
model RDMs are reordered to the brain RDMs' order by id (`rdms.match_stimuli`). Subjects,
session pooling, the bootstrap loop and the NaN policy are those of `rsa` (its engine).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import scipy.stats
import xarray as xr

from neuroalign.analysis.rdms import check_choice, match_stimuli, rdm_method_of
from neuroalign.analysis.rsa import (
    COMPARE_METHODS,
    align,
    bootstrap_aligned,
    check_bootstrap,
    compare,
    percentile_interval,
    pool_subjects,
    rsa_dataset,
    subject_similarity,
)

__all__ = [
    "TESTS",
    "bootstrap_rsa",
    "difference_test",
    "rsa_matrix",
]

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


def bootstrap_rsa(
    model_rdms,
    brain_rdms,
    compare_method: str = "spearman",
    *,
    resample: str = "stimuli",
    subject_descriptor: str | None = None,
    pool_sessions: str = "rdms",
    model_descriptor: str | Sequence[str] | None = None,
    n_boot: int = 1000,
    seed: int = 0,
    ci: float = 0.95,
) -> xr.Dataset:
    """Similarity of model RDMs with brain RDMs, with percentile bootstrap intervals.

    Args:
        model_rdms: RDMs (n_model), e.g. from `rdms.calc_rdms` (one per layer).
        brain_rdms: RDMs, one or more per subject.
        compare_method: one of COMPARE_METHODS.
        resample: 'stimuli', 'subjects' or 'both'.
        subject_descriptor, pool_sessions: see `rsa.pool_subjects`.
        model_descriptor: rdm descriptor(s) naming the model RDMs (labels joined by '/');
            default 'layer', else 'model', else 'name', else the index. Its name is the dim.
        n_boot, seed: see `rsa.bootstrap_samples`.
        ci: interval coverage.

    Returns:
        xr.Dataset, dims (<model dim>, subject, bootstrap): `similarity` (model, subject),
        `mean`, `sem`, `ci_lo`, `ci_hi` (model), `samples` (bootstrap, model), scalar
        `noise_ceiling_lower` / `noise_ceiling_upper` (NaN with one subject) — with the dim
        'layer' this is what `plots.plot_layerwise_rsa` draws.
    """
    check_bootstrap(compare_method, resample, n_boot, ci)
    dim, labels = _labels(model_rdms, model_descriptor)
    subjects = pool_subjects(brain_rdms, subject_descriptor, pool_sessions)
    return rsa_dataset(
        align(model_rdms, subjects.rdms), subjects, compare_method, dim, labels,
        n_boot=n_boot, resample=resample, seed=seed, ci=ci, keep_samples=True,
        attrs={
            "rdm_method": rdm_method_of(model_rdms),
            "brain": str(brain_rdms.descriptors.get("name", "brain RDMs")),
        },
    )


def _bootstrap_p(diff: np.ndarray) -> float:
    """Two-sided bootstrap p-value of a zero difference, with the +1 correction."""
    diff = diff[np.isfinite(diff)]
    if np.all(diff == 0):
        return 1.0
    tail = min(int((diff <= 0).sum()), int((diff >= 0).sum()))
    return float(min(1.0, 2 * (tail + 1) / (diff.size + 1)))


def _ttest(per_subject: np.ndarray, ci: float) -> dict[str, np.ndarray]:
    """Paired t-tests over subjects of every pair of rows of per_subject (model, subject)."""
    m, k = per_subject.shape
    if k < 3:
        raise ValueError(f"test='ttest' needs at least 3 subjects; got {k}")
    t, p = np.zeros((m, m)), np.ones((m, m))
    lo, hi = np.zeros((m, m)), np.zeros((m, m))
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
    return {"p_value": p, "ci_lo": lo, "ci_hi": hi, "t": t}


def _paired_bootstrap(samples: np.ndarray, ci: float) -> dict[str, np.ndarray]:
    """p-values and intervals of every pair of columns of samples (bootstrap, model)."""
    m = samples.shape[1]
    p = np.ones((m, m))
    lo, hi = np.zeros((m, m)), np.zeros((m, m))
    for a in range(m):
        for b in range(m):
            if a != b:
                d = samples[:, a] - samples[:, b]
                p[a, b] = _bootstrap_p(d)
                lo[a, b], hi[a, b] = percentile_interval(d, ci)
    return {"p_value": p, "ci_lo": lo, "ci_hi": hi}


def difference_test(
    model_rdms,
    brain_rdms,
    compare_method: str = "spearman",
    *,
    test: str = "bootstrap",
    resample: str = "stimuli",
    subject_descriptor: str | None = None,
    pool_sessions: str = "rdms",
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
        compare_method: one of COMPARE_METHODS.
        test: 'bootstrap' (paired, over `resample`) or 'ttest' (paired t-test over subjects);
            see the module docstring.
        resample: for the bootstrap: 'stimuli', 'subjects' or 'both'.
        subject_descriptor, pool_sessions, model_descriptor, n_boot, seed, ci: see
            `bootstrap_rsa`.

    Returns:
        xr.Dataset, dims (<dim>_a, <dim>_b): `difference`, `p_value`, `ci_lo`, `ci_hi`, and
        `t` (ttest only); the diagonal is difference 0, p 1. attrs: test, resample,
        compare_method.
    """
    check_bootstrap(compare_method, resample, n_boot, ci)
    check_choice("test", test, TESTS)
    dim, labels = _labels(model_rdms, model_descriptor)
    if len(labels) < 2:
        raise ValueError(f"difference_test needs at least 2 model RDMs; got {len(labels)}")
    subjects = pool_subjects(brain_rdms, subject_descriptor, pool_sessions)
    ordered = align(model_rdms, subjects.rdms)
    per_subject = subject_similarity(ordered, subjects, compare_method)  # (model, subject)
    mean = per_subject.mean(axis=1)
    if test == "bootstrap":
        samples = bootstrap_aligned(ordered, subjects, compare_method, resample, n_boot, seed)
        results = _paired_bootstrap(samples, ci)
    else:
        results = _ttest(per_subject, ci)
    dims = (f"{dim}_a", f"{dim}_b")
    label_values = np.array(labels, dtype=str)
    return xr.Dataset(
        {
            "difference": (dims, mean[:, None] - mean[None, :]),
            **{name: (dims, values) for name, values in results.items()},
        },
        coords={dims[0]: label_values, dims[1]: label_values},
        attrs={
            "test": test,
            "resample": resample if test == "bootstrap" else "none",
            "compare_method": compare_method,
            "subject_descriptor": subjects.descriptor,
            "pool_sessions": subjects.pool_sessions,
            "n_subjects": len(subjects.labels),
            "n_boot": int(n_boot) if test == "bootstrap" else 0,
            "seed": int(seed),
            "ci": float(ci),
        },
    )


def rsa_matrix(
    rdms_a,
    rdms_b=None,
    compare_method: str = "spearman",
    *,
    descriptor: str | Sequence[str] = "layer",
) -> xr.DataArray:
    """Model-vs-model RSA: the similarity of every RDM of one set with every RDM of another.

    For layers x layers of two models, checkpoints or seeds: build each set with
    `rdms.calc_rdms(..., descriptors={'seed': s})` and label the RDMs by one or several
    descriptors (labels joined by '/').

    Args:
        rdms_a: RDMs (n_a), with a stimulus_id pattern descriptor.
        rdms_b: RDMs (n_b) over the same stimuli (any order: matched by id); None: rdms_a.
        compare_method: one of COMPARE_METHODS.
        descriptor: rdm descriptor(s) labelling the RDMs of both sets.

    Returns:
        xr.DataArray (layer_a, layer_b) named 'similarity'; the other rdm descriptors with one
        value per RDM are extra coords `<name>_a` / `<name>_b`. attrs: compare_method.
    """
    check_choice("compare_method", compare_method, COMPARE_METHODS)
    rdms_b = rdms_a if rdms_b is None else rdms_b
    _, labels_a = _labels(rdms_a, descriptor, "rdms_a")
    _, labels_b = _labels(rdms_b, descriptor, "rdms_b")
    if "stimulus_id" not in rdms_a.pattern_descriptors:
        raise ValueError("rdms_a have no 'stimulus_id' pattern descriptor; stimuli are matched by id")
    ordered_b = match_stimuli(rdms_b, rdms_a.pattern_descriptors["stimulus_id"], name="rdms_b")
    values = compare(rdms_a, ordered_b, compare_method)
    coords: dict[str, np.ndarray | tuple[str, np.ndarray]] = {
        "layer_a": np.array(labels_a, dtype=str),
        "layer_b": np.array(labels_b, dtype=str),
    }
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
        attrs={"compare_method": compare_method},
    )
