"""The stimulus sets of the brain datasets, and a registry to load any set by name.

The Kriegeskorte et al. (2008) and Cichy et al. (2014) sets are the same 92 images in the same
order (grey background in the first, white in the second), so both get the same stimulus ids,
``kriegeskorte92/001`` ... ``kriegeskorte92/092``: RDMs of either dataset match either image set
by name.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import scipy.io

from neuroalign.data.cifar import load_cifar10
from neuroalign.data.cowley import load_cowley_v4_images
from neuroalign.data.files import fetch
from neuroalign.data.stimuli import StimulusSet

__all__ = [
    "CATEGORIES_92",
    "STIMULUS_SETS",
    "SUPPLEMENTAL_MAT",
    "category_coords_92",
    "ids_78",
    "ids_92",
    "load_algonauts78",
    "load_cichy92",
    "load_kriegeskorte92",
    "load_stimulus_set",
]

SUPPLEMENTAL_MAT = "kriegeskorte92/Kriegeskorte_Neuron2008_supplementalData.mat"

#: The 6 categories of the 92 images, in stimulus (and plotting) order, with their sizes.
CATEGORIES_92 = (
    ("human bodypart", 12),
    ("human face", 12),
    ("nonhuman bodypart", 12),
    ("nonhuman face", 12),
    ("natural inanimate", 23),
    ("artificial inanimate", 21),
)


def ids_92() -> np.ndarray:
    """The 92 shared stimulus ids, ``kriegeskorte92/001`` ... ``kriegeskorte92/092``."""
    return np.array([f"kriegeskorte92/{i:03d}" for i in range(1, 93)])


def ids_78() -> np.ndarray:
    """The 78 Algonauts scene ids, ``algonauts78/01`` ... ``algonauts78/78``."""
    return np.array([f"algonauts78/{i:02d}" for i in range(1, 79)])


def category_coords_92() -> dict[str, np.ndarray]:
    """Category coords of the 92 images, from the known category sizes (no file read).

    Returns:
        ``category`` (6 names), ``category_index`` (0-5 in plotting order), and the boolean
        flags ``animate``, ``human``, ``face``, ``animal``, ``natural`` with the supplemental
        file's meaning (``animal`` is every animate image, humans included; ``natural`` is
        everything but the artificial objects).
    """
    category = np.repeat([c for c, _ in CATEGORIES_92], [n for _, n in CATEGORIES_92])
    index = np.repeat(np.arange(len(CATEGORIES_92)), [n for _, n in CATEGORIES_92])
    animate = index < 4
    return {
        "category": category,
        "category_index": index,
        "animate": animate,
        "human": np.isin(index, [0, 1]),
        "face": np.isin(index, [1, 3]),
        "animal": animate,
        "natural": index < 5,
    }


def load_kriegeskorte92() -> StimulusSet:
    """The 92 images of Kriegeskorte et al. (2008), from the rsatoolbox supplemental file.

    Returns:
        A StimulusSet with ``images`` (92, 175, 175, 3) uint8 (grey background), ids
        ``kriegeskorte92/001``...``/092``, and coords read from the file: ``category`` (6-way
        name), ``category_index`` (0-5, plotting order), ``animate`` (from ``categoryVectors``),
        and the flags ``human``, ``face``, ``animal``, ``natural`` (bool).
    """
    path = fetch(SUPPLEMENTAL_MAT)
    mat = scipy.io.loadmat(path)
    entries = mat["stimuli_92objs"].ravel()
    if len(entries) != 92:
        raise ValueError(f"{path}: 'stimuli_92objs' holds {len(entries)} stimuli, expected 92.")
    images = np.stack([np.asarray(e["image"], dtype=np.uint8) for e in entries])
    category = np.array([str(np.ravel(e["category"])[0]) for e in entries])
    order = [c for c, _ in CATEGORIES_92]
    unknown = sorted(set(category) - set(order))
    if unknown:
        raise ValueError(f"{path}: unknown categories {unknown}; known: {order}.")
    labels = [str(np.ravel(x)[0]) for x in mat["categoryLabels"].ravel()]
    vectors = np.asarray(mat["categoryVectors"])
    coords = {
        "category": category,
        "category_index": np.array([order.index(c) for c in category]),
        "animate": vectors[:, labels.index("animate")].astype(bool),
    }
    for flag in ("human", "face", "animal", "natural"):
        coords[flag] = np.array([bool(np.ravel(e[flag])[0]) for e in entries])
    return StimulusSet(stimulus_id=ids_92(), images=images, coords=coords, name="kriegeskorte92")


def load_cichy92() -> StimulusSet:
    """The 92 images as used by Cichy et al. (2014) / Algonauts 2019 (JPEG, white background).

    Same images, same order and the same ids as :func:`load_kriegeskorte92`; the same category
    coords, from :func:`category_coords_92`.

    Returns:
        A StimulusSet of 92 image paths (175x175 JPEG).
    """
    paths = [fetch(f"cichy92/images/image_{i:02d}.jpg") for i in range(1, 93)]
    return StimulusSet(
        stimulus_id=ids_92(), paths=paths, coords=category_coords_92(), name="cichy92"
    )


def load_algonauts78() -> StimulusSet:
    """The 78 natural scenes of the Algonauts 2019 fMRI set (Net2Brain's test data).

    Returns:
        A StimulusSet of 78 image paths, ids ``algonauts78/01`` ... ``algonauts78/78``.
    """
    paths = [fetch(f"algonauts78/images/image_{i:02d}.jpg") for i in range(1, 79)]
    return StimulusSet(stimulus_id=ids_78(), paths=paths, name="algonauts78")


#: Stimulus sets by name; each value loads the set.
STIMULUS_SETS: dict[str, Callable[[], StimulusSet]] = {
    "kriegeskorte92": load_kriegeskorte92,
    "cichy92": load_cichy92,
    "algonauts78": load_algonauts78,
    "cowley-v4": lambda: load_cowley_v4_images("210325"),
    "cowley-v4-natural": lambda: load_cowley_v4_images("201025"),
    "cifar10-train": lambda: load_cifar10("train"),
    "cifar10-test": lambda: load_cifar10("test"),
}


def load_stimulus_set(name: str) -> StimulusSet:
    """Load a registered stimulus set by name (one of :data:`STIMULUS_SETS`).

    Raises:
        FileNotFoundError: ``name`` looks like a path (has a ``/``, starts with ``.`` or ``~``):
            "no such folder".
        ValueError: unknown name; the message lists the close matches and all valid names.
    """
    if name not in STIMULUS_SETS and ("/" in name or "\\" in name or name.startswith((".", "~"))):
        raise FileNotFoundError(f"{'not a folder' if Path(name).exists() else 'no such folder'}: {name}")
    if name not in STIMULUS_SETS:
        near = difflib.get_close_matches(name, list(STIMULUS_SETS), n=3, cutoff=0.5)
        hint = f" Did you mean {', '.join(map(repr, near))}?" if near else ""
        raise ValueError(
            f"Unknown stimulus set {name!r} (and no folder of that name); valid names: "
            f"{', '.join(STIMULUS_SETS)}.{hint}"
        )
    return STIMULUS_SETS[name]()
