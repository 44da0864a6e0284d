"""Pretrained models of other libraries — torchvision, timm, Hugging Face transformers,
OpenCLIP — with their own preprocessing, weights from the libraries' caches or local files.

Each loader returns (model, Preprocessing, the library's own transform or None, attrs); see
`neuroalign.models.specs` for the spec syntax and the rules on weights.
"""

from __future__ import annotations

import difflib
import os
from pathlib import Path

import torch
from torch import nn

from neuroalign.models import video
from neuroalign.models.specs import (
    WEIGHT_FILE_SUFFIXES,
    Preprocessing,
    WeightsNotFoundError,
    build_seeded,
)

__all__ = ["LIBRARIES", "hf_model", "load_weights_file", "open_clip_model", "timm_model", "torchvision_model"]

#: The libraries whose versions an activation file records, per source.
LIBRARIES = {
    "torchvision": ("torch", "torchvision"),
    "timm": ("torch", "timm"),
    "hf": ("torch", "transformers"),
    "open_clip": ("torch", "open_clip_torch"),
}
_PIL_RESAMPLE = {0: "nearest", 2: "bilinear", 3: "bicubic"}


def _is_weights_file(weights) -> bool:
    return weights is not None and (
        Path(str(weights)).suffix.lower() in WEIGHT_FILE_SUFFIXES or Path(str(weights)).is_file())


def load_weights_file(model: nn.Module, path, spec: str) -> dict:
    """Loads a state dict file (torch or safetensors; a ``state_dict``/``model`` entry is
    unwrapped) into model, strictly; returns the attrs naming the file and its SHA-256."""
    path = Path(path)
    if not path.is_file():
        raise WeightsNotFoundError(f"{spec}: weights file {path} does not exist.")
    if path.suffix.lower() == ".safetensors":
        try:
            from safetensors.torch import load_file
        except ImportError:
            raise ValueError(f"{spec}: reading {path.name} needs safetensors: pip install safetensors.") from None

        state: dict = load_file(str(path))
    else:
        state = torch.load(path, map_location="cpu", weights_only=True)
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        first = str(err).strip().splitlines()
        raise ValueError(f"{spec}: weights file {path} does not fit the model: "
                         f"{' '.join(first[1:3]) or first[0]}") from None
    return weights_file_attrs(path)


def weights_file_attrs(path) -> dict:
    """The attrs naming a weights file and its SHA-256."""
    from neuroalign.data.files import sha256sum

    path = Path(path)
    return {"weights": f"file {path.name}", "weights_file": str(path), "weights_file_sha256": sha256sum(path)}


# torchvision ---------------------------------------------------------------------------------

def torchvision_model(name: str, weights, seed: int):
    import torchvision

    if "+" in name:  # FLOW+CNN: RAFT's flow into an image CNN (video.FlowCNN)
        return _flow_cnn_model(name, weights, seed)

    try:
        enum = torchvision.models.get_model_weights(name)
    except ValueError:
        close = difflib.get_close_matches(name, torchvision.models.list_models(), n=5)
        raise ValueError(f"Unknown torchvision model {name!r}; close names: {close}.") from None
    spec = f"torchvision:{name}"
    default = enum["DEFAULT"] if "DEFAULT" in enum.__members__ else next(iter(enum))
    chosen = default if weights is None or _is_weights_file(weights) or weights == "random" else None
    if chosen is None:
        if str(weights) not in enum.__members__:
            raise ValueError(f"{spec} has no weights {weights!r}; it has {list(enum.__members__)} "
                             "(or give a weights file, or 'random').")
        chosen = enum[str(weights)]
    if name in video.FLOW_MODELS:  # RAFT's transform takes frame pairs
        preprocessing, transform = video.flow_preprocessing(name), None
    else:
        preprocessing, transform = _torchvision_preprocessing(chosen)
    if weights == "random" or _is_weights_file(weights):
        model = build_seeded(lambda: torchvision.models.get_model(name, weights=None), seed)
        attrs = {"model": spec, "weights": f"random initialisation, seed {seed}"}
        if weights != "random":
            attrs.update(load_weights_file(model, weights, spec))
        return (*video.adapt_torchvision(name, model, preprocessing, transform), attrs)
    _fetch_torch_hub(chosen.url, f"{spec} weights {chosen.name}",
                     f"torchvision.models.get_model('{name}', weights='{chosen.name}')")
    model = torchvision.models.get_model(name, weights=chosen)
    return (*video.adapt_torchvision(name, model, preprocessing, transform), {
        "model": spec, "weights": f"torchvision {type(chosen).__name__}.{chosen.name}", "weights_url": chosen.url})


def _flow_cnn_model(name: str, weights, seed: int):
    """``raft_small+resnet18``: the flow model with ``weights``, the CNN (its first conv now
    taking the 2 flow channels) with random weights seeded by ``seed``."""
    flow_name, _, cnn_name = name.partition("+")
    if flow_name not in video.FLOW_MODELS or not cnn_name:
        raise ValueError(f"torchvision:{name}: a flow CNN is FLOW+CNN with FLOW one of "
                         f"{list(video.FLOW_MODELS)} (e.g. raft_small+resnet18).")
    flow, preprocessing, transform, attrs = torchvision_model(flow_name, weights, seed)
    import torchvision

    cnn = build_seeded(lambda: video.FlowCNN(flow, torchvision.models.get_model(cnn_name, weights=None)), seed)
    attrs = {**attrs, "model": f"torchvision:{name}",
             "weights": f"{attrs['weights']} (flow); random initialisation, seed {seed} (CNN)"}
    return cnn, preprocessing, transform, attrs


def _torchvision_preprocessing(chosen):
    transform = chosen.transforms()
    resize = transform.resize_size
    preprocessing = Preprocessing(
        size=int(transform.crop_size[0]),
        resize=int(resize[0]) if len(resize) == 1 else (int(resize[0]), int(resize[1])),
        interpolation=transform.interpolation.value,
        mean=tuple(transform.mean), std=tuple(transform.std),
        source=f"torchvision {type(chosen).__name__}.{chosen.name}.transforms()")
    return preprocessing, (transform, repr(transform).replace("\n", " "))


def _fetch_torch_hub(url: str, what: str, fetch: str) -> None:
    """Downloads a torch hub checkpoint into TORCH_HOME unless it is there."""
    folder = Path(torch.hub.get_dir()) / "checkpoints"
    file = folder / os.path.basename(url)
    if file.is_file():
        return
    try:
        torch.hub.load_state_dict_from_url(url, model_dir=str(folder), check_hash=True, progress=True)
    except (OSError, RuntimeError) as err:  # no network (URLError), a bad download
        raise WeightsNotFoundError(
            f"{what}: {file} is missing and cannot be downloaded ({_reason(err)}); on a networked "
            f"machine run python -c \"import torchvision; {fetch}\" and copy {file.name} into "
            f"{folder} (or set TORCH_HOME), or pass a weights file.") from None


def _reason(err: BaseException) -> str:
    return " ".join(str(getattr(err, "reason", err)).split())[:120]


# timm ------------------------------------------------------------------------------------------

def timm_model(name: str, weights, seed: int):
    try:
        import timm
        import timm.data
    except ImportError:
        raise ValueError(f"timm:{name} needs timm: pip install 'neuroalign[timm]'.") from None
    spec = f"timm:{name}"
    arch = name.split(".", 1)[0]
    if arch not in timm.list_models():
        close = difflib.get_close_matches(arch, timm.list_models(), n=5)
        raise ValueError(f"Unknown timm model {arch!r}; close names: {close}.")
    if weights is not None:
        model = build_seeded(lambda: timm.create_model(name, pretrained=False), seed)
        attrs = {"model": spec, "weights": f"random initialisation, seed {seed}"}
        if weights != "random":
            attrs.update(load_weights_file(model, weights, spec))
    else:
        model = _from_hub(lambda: timm.create_model(name, pretrained=True), spec,
                          _timm_hub_id(timm, name), f"import timm; timm.create_model('{name}', pretrained=True)")
        cfg = model.pretrained_cfg
        attrs = {"model": spec, "weights": f"timm pretrained {cfg.get('hf_hub_id') or cfg.get('url') or name}"}
    config = timm.data.resolve_data_config({}, model=model)
    transform = timm.data.create_transform(**config)
    size = int(config["input_size"][-1])
    crop_pct = float(config.get("crop_pct") or 1.0)
    scale = int(size / crop_pct)  # the floor, as timm's eval transform computes it
    preprocessing = Preprocessing(
        size=size, resize=(scale, scale) if config.get("crop_mode") == "squash" else scale,
        interpolation=str(config.get("interpolation", "bilinear")),
        mean=tuple(config["mean"]), std=tuple(config["std"]),
        source="timm resolve_data_config + create_transform")
    return model, preprocessing, (transform, repr(transform).replace("\n", " ")), attrs


def _timm_hub_id(timm, name: str) -> str:
    try:
        cfg = timm.models.get_pretrained_cfg(name)
    except Exception:  # an unknown tag: timm names it when the model is built
        return name
    return getattr(cfg, "hf_hub_id", None) or getattr(cfg, "url", None) or name


def _hub_offline() -> bool:
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


def _from_hub(build, spec: str, hub_id: str, fetch: str):
    """build() with the Hugging Face hub: the cache first, the network only if it is allowed."""
    from huggingface_hub import constants

    try:
        return build()
    except (OSError, RuntimeError, ValueError) as err:
        if not isinstance(err, OSError) and not any(w in str(err).lower() for w in ("offline", "download")):
            raise
        where = constants.HF_HUB_CACHE
        why = "HF_HUB_OFFLINE is set" if _hub_offline() else _reason(err)
        raise WeightsNotFoundError(
            f"{spec}: weights {hub_id} are not in the Hugging Face cache {where} and cannot be "
            f"downloaded ({why}); on a networked machine run python -c \"{fetch}\" and copy its "
            "cache folder here (or set HF_HOME), or pass a weights file.") from None


# Hugging Face transformers -------------------------------------------------------------------

def hf_model(name: str, weights, seed: int):
    try:
        import transformers
    except ImportError:
        raise ValueError(f"hf:{name} needs transformers: pip install 'neuroalign[hf]'.") from None
    spec = f"hf:{name}"
    local = Path(name).is_dir()
    if local and not (Path(name) / "config.json").is_file():
        raise FileNotFoundError(f"{spec}: the folder {name} has no config.json (save_pretrained writes one).")
    fetch = f"from transformers import AutoModel; AutoModel.from_pretrained('{name}')"
    config = _from_hub(lambda: transformers.AutoConfig.from_pretrained(name), spec, name, fetch)
    overrides = {"mask_ratio": 0.0} if hasattr(config, "mask_ratio") else {}  # MAE: every patch
    if weights is not None:
        for key, value in overrides.items():
            setattr(config, key, value)
        model = build_seeded(lambda: transformers.AutoModel.from_config(config), seed)
        attrs = {"model": spec, "weights": f"random initialisation, seed {seed}"}
        if weights != "random":
            attrs.update(load_weights_file(model, weights, spec))
    else:
        model = _from_hub(lambda: transformers.AutoModel.from_pretrained(name, **overrides), spec, name, fetch)
        revision = getattr(model.config, "_commit_hash", None)
        where = f"folder {Path(name).resolve()}" if local else name
        attrs = {"model": spec, "weights": f"Hugging Face {where}" + (f" revision {revision}" if revision else "")}
    model = _vision_tower(model, spec)
    if hasattr(model.config, "mask_ratio"):
        _keep_patch_order(model)
    processor = _from_hub(lambda: transformers.AutoImageProcessor.from_pretrained(name), spec, name,
                          f"from transformers import AutoImageProcessor; AutoImageProcessor.from_pretrained('{name}')")
    preprocessing = _hf_preprocessing(processor, spec)
    transform = _HFTransform(processor)
    preprocessing, pair = video.adapt_hf(model, preprocessing, (transform, repr(transform)))
    return model, preprocessing, pair, attrs


def _vision_tower(model: nn.Module, spec: str) -> nn.Module:
    """The image encoder of a multimodal model (CLIP's vision_model), else the model."""
    if hasattr(model, "vision_model") and hasattr(model, "text_model"):
        tower = model.vision_model
        assert isinstance(tower, nn.Module)
        return tower
    if not hasattr(model, "main_input_name") or model.main_input_name != "pixel_values":
        raise ValueError(f"{spec} is not a vision model (its input is {getattr(model, 'main_input_name', '?')!r}, "
                         "not pixel_values).")
    return model


def _keep_patch_order(model: nn.Module) -> None:
    """ViTMAE shuffles patch tokens by random noise even at mask ratio 0: give it the noise
    that keeps them in order (``noise`` ascending over patches), on every forward."""

    def in_order(module, args, kwargs):
        pixels = kwargs.get("pixel_values", args[0] if args else None)
        if kwargs.get("noise") is None and pixels is not None:
            n_patches = module.embeddings.patch_embeddings.num_patches
            kwargs["noise"] = torch.arange(n_patches, device=pixels.device, dtype=torch.float32
                                           ).expand(pixels.shape[0], n_patches)
        return args, kwargs

    model.register_forward_pre_hook(in_order, with_kwargs=True)


def _hf_preprocessing(processor, spec: str) -> Preprocessing:
    size_dict = dict(processor.size) if getattr(processor, "do_resize", True) else {}
    shortest, height = size_dict.get("shortest_edge"), size_dict.get("height")
    crop = dict(processor.crop_size) if getattr(processor, "do_center_crop", False) else None
    crop_pct = getattr(processor, "crop_pct", None)
    if crop is not None and crop.get("height"):
        size = int(crop["height"])
        resize: int | tuple[int, int] = int(shortest) if shortest else (int(height or size), int(size_dict["width"]))
    elif shortest and crop_pct and shortest < 384:  # ConvNeXt: resize to shortest / crop_pct, crop
        size, resize = int(shortest), int(shortest / crop_pct)
    elif shortest:
        size, resize = int(shortest), (int(shortest), int(shortest))
    elif height:
        size, resize = int(height), (int(height), int(size_dict["width"]))
    else:
        raise ValueError(f"{spec}: its image processor's size {size_dict} is not one neuroalign "
                         "can describe; give --image-size, --mean and --std.")
    normalize = getattr(processor, "do_normalize", False)
    resample = getattr(processor, "resample", 2)
    return Preprocessing(
        size=size, resize=resize, interpolation=_PIL_RESAMPLE.get(int(resample), "bilinear"),
        mean=tuple(processor.image_mean) if normalize else None,
        std=tuple(processor.image_std) if normalize else None,
        source=f"Hugging Face {type(processor).__name__}")


class _HFTransform:
    """A Hugging Face image processor as a one-image transform: PIL -> (3, H, W) tensor."""

    def __init__(self, processor):
        self.processor = processor

    def __call__(self, image) -> torch.Tensor:
        return self.processor(images=image, return_tensors="pt")["pixel_values"][0]

    def __repr__(self) -> str:
        p = self.processor
        keys = ("size", "crop_size", "resample", "image_mean", "image_std", "crop_pct")
        return f"{type(p).__name__}(" + ", ".join(
            f"{k}={dict(v) if hasattr(v, 'keys') else v}" for k in keys if (v := getattr(p, k, None)) is not None) + ")"


# OpenCLIP ------------------------------------------------------------------------------------

def open_clip_model(name: str, weights, seed: int):
    try:
        import open_clip
    except ImportError:
        raise ValueError(f"open_clip:{name} needs open_clip: pip install 'neuroalign[open_clip]'.") from None
    spec = f"open_clip:{name}"
    arch, _, tag = name.partition("/")
    if arch not in open_clip.list_models():
        close = difflib.get_close_matches(arch, open_clip.list_models(), n=5)
        raise ValueError(f"Unknown OpenCLIP architecture {arch!r}; close names: {close}.")
    if weights is not None:
        pretrained = None if weights == "random" else str(weights)
        if pretrained is not None and not Path(pretrained).is_file():
            raise WeightsNotFoundError(f"{spec}: weights file {pretrained} does not exist.")
        model, _, preprocess = build_seeded(
            lambda: open_clip.create_model_and_transforms(arch, pretrained=pretrained), seed)
        attrs = {"model": spec, "weights": f"random initialisation, seed {seed}"}
        if pretrained is not None:
            attrs.update(weights_file_attrs(pretrained))
    else:
        if not tag:
            tags = [t for a, t in open_clip.list_pretrained() if a == arch]
            raise ValueError(f"{spec}: name the pretrained weights as ARCH/TAG; {arch} has {tags}.")
        model, _, preprocess = _from_hub(
            lambda: open_clip.create_model_and_transforms(arch, pretrained=tag), spec, f"{arch}/{tag}",
            f"import open_clip; open_clip.create_model_and_transforms('{arch}', pretrained='{tag}')")
        attrs = {"model": spec, "weights": f"OpenCLIP {arch} {tag}"}
    cfg = model.visual.preprocess_cfg
    size = int(cfg["size"][0] if isinstance(cfg["size"], list | tuple) else cfg["size"])
    preprocessing = Preprocessing(
        size=size, resize=(size, size) if cfg.get("resize_mode") == "squash" else size,
        interpolation=str(cfg.get("interpolation", "bicubic")), mean=tuple(cfg["mean"]),
        std=tuple(cfg["std"]), source="OpenCLIP preprocess")
    return model.visual, preprocessing, (preprocess, repr(preprocess).replace("\n", " ")), attrs
