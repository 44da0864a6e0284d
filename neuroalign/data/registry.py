"""Brain data by name: the registry behind ``--brain`` and ``workflows.rsa_from_file``.

Each entry maps a name to (loader, subject descriptor): the loader returns rsatoolbox RDMs with
a ``stimulus_id`` pattern descriptor (see :mod:`neuroalign.data.brain`), and the descriptor
names the rdm descriptor saying whose RDM each one is (None: each RDM is a subject). The RDMs
are returned as recorded, one per subject and session; the analyses pool a subject's sessions
(``pool_sessions``, see :mod:`neuroalign.analysis.rsa`).

To add a data set: write a loader in :mod:`neuroalign.data.brain` (its files in
:data:`neuroalign.data.files.FILES`) and add a line to :data:`BRAIN_DATA`.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Callable

from neuroalign.data import brain

__all__ = ["BRAIN_DATA", "load_brain_rdms"]

#: Brain RDMs by name: (loader, rdm descriptor naming the subject, or None).
BRAIN_DATA: dict[str, tuple[Callable, str | None]] = {
    "kriegeskorte-hit": (brain.load_kriegeskorte_hit, "subject"),
    "kriegeskorte-mit": (brain.load_kriegeskorte_mit, None),
    "kriegeskorte-behaviour": (brain.load_kriegeskorte_behaviour, "subject"),
    "cichy-it": (lambda: brain.load_cichy("IT"), "subject"),
    "cichy-evc": (lambda: brain.load_cichy("EVC"), "subject"),
    "algonauts-it": (lambda: brain.load_algonauts("IT"), "subject"),
    "algonauts-evc": (lambda: brain.load_algonauts("EVC"), "subject"),
}


def load_brain_rdms(name: str):
    """(RDMs, subject descriptor) of a registered brain data set, an rsatoolbox RDMs file
    (``.hdf5``, ``.h5``, ``.pkl``) or a responses netCDF (``.nc``).

    Files: the subject descriptor is ``subject`` when the RDMs have one, else None.
    """
    if name in BRAIN_DATA:
        loader, subject = BRAIN_DATA[name]
        return loader(), subject
    if name.endswith(".nc"):
        from neuroalign.data.responses import load_responses

        rdms = load_responses(name)
    elif os.path.sep in name or name.endswith((".hdf5", ".h5", ".pkl")):
        rdms = brain.load_rdms_file(name)
    else:
        close = difflib.get_close_matches(name, list(BRAIN_DATA), n=3, cutoff=0.4)
        raise ValueError(
            f"Unknown brain data {name!r}; valid names: {', '.join(BRAIN_DATA)}, the path of an "
            "rsatoolbox RDMs file, or a responses netCDF (presentation × neuroid, 'region' "
            "coord)." + (f" Did you mean {close[0]!r}?" if close else "")
        )
    return rdms, "subject" if "subject" in rdms.rdm_descriptors else None
