"""Brain and reference RDMs as ``rsatoolbox.rdm.RDMs``, with stimulus ids attached.

Every loader returns RDMs whose pattern descriptor ``stimulus_id`` holds the ids of the matching
stimulus set (same ids, same order, see :mod:`neuroalign.data.stimulus_sets`) and whose rdm
descriptors hold ``dataset``, ``subject``, ``session`` and ``roi`` (models: ``dataset`` and
``model``). ``session`` is the recording session (1, 2, ...), or 0 for RDMs pooled over
sessions or subjects. Stimuli are matched by name with
:func:`neuroalign.analysis.match_stimuli`, never by position. The named registry of these
loaders is :mod:`neuroalign.data.registry`.

Sources: Kriegeskorte et al. (2008) Neuron 60:1126 (human IT, 4 subjects x 2 sessions) and
Kiani et al. (2007) (monkey IT), from the rsatoolbox demo data; Cichy, Pantazis & Oliva (2014)
(15 subjects, EVC and IT) and the Algonauts 2019 78 scenes, from Net2Brain.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import scipy.io
from scipy.spatial.distance import squareform

from neuroalign.data.files import fetch
from neuroalign.data.stimulus_sets import SUPPLEMENTAL_MAT, ids_78, ids_92

if TYPE_CHECKING:  # rsatoolbox takes seconds to import: only when RDMs are built
    import rsatoolbox.rdm

__all__ = [
    "ROIS",
    "load_algonauts",
    "load_cichy",
    "load_kriegeskorte_behaviour",
    "load_kriegeskorte_fig1",
    "load_kriegeskorte_hit",
    "load_kriegeskorte_mit",
    "load_kriegeskorte_models",
    "load_rdms_file",
]

ROIS = ("EVC", "IT")


def _check_matrices(matrices: np.ndarray, path: str | Path, n: int) -> np.ndarray:
    """(k, n, n) float64 matrices from a file, or a ValueError naming the file."""
    matrices = np.asarray(matrices, dtype=np.float64)
    if matrices.ndim != 3 or matrices.shape[1:] != (n, n):
        raise ValueError(f"{path}: expected RDMs of shape (k, {n}, {n}); got {matrices.shape}.")
    bad = int(np.isnan(matrices).sum())
    if bad:
        raise ValueError(f"{path}: the RDMs hold {bad} NaN values; RDMs must be finite.")
    return matrices


def _rdms(
    matrices: np.ndarray,
    stimulus_id: Sequence[str] | np.ndarray,
    measure: str | None,
    **rdm_descriptors: Sequence,
) -> rsatoolbox.rdm.RDMs:
    from rsatoolbox.rdm import RDMs

    return RDMs(
        dissimilarities=matrices,
        dissimilarity_measure=measure,
        rdm_descriptors={k: list(v) for k, v in rdm_descriptors.items()},
        pattern_descriptors={"stimulus_id": list(stimulus_id)},
    )


def _struct_rdms(relpath: str, variable: str) -> tuple[np.ndarray, list[str], Path]:
    """Matrices and names of a MATLAB struct array with fields ``RDM`` and ``name``."""
    path = fetch(relpath)
    mat = scipy.io.loadmat(path)
    if variable not in mat:
        found = [k for k in mat if not k.startswith("__")]
        raise ValueError(f"{path}: no variable {variable!r}; found {found}.")
    entries = mat[variable].ravel()  # C order: (1, subject, session) -> subject-major
    names = [str(np.ravel(e["name"])[0]) for e in entries]
    matrices = _check_matrices(np.stack([e["RDM"] for e in entries]), path, 92)
    return matrices, names, path


def load_kriegeskorte_hit() -> rsatoolbox.rdm.RDMs:
    """Human IT fMRI RDMs of Kriegeskorte et al. (2008): 4 subjects x 2 sessions.

    Returns:
        8 RDMs over the 92 stimuli, correlation distance (1 - Pearson r) as in the file,
        descriptors subject (``BE``, ``KO``, ``SN``, ``TI``), session (1, 2), roi ``IT``,
        dataset ``kriegeskorte92``.
    """
    matrices, names, path = _struct_rdms("kriegeskorte92/92_brainRDMs.mat", "RDMs")
    subjects, sessions = [], []
    for name in names:  # e.g. "hIT | BE | Session: 1"
        parts = [p.strip() for p in name.split("|")]
        if len(parts) != 3 or not parts[2].startswith("Session:"):
            raise ValueError(f"{path}: cannot read subject and session from RDM name {name!r}.")
        subjects.append(parts[1])
        sessions.append(int(parts[2].removeprefix("Session:")))
    n = len(names)
    return _rdms(
        matrices,
        ids_92(),
        "correlation",
        dataset=["kriegeskorte92"] * n,
        subject=subjects,
        session=sessions,
        roi=["IT"] * n,
        species=["human"] * n,
    )


def load_kriegeskorte_fig1() -> rsatoolbox.rdm.RDMs:
    """Monkey IT and pooled human IT RDMs of Kriegeskorte et al. (2008), Fig. 1.

    From ``RDMs_mIT_hIT_fig1`` of the supplemental file: monkey IT (674 neurons, Kiani et al.
    2007) and human IT (316 voxels, pooled over subjects and sessions), stored condensed.
    Their Spearman correlation is 0.439.

    Returns:
        2 RDMs over the 92 stimuli (correlation distance), subject ``monkey`` / ``human``,
        session 0 (pooled), roi ``IT``, dataset ``kriegeskorte92``, ``species``, ``name``.
    """
    path = fetch(SUPPLEMENTAL_MAT)
    entries = scipy.io.loadmat(path)["RDMs_mIT_hIT_fig1"].ravel()
    names = [str(np.ravel(e["name"])[0]) for e in entries]
    vectors = [np.ravel(e["RDM"]).astype(np.float64) for e in entries]
    if any(v.size != 92 * 91 // 2 for v in vectors):
        raise ValueError(f"{path}: 'RDMs_mIT_hIT_fig1' RDMs are not condensed 92x92 RDMs.")
    # MATLAB's column-major lower triangle is the row-major upper triangle scipy expects.
    matrices = _check_matrices(np.stack([squareform(v) for v in vectors]), path, 92)
    species = ["monkey" if n.startswith("mIT") else "human" for n in names]
    return _rdms(
        matrices,
        ids_92(),
        "correlation",
        dataset=["kriegeskorte92"] * 2,
        subject=species,
        session=[0, 0],
        roi=["IT"] * 2,
        species=species,
        name=names,
    )


def load_kriegeskorte_mit() -> rsatoolbox.rdm.RDMs:
    """Monkey IT RDM (Kiani et al. 2007; 674 neurons) over the 92 stimuli, 1 RDM.

    See :func:`load_kriegeskorte_fig1`, which also holds the pooled human IT RDM.
    """
    fig1 = load_kriegeskorte_fig1()
    return fig1.subset("species", "monkey")


def load_kriegeskorte_behaviour() -> rsatoolbox.rdm.RDMs:
    """Similarity-judgement RDMs of 16 subjects over the 92 stimuli (Mur et al. 2013).

    Returns:
        16 RDMs, subject ``subject1`` ... ``subject16``, session 1, roi ``behaviour``,
        dataset ``kriegeskorte92``, dissimilarity measure ``similarity judgement``.
    """
    matrices, names, _ = _struct_rdms("kriegeskorte92/92_behavRDMs.mat", "rdms_behav_92")
    subjects = [name.split("|")[-1].strip() for name in names]  # "simJudge | subject1"
    n = len(names)
    return _rdms(
        matrices,
        ids_92(),
        "similarity judgement",
        dataset=["kriegeskorte92"] * n,
        subject=subjects,
        session=[1] * n,
        roi=["behaviour"] * n,
        species=["human"] * n,
    )


def load_kriegeskorte_models() -> rsatoolbox.rdm.RDMs:
    """The 8 model RDMs of the rsatoolbox 92-image demo.

    Returns:
        8 RDMs with rdm descriptor ``model``: animacy, FaceBodyManmadeNatobj, monkeyIT, EVA,
        HMAX, V1, Silhouette, RADON; dataset ``kriegeskorte92``.
    """
    matrices, names, _ = _struct_rdms("kriegeskorte92/92_modelRDMs.mat", "Models")
    return _rdms(matrices, ids_92(), None, dataset=["kriegeskorte92"] * len(names), model=names)


def _check_roi(roi: str) -> str:
    if roi not in ROIS:
        raise ValueError(f"The 'roi' parameter must be one of {ROIS}; got {roi!r}.")
    return roi


def _subject_rdms(relpath: str, key: str, ids: np.ndarray, dataset: str, roi: str, measure):
    path = fetch(relpath)
    with np.load(path) as z:
        if key not in z:
            raise ValueError(f"{path}: no array {key!r}; found {list(z.keys())}.")
        matrices = _check_matrices(z[key], path, len(ids))
    n = len(matrices)
    return _rdms(
        matrices,
        ids,
        measure,
        dataset=[dataset] * n,
        subject=[f"sub{i:02d}" for i in range(1, n + 1)],
        session=[1] * n,
        roi=[roi] * n,
        species=["human"] * n,
    )


def load_cichy(roi: str = "IT") -> rsatoolbox.rdm.RDMs:
    """fMRI RDMs of Cichy, Pantazis & Oliva (2014), 15 subjects, over the 92 stimuli.

    Args:
        roi: ``"IT"`` (inferior temporal cortex) or ``"EVC"`` (early visual cortex).

    Returns:
        15 RDMs (correlation distance), subject ``sub01`` ... ``sub15``, session 1, roi,
        dataset ``cichy92``; stimulus ids as in :func:`~neuroalign.data.load_cichy92`.
    """
    roi = _check_roi(roi)
    return _subject_rdms(
        f"cichy92/fmri_{roi}_RDMs.npz", "Net_RDM", ids_92(), "cichy92", roi, "correlation"
    )


def load_algonauts(roi: str = "IT") -> rsatoolbox.rdm.RDMs:
    """fMRI RDMs of the Algonauts 2019 78 scenes, 15 subjects (low noise ceiling).

    Args:
        roi: ``"IT"`` or ``"EVC"``.

    Returns:
        15 RDMs, subject ``sub01`` ... ``sub15``, session 1, roi, dataset ``algonauts78``;
        the file does not document its dissimilarity measure, so it is left None.
    """
    roi = _check_roi(roi)
    return _subject_rdms(
        f"algonauts78/fmri_{roi}_RDMs.npz", "arr_0", ids_78(), "algonauts78", roi, None
    )


def load_rdms_file(path: str | Path) -> rsatoolbox.rdm.RDMs:
    """A user's RDMs saved by rsatoolbox (``RDMs.save``, ``.hdf5``/``.h5`` or ``.pkl``).

    The file should carry a ``stimulus_id`` pattern descriptor so that
    :func:`neuroalign.analysis.match_stimuli` can align it with a stimulus set.

    Raises:
        FileNotFoundError: no such file.
        ValueError: an unknown file type, or RDMs holding NaN (the file is named).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"RDMs file {path} does not exist.")
    suffix = path.suffix.lower()
    types = {".pkl": "pkl", ".h5": "hdf5", ".hdf5": "hdf5"}
    if suffix not in types:
        raise ValueError(
            f"RDMs file {path}: suffix must be one of {sorted(types)}; got {suffix!r}."
        )
    from rsatoolbox.rdm import load_rdm

    rdms = load_rdm(str(path), file_type=types[suffix])
    bad = int(np.isnan(rdms.dissimilarities).sum())
    if bad:
        raise ValueError(f"{path}: the RDMs hold {bad} NaN values; RDMs must be finite.")
    return rdms
