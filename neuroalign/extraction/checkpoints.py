"""Extract the same layers of several neuroalign checkpoints: one activation file each."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from neuroalign.extraction.core import extract
from neuroalign.extraction.transforms import image_transform
from neuroalign.provenance import checkpoint_attrs

__all__ = ["extract_checkpoints"]


def _file_names(paths: list[Path]) -> list[str]:
    """Unique file stems for checkpoints: the stem, with the folder name where stems repeat."""
    stems = [p.stem for p in paths]
    names = [f"{p.parent.name}_{p.stem}" if stems.count(p.stem) > 1 else p.stem for p in paths]
    if len(set(names)) < len(names):
        names = [f"{i:03d}_{name}" for i, name in enumerate(names)]
    return names


def extract_checkpoints(
    checkpoints: Sequence[str | Path],
    stimuli,
    layers: str | Sequence[str] | None,
    out: str | Path,
    *,
    transform: Callable | tuple[Callable, str] | None = None,
    device: str | torch.device | None = "cpu",
    resume: bool = False,
    index_name: str = "index.csv",
    time_pooling: str | None = None,
    **options,
) -> Path:
    """Extract the same layers of several neuroalign checkpoints: one file each, plus an index.

    Args:
        checkpoints: ``.pt`` files written by the trainer (e.g. several steps or seeds).
        stimuli: as for :func:`extract`; clips (a :class:`~neuroalign.data.clips.ClipSet`)
            are seen frame by frame (:func:`neuroalign.models.video.frame_wise`), each layer
            written as (presentation, time, ...).
        layers: as for :func:`extract`.
        out: the folder for ``<checkpoint stem>.nc`` files and the index (created if missing).
        transform: as for :func:`extract`; None: :func:`image_transform` at each checkpoint's
            training ``image_size`` (no normalisation: neuroalign models see [0, 1] pixels),
            for clips the same on every frame (:class:`~neuroalign.models.video.ClipTransform`).
        device: where the models run.
        resume: passed to :func:`extract`: finished files are kept, interrupted ones continued.
        index_name: the index's file name in ``out``.
        time_pooling: for clips, as for :func:`extract`: None keeps time, ``"mean"`` or
            ``"max"`` pools over it.
        **options: further keyword arguments of :func:`extract` (batch_size, pooling, ...).

    Returns:
        The index: a CSV with the columns ``name, file, checkpoint, sha256, step, seed, model``
        (see :func:`neuroalign.activations.open_activation_index`).
    """
    from neuroalign.activations import write_activation_index
    from neuroalign.data.clips import ClipSet
    from neuroalign.extraction.time import check_time_pooling
    from neuroalign.models.video import ClipTransform, frame_wise
    from neuroalign.training.checkpoint import load_model

    check_time_pooling(time_pooling)
    clips = isinstance(stimuli, ClipSet)

    paths = [Path(p) for p in checkpoints]
    if not paths:
        raise ValueError("'checkpoints' is empty.")
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"Checkpoints not found: {missing}.")
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    user_attrs = dict(options.pop("attrs", None) or {})
    rows = []
    for path, name in zip(paths, _file_names(paths), strict=True):
        model, state = load_model(path, device or "cpu")
        attrs = checkpoint_attrs(path, state)
        size = int(state.get("config", {}).get("image_size", 224))
        own: tuple[Callable, str] = image_transform(size)
        if clips:
            model = frame_wise(model)
            frames = ClipTransform(size, layout="TCHW")
            own = (frames, frames.description)
            attrs["frame_wise"] = 1
        written = extract(
            model,
            stimuli,
            layers,
            folder / f"{name}.nc",
            transform=transform if transform is not None else own,
            device=device,
            resume=resume,
            attrs={**attrs, **user_attrs},
            time_pooling=time_pooling,
            **options,
        )
        rows.append(
            {
                "name": name,
                "file": written.name,
                "checkpoint": str(path),
                "sha256": attrs["checkpoint_sha256"],
                "step": attrs["training_steps"],
                "seed": attrs.get("seed", ""),
                "model": attrs["model"],
            }
        )
    return write_activation_index(folder / index_name, rows)
