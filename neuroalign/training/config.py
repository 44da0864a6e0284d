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

from neuroalign.masking import FILLS, STRATEGIES

LOSS_REGIONS = ("hidden", "all")
DATASETS = ("cifar10", "folder")


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
    dataset: str = "cifar10"  # "cifar10" (CIFAR-10 JPEG archive, train split) or "folder"
    data_path: str = ""  # the image folder when dataset = "folder"
    image_size: int = 32
    max_images: int = 0  # 0 = all
    # what the network sees
    masking: str = "periphery"
    mask_ratio: float = 0.8
    patch_size: int = 4
    fill: str = "mean"
    loss_region: str = "hidden"
    # augmentation
    random_resized_crop: bool = True
    crop_scale: tuple[float, float] = (0.08, 1.0)
    crop_ratio: tuple[float, float] = (3 / 4, 4 / 3)
    horizontal_flip: bool = False
    # optimisation
    optimizer: str = "adam"
    lr: float = 1e-4
    weight_decay: float = 1e-8
    batch_size: int = 128
    steps: int = 1000
    warmup_steps: int = 0
    cosine_schedule: bool = False
    grad_clip: float = 0.0  # 0 = off
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

    def __post_init__(self):
        self.crop_scale = tuple(self.crop_scale)
        self.crop_ratio = tuple(self.crop_ratio)
        _one_of("masking", self.masking, STRATEGIES)
        _one_of("fill", self.fill, FILLS)
        _one_of("loss_region", self.loss_region, LOSS_REGIONS)
        _one_of("dataset", self.dataset, DATASETS)
        _one_of("optimizer", self.optimizer, ("adam", "adamw"))
        if self.dataset == "folder" and not self.data_path:
            raise ValueError("PretrainConfig: dataset = 'folder' needs data_path.")
        for name in ("steps", "batch_size", "image_size"):
            if getattr(self, name) <= 0:
                raise ValueError(f"PretrainConfig: {name} must be positive; got {getattr(self, name)}.")

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
