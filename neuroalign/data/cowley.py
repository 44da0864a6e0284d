"""Macaque V4 spike counts of Cowley, Stan, Pillow & Smith (bioRxiv 2023), with their images.

Two sessions of github.com/cowleygroup/V4_compact_models (``data_V4_responses/``):

- ``210325`` (``cowley-v4``): 50 neurons × 640 images, trial level, 6–10 repeats an image
  (the file's unused repeat slots are NaN: missing repeats).
- ``201025`` (``cowley-v4-natural``): 89 neurons × 1,200 natural photographs, repeat-averaged
  (the trial-level file is not public).

Spike counts are in 100 ms bins. Image ``image{i+1:04d}.jpg`` of the session's zip is
response index ``i``; both get the stimulus id ``cowley-v4-<session>/{i+1:04d}``.
Licence GPL-3.0 (the data's); cite the paper.
"""

from __future__ import annotations

import io
import zipfile

import numpy as np
import xarray as xr
from PIL import Image

from neuroalign.data.assemblies import make_assembly
from neuroalign.data.files import fetch
from neuroalign.data.stimuli import StimulusSet

__all__ = ["COWLEY_SESSIONS", "cowley_ids", "load_cowley_v4", "load_cowley_v4_images"]

#: session -> (registered name, monkey, whether trial-level responses are public)
COWLEY_SESSIONS = {
    "210325": ("cowley-v4", "PE", True),
    "201025": ("cowley-v4-natural", "PE", False),
}


def _check_session(session: str) -> None:
    if session not in COWLEY_SESSIONS:
        raise ValueError(
            f"Unknown Cowley V4 session {session!r}; registered: {', '.join(COWLEY_SESSIONS)}"
        )


def cowley_ids(session: str, n: int) -> np.ndarray:
    """The stimulus ids of a session's ``n`` images, ``cowley-v4-<session>/0001`` …"""
    return np.array([f"cowley-v4-{session}/{i + 1:04d}" for i in range(n)])


def load_cowley_v4(session: str = "210325", *, repetitions: bool = True) -> xr.DataArray:
    """A session's responses as an assembly (see :mod:`neuroalign.data.assemblies`).

    Args:
        session: ``"210325"`` or ``"201025"``.
        repetitions: keep the repeats as a ``repetition`` dim (session 210325 only; the other
            session is repeat-averaged at the source). False: the source's repeat averages.

    Returns:
        DataArray (presentation, neuroid[, repetition]), float64 spike counts, with
        ``stimulus_id``, ``neuroid_id``, ``region`` (``V4``) and ``subject`` (the monkey).
    """
    _check_session(session)
    _, monkey, trial_level = COWLEY_SESSIONS[session]
    if repetitions and trial_level:
        path = fetch(f"cowley_v4/responses_raw/responses_{session}.npy")
        dims: tuple[str, ...] = ("neuroid", "presentation", "repetition")
    else:
        path = fetch(f"cowley_v4/responses_repeat_averaged/responses_{session}.npy")
        dims = ("neuroid", "presentation")
    values = np.load(path)
    if values.ndim != len(dims):
        raise ValueError(f"{path}: expected a {len(dims)}-D array {dims}; got {values.shape}")
    da = make_assembly(
        values, cowley_ids(session, values.shape[1]), dims=dims, region="V4", subject=monkey,
        name=f"cowley_v4_{session}",
    )
    da.attrs.update(
        session=session, units="spikes per 100 ms",
        source="Cowley, Stan, Pillow & Smith, bioRxiv 2023 (cowleygroup/V4_compact_models)",
    )
    return da


def load_cowley_v4_images(session: str = "210325") -> StimulusSet:
    """A session's images (112×112 RGB), ids as :func:`load_cowley_v4`'s, in response order."""
    _check_session(session)
    path = fetch(f"cowley_v4/images/images_{session}.zip")
    with zipfile.ZipFile(path) as z:
        names = sorted(n for n in z.namelist() if n.lower().endswith(".jpg"))
        expected = [f"image{i + 1:04d}.jpg" for i in range(len(names))]
        if [n.rsplit("/", 1)[-1] for n in names] != expected:
            raise ValueError(f"{path}: expected images image0001.jpg … in order; got {names[:3]}…")
        images = []
        for n in names:
            with Image.open(io.BytesIO(z.read(n))) as im:
                images.append(np.asarray(im.convert("RGB")))
    return StimulusSet(
        stimulus_id=cowley_ids(session, len(images)), images=np.stack(images),
        name=COWLEY_SESSIONS[session][0],
    )
