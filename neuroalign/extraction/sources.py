"""Stimulus sources for :func:`~neuroalign.extraction.extract` and loading them batch by batch.

A source has ``stimulus_id``, ``name`` and ``__len__``; a :class:`StimulusSet` gives images by
``image(i)`` (and coords for all stimuli), anything else by ``item(i) -> (image, coords)``.
A new kind of stimulus source is an adapter class here with that interface, accepted by
:func:`as_source`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np
import torch

from neuroalign.data.stimuli import StimulusSet

__all__ = ["DatasetStimuli", "as_source", "load_batch", "Head"]


class DatasetStimuli:
    """A torch ``Dataset`` as a stimulus source for :func:`extract`.

    Items are images, or tuples ``(image, label, ...)`` whose second element (an int, or a
    0-d tensor/array) becomes the ``label`` coordinate. An image is a PIL image (give
    ``extract`` a transform) or an already transformed (3, H, W) tensor (``transform=None``).
    Items are read one at a time, in index order.

    Args:
        dataset: anything with ``__len__`` and ``__getitem__`` (a ``torch.utils.data.Dataset``).
        stimulus_id: (n,) unique ids; default ``<name>/<index>`` (zero-padded).
        name: short name of the set, stored as provenance (default the dataset's class name).
    """

    def __init__(self, dataset, stimulus_id: Sequence[str] | None = None, name: str = ""):
        if not (hasattr(dataset, "__len__") and hasattr(dataset, "__getitem__")):
            raise TypeError(
                f"'dataset' must have __len__ and __getitem__; got {type(dataset).__name__}."
            )
        self.dataset = dataset
        self.name = name or type(dataset).__name__
        n = len(dataset)
        if stimulus_id is None:
            width = max(1, len(str(n - 1)))
            stimulus_id = [f"{self.name}/{i:0{width}d}" for i in range(n)]
        self.stimulus_id = np.asarray(stimulus_id).astype(str)
        if self.stimulus_id.shape != (n,):
            raise ValueError(
                f"'stimulus_id' must hold one id per item ({n}); got shape {self.stimulus_id.shape}."
            )
        if len(set(self.stimulus_id)) != n:
            raise ValueError("Stimulus ids must be unique.")
        self.paths = None

    def __len__(self) -> int:
        return len(self.stimulus_id)

    def item(self, i: int) -> tuple[object, dict]:
        """The i-th image and its coords (``label`` when the item is a pair)."""
        item = self.dataset[int(i)]
        if isinstance(item, (tuple, list)):
            image, rest = item[0], item[1:]
            coords = {}
            if rest and np.ndim(_to_numpy(rest[0])) == 0:
                coords["label"] = _to_numpy(rest[0])
            return image, coords
        return item, {}


def _to_numpy(value):
    return value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else np.asarray(value)


def as_source(stimuli):
    if isinstance(stimuli, (StimulusSet, DatasetStimuli)) or all(
        hasattr(stimuli, a) for a in ("stimulus_id", "name", "item", "__len__")
    ):  # an adapter (DatasetStimuli, ClipSet) or a StimulusSet
        return stimuli
    if isinstance(stimuli, torch.utils.data.Dataset) or (
        hasattr(stimuli, "__len__") and hasattr(stimuli, "__getitem__") and not isinstance(
            stimuli, (str, bytes, np.ndarray, Mapping)
        )
    ):
        return DatasetStimuli(stimuli)
    raise TypeError(
        "'stimuli' must be a StimulusSet, a ClipSet, a DatasetStimuli or a torch Dataset; got "
        f"{type(stimuli).__name__}."
    )


def load_batch(source, index: np.ndarray, transform: Callable | None, mask_fn=None):
    """Stimuli ``index`` as one (b, 3, H, W) tensor, with their coords (name -> (b,))."""
    images: list[torch.Tensor] = []
    item_coords: list[dict] = []  # of a source other than a StimulusSet
    batched = None
    batch_transform = getattr(transform, "batch", None)
    if isinstance(source, StimulusSet) and source.images is not None and callable(
        batch_transform
    ):
        batched = batch_transform(source.images[index])
    for i in index if batched is None else ():
        if isinstance(source, StimulusSet):
            image = source.image(int(i))
        else:
            image, item = source.item(int(i))
            item_coords.append(item)
        x = transform(image) if transform is not None else image
        if not isinstance(x, torch.Tensor) or x.ndim not in (3, 4):  # an image or a clip
            what = "'transform' must map" if transform is not None else "Without a transform,"
            raise TypeError(
                f"{what} each stimulus to a tensor (3, H, W) (a clip: 4 dims); got {type(x).__name__} "
                f"{tuple(getattr(x, 'shape', ()))} for stimulus {str(source.stimulus_id[i])!r}"
                + ("" if transform is not None else "; pass transform=image_transform(size)")
                + "."
            )
        if images and x.shape != images[0].shape:
            raise ValueError(
                f"Stimulus {str(source.stimulus_id[i])!r} has the shape {tuple(x.shape)} after the "
                f"transform but {str(source.stimulus_id[index[0]])!r} {tuple(images[0].shape)}; "
                "crop or resize to one size (image_transform does)."
            )
        images.append(x)
    x = torch.stack(images).float() if batched is None else batched
    if isinstance(source, StimulusSet):
        coords = {name: values[index] for name, values in source.coords.items()}
        if source.paths is not None and "image_path" not in coords:
            coords["image_path"] = np.asarray(source.paths, dtype=object)[index]
    else:
        names = set(item_coords[0])
        if any(set(c) != names for c in item_coords):
            raise ValueError("The dataset's items differ in form: some carry a label, some not.")
        coords = {name: np.stack([c[name] for c in item_coords]) for name in names}
    if mask_fn is not None:
        x = mask_fn(x, index)
    return x, coords



class Head:
    """The first m items of a stimulus source (the PCA fit set of a dataset)."""

    def __init__(self, source, m: int):
        self.source, self.stimulus_id, self.name = source, source.stimulus_id[:m], source.name

    def __len__(self) -> int:
        return len(self.stimulus_id)

    def item(self, i: int):
        return self.source.item(i)
