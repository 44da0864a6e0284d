import csv
import math
from pathlib import Path

import pytest
import torch

from neuroalign.masking import fovea_radius, patch_mask, periphery_mask, uniform_fixations
from neuroalign.models import create_model, list_models
from neuroalign.models.vit_mae import (
    patchify,
    sincos_position_embedding,
    unpatchify,
    visible_token_order,
)
from neuroalign.objectives import MIMBatch
from neuroalign.training import PretrainConfig, load_config, load_model, pretrain


def make_batch(mask, n=None, size=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    n = mask.shape[0] if n is None else n
    images = torch.rand(n, 3, size, size, generator=g)
    inputs = torch.where(mask, images.mean(dim=(2, 3), keepdim=True), images)
    return MIMBatch(images=images, inputs=inputs, mask=mask, target=images.clone(),
                    loss_weight=mask.float())


def kept_ids(model, mask):
    ids_shuffle, k = visible_token_order(mask, model.patch_size)
    return [set(row.tolist()) for row in ids_shuffle[:, :k]]


def tokens_inside_disk(fixation, radius, size=32, p=4):
    """Plain loop: tokens whose centre pixel (i·p + p//2, j·p + p//2) lies in the disk."""
    grid = size // p
    fy, fx = fixation
    return {
        i * grid + j
        for i in range(grid)
        for j in range(grid)
        if (i * p + p // 2 - fy) ** 2 + (j * p + p // 2 - fx) ** 2 <= radius**2
    }


def test_registered_and_shapes():
    assert {"vit_mae_tiny", "vit_mae_small"} <= set(list_models("vit_mae*"))
    small = create_model("vit_mae_small")
    assert sum(p.numel() for p in small.parameters()) == 3_106_800
    model = create_model("vit_mae_tiny")
    x = torch.rand(2, 3, 32, 32)
    assert model(x).shape == (2, 64, 32)
    assert model.reconstruct(x, periphery_mask(2, 32, 32)).shape == x.shape
    stl = create_model("vit_mae_tiny", image_size=96, patch_size=8)
    assert stl(torch.rand(1, 3, 96, 96)).shape == (1, 144, 32)


def test_patchify_layout_and_round_trip():
    x = torch.rand(2, 3, 8, 12)
    patches = patchify(x, 4)
    assert patches.shape == (2, 6, 48)
    # patch 1 is row 0, column 1; pixels in (row, col, channel) order
    assert torch.equal(patches[1, 1], x[1, :, 0:4, 4:8].permute(1, 2, 0).flatten())
    assert torch.equal(patches[0, 5], x[0, :, 4:8, 8:12].permute(1, 2, 0).flatten())
    assert torch.equal(unpatchify(patches, 4, 8, 12), x)


def test_sincos_position_embedding_formula():
    pe = sincos_position_embedding(3, 5, 8)  # D/4 = 2 frequencies: 1 and 1/100
    row, col = 2, 3
    expected = [math.sin(row), math.sin(row / 100), math.cos(row), math.cos(row / 100),
                math.sin(col), math.sin(col / 100), math.cos(col), math.cos(col / 100)]
    assert torch.allclose(pe[row * 5 + col], torch.tensor(expected), atol=1e-6)
    with pytest.raises(ValueError, match="divisible by 4"):
        sincos_position_embedding(2, 2, 6)


def test_periphery_keeps_the_tokens_inside_the_disk():
    model = create_model("vit_mae_tiny")
    mask = periphery_mask(3, 32, 32, ratio=0.8)  # radius 8 at the centre (16, 16)
    expected = tokens_inside_disk((16, 16), fovea_radius(32, 32, 0.8))
    assert len(expected) == 12
    assert kept_ids(model, mask) == [expected] * 3


def test_different_fixations_keep_the_smallest_count_of_visible_tokens():
    model = create_model("vit_mae_tiny")
    fixations = uniform_fixations(6, 32, 32, torch.Generator().manual_seed(4))
    radius = fovea_radius(32, 32, 0.7)
    mask = periphery_mask(6, 32, 32, ratio=0.7, fixations=fixations)
    inside = [tokens_inside_disk(tuple(f.tolist()), radius) for f in fixations]
    kept = kept_ids(model, mask)
    k = min(len(s) for s in inside)
    assert len({len(s) for s in inside}) > 1  # the counts differ: the case being tested
    for keep, disk in zip(kept, inside, strict=True):
        assert len(keep) == k and keep <= disk  # only tokens with a visible centre


def test_patch_mask_on_the_model_grid_is_the_token_mask():
    model = create_model("vit_mae_tiny")
    mask = patch_mask(4, 32, 32, ratio=0.75, patch_size=4, generator=torch.Generator().manual_seed(1))
    visible = (~mask[:, 0, ::4, ::4]).flatten(1)  # (N, 64) one pixel per patch
    assert kept_ids(model, mask) == [set(torch.nonzero(v).flatten().tolist()) for v in visible]


def test_only_visible_tokens_enter_the_encoder():
    model = create_model("vit_mae_tiny").eval()
    mask = periphery_mask(2, 32, 32, ratio=0.8)
    batch = make_batch(mask)
    seen = []
    handle = model.encoder.blocks[0].register_forward_hook(lambda m, i, o: seen.append(o.shape))
    with torch.no_grad():
        loss, latent = model.training_loss(batch)
    handle.remove()
    assert seen == [torch.Size([2, 12, 32])]
    assert latent.shape == (2, 32)
    # pixels of tokens that are not kept cannot change the latent
    ids_shuffle, k = visible_token_order(mask, 4)
    token_hidden = torch.ones(2, 64, dtype=torch.bool)
    token_hidden.scatter_(1, ids_shuffle[:, :k], False)
    pixel_hidden = token_hidden.view(2, 1, 8, 8).repeat_interleave(4, 2).repeat_interleave(4, 3)
    changed = torch.where(pixel_hidden, torch.rand(2, 3, 32, 32), batch.inputs)
    with torch.no_grad():
        _, latent2 = model.training_loss(MIMBatch(batch.images, changed, mask, batch.target, batch.loss_weight))
        _, latent3 = model.training_loss(MIMBatch(batch.images, torch.rand(2, 3, 32, 32), mask,
                                                  batch.target, batch.loss_weight))
    assert torch.equal(latent, latent2)
    assert not torch.allclose(latent, latent3)


def test_loss_is_the_weighted_pixel_mse_of_the_reconstruction():
    model = create_model("vit_mae_tiny").eval()
    mask = periphery_mask(2, 32, 32, ratio=0.8)
    batch = make_batch(mask)
    weight = torch.rand(2, 1, 32, 32) * mask  # soft weights on hidden pixels only
    batch.loss_weight = weight
    with torch.no_grad():
        loss, _ = model.training_loss(batch)
        rec = model.reconstruct(batch.inputs, mask)
        reference = (weight * (rec - batch.target) ** 2).sum() / (3 * weight.sum())
        assert loss.item() == pytest.approx(reference.item(), rel=1e-5)
        # the target where the weight is 0 does not matter; where it is > 0 it does
        batch.target = torch.where(weight == 0, torch.rand(2, 3, 32, 32), batch.target)
        assert model.training_loss(batch)[0].item() == pytest.approx(loss.item(), rel=1e-6)
        batch.target = torch.where(weight > 0, torch.rand(2, 3, 32, 32), batch.target)
        assert model.training_loss(batch)[0].item() != pytest.approx(loss.item(), rel=1e-3)


def test_norm_pix_loss_ignores_each_patch_brightness_and_contrast():
    model = create_model("vit_mae_tiny", norm_pix_loss=True).eval()
    mask = periphery_mask(2, 32, 32, ratio=0.8)
    batch = make_batch(mask)
    with torch.no_grad():
        loss = model.training_loss(batch)[0].item()
        batch.target[:, :, 0:4, 4:8] = 0.3 + 2.0 * batch.target[:, :, 0:4, 4:8]  # one hidden patch
        assert model.training_loss(batch)[0].item() == pytest.approx(loss, rel=1e-4)


def test_intermediates_are_the_encoder_blocks():
    model = create_model("vit_mae_tiny", depth=3).eval()
    x = torch.rand(2, 3, 32, 32)
    names = model.default_layers()
    assert names == ["encoder.blocks.0", "encoder.blocks.1", "encoder.blocks.2"]
    modules = dict(model.named_modules())
    hooked = {}
    handles = [modules[n].register_forward_hook(lambda m, i, o, n=n: hooked.__setitem__(n, o)) for n in names]
    with torch.no_grad():
        out = model(x)
        feats = model.forward_intermediates(x)
    for h in handles:
        h.remove()
    assert [f.shape for f in feats] == [torch.Size([2, 64, 32])] * 3
    for name, feat in zip(names, feats, strict=True):
        assert torch.equal(hooked[name], feat)
    assert torch.allclose(model.encoder.norm(feats[-1]), out)


def test_wrong_sizes_are_named():
    model = create_model("vit_mae_tiny")
    with pytest.raises(ValueError, match="image_size"):
        model(torch.rand(1, 3, 16, 16))
    with pytest.raises(ValueError, match="multiple of patch_size"):
        create_model("vit_mae_tiny", image_size=30)


def test_a_few_steps_on_a_fixed_batch_reduce_the_loss():
    torch.manual_seed(0)
    model = create_model("vit_mae_tiny")
    x = torch.nn.functional.interpolate(torch.rand(8, 3, 4, 4), size=32, mode="bilinear")
    mask = periphery_mask(8, 32, 32, ratio=0.8)
    batch = MIMBatch(x, torch.where(mask, 0.5, x), mask, x, mask.float())
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(15):
        loss, _ = model.training_loss(batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.2 * losses[0]  # measured: 1.26 → 0.07


def test_trains_through_pretrain(tmp_path):
    images = (torch.rand(32, 3, 32, 32) * 255).to(torch.uint8)
    cfg = PretrainConfig(model="vit_mae_tiny", steps=3, batch_size=8, lr=1e-3, log_every=1,
                         decorrelation_every=1, checkpoint_every=10, device="cpu")
    path = pretrain(cfg, tmp_path, images=images, progress=False)
    with open(tmp_path / "log.csv") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["step"]) for r in rows] == [1, 2, 3]
    assert all(math.isfinite(float(r["loss"])) and math.isfinite(float(r["decorrelation"])) for r in rows)
    model, state = load_model(path)
    assert state["step"] == 3 and type(model).__name__ == "ViTMAE"
    x = torch.rand(2, 3, 32, 32)
    assert model(x).shape == (2, 64, 32)


def test_incomplete_masking_encodes_every_token():
    model = create_model("vit_mae_tiny", visible_only=False).eval()
    mask = periphery_mask(2, 32, 32, ratio=0.8)
    batch = make_batch(mask)
    seen = []
    handle = model.encoder.blocks[0].register_forward_hook(lambda m, i, o: seen.append(o.shape))
    with torch.no_grad():
        loss, latent = model.training_loss(batch)
        batch.inputs = torch.where(mask, torch.rand(2, 3, 32, 32), batch.inputs)  # change hidden pixels
        loss2, latent2 = model.training_loss(batch)
    handle.remove()
    assert seen == [torch.Size([2, 64, 32])] * 2
    assert not torch.allclose(latent, latent2, atol=1e-4)


@pytest.mark.parametrize("recipe, size, visible", [("cifar10_vit_mae_cpu.toml", 32, 12), ("stl10_vit_mae.toml", 96, 32)])
def test_recipes_build_the_model(recipe, size, visible):
    cfg = load_config(Path(__file__).resolve().parents[2] / "pretrain" / recipe)
    model = create_model(cfg.model, **cfg.model_kwargs)
    assert type(model).__name__ == "ViTMAE" and model.image_size == cfg.image_size == size
    mask = periphery_mask(1, size, size, ratio=cfg.mask_ratio)
    assert visible_token_order(mask, model.patch_size)[1] == visible  # tokens in the foveal disk
