"""Extract layer activations of any torch model into an activation file (neuroalign.activations).

Forward hooks capture the outputs of the chosen modules during a full forward pass; each batch
of stimuli is written at once, so memory stays bounded by one batch.
"""

from __future__ import annotations

import difflib
import fnmatch
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from neuroalign.activations import ActivationWriter
from neuroalign.data.stimuli import StimulusSet

_GLOB_CHARS = set("*?[")


def list_layers(model: nn.Module) -> list[str]:
    """Module paths of every sub-module of ``model``, in definition order."""
    return [name for name, _ in model.named_modules() if name]


def _leaf_layers(model: nn.Module) -> list[str]:
    return [name for name, module in model.named_modules() if name and not any(module.children())]


def _glob_match(parts: Sequence[str], pattern: Sequence[str]) -> bool:
    """fnmatch per dotted component; a ``**`` component matches any number of components."""
    if not pattern:
        return not parts
    if pattern[0] == "**":
        return any(_glob_match(parts[i:], pattern[1:]) for i in range(len(parts) + 1))
    return (
        bool(parts)
        and fnmatch.fnmatchcase(parts[0], pattern[0])
        and _glob_match(parts[1:], pattern[1:])
    )


def match_layers(names: Sequence[str], pattern: str) -> list[str]:
    """Module paths matching a glob, one dotted component at a time.

    ``blocks.*`` gives ``blocks.0``, ``blocks.1``, ... but not ``blocks.0.conv``; ``**`` spans
    zero or more components, so ``blocks.**`` gives ``blocks`` and every module below it.
    """
    pattern_parts = pattern.split(".")
    return [name for name in names if _glob_match(name.split("."), pattern_parts)]


def resolve_layers(model: nn.Module, layers: str | Sequence[str] | None = None) -> list[str]:
    """Turn a layer choice into module paths.

    Args:
        model: the network.
        layers: module paths (``encoder.blocks.3``), glob patterns (fnmatch per dotted
            component: ``encoder.blocks.*`` is every block, ``encoder.**`` ``encoder`` and every
            module below it; expanded in model order), or None / ``"all"``: the model's own
            ``default_layers()`` when it defines one, else every leaf module.

    Returns:
        Module paths without repeats, in the order asked.
    """
    names = list_layers(model)
    if layers is None or (isinstance(layers, str) and layers == "all"):
        if callable(getattr(model, "default_layers", None)):
            layers = list(model.default_layers())
        else:
            return _leaf_layers(model)
    if isinstance(layers, str):
        layers = [layers]
    if len(layers) == 0:
        raise ValueError("'layers' is empty; give module paths, glob patterns, None or 'all'.")
    known = set(names)
    resolved: list[str] = []
    for layer in layers:
        if not isinstance(layer, str):
            raise TypeError(f"Layer names must be strings; got {type(layer).__name__} {layer!r}.")
        if _GLOB_CHARS & set(layer):
            matches = match_layers(names, layer)
        else:
            matches = [layer] if layer in known else []
        if not matches:
            close = difflib.get_close_matches(layer, names, n=5, cutoff=0.5)
            hint = f" Closest module names: {close}." if close else ""
            raise ValueError(
                f"{type(model).__name__} has no module matching {layer!r}.{hint} List them with "
                "neuroalign.extraction.list_layers(model) (or [n for n, _ in "
                "model.named_modules()])."
            )
        resolved.extend(m for m in matches if m not in resolved)
    return resolved


def image_transform(
    size: int,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
) -> tuple[Callable, str]:
    """The usual stimulus preprocessing: Resize(size), CenterCrop(size), ToTensor, Normalize.

    Args:
        size: side of the square model input in pixels.
        mean, std: per-channel normalisation (both or neither); None keeps pixels in [0, 1].

    Returns:
        (transform, description): the transform maps an RGB PIL image to a float tensor
        (3, size, size); the description is stored in the activation file's attributes.
    """
    from torchvision import transforms

    if not isinstance(size, int) or size <= 0:
        raise ValueError(f"'size' must be a positive int; got {size!r}.")
    if (mean is None) != (std is None):
        raise ValueError("Give both 'mean' and 'std' for normalisation, or neither.")
    steps = [transforms.Resize(size), transforms.CenterCrop(size), transforms.ToTensor()]
    description = f"Resize({size}) CenterCrop({size}) ToTensor"
    if mean is not None:
        if len(mean) != 3 or len(std) != 3:
            raise ValueError(f"'mean' and 'std' need 3 values (RGB); got {mean!r}, {std!r}.")
        steps.append(transforms.Normalize(mean, std))
        description += f" Normalize(mean={list(mean)}, std={list(std)})"
    return transforms.Compose(steps), description


def _check_pooling(pooling) -> None:
    ok = pooling is None or pooling == "avg"
    ok = ok or (isinstance(pooling, int) and not isinstance(pooling, bool) and pooling > 0)
    if not ok:
        raise ValueError(
            "The 'pooling' parameter must be None, 'avg' or a positive int k (k x k average "
            f"grid); got {pooling!r}."
        )


def pool(x: torch.Tensor, pooling) -> torch.Tensor:
    """Spatial pooling of conv outputs; other outputs pass unchanged.

    Args:
        x: (b, c, h, w) conv output, or (b, t, f) / (b, f).
        pooling: None (keep), ``"avg"`` (global average -> (b, c)) or int k (adaptive average
            to a k x k grid -> (b, c, k, k)).
    """
    if x.ndim != 4 or pooling is None:
        return x
    if pooling == "avg":
        return x.mean(dim=(2, 3))
    return F.adaptive_avg_pool2d(x, pooling)


class _Recorder:
    """Forward hooks that keep a pooled copy of each chosen module's latest output.

    The copy is taken when the module returns, so a later in-place operation (an in-place
    ReLU after a conv) cannot change it.
    """

    def __init__(self, model: nn.Module, layers: Sequence[str], pooling=None):
        modules = dict(model.named_modules())
        self.pooling = pooling
        self.outputs: dict[str, torch.Tensor] = {}
        self.calls: dict[str, int] = {}
        self._handles = [modules[name].register_forward_hook(self._hook(name)) for name in layers]

    def _hook(self, name: str):
        def hook(module, inputs, output):
            if isinstance(output, (tuple, list)):
                output = output[0]
            if not isinstance(output, torch.Tensor):
                raise TypeError(
                    f"Layer {name!r} returned {type(output).__name__}, not a tensor (or a tuple "
                    "starting with one); choose another layer."
                )
            pooled = pool(output, self.pooling)
            self.outputs[name] = pooled.clone() if pooled is output else pooled
            self.calls[name] = self.calls.get(name, 0) + 1

        return hook

    def reset(self) -> None:
        self.outputs.clear()
        self.calls.clear()

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()


def _load_batch(stimuli: StimulusSet, index: np.ndarray, transform: Callable) -> torch.Tensor:
    """Transformed stimuli ``index`` as one (b, 3, H, W) tensor."""
    images = []
    for i in index:
        x = transform(stimuli.image(int(i)))
        if not isinstance(x, torch.Tensor) or x.ndim != 3:
            raise TypeError(
                "'transform' must map a PIL image to a tensor (3, H, W); got "
                f"{type(x).__name__} {tuple(getattr(x, 'shape', ()))}."
            )
        if images and x.shape != images[0].shape:
            raise ValueError(
                f"'transform' gave stimulus {stimuli.stimulus_id[i]!r} the shape "
                f"{tuple(x.shape)} but {stimuli.stimulus_id[index[0]]!r} {tuple(images[0].shape)}; "
                "crop or resize to one size (image_transform does)."
            )
        images.append(x)
    return torch.stack(images)


def _layer_outputs(recorder: _Recorder, names: list[str], lenient: bool, warned: set[str]):
    """The recorded outputs of one forward pass as CPU float32 arrays, checked.

    Returns:
        (names, activations): the layers kept (``lenient`` drops layers that did not run,
        with a warning) and layer -> (b, ...) arrays.
    """
    missing = [name for name in names if name not in recorder.outputs]
    if missing and lenient and len(missing) < len(names):
        warnings.warn(
            f"Leaf modules {missing} did not run in the forward pass and are left out.",
            RuntimeWarning,
            stacklevel=3,
        )
        names = [name for name in names if name not in missing]
    elif missing:
        raise ValueError(
            f"Layers {missing} did not run in the model's forward pass; choose modules that "
            "forward() calls."
        )
    for name in names:
        if recorder.calls[name] > 1 and name not in warned:
            warned.add(name)
            warnings.warn(
                f"Module {name!r} ran {recorder.calls[name]} times in one forward pass; its "
                "last output is kept.",
                RuntimeWarning,
                stacklevel=3,
            )
    acts = {name: recorder.outputs[name].to("cpu", torch.float32).numpy() for name in names}
    return names, acts


def _stimulus_coords(stimuli: StimulusSet, index: np.ndarray) -> dict[str, np.ndarray]:
    coords = {name: values[index] for name, values in stimuli.coords.items()}
    if stimuli.paths is not None and "image_path" not in coords:
        coords["image_path"] = np.asarray(stimuli.paths, dtype=object)[index]
    return coords


def extract(
    model: nn.Module,
    stimuli: StimulusSet,
    layers: str | Sequence[str] | None,
    out_path: str | Path,
    *,
    transform: Callable | tuple[Callable, str],
    batch_size: int = 64,
    device: str | torch.device | None = None,
    dtype: str = "float32",
    pooling: str | int | None = None,
    attrs: dict | None = None,
    compression_level: int = 4,
    progress: bool = True,
) -> Path:
    """Run ``model`` over ``stimuli`` and write the chosen layers' activations to ``out_path``.

    The model runs in eval mode under ``torch.inference_mode`` (its training flag is restored
    afterwards). A module that runs several times in one forward pass (a shared ReLU) keeps its
    last output, with a warning. The file is written to ``<out_path>.partial`` and renamed
    when complete (see :class:`neuroalign.activations.ActivationWriter`).

    Args:
        model: any ``nn.Module`` taking a (b, 3, H, W) float tensor.
        stimuli: the images, ids and per-stimulus coords (written as presentation coords; a
            folder-based set also gets ``image_path``).
        layers: module paths, glob patterns, or None / ``"all"`` (see :func:`resolve_layers`).
        out_path: the activation file (``.nc``).
        transform: PIL image -> tensor (3, H, W), or the (transform, description) pair from
            :func:`image_transform`; the description (or the transform's repr) is stored.
        batch_size: stimuli per forward pass and per write.
        device: where the model runs; None keeps the model's device. A given device moves the
            model there.
        dtype: ``"float32"`` or ``"float16"`` storage.
        pooling: None, ``"avg"`` or int k (see :func:`pool`); applies to 4-D outputs only.
        attrs: provenance stored in the file (``model``, ``checkpoint_sha256``, ``recipe``,
            ``masking``, ``seed``, ``normalisation``, ...): strings or numbers.
        compression_level: zlib level 0-9; compression (~35 MB/s per core) is most of the
            extraction overhead, 0 switches it off.
        progress: show a tqdm progress bar.

    Returns:
        The path of the finished file.
    """
    if not isinstance(stimuli, StimulusSet):
        raise TypeError(f"'stimuli' must be a StimulusSet; got {type(stimuli).__name__}.")
    if len(stimuli) == 0:
        raise ValueError("The stimulus set is empty.")
    if not isinstance(batch_size, int) or batch_size <= 0:
        raise ValueError(f"'batch_size' must be a positive int; got {batch_size!r}.")
    _check_pooling(pooling)
    if isinstance(transform, tuple):
        transform, description = transform
    else:
        description = repr(transform)
    if not callable(transform):
        raise TypeError(f"'transform' must be callable; got {type(transform).__name__}.")
    names = resolve_layers(model, layers)
    # every leaf by default: leaves that forward() never calls are dropped, not an error
    lenient = (layers is None or layers == "all") and not callable(
        getattr(model, "default_layers", None)
    )
    if device is not None:
        model.to(device)
    else:
        param = next(iter(model.parameters()), None)
        device = param.device if param is not None else torch.device("cpu")
    device = torch.device(device)

    file_attrs = {
        "model": type(model).__name__,
        "stimulus_set": stimuli.name,
        "transform": description,
        "pooling": "none" if pooling is None else str(pooling),
        "torch_version": torch.__version__,
        "device": str(device),
        **(attrs or {}),
    }
    was_training = model.training
    starts = range(0, len(stimuli), batch_size)
    first = _load_batch(stimuli, np.arange(min(batch_size, len(stimuli))), transform)
    file_attrs.setdefault("input_shape", "x".join(map(str, first.shape[1:])))
    if first.shape[-1] == first.shape[-2]:
        file_attrs.setdefault("input_size", int(first.shape[-1]))
    recorder = _Recorder(model, names, pooling)
    warned: set[str] = set()
    bar = tqdm(total=len(stimuli), unit="img", desc="extract", disable=not progress)
    try:
        model.eval()
        with ActivationWriter(
            out_path, attrs=file_attrs, dtype=dtype, compression_level=compression_level
        ) as writer:
            for start in starts:
                index = np.arange(start, min(start + batch_size, len(stimuli)))
                x = first if start == 0 else _load_batch(stimuli, index, transform)
                x = x.to(device, non_blocking=True)
                recorder.reset()
                with torch.inference_mode():
                    model(x)
                    names, acts = _layer_outputs(recorder, names, lenient and start == 0, warned)
                coords = _stimulus_coords(stimuli, index)
                writer.write_batch(acts, stimuli.stimulus_id[index], coords=coords)
                bar.update(len(index))
    finally:
        bar.close()
        recorder.remove()
        recorder.reset()
        model.train(was_training)
    return Path(out_path)
