"""Training image sources for pretraining: STL-10, CIFAR-10, or any folder of images.

Each loader returns the whole set as one (N, 3, H, W) uint8 tensor in memory: batches are then
drawn by index on any device (no DataLoader workers, no per-image Python in the loop). At
FocusMIM's scale (STL-10 ``unlabeled``: 100,000 images of 96×96) that is 2.8 GB.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import ImageOps
from tqdm.auto import tqdm

from neuroalign.data.files import cache_dir

__all__ = [
    "SOURCES",
    "STL10_SPLITS",
    "cifar10_images",
    "default_stl10_root",
    "folder_images",
    "load_images",
    "stl10_images",
]

SOURCES = ("cifar10", "stl10", "folder")
STL10_SPLITS = ("unlabeled", "train", "test", "train+unlabeled")


def load_images(
    source: str,
    *,
    path: str | Path = "",
    split: str = "",
    image_size: int | None = None,
    max_images: int = 0,
    download: bool = True,
    progress: bool = True,
) -> torch.Tensor:
    """The training images of a source, as one uint8 tensor.

    Args:
        source: ``"stl10"`` (torchvision's STL-10; downloaded into ``path`` when missing),
            ``"cifar10"`` (the CIFAR-10 JPEG archive found through ``NEUROALIGN_DATA`` or the
            cache, or the archive at ``path``) or ``"folder"`` (every image under ``path``).
        path: see ``source``; for stl10 the default root is ``<cache>/stl10``.
        split: ``""`` = the training split (stl10 ``"unlabeled"``, cifar10 ``"train"``).
        image_size: side of the square images a folder's files are resized and centre-cropped
            to (required for ``"folder"``; the arrays of stl10/cifar10 keep their size).
        max_images: keep the first ``max_images`` (0 = all).
        download: stl10 only: download the archive when it is not under ``path``.
        progress: show progress bars.

    Returns:
        (N, 3, H, W) uint8 tensor.
    """
    if source == "stl10":
        images = stl10_images(path or default_stl10_root(), split or "unlabeled", download=download)
    elif source == "cifar10":
        images = cifar10_images(split or "train", archive=path or None)
    elif source == "folder":
        if image_size is None:
            raise ValueError("load_images('folder') needs image_size (the side images are resized to).")
        images = folder_images(path, image_size, max_images=max_images, progress=progress)
    else:
        raise ValueError(f"The image source must be one of {SOURCES}; got {source!r}.")
    if max_images:
        images = images[:max_images]
    return images


def default_stl10_root() -> Path:
    """Where STL-10 is downloaded by default: ``<NEUROALIGN_CACHE or ~/.cache/neuroalign>/stl10``."""
    return cache_dir() / "stl10"


def stl10_images(root: str | Path, split: str = "unlabeled", download: bool = True) -> torch.Tensor:
    """STL-10 through ``torchvision.datasets.STL10`` (binary version, 96×96 px).

    The first call downloads ``stl10_binary.tar.gz`` (2.6 GB) into ``root`` and unpacks it;
    later calls find ``root/stl10_binary`` and read it directly.

    Args:
        root: folder that holds (or will hold) ``stl10_binary/``.
        split: one of ``STL10_SPLITS``; FocusMIM pretrains on ``"unlabeled"`` (100,000 images).
        download: download when the files are missing; otherwise that is an error.

    Returns:
        (N, 3, 96, 96) uint8 tensor.
    """
    from torchvision.datasets import STL10

    if split not in STL10_SPLITS:
        raise ValueError(f"The STL-10 split must be one of {STL10_SPLITS}; got {split!r}.")
    root = Path(root).expanduser()
    try:
        dataset = STL10(str(root), split=split, download=download)
    except RuntimeError as err:  # torchvision: "Dataset not found or corrupted"
        raise FileNotFoundError(
            f"STL-10 not found (or corrupted) under {root / STL10.base_folder}: {err}. "
            "Set download = true, or unpack stl10_binary.tar.gz there."
        ) from err
    return torch.from_numpy(np.ascontiguousarray(dataset.data))


def cifar10_images(split: str = "train", archive: str | Path | None = None) -> torch.Tensor:
    """CIFAR-10 JPEGs (see :func:`neuroalign.data.cifar.load_cifar10`) as (N, 3, 32, 32) uint8."""
    from neuroalign.data.cifar import load_cifar10

    images = load_cifar10(split, archive=archive).images
    return torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).contiguous()


def folder_images(
    folder: str | Path, image_size: int, *, max_images: int = 0, progress: bool = True
) -> torch.Tensor:
    """Every image under ``folder`` (ImageFolder layout ``<class>/<file>`` or flat), sorted by path.

    Each image is converted to RGB, scaled so that its shorter side is ``image_size`` and
    centre-cropped to a square.

    Args:
        folder: the folder; searched recursively for .jpg/.jpeg/.png/.bmp/.tif/.tiff/.webp.
        image_size: side of the output images in pixels.
        max_images: read only the first ``max_images`` files (0 = all).

    Returns:
        (N, 3, image_size, image_size) uint8 tensor.

    Raises:
        FileNotFoundError: ``folder`` does not exist.
        ValueError: no images in it, or a file that cannot be decoded (named in the message).
    """
    from neuroalign.data.stimuli import StimulusSet

    if not str(folder):
        raise ValueError("folder_images needs a folder (data_path is empty).")
    stimuli = StimulusSet.from_folder(folder)
    n = len(stimuli) if not max_images else min(max_images, len(stimuli))
    out = np.empty((n, image_size, image_size, 3), dtype=np.uint8)
    for i in tqdm(range(n), desc=f"reading {Path(folder).name}", disable=not progress or n < 500):
        image = stimuli.image(i)  # ValueError naming the file when it cannot be decoded
        out[i] = np.asarray(ImageOps.fit(image, (image_size, image_size)))
    return torch.from_numpy(out).permute(0, 3, 1, 2).contiguous()
