"""A set of stimuli: images with ids and per-stimulus labels that travel together."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

__all__ = ["StimulusSet"]


@dataclass
class StimulusSet:
    """Images with their stimulus ids and per-stimulus coordinates.

    Either ``images`` (uint8, shape (n, H, W, 3), RGB) or ``paths`` (n image files, read on
    demand) holds the pixels.

    Args:
        stimulus_id: (n,) unique string ids; they name the stimuli in every output file.
        images: (n, H, W, 3) uint8 RGB pixels, or None when ``paths`` is given.
        paths: n image file paths, or None when ``images`` is given (stored as str).
        coords: per-stimulus labels, each an array of length n (e.g. ``label``, ``category``).
        name: short name of the set (e.g. ``kriegeskorte92``), stored as provenance.
    """

    stimulus_id: np.ndarray
    images: np.ndarray | None = None
    paths: Sequence[str | Path] | None = None
    coords: dict[str, np.ndarray] = field(default_factory=dict)
    name: str = ""

    def __post_init__(self):
        self.stimulus_id = np.asarray(self.stimulus_id).astype(str)
        n = len(self.stimulus_id)
        if (self.images is None) == (self.paths is None):
            raise ValueError("StimulusSet needs exactly one of 'images' or 'paths'.")
        if self.images is not None:
            self.images = np.asarray(self.images)
            if self.images.ndim != 4 or self.images.shape[-1] != 3 or self.images.dtype != np.uint8:
                raise ValueError(
                    "StimulusSet 'images' must be uint8 with shape (n, H, W, 3); got "
                    f"{self.images.dtype} {self.images.shape}."
                )
            if len(self.images) != n:
                raise ValueError(f"StimulusSet has {n} ids but {len(self.images)} images.")
        else:
            self.paths = [str(p) for p in self.paths]
            if len(self.paths) != n:
                raise ValueError(f"StimulusSet has {n} ids but {len(self.paths)} paths.")
        if len(set(self.stimulus_id)) != n:
            ids, counts = np.unique(self.stimulus_id, return_counts=True)
            raise ValueError(f"Stimulus ids must be unique; repeated: {list(ids[counts > 1][:10])}")
        self.coords = {k: np.asarray(v) for k, v in self.coords.items()}
        for k, v in self.coords.items():
            if len(v) != n:
                raise ValueError(f"Coordinate {k!r} has {len(v)} values for {n} stimuli.")

    def __len__(self) -> int:
        return len(self.stimulus_id)

    def image(self, i: int) -> Image.Image:
        """The i-th stimulus as an RGB PIL image; an unreadable file is named in the error."""
        if self.images is not None:
            return Image.fromarray(self.images[i])
        assert self.paths is not None  # __post_init__: exactly one of images and paths
        path = self.paths[i]
        try:
            with Image.open(path) as im:
                return im.convert("RGB")
        except (OSError, ValueError) as err:
            raise ValueError(
                f"Cannot read stimulus {str(self.stimulus_id[i])!r} from {path}: {err}"
            ) from err

    def subset(self, index) -> StimulusSet:
        """A new set with the stimuli at ``index`` (integer array, slice or boolean mask)."""
        index = np.arange(len(self))[index]
        return StimulusSet(
            stimulus_id=self.stimulus_id[index],
            images=None if self.images is None else self.images[index],
            paths=None if self.paths is None else [self.paths[i] for i in index],
            coords={k: v[index] for k, v in self.coords.items()},
            name=self.name,
        )

    @classmethod
    def from_folder(cls, folder: str | Path, name: str = "") -> StimulusSet:
        """All images in ``folder`` (sorted by file name), ids from the file names' stems.

        Files in sub-folders get the sub-folder as ``category`` (ImageFolder layout).
        """
        folder = Path(folder)
        if not folder.is_dir():
            raise FileNotFoundError(f"Stimulus folder {folder} does not exist.")
        exts = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}
        files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in exts and p.is_file())
        if not files:
            raise ValueError(f"Stimulus folder {folder} holds no images ({', '.join(sorted(exts))}).")
        rel = [p.relative_to(folder) for p in files]
        ids = [str(r.with_suffix("")) for r in rel]
        coords = {}
        if any(len(r.parts) > 1 for r in rel):
            coords["category"] = np.array([r.parts[0] if len(r.parts) > 1 else "" for r in rel])
        return cls(stimulus_id=np.array(ids), paths=[str(p) for p in files], coords=coords,
                   name=name or folder.name)
