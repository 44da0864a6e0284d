"""Brain data by name: the registry behind ``--brain`` and ``workflows.rsa_from_file``.

Each entry maps a name to (loader, subject descriptor, description): the loader returns
rsatoolbox RDMs with a ``stimulus_id`` pattern descriptor (see :mod:`neuroalign.data.brain`),
the descriptor names the rdm descriptor saying whose RDM each one is (None: each RDM is a
subject), and the description says in words what the data are and who recorded them (results
record it, figures show it). The RDMs
are returned as recorded, one per subject and session; the analyses pool a subject's sessions
(``pool_sessions``, see :mod:`neuroalign.analysis.rsa`).

To add a data set: write a loader in :mod:`neuroalign.data.brain` (its files in
:data:`neuroalign.data.files.FILES`) and add a line to :data:`BRAIN_DATA`.

Response-level data (neurons or voxels, with their repeats) are in :data:`RESPONSE_DATA`:
name -> (loader of an assembly, description), read by :func:`load_brain_responses` (encoding
models, noise ceilings); each also has a :data:`BRAIN_DATA` entry of its repeat-averaged RDMs,
and those with repetitions one of crossnobis RDMs, ``<name>-crossnobis``
(:func:`neuroalign.data.responses.response_rdms`).
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import xarray as xr

from neuroalign.data import brain, cowley

__all__ = [
    "BRAIN_DATA",
    "RESPONSE_DATA",
    "BrainData",
    "ResponseData",
    "brain_description",
    "load_brain_rdms",
    "load_brain_responses",
]


class BrainData(NamedTuple):
    loader: Callable
    subject: str | None  # the rdm descriptor naming the subject, or None: each RDM a subject
    description: str  # in words, without the number of subjects (counted from the RDMs)


class ResponseData(NamedTuple):
    loader: Callable[[], xr.DataArray]  # an assembly (presentation, neuroid[, repetition])
    description: str


#: Response assemblies by name.
RESPONSE_DATA: dict[str, ResponseData] = {
    "cowley-v4": ResponseData(
        lambda: cowley.load_cowley_v4("210325"),
        "macaque V4 spike counts, 640 images, trial level, Cowley et al. 2023"),
    "cowley-v4-natural": ResponseData(
        lambda: cowley.load_cowley_v4("201025"),
        "macaque V4 spike counts, 1,200 natural images, repeat-averaged, Cowley et al. 2023"),
}


def _response_rdms(name: str):
    from neuroalign.data.assemblies import average_repetitions
    from neuroalign.data.responses import responses_to_rdms

    return responses_to_rdms(average_repetitions(RESPONSE_DATA[name].loader()), name=name)


def _crossnobis_rdms(name: str):
    from neuroalign.data.responses import response_rdms

    return response_rdms(RESPONSE_DATA[name].loader(), "crossnobis", name=f"{name}-crossnobis")


#: Brain RDMs by name.
BRAIN_DATA: dict[str, BrainData] = {
    "kriegeskorte-hit": BrainData(
        brain.load_kriegeskorte_hit, "subject", "human IT fMRI, Kriegeskorte et al. 2008"),
    "kriegeskorte-mit": BrainData(
        brain.load_kriegeskorte_mit, None,
        "monkey IT cells, Kiani et al. 2007 (Kriegeskorte et al. 2008, Fig. 1)"),
    "kriegeskorte-behaviour": BrainData(
        brain.load_kriegeskorte_behaviour, "subject",
        "human similarity judgements, Mur et al. 2013"),
    "cichy-it": BrainData(
        lambda: brain.load_cichy("IT"), "subject", "human IT fMRI, Cichy et al. 2014"),
    "cichy-evc": BrainData(
        lambda: brain.load_cichy("EVC"), "subject",
        "human early visual cortex fMRI, Cichy et al. 2014"),
    "algonauts-it": BrainData(
        lambda: brain.load_algonauts("IT"), "subject", "human IT fMRI, Algonauts 2019 (78 scenes)"),
    "algonauts-evc": BrainData(
        lambda: brain.load_algonauts("EVC"), "subject",
        "human early visual cortex fMRI, Algonauts 2019 (78 scenes)"),
    **{
        name: BrainData(
            lambda name=name: _response_rdms(name), "subject", entry.description + " (RDMs)")
        for name, entry in RESPONSE_DATA.items()
    },
    "cowley-v4-crossnobis": BrainData(
        lambda: _crossnobis_rdms("cowley-v4"), "subject",
        RESPONSE_DATA["cowley-v4"].description + " (crossnobis RDMs, cross-validated over repeats)"),
}


def brain_description(name: str, n_subjects: int) -> str:
    """What brain data ``name`` are, in words, with the number of subjects (or of RDMs when
    each RDM is its own subject): "human IT fMRI, Kriegeskorte et al. 2008, 4 subjects"."""
    if name in BRAIN_DATA:
        what = BRAIN_DATA[name].description
    else:
        what = f"brain RDMs from {Path(name).name}"
    if n_subjects == 1:
        return f"{what}, one RDM"
    return f"{what}, {n_subjects} subjects"


def _cv_suffix(name: str) -> tuple[str, str | None]:
    """(file, method) of ``FILE:METHOD`` with a cross-validated RDM method, else (name, None)."""
    from neuroalign.data.responses import CV_RDM_METHODS

    path, _, method = name.rpartition(":")
    return (path, method) if path and method in CV_RDM_METHODS else (name, None)


def load_brain_rdms(name: str):
    """(RDMs, subject descriptor) of a registered brain data set, an rsatoolbox RDMs file
    (``.hdf5``, ``.h5``, ``.pkl``) or a responses netCDF (``.nc``); ``FILE:crossnobis`` or
    ``FILE:cv-euclidean`` gives the cross-validated RDMs of a responses file with a
    ``repetition`` dim (any format :func:`neuroalign.data.assemblies.read_assembly` reads).

    Files: the subject descriptor is ``subject`` when the RDMs have one, else None.
    """
    if name in BRAIN_DATA:
        entry = BRAIN_DATA[name]
        return entry.loader(), entry.subject
    path, cv_method = _cv_suffix(name)
    if cv_method is not None:
        from neuroalign.data.assemblies import read_assembly
        from neuroalign.data.responses import response_rdms

        rdms = response_rdms(read_assembly(path), cv_method, name=Path(path).stem)
    elif name.endswith(".nc"):
        from neuroalign.data.responses import load_responses

        rdms = load_responses(name)
    elif os.path.sep in name or name.endswith((".hdf5", ".h5", ".pkl")):
        rdms = brain.load_rdms_file(name)
    else:
        close = difflib.get_close_matches(name, list(BRAIN_DATA), n=3, cutoff=0.4)
        raise ValueError(
            f"Unknown brain data {name!r}; valid names: {', '.join(BRAIN_DATA)}, the path of an "
            "rsatoolbox RDMs file, or a responses netCDF (presentation × neuroid, 'region' "
            "coord; FILE:crossnobis or FILE:cv-euclidean with repetitions)."
            + (f" Did you mean {close[0]!r}?" if close else "")
        )
    return rdms, "subject" if "subject" in rdms.rdm_descriptors else None


def load_brain_responses(name: str, stimulus_id=None) -> xr.DataArray:
    """The assembly of a registered response data set (:data:`RESPONSE_DATA`) or a file.

    Args:
        name: a registered name, or a responses file (see
            :func:`neuroalign.data.assemblies.read_assembly`).
        stimulus_id: an array file's stimulus ids (a sequence or a text file, one id a line).
    """
    from neuroalign.data.assemblies import read_assembly

    if name in RESPONSE_DATA:
        return RESPONSE_DATA[name].loader()
    if Path(name).suffix or os.path.sep in name:
        return read_assembly(name, stimulus_id)
    close = difflib.get_close_matches(name, list(RESPONSE_DATA), n=3, cutoff=0.4)
    raise ValueError(
        f"Unknown response data {name!r}; valid names: {', '.join(RESPONSE_DATA)}, or a "
        "responses file (.nc, .npy, .npz, .mat, .h5)."
        + (f" Did you mean {close[0]!r}?" if close else "")
    )
