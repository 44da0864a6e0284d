"""A set of stimuli: images with ids and per-stimulus labels that travel together."""

from __future__ import annotations

import csv
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

__all__ = ["IMAGE_SUFFIXES", "StimulusSet", "read_id_map"]

#: File name suffixes :meth:`StimulusSet.from_folder` reads as images (any case).
IMAGE_SUFFIXES = (".bmp", ".jpeg", ".jpg", ".png", ".tif", ".tiff", ".webp")


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
    def from_folder(cls, folder: str | Path, name: str = "",
                    stimulus_ids: str | Path | Mapping[str, str] | None = None) -> StimulusSet:
        """All images in ``folder`` (sorted by file name), ids from the file names' stems.

        Files in sub-folders get the sub-folder as ``category`` (ImageFolder layout). Files
        that are not images (by suffix, :data:`IMAGE_SUFFIXES`) are skipped with one warning
        naming the first few (hidden files such as ``.DS_Store`` silently).

        Args:
            folder: the image folder.
            name: the set's name (default: the folder's name).
            stimulus_ids: the ids to give the images instead of their file names, e.g. those
                of a brain data set so that RSA can match them: a CSV file with the columns
                ``file,stimulus_id`` (see :func:`read_id_map`), or a mapping. ``file`` is the
                path relative to ``folder`` (``image_01.jpg``) or that path without its suffix;
                every image needs one.
        """
        folder = Path(folder)
        if not folder.is_dir():
            raise FileNotFoundError(f"{'not a folder' if folder.exists() else 'no such folder'}: {folder}")
        every = sorted(p for p in folder.rglob("*") if p.is_file())
        files = [p for p in every if p.suffix.lower() in IMAGE_SUFFIXES]
        if not files:
            raise ValueError(f"Stimulus folder {folder} holds no images ({', '.join(IMAGE_SUFFIXES)}).")
        skipped = [p.relative_to(folder).as_posix() for p in every
                   if p.suffix.lower() not in IMAGE_SUFFIXES and not p.name.startswith(".")]
        if skipped:
            warnings.warn(f"{folder}: skipped {len(skipped)} file(s) that are not images "
                          f"({', '.join(IMAGE_SUFFIXES)}): {', '.join(skipped[:5])}"
                          f"{', ...' if len(skipped) > 5 else ''}", UserWarning, stacklevel=2)
        rel = [p.relative_to(folder) for p in files]
        ids = [str(r.with_suffix("")) for r in rel]
        if stimulus_ids is not None:
            ids = _mapped_ids(folder, rel, stimulus_ids)
        coords = {}
        if any(len(r.parts) > 1 for r in rel):
            coords["category"] = np.array([r.parts[0] if len(r.parts) > 1 else "" for r in rel])
        return cls(stimulus_id=np.array(ids), paths=[str(p) for p in files], coords=coords,
                   name=name or folder.name)


def read_id_map(path: str | Path) -> dict[str, str]:
    """A CSV of ``file,stimulus_id`` rows (with that header) as ``{file: stimulus_id}``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {path}")
    with path.open(newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        if not {"file", "stimulus_id"} <= set(reader.fieldnames or ()):
            raise ValueError(f"{path}: a stimulus id map needs the header 'file,stimulus_id'; "
                             f"got {reader.fieldnames}.")
        mapping: dict[str, str] = {}
        for line, row in enumerate(reader, start=2):
            file, stimulus_id = (row["file"] or "").strip(), (row["stimulus_id"] or "").strip()
            if not file or not stimulus_id:
                raise ValueError(f"{path}, line {line}: empty 'file' or 'stimulus_id'.")
            if file in mapping:
                raise ValueError(f"{path}, line {line}: {file!r} is mapped twice.")
            mapping[file] = stimulus_id
    if not mapping:
        raise ValueError(f"{path}: no rows.")
    return mapping


def _mapped_ids(folder: Path, rel: list[Path], stimulus_ids) -> list[str]:
    """The ids of the images ``rel`` (relative paths) from a CSV file or a mapping."""
    source = str(stimulus_ids)
    mapping = read_id_map(stimulus_ids) if isinstance(stimulus_ids, str | Path) else \
        {str(k): str(v) for k, v in stimulus_ids.items()}
    if not isinstance(stimulus_ids, str | Path):
        source = "the stimulus id map"
    ids, used, unmapped = [], set(), []
    for r in rel:
        key = next((k for k in (r.as_posix(), r.with_suffix("").as_posix()) if k in mapping), None)
        if key is None:
            unmapped.append(r.as_posix())
            continue
        ids.append(mapping[key])
        used.add(key)
    if unmapped:
        raise ValueError(f"{len(unmapped)} image(s) of {folder} have no id in {source}: "
                         f"{unmapped[:5]}{' ...' if len(unmapped) > 5 else ''}")
    unused = [k for k in mapping if k not in used]
    if unused:
        raise ValueError(f"{len(unused)} file(s) of {source} are not images of {folder}: "
                         f"{unused[:5]}{' ...' if len(unused) > 5 else ''}")
    return ids
