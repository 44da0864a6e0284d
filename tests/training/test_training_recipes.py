"""The pretraining recipes in pretrain/: the reference's hyperparameters, the paper's numbers in
the README, and every CPU version training with a falling loss."""

import csv
import dataclasses
import math
import re
from pathlib import Path

import pytest
import torch

from neuroalign.models import create_model
from neuroalign.training import load_config, load_model, pretrain
from neuroalign.training.trainer import load_training_images, prepare_batch
from neuroalign.views import needs_foreground

RECIPES = Path(__file__).resolve().parents[2] / "pretrain"
OTHER_ENGINEERS = ("vit_mae", "latent_mim")  # their recipes are tested with their models
CONDITIONS = {  # name → (masking, fill, loss_region, crops, the paper's accuracy or None)
    "periphery": ("periphery", "mean", "hidden", True, 68.0),
    "periphery_nocrop": ("periphery", "mean", "hidden", False, 56.6),
    "periphery_blur": ("periphery", "blur", "hidden", True, 48.9),
    "periphery_fg_weighted": ("periphery", "mean", "foreground_weighted", True, None),
    "periphery_fg_only": ("periphery", "mean", "foreground_only", True, None),
    "patches": ("patches", "mean", "hidden", True, 70.4),
    "patches_nocrop": ("patches", "mean", "hidden", False, None),
    "patches_blur": ("patches", "blur", "hidden", True, 56.5),
    "fovea": ("fovea", None, "hidden", True, 50.0),
    "autoencoder": ("none", None, "all", True, 47.0),
}
# what defines a condition: equal in a recipe and its CPU version
CONDITION_FIELDS = ("model", "masking", "mask_ratio", "fill", "fixation", "target", "loss_region",
                    "random_resized_crop", "crop_scale", "crop_ratio", "horizontal_flip",
                    "colour_jitter", "optimizer", "weight_decay", "seed")


def test_every_condition_has_both_recipes():
    ours = {p.name for p in RECIPES.glob("*.toml") if not any(o in p.name for o in OTHER_ENGINEERS)}
    expected = {f"stl10_{c}.toml" for c in CONDITIONS} | {f"cifar10_{c}_cpu.toml" for c in CONDITIONS}
    assert ours == expected


@pytest.mark.parametrize("name", sorted(CONDITIONS))
def test_full_recipe_has_the_reference_settings(name):
    cfg = load_config(RECIPES / f"stl10_{name}.toml")
    masking, fill, region, crops, _ = CONDITIONS[name]
    assert (cfg.dataset, cfg.data_split, cfg.image_size, cfg.model) == ("stl10", "unlabeled", 96, "conv_mae")
    assert (cfg.optimizer, cfg.weight_decay, cfg.batch_size) == ("adam", 1e-8, 512)
    assert cfg.lr == (1e-4 if masking == "periphery" else 5e-4)
    assert cfg.steps == 500 * (100_000 // 512)  # 500 epochs
    assert (cfg.masking, cfg.loss_region, cfg.random_resized_crop) == (masking, region, crops)
    if fill is not None:
        assert cfg.fill == fill
    if masking == "periphery":
        assert cfg.mask_ratio == 0.8
    if masking == "patches":
        assert (cfg.mask_ratio, 96 // cfg.patch_size) == (0.6, 12)  # 12×12 grid of 8×8 patches
    assert not cfg.warmup_steps and not cfg.cosine_schedule and not cfg.grad_clip
    assert cfg.seed == 0


@pytest.mark.parametrize("name", sorted(CONDITIONS))
def test_cpu_version_is_the_same_condition(name):
    full = load_config(RECIPES / f"stl10_{name}.toml")
    cpu = load_config(RECIPES / f"cifar10_{name}_cpu.toml")
    assert (cpu.dataset, cpu.image_size, cpu.device) == ("cifar10", 32, "auto")
    for field in CONDITION_FIELDS:
        assert getattr(cpu, field) == getattr(full, field), field
    if full.masking == "patches":  # the same grid fraction: 8 px of 96 = 1/12; 4 px of 32 = 1/8
        assert cpu.patch_size == 4


def test_readme_lists_every_recipe_with_the_paper_number():
    text = (RECIPES / "README.md").read_text()
    for name, (*_, accuracy) in CONDITIONS.items():
        row = next((line for line in text.splitlines() if f"`stl10_{name}.toml`" in line), None)
        assert row is not None, name
        assert f"`cifar10_{name}_cpu.toml`" in row
        numbers = [float(x) for x in re.findall(r"(\d+\.\d) %", row)]
        assert numbers == ([accuracy] if accuracy is not None else []), (name, row)


def synthetic_foreground(images):
    """A soft centred blob as the 4th channel (stands in for rembg maps, which have their own tests)."""
    n, _, h, w = images.shape
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, h), torch.linspace(-1, 1, w), indexing="ij")
    blob = torch.exp(-(xx**2 + yy**2) / 0.3)
    return torch.cat([images, (blob * 255).to(torch.uint8).expand(n, 1, h, w)], dim=1)


@pytest.fixture(scope="module")
def cifar_images(shared_data):  # the tests using it get the shared_data marker (conftest)
    cfg = load_config(RECIPES / "cifar10_periphery_cpu.toml", max_images=512)
    return load_training_images(cfg, progress=False)


def fixed_batch_loss(model, images, cfg):
    """The model's training loss on one fixed batch of 128 images (drawn with another seed)."""
    batch = prepare_batch(images, dataclasses.replace(cfg, batch_size=128, seed=cfg.seed + 99), 0, "cpu")
    with torch.no_grad():
        return model.train().training_loss(batch)[0].item()


@pytest.mark.shared_data("cifar10_jpeg.tar.gz")
@pytest.mark.parametrize("name", sorted(CONDITIONS))
def test_cpu_version_trains_with_falling_loss(name, cifar_images, tmp_path):
    # the recipe's condition and optimiser, on a smaller model and a larger step, 48 steps
    cfg = load_config(RECIPES / f"cifar10_{name}_cpu.toml", model="conv_mae_tiny", steps=48,
                       batch_size=32, log_every=12, decorrelation_every=12, checkpoint_every=0,
                       lr=5e-3, device="cpu")
    images = synthetic_foreground(cifar_images) if needs_foreground(cfg) else cifar_images
    path = pretrain(cfg, tmp_path, images=images, progress=False)
    torch.manual_seed(cfg.seed)  # the trainer's initialisation
    initial = create_model(cfg.model)
    trained, _ = load_model(path)
    before, after = fixed_batch_loss(initial, images, cfg), fixed_batch_loss(trained, images, cfg)
    assert after < 0.92 * before, (before, after)
    with open(tmp_path / "log.csv") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["step"]) for r in rows] == [12, 24, 36, 48]
    assert all(math.isfinite(float(r["loss"])) and float(r["decorrelation"]) >= 0 for r in rows)
