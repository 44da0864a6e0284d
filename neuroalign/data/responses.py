"""A user's brain responses (netCDF, presentation × neuroid) as per-region rsatoolbox RDMs.

The file holds one data variable with dims ``(presentation, neuroid)`` (in either order),
Brain-Score's NeuroidAssembly layout: a ``stimulus_id`` coordinate on ``presentation`` and a
``region`` coordinate on ``neuroid`` (e.g. ``V1``, ``V4``, ``IT``); optionally a ``subject``
coordinate on ``neuroid``, giving one RDM per (subject, region). Repeated presentations of a
stimulus (repetitions) are averaged before the RDMs are computed.

Example of writing such a file with xarray::

    xr.DataArray(responses, dims=("presentation", "neuroid"),
                 coords={"stimulus_id": ("presentation", ids),
                         "region": ("neuroid", regions)}).to_netcdf("responses.nc")

Cross-validated RDMs (:func:`response_rdms`, :data:`CV_RDM_METHODS`) take an assembly with a
``repetition`` dim (:mod:`neuroalign.data.assemblies`) and keep the repeats apart: each
dissimilarity is an inner product of pattern differences from *different* repetitions, so the
noise, independent between repeats, adds nothing to it in expectation (Walther et al. 2016).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import xarray as xr

if TYPE_CHECKING:
    import rsatoolbox.rdm

__all__ = ["CV_RDM_METHODS", "load_responses", "response_rdms", "responses_to_rdms"]

#: Cross-validated dissimilarities of :func:`response_rdms` (rsatoolbox's crossnobis estimator,
#: the repetition as the cross-validation fold): ``"crossnobis"`` whitens by a shrinkage-diagonal
#: noise precision from the residuals around each stimulus's mean
#: (``rsatoolbox.data.noise.prec_from_unbalanced``), ``"cv-euclidean"`` uses the identity.
CV_RDM_METHODS = ("crossnobis", "cv-euclidean")


def _pick_variable(ds: xr.Dataset, variable: str | None, path) -> xr.DataArray:
    candidates = [
        name for name, v in ds.data_vars.items() if set(v.dims) == {"presentation", "neuroid"}
    ]
    if variable is not None:
        if variable not in ds.data_vars:
            raise ValueError(
                f"{path}: the 'variable' parameter must be one of {list(ds.data_vars)}; "
                f"got {variable!r}."
            )
        if set(ds[variable].dims) != {"presentation", "neuroid"}:
            raise ValueError(
                f"{path}: variable {variable!r} has dims {ds[variable].dims}; expected "
                "('presentation', 'neuroid')."
            )
        return ds[variable]
    if len(candidates) != 1:
        raise ValueError(
            f"{path}: expected one data variable with dims ('presentation', 'neuroid'); found "
            f"{candidates or 'none'} among {list(ds.data_vars)}. Name it with variable=..."
        )
    return ds[candidates[0]]


def responses_to_rdms(
    responses: xr.DataArray,
    rdm_method: str = "correlation",
    *,
    region_coord: str = "region",
    subject_coord: str = "subject",
    name: str = "responses",
) -> rsatoolbox.rdm.RDMs:
    """Per-region (and per-subject) RDMs from a (presentation, neuroid) DataArray.

    Args:
        responses: DataArray (presentation, neuroid) with coords `stimulus_id` (presentation)
            and `region_coord` (neuroid); optionally `subject_coord` (neuroid).
        rdm_method: one of neuroalign.analysis.RDM_METHODS.
        region_coord: neuroid coord naming each neuroid's region.
        subject_coord: neuroid coord naming each neuroid's subject (used when present).
        name: the `dataset` rdm descriptor and the RDMs' name.

    Returns:
        RDMs, one per region (per subject and region), regions in order of first appearance;
        rdm descriptors roi, subject (if present), n_neuroids, dataset; pattern descriptor
        stimulus_id (unique stimuli in order of first appearance).
    """
    import rsatoolbox.rdm

    from neuroalign.analysis.rdms import RDM_METHODS, calc_rdm

    if rdm_method not in RDM_METHODS:
        raise ValueError(f"rdm_method must be one of {list(RDM_METHODS)}; got {rdm_method!r}")
    if set(responses.dims) != {"presentation", "neuroid"}:
        raise ValueError(
            f"{name}: responses must have dims ('presentation', 'neuroid'); got {responses.dims}"
        )
    responses = responses.transpose("presentation", "neuroid")
    for coord, dim in (("stimulus_id", "presentation"), (region_coord, "neuroid")):
        if coord not in responses.coords or responses[coord].dims != (dim,):
            raise ValueError(
                f"{name}: needs a coordinate {coord!r} on dim {dim!r}; it has coords "
                f"{sorted(map(str, responses.coords))}"
            )
    ids = np.asarray(responses["stimulus_id"].values).astype(str)
    _, first, which = np.unique(ids, return_index=True, return_inverse=True)
    order = np.argsort(first)  # unique ids in order of first appearance
    position = np.empty_like(order)
    position[order] = np.arange(len(order))
    which = position[which.ravel()]
    unique = ids[first[order]].tolist()
    values = np.asarray(responses.values, dtype=np.float64)
    if len(unique) < len(ids):  # average the repetitions of each stimulus
        sums = np.zeros((len(unique), values.shape[1]))
        np.add.at(sums, which, values)
        values = sums / np.bincount(which, minlength=len(unique))[:, None]
    regions = np.asarray(responses[region_coord].values).astype(str)
    has_subject = subject_coord in responses.coords and responses[subject_coord].dims == (
        "neuroid",
    )
    subjects = (
        np.asarray(responses[subject_coord].values).astype(str)
        if has_subject
        else np.full(len(regions), "")
    )
    groups = list(dict.fromkeys(zip(subjects.tolist(), regions.tolist(), strict=True)))
    rdms = []
    for subject, region in groups:
        keep = (subjects == subject) & (regions == region)
        descriptors = {"roi": region, "n_neuroids": int(keep.sum()), "dataset": name}
        if has_subject:
            descriptors["subject"] = subject
        what = f"region {region!r}" + (f" of subject {subject!r}" if has_subject else "")
        try:
            rdms.append(calc_rdm(values[:, keep], unique, rdm_method, descriptors))
        except ValueError as err:
            raise ValueError(f"{name}, {what}: {err}") from err
    # rsatoolbox's concat of a single RDMs drops its rdm descriptors
    out = rdms[0] if len(rdms) == 1 else rsatoolbox.rdm.concat(rdms)
    out.descriptors = {**out.descriptors, "name": name}
    return out


def load_responses(
    path: str | Path,
    rdm_method: str = "correlation",
    *,
    variable: str | None = None,
    region_coord: str = "region",
    subject_coord: str = "subject",
) -> rsatoolbox.rdm.RDMs:
    """Per-region RDMs from a netCDF file of responses (presentation × neuroid).

    Args:
        path: netCDF file (see the module docstring for the layout).
        rdm_method: 'correlation', 'cosine' or 'euclidean' (as `analysis.calc_rdm`).
        variable: the data variable to use (default: the only one with dims presentation and
            neuroid).
        region_coord: neuroid coord naming the region of each neuroid.
        subject_coord: neuroid coord naming the subject of each neuroid (optional).

    Returns:
        RDMs, one per region (per subject and region), with rdm descriptors roi, subject (if
        any), n_neuroids, dataset (the file's stem) and the pattern descriptor stimulus_id.

    Raises:
        FileNotFoundError: no such file.
        ValueError: a missing coord or variable, NaN responses, a region whose responses are
            constant for a stimulus — the message names the file and the region.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Responses file {path} does not exist.")
    with xr.open_dataset(path) as ds:
        da = _pick_variable(ds, variable, path).load()
    try:
        return responses_to_rdms(
            da, rdm_method, region_coord=region_coord, subject_coord=subject_coord, name=path.stem
        )
    except ValueError as err:
        raise ValueError(f"{path}: {err}") from err


def _neuroid_groups(responses: xr.DataArray, region_coord: str, subject_coord: str, name: str):
    """[(subject, region, neuroid mask)] in order of first appearance, and whether the
    responses name subjects."""
    if region_coord not in responses.coords or responses[region_coord].dims != ("neuroid",):
        raise ValueError(
            f"{name}: needs a coordinate {region_coord!r} on dim 'neuroid'; it has coords "
            f"{sorted(map(str, responses.coords))}"
        )
    regions = np.asarray(responses[region_coord].values).astype(str)
    has_subject = subject_coord in responses.coords and responses[subject_coord].dims == (
        "neuroid",
    )
    subjects = (
        np.asarray(responses[subject_coord].values).astype(str)
        if has_subject
        else np.full(len(regions), "")
    )
    pairs = dict.fromkeys(zip(subjects.tolist(), regions.tolist(), strict=True))
    return [(s, r, (subjects == s) & (regions == r)) for s, r in pairs], has_subject


def _cv_rdm(trials: np.ndarray, ids: np.ndarray, rdm_method: str):
    """One cross-validated RDM from trials (presentation, neuroid, repetition), NaN = missing.

    Every (presentation, repetition) with responses is one observation (obs descriptors
    ``stimulus_id`` and ``repetition``); missing repeats are left out, not filled. The RDM is
    rsatoolbox's crossnobis estimator with the repetition as the cv descriptor, in the form of
    its ``calc_rdm_unbalanced`` (which also serves stimuli with unequal repeats and equals
    ``calc_rdm``'s leave-one-repetition-out on balanced data): ``_crossnobis`` below.
    """
    import rsatoolbox.data
    import rsatoolbox.rdm
    from rsatoolbox.data.noise import prec_from_unbalanced

    present = ~np.isnan(trials)
    complete = present.all(axis=1)  # (presentation, repetition)
    if (present.any(axis=1) & ~complete).any():
        p, r = np.argwhere(present.any(axis=1) & ~complete)[0]
        raise ValueError(
            f"repeat {int(r)} of stimulus {str(ids[p])!r} is missing for some neuroids and not "
            "others; a cross-validated RDM needs each repeat of a stimulus for all or none"
        )
    counts = complete.sum(axis=1)
    if (counts < 2).any():
        raise ValueError(
            f"{int((counts < 2).sum())} stimuli have fewer than two repeats (e.g. "
            f"{str(ids[np.flatnonzero(counts < 2)[0]])!r}); a cross-validated RDM needs two"
        )
    noise = None
    if rdm_method == "crossnobis":
        p, r = np.nonzero(complete)
        dataset = rsatoolbox.data.Dataset(
            trials[p, :, r], obs_descriptors={"stimulus_id": ids[p], "repetition": r})
        noise = prec_from_unbalanced(dataset, "stimulus_id")
    order = np.argsort(ids, kind="stable")  # rsatoolbox sorts the patterns by descriptor
    return rsatoolbox.rdm.RDMs(
        _crossnobis(trials[order], complete[order], noise)[None],
        dissimilarity_measure="crossnobis", pattern_descriptors={"stimulus_id": ids[order]})


def _crossnobis(trials: np.ndarray, complete: np.ndarray, noise) -> np.ndarray:
    """rsatoolbox's ``calc_rdm_unbalanced(method="crossnobis", cv_descriptor="repetition")``
    in closed form; its loop over pairs of trials took 155 s on Cowley V4, this well under 1 s.

    rsatoolbox averages x_o' W x_p / n_neuroids over all pairs of trials o of stimulus i and p
    of stimulus j from different repetitions (i = j included), giving V, and returns
    V_ii + V_jj - 2 V_ij. With S_r the per-stimulus sums of repetition r and T = Σ_r S_r, the
    sum over pairs is T W T' - Σ_r S_r W S_r' and their number N N' - Σ_r n_r n_r'.
    """
    x = np.where(complete[:, None, :], trials, 0.0)  # (stimulus, neuroid, repetition)
    w = np.eye(x.shape[1]) if noise is None else np.asarray(noise)
    n = complete.astype(np.float64)
    total = x.sum(axis=2)
    sums = total @ w @ total.T
    for r in range(x.shape[2]):
        sums -= x[:, :, r] @ w @ x[:, :, r].T
    pairs = np.outer(n.sum(axis=1), n.sum(axis=1)) - n @ n.T
    v = sums / (pairs * x.shape[1])
    rdm = np.diag(v)[:, None] + np.diag(v)[None, :] - 2 * v
    return rdm[np.triu_indices(len(rdm), 1)]


def response_rdms(
    assembly: xr.DataArray,
    rdm_method: str = "crossnobis",
    *,
    region_coord: str = "region",
    subject_coord: str = "subject",
    name: str = "responses",
) -> rsatoolbox.rdm.RDMs:
    """Per-region (and per-subject) RDMs of an assembly, cross-validated over its repetitions.

    Args:
        assembly: (presentation, neuroid, repetition) responses (see
            :mod:`neuroalign.data.assemblies`; NaN = a missing repeat, left out), with a
            ``region_coord`` on neuroid. An assembly without repetitions, or an ``rdm_method``
            of ``RDM_METHODS``, gives :func:`responses_to_rdms` of the repeat averages.
        rdm_method: one of :data:`CV_RDM_METHODS` or ``neuroalign.analysis.RDM_METHODS``.
        region_coord, subject_coord, name: as :func:`responses_to_rdms`.

    Returns:
        RDMs as :func:`responses_to_rdms` returns them (rdm descriptors roi, subject,
        n_neuroids, dataset; pattern descriptor stimulus_id, here in sorted order);
        dissimilarity measure ``crossnobis`` (per neuroid, as rsatoolbox scales it; it can be
        negative where two stimuli do not differ beyond noise).

    Raises:
        ValueError: an unknown method, no repetitions for a cross-validated one, a stimulus
            with fewer than two repeats, a repeat missing for only some neuroids of a region.
    """
    import rsatoolbox.rdm

    from neuroalign.analysis.rdms import RDM_METHODS
    from neuroalign.data.assemblies import average_repetitions, check_assembly

    if rdm_method not in CV_RDM_METHODS + RDM_METHODS:
        raise ValueError(
            f"rdm_method must be one of {list(CV_RDM_METHODS + RDM_METHODS)}; got {rdm_method!r}")
    assembly = check_assembly(assembly, name)
    if rdm_method in RDM_METHODS:
        return responses_to_rdms(average_repetitions(assembly), rdm_method,
                                 region_coord=region_coord, subject_coord=subject_coord, name=name)
    if "repetition" not in assembly.dims:
        raise ValueError(f"{name}: a {rdm_method} RDM needs responses with a 'repetition' dim")
    ids = np.asarray(assembly["stimulus_id"].values).astype(str)
    groups, has_subject = _neuroid_groups(assembly, region_coord, subject_coord, name)
    rdms = []
    for subject, region, keep in groups:
        what = f"region {region!r}" + (f" of subject {subject!r}" if has_subject else "")
        try:
            rdm = _cv_rdm(assembly.values[:, keep], ids, rdm_method)
        except ValueError as err:
            raise ValueError(f"{name}, {what}: {err}") from err
        descriptors = {"roi": [region], "n_neuroids": [int(keep.sum())], "dataset": [name]}
        if has_subject:
            descriptors["subject"] = [subject]
        rdms.append(rsatoolbox.rdm.RDMs(
            rdm.dissimilarities, dissimilarity_measure="crossnobis",
            descriptors={"rdm_method": rdm_method}, rdm_descriptors=descriptors,
            pattern_descriptors={
                "stimulus_id": np.asarray(rdm.pattern_descriptors["stimulus_id"]).astype(str)
                .tolist()},
        ))
    out = rdms[0] if len(rdms) == 1 else rsatoolbox.rdm.concat(rdms)
    out.descriptors = {**out.descriptors, "name": name, "rdm_method": rdm_method}
    return out
