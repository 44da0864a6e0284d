"""Typed settings of a pretraining run, read from a TOML recipe."""

from __future__ import annotations

import dataclasses
import sys
from dataclasses import dataclass, field
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from neuroalign.fixations import STARTS
from neuroalign.masking import DEFAULT_FILL, DEFAULT_RATIOS, FILLS, STRATEGIES
from neuroalign.views import FIXATIONS, LOSS_REGIONS, TARGETS

__all__ = ["DATASETS", "OPTIMIZERS", "RESUMABLE_CHANGES", "PretrainConfig", "load_config", "resume_conflicts"]

DATASETS = ("cifar10", "stl10", "folder")
OPTIMIZERS = ("adam", "adamw")


@dataclass
class PretrainConfig:
    """Everything that defines a pretraining run; saved in every checkpoint.

    Defaults are FocusMIM's periphery condition (DESIGN.md §4) except where a short CPU run
    needs other values (``steps``, ``batch_size``, ``image_size``).
    """

    # model
    model: str = "conv_mae"
    model_kwargs: dict = field(default_factory=dict)
    # data
    dataset: str = "cifar10"  # "cifar10" (JPEG archive), "stl10" (torchvision) or "folder"
    data_path: str = ""  # folder: the images; stl10: download root; cifar10: another archive
    data_split: str = ""  # "" = the dataset's training split (stl10 "unlabeled", cifar10 "train")
    download: bool = True  # stl10: download into data_path when it is not there
    image_size: int = 32
    max_images: int = 0  # 0 = all
    # what the network sees (neuroalign.views; defaults = FocusMIM's periphery condition)
    masking: str = "periphery"  # "periphery" | "centre" | "patches" | "fovea" | "none"
    mask_ratio: float = DEFAULT_RATIOS["periphery"]
    patch_size: int = 4
    fill: str = DEFAULT_FILL  # "mean" | "grey" | "noise" | "blur"
    fixation: str = "centre"  # "centre" | "uniform" | "saliency" | "saccades"
    n_fixations: int = 2  # fixations per scanpath when fixation = "saccades"
    saccade_amplitude: float = 0.25  # saccade length as a fraction of the image side
    saccade_start: str = "uniform"  # first fixation of a scanpath: "centre" | "uniform" | "saliency"
    target: str = "image"  # "image" | "next_fixation" (what the next fixation reveals)
    loss_region: str = "hidden"  # "hidden" | "all" | "foreground_weighted" | "foreground_only"
    foreground_model: str = "u2netp"  # rembg session of the foreground maps
    colour_jitter: bool = False  # ColorJitter(0.8, 0.8, 0.8, 0.2) with p = 0.8, RGB only
    # augmentation
    random_resized_crop: bool = True
    crop_scale: tuple[float, float] = (0.08, 1.0)
    crop_ratio: tuple[float, float] = (3 / 4, 4 / 3)
    horizontal_flip: bool = False
    # optimisation
    optimizer: str = "adam"  # "adam" or "adamw" (decoupled weight decay)
    lr: float = 1e-4
    weight_decay: float = 1e-8
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    batch_size: int = 128
    steps: int = 1000
    warmup_steps: int = 0
    cosine_schedule: bool = False
    min_lr: float = 0.0  # where the cosine schedule ends
    grad_clip: float = 0.0  # max global gradient norm; 0 = off
    seed: int = 0
    # logging and checkpoints
    log_every: int = 10
    decorrelation_every: int = 50
    checkpoint_every: int = 500
    # hardware
    device: str = "auto"
    amp: bool = False  # bf16 autocast; on by default only where it pays (GPU recipes)
    channels_last: bool = False
    compile: bool = False
    pin_memory: bool = True  # page-locked host batches (CUDA only)
    dist_backend: str = "auto"  # under torchrun: "auto" = nccl on CUDA, gloo on CPU

    def __post_init__(self):
        self.crop_scale = tuple(self.crop_scale)
        self.crop_ratio = tuple(self.crop_ratio)
        self.betas = tuple(self.betas)
        _one_of("masking", self.masking, STRATEGIES)
        _one_of("fill", self.fill, FILLS)
        _one_of("loss_region", self.loss_region, LOSS_REGIONS)
        _one_of("fixation", self.fixation, FIXATIONS)
        _one_of("saccade_start", self.saccade_start, STARTS)
        _one_of("target", self.target, TARGETS)
        if self.n_fixations < 1 or self.saccade_amplitude < 0:
            raise ValueError(
                "PretrainConfig: n_fixations must be ≥ 1 and saccade_amplitude ≥ 0; got "
                f"{self.n_fixations} and {self.saccade_amplitude}."
            )
        if self.target == "next_fixation" and (
            self.fixation != "saccades" or self.n_fixations < 2 or self.masking not in ("periphery", "fovea")
        ):
            raise ValueError(
                "PretrainConfig: target = 'next_fixation' needs fixation = 'saccades', "
                "n_fixations ≥ 2 and masking 'periphery' or 'fovea'; got fixation="
                f"{self.fixation!r}, n_fixations={self.n_fixations}, masking={self.masking!r}."
            )
        _one_of("dataset", self.dataset, DATASETS)
        _one_of("optimizer", self.optimizer, OPTIMIZERS)
        _one_of("dist_backend", self.dist_backend, ("auto", "gloo", "nccl", "mpi"))
        if self.dataset == "folder" and not self.data_path:
            raise ValueError("PretrainConfig: dataset = 'folder' needs data_path.")
        for name in ("steps", "batch_size", "image_size"):
            if getattr(self, name) <= 0:
                raise ValueError(f"PretrainConfig: {name} must be positive; got {getattr(self, name)}.")
        for name in ("lr", "weight_decay", "min_lr", "grad_clip", "warmup_steps", "max_images",
                     "log_every", "decorrelation_every", "checkpoint_every"):
            if getattr(self, name) < 0:
                raise ValueError(f"PretrainConfig: {name} must be >= 0; got {getattr(self, name)}.")
        if len(self.betas) != 2 or not all(0 <= b < 1 for b in self.betas):
            raise ValueError(f"PretrainConfig: betas must be two numbers in [0, 1); got {self.betas}.")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> PretrainConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            import difflib

            hints = {k: difflib.get_close_matches(k, known, n=1) for k in unknown}
            raise ValueError(
                "Unknown pretraining settings: "
                + ", ".join(f"{k!r}" + (f" (did you mean {h[0]!r}?)" if h else "") for k, h in hints.items())
            )
        return cls(**values)


def load_config(path: str | Path, **overrides) -> PretrainConfig:
    """Read a TOML recipe (flat keys, or grouped in tables that are merged) and apply overrides."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Recipe {path} does not exist.")
    with path.open("rb") as f:
        try:
            raw = tomllib.load(f)
        except tomllib.TOMLDecodeError as err:
            raise ValueError(f"Recipe {path} is not valid TOML: {err}") from err
    values: dict = {}
    for key, value in raw.items():
        if isinstance(value, dict) and key != "model_kwargs":
            values.update(value)  # [data], [masking], [optim] … tables are for readability
        else:
            values[key] = value
    values.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return PretrainConfig.from_dict(values)
    except ValueError as err:
        raise ValueError(f"Recipe {path}: {err}") from err


def _one_of(name: str, value, allowed) -> None:
    if value not in allowed:
        raise ValueError(f"The {name!r} setting must be one of {tuple(allowed)}; got {value!r}.")


#: Settings that may change when a run is resumed (they do not change what is computed, or
#: only its speed / float rounding).
RESUMABLE_CHANGES = frozenset({
    "device", "amp", "channels_last", "compile", "pin_memory", "dist_backend",
    "log_every", "decorrelation_every", "checkpoint_every",
})


def resume_conflicts(saved: dict, config: PretrainConfig) -> list[str]:
    """Settings that differ between a checkpoint's ``saved`` settings and ``config`` and forbid
    resuming, as ``"key: old → new"``."""
    defaults = PretrainConfig.__dataclass_fields__
    current = config.to_dict()
    changed = []
    for key, value in current.items():
        if key in RESUMABLE_CHANGES:
            continue
        if key == "steps" and not config.cosine_schedule:
            continue  # a constant schedule can be extended
        old = saved.get(key, _default(defaults[key]))
        if _normalise(old) != _normalise(value):
            changed.append(f"{key}: {old!r} → {value!r}")
    return changed


def _default(f: dataclasses.Field):
    if f.default is not dataclasses.MISSING:
        return f.default
    return f.default_factory() if f.default_factory is not dataclasses.MISSING else None


def _normalise(value):
    return list(value) if isinstance(value, tuple) else value
