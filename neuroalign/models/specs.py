"""Models by spec: one string names a model and where its weights come from, in Python and the CLI.

    conv_mae                              a registered neuroalign architecture (random weights)
    runs/mae/checkpoint.pt                a neuroalign checkpoint
    torchvision:resnet50                  torchvision, pretrained (``weights``: an enum name)
    timm:vit_base_patch16_224.mae         timm, pretrained through its hub cache
    hf:facebook/vit-mae-base, hf:folder   Hugging Face transformers ``AutoModel`` (vision)
    open_clip:ViT-B-32/laion2b_s34b_b79k  OpenCLIP's image tower
    module:package.module:factory         any ``nn.Module`` a function returns
    torchvision/<name>, timm/<name>       random initial weights, as ``create_model`` builds

``weights`` (``--weights``): for torchvision a weight enum name (``IMAGENET1K_V2``; default
``DEFAULT``), for every pretrained source a local file (.pth, .pt, .bin, .safetensors), or
``random`` for seeded random initial weights. Weights come from the libraries' own caches
(``TORCH_HOME``, ``HF_HOME``; ``HF_HUB_OFFLINE=1`` is respected) and are downloaded there
when missing; when that is impossible a `WeightsNotFoundError` says in one line what was
expected, where it was looked for, and how to fetch it on a networked machine.

Each source's own preprocessing is the default (torchvision's ``weights.transforms()``, timm's
resolved data config, the Hugging Face image processor, OpenCLIP's preprocess); `Preprocessing`
holds its parameters, and ``image_size``/``mean``/``std`` override them.
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

import torch
from torch import nn

__all__ = ["SOURCES", "LoadedModel", "Preprocessing", "WeightsNotFoundError", "load_model", "parse_spec"]

#: The spec prefixes (``source:name``) and what they load.
SOURCES = {
    "torchvision": "a torchvision model with its pretrained weights",
    "timm": "a timm model with its pretrained weights",
    "hf": "a Hugging Face transformers vision model (hub id or folder with config.json)",
    "open_clip": "the image tower of an OpenCLIP model (ARCH/PRETRAINED_TAG)",
    "module": "an nn.Module returned by a function (package.module:factory)",
}
T = TypeVar("T")
WEIGHT_FILE_SUFFIXES = (".pth", ".pt", ".bin", ".safetensors", ".ckpt")


class WeightsNotFoundError(FileNotFoundError):
    """The weights a spec names are neither in the cache nor downloadable; the message says
    what was expected, where it was looked for and how to fetch it."""


@dataclasses.dataclass(frozen=True)
class Preprocessing:
    """An image model's input preprocessing: resize, centre crop to ``size``, scale to [0, 1],
    normalise.

    Attributes:
        size: side of the square model input (the crop).
        resize: shorter side before the crop (int), or an exact (height, width).
        interpolation: "bilinear", "bicubic" or "nearest".
        mean, std: per-channel normalisation, or None (pixels in [0, 1]).
        source: whose preprocessing this is ("torchvision weights IMAGENET1K_V2", …).
        clip_layout: for clips: the model's input per clip, ``"CTHW"`` (torchvision's video
            models) or ``"TCHW"`` (VideoMAE, image models frame by frame); None: images.
    """

    size: int
    resize: int | tuple[int, int]
    interpolation: str = "bilinear"
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    source: str = "neuroalign"
    clip_layout: str | None = None

    def with_overrides(self, image_size: int | None = None, mean: Sequence[float] | None = None,
                       std: Sequence[float] | None = None) -> Preprocessing:
        """A copy with the given values; a new ``image_size`` scales the resize with it."""
        if (mean is None) != (std is None):
            raise ValueError("Give both mean and std, or neither.")
        changes: dict = {}
        if image_size is not None and image_size != self.size:
            scale = image_size / self.size
            resize = (round(self.resize[0] * scale), round(self.resize[1] * scale)) \
                if isinstance(self.resize, tuple) else round(self.resize * scale)
            changes.update(size=int(image_size), resize=resize)
        if mean is not None and std is not None:
            changes.update(mean=tuple(float(v) for v in mean), std=tuple(float(v) for v in std))
        if not changes:
            return self
        return dataclasses.replace(self, **changes, source=f"{self.source}, overridden")

    def transform(self):
        """(neuroalign's ImageTransform with these parameters, its description)."""
        if self.clip_layout is not None:
            from neuroalign.models.video import ClipTransform

            clip = ClipTransform(self.size, self.mean, self.std, self.resize, self.interpolation,
                                 self.clip_layout)
            return clip, clip.description
        from neuroalign.extraction.transforms import image_transform

        return image_transform(self.size, self.mean, self.std, self.resize, self.interpolation)

    def attrs(self) -> dict:
        """The parameters as activation-file attributes (``preprocessing_*``; netCDF attributes
        are scalars or strings, so pairs and triples are written as "[a, b]")."""
        out = {
            "preprocessing": self.source,
            "preprocessing_size": self.size,
            "preprocessing_resize": str(list(self.resize)) if isinstance(self.resize, tuple) else self.resize,
            "preprocessing_interpolation": self.interpolation,
        }
        if self.mean is not None and self.std is not None:
            out.update(preprocessing_mean=str(list(self.mean)), preprocessing_std=str(list(self.std)))
        if self.clip_layout is not None:
            out["preprocessing_clip_layout"] = self.clip_layout
        return out


@dataclasses.dataclass
class LoadedModel:
    """A model ready for extraction, with its preprocessing and what to record about it.

    Attributes:
        model: the module, in eval mode, on the requested device.
        transform: (callable, description): PIL image -> (3, size, size) tensor, as
            `neuroalign.extraction.extract` takes it: the source library's own transform
            unless overridden.
        preprocessing: its parameters.
        attrs: provenance for the activation file: the spec, the weights' identity, the
            preprocessing and the library versions.
    """

    model: nn.Module
    transform: tuple[Callable, str]
    preprocessing: Preprocessing
    attrs: dict


def build_seeded(build: Callable[[], T], seed: int) -> T:
    """build() under ``torch.manual_seed(seed)`` inside ``fork_rng``: the same seed gives the
    same weights, and the global random state is left as it was."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build()


def parse_spec(spec: str) -> tuple[str, str]:
    """(source, name) of a spec: source is one of SOURCES, "checkpoint" or "neuroalign" (a
    registered name, or ``torchvision/<name>``/``timm/<name>`` with random weights)."""
    spec = str(spec).strip()
    if not spec:
        raise ValueError("The model spec is empty.")
    prefix, sep, rest = spec.partition(":")
    if sep and prefix in SOURCES:
        if not rest:
            raise ValueError(f"Model spec {spec!r} names no model after '{prefix}:'.")
        return prefix, rest
    if sep and len(prefix) > 1 and "/" not in prefix and "\\" not in prefix:
        close = difflib.get_close_matches(prefix, list(SOURCES), n=1)
        hint = f" Did you mean '{close[0]}:'?" if close else ""
        raise ValueError(f"Unknown model source {prefix!r} in {spec!r}; sources: {list(SOURCES)}.{hint}")
    if _looks_like_path(spec):
        return "checkpoint", spec
    return "neuroalign", spec


def _looks_like_path(spec: str) -> bool:
    """A checkpoint path rather than a model name: a file, a weights-file name, or a path with
    a folder (``torchvision/<name>`` and ``timm/<name>`` are model names)."""
    if Path(spec).is_file() or Path(spec).suffix.lower() in WEIGHT_FILE_SUFFIXES:
        return True
    if spec.startswith((".", "~")):
        return True
    return "/" in spec and spec.split("/", 1)[0] not in ("torchvision", "timm")


def load_model(
    spec: str,
    weights: str | Path | None = None,
    *,
    device="cpu",
    seed: int = 0,
    image_size: int | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    clips: bool = False,
) -> LoadedModel:
    """The model a spec names (see the module docstring), its preprocessing and provenance.

    Args:
        spec: e.g. "timm:vit_base_patch16_224.mae", "hf:facebook/dinov2-small", "conv_mae".
        weights: an enum name (torchvision), a local weights file, "random", or None (the
            source's default pretrained weights; random for registered names).
        device: where the model goes.
        seed: seed of random initial weights (registered names, "random").
        image_size, mean, std: override the source's preprocessing (both mean and std).
        clips: for video clips: video and flow models take them as they are, an image model
            is applied frame by frame (:func:`neuroalign.models.video.clip_ready`).

    Returns:
        LoadedModel.

    Raises:
        WeightsNotFoundError: the weights are not cached and cannot be downloaded.
        ValueError: an unknown source, model or weight name (with close names).
    """
    from neuroalign.models import pretrained
    from neuroalign.provenance import library_versions

    source, name = parse_spec(spec)
    if weights is not None and source in ("neuroalign", "checkpoint") and str(weights) != "random":
        raise ValueError(f"--weights applies to the sources {list(SOURCES)}; {spec!r} is "
                         + ("a checkpoint" if source == "checkpoint" else "a neuroalign model name"))
    loaders = {"torchvision": pretrained.torchvision_model, "timm": pretrained.timm_model,
               "hf": pretrained.hf_model, "open_clip": pretrained.open_clip_model,
               "module": _module_model, "checkpoint": _checkpoint_model, "neuroalign": _named_model}
    model, preprocessing, own_transform, attrs = loaders[source](name, weights, seed)
    overridden = preprocessing.with_overrides(image_size, mean, std)
    if overridden is preprocessing and own_transform is not None:
        transform = own_transform
    else:
        transform = overridden.transform()
    attrs = {"model_spec": str(spec), **attrs, **overridden.attrs(),
             **library_versions(*pretrained.LIBRARIES.get(source, ("torch",)))}
    loaded = LoadedModel(model.to(device).eval(), transform, overridden, attrs)
    if clips:
        from neuroalign.models.video import clip_ready

        return clip_ready(loaded)
    return loaded


def _named_model(name: str, weights, seed: int):
    """A registered architecture, or torchvision/<name>, timm/<name>: random weights."""
    from neuroalign.models import create_model

    model = create_model(name, seed=seed)
    return model, Preprocessing(224, 224), None, {
        "model": name, "weights": f"random initialisation, seed {seed}"}


def _checkpoint_model(path: str, weights, seed: int):
    from neuroalign.provenance import checkpoint_attrs
    from neuroalign.training import load_model as load_checkpoint_model

    if Path(path).is_dir():
        raise FileNotFoundError(f"not a checkpoint file but a folder: {path}")
    if not Path(path).is_file():
        raise FileNotFoundError(f"no such file: {path}")
    model, state = load_checkpoint_model(path)
    size = int(state["config"]["image_size"])
    return model, Preprocessing(size, size), None, checkpoint_attrs(path, state)


def _module_model(target: str, weights, seed: int):
    """``package.module:factory`` -> factory(), an nn.Module (weights: a file, or its own)."""
    module_name, sep, attr = target.partition(":")
    if not sep or not module_name or not attr:
        raise ValueError(f"module: specs are 'module:package.module:factory'; got 'module:{target}'.")
    try:
        factory = getattr(importlib.import_module(module_name), attr)
    except ImportError as err:
        raise ValueError(f"module:{target}: cannot import {module_name!r} ({err}).") from err
    except AttributeError:
        raise ValueError(f"module:{target}: {module_name!r} has no attribute {attr!r}.") from None
    model = build_seeded(factory, seed)
    if not isinstance(model, nn.Module):
        raise TypeError(f"module:{target} returned a {type(model).__name__}, not an nn.Module.")
    attrs = {"model": target, "weights": "as the factory builds them"}
    if weights is not None and str(weights) != "random":
        from neuroalign.models.pretrained import load_weights_file

        attrs.update(load_weights_file(model, weights, f"module:{target}"))
    return model, Preprocessing(224, 224), None, attrs
