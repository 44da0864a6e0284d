import math

import pytest
import torch
import torchvision.transforms.functional as TF
from torchvision.transforms.functional import gaussian_blur

from neuroalign.foveation import fovea_mask, foveate
from neuroalign.masking import disk_mask
from neuroalign.training.config import PretrainConfig
from neuroalign.views import adjust_colour, colour_jitter, make_view, view_fixations


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def cfg(**kw):
    kw.setdefault("image_size", 96)
    return PretrainConfig(**kw)


@pytest.fixture(scope="module")
def images():
    g = torch.Generator().manual_seed(0)
    return torch.rand(6, 3, 96, 96, generator=g)


def test_default_is_the_reference_periphery_condition(images):
    config = cfg()
    assert (config.masking, config.mask_ratio, config.fill, config.fixation, config.target,
            config.loss_region, config.colour_jitter) == (
        "periphery", 0.8, "mean", "centre", "image", "hidden", False)
    batch = make_view(images, config, gen())
    assert batch.mask.float().mean().item() == pytest.approx(0.8054, abs=1e-4)  # r = 24
    assert not batch.mask[:, 0, 48, 48].any() and batch.mask[:, 0, 48, 48 + 25].all()
    hidden = batch.mask.expand_as(images)
    means = images.mean(dim=(2, 3), keepdim=True).expand_as(images)
    assert torch.equal(batch.inputs[hidden], means[hidden])
    assert torch.equal(batch.inputs[~hidden], images[~hidden])
    assert torch.equal(batch.loss_weight, batch.mask.float())
    assert torch.equal(batch.target, images)


def test_patches_hide_86_of_144(images):
    batch = make_view(images, cfg(masking="patches", mask_ratio=0.6, patch_size=8), gen())
    per_patch = batch.mask.view(6, 12, 8, 12, 8).all(-1).all(-2)
    assert per_patch.sum(dim=(1, 2)).tolist() == [86] * 6


def test_blur_fill_reaches_the_network_input(images):
    batch = make_view(images, cfg(fill="blur"), gen())
    blurred = gaussian_blur(images, [33, 33], [100.0, 100.0])
    hidden = batch.mask.expand_as(images)
    assert torch.allclose(batch.inputs[hidden], blurred[hidden])
    assert torch.equal(batch.inputs[~hidden], images[~hidden])


def test_fovea_filter_condition(images):
    batch = make_view(images, cfg(masking="fovea"), gen())
    centre = torch.full((6, 2), 48.0)
    assert torch.equal(batch.inputs, foveate(images, centre))
    assert torch.equal(batch.mask, fovea_mask(centre, 96, 96))
    assert torch.equal(batch.loss_weight, batch.mask.float())


def test_no_masking_is_an_autoencoder(images):
    batch = make_view(images, cfg(masking="none"), gen())
    assert torch.equal(batch.inputs, images)
    assert torch.equal(batch.loss_weight, torch.ones(6, 1, 96, 96))


def test_loss_regions(images):
    fg = torch.rand(6, 1, 96, 96, generator=gen(9))
    mask = make_view(images, cfg(), gen()).mask
    all_ = make_view(images, cfg(loss_region="all"), gen(), fg).loss_weight
    weighted = make_view(images, cfg(loss_region="foreground_weighted"), gen(), fg).loss_weight
    only = make_view(images, cfg(loss_region="foreground_only"), gen(), fg).loss_weight
    assert torch.equal(all_, torch.ones_like(all_))
    assert torch.allclose(weighted, mask.float() * fg)
    assert torch.equal(only, (mask & (fg >= 0.5)).float())
    with pytest.raises(ValueError, match="foreground"):
        make_view(images, cfg(loss_region="foreground_only"), gen())


def test_fixations_land_where_asked(images):
    fg = torch.zeros(6, 1, 96, 96)
    fg[:, :, 10:20, 60:70] = 1.0
    batch = make_view(images, cfg(fixation="saliency", mask_ratio=0.95), gen(), fg)
    visible = (~batch.mask[:, 0]).nonzero().float()
    for i in range(6):
        centre = visible[visible[:, 0] == i][:, 1:].mean(0)
        assert 10 <= centre[0] < 20 and 60 <= centre[1] < 70
    uni = make_view(images, cfg(fixation="uniform"), gen())
    assert not torch.equal(uni.mask[0], uni.mask[1])


def test_saccade_view_shows_the_union_of_the_foveal_disks(images):
    config = cfg(fixation="saccades", n_fixations=3, saccade_amplitude=0.3)
    batch = make_view(images, config, gen(3))
    path = view_fixations(config, 6, 96, 96, gen(3))
    assert path.shape == (6, 3, 2)
    steps = (path[:, 1:] - path[:, :-1]).norm(dim=-1)
    assert torch.allclose(steps, torch.full_like(steps, 0.3 * 96), atol=1e-3)
    union = torch.ones(6, 1, 96, 96, dtype=torch.bool)
    for k in range(3):
        union &= disk_mask(path[:, k], 96, 96, 24)
    assert torch.equal(batch.mask, union)
    assert (batch.mask.float().mean((1, 2, 3)) < 0.8).all()


def test_next_fixation_target_is_what_the_saccade_reveals(images):
    config = cfg(fixation="saccades", n_fixations=2, target="next_fixation")
    batch = make_view(images, config, gen(4))
    path = view_fixations(config, 6, 96, 96, gen(4))
    seen = disk_mask(path[:, 0], 96, 96, 24)  # True = hidden at fixation 1
    revealed = ~disk_mask(path[:, 1], 96, 96, 24)
    assert torch.equal(batch.mask, seen)
    assert torch.equal(batch.loss_weight, (revealed & seen).float())
    # from the centre, a 24-px saccade with 24-px discs reveals 1 − (2π/3 − √3/2)/π ≈ 61 %
    # of the new disc (the lens-shaped overlap of two discs one radius apart is already seen)
    centred = cfg(fixation="saccades", saccade_start="centre", target="next_fixation")
    w = make_view(images, centred, gen(4)).loss_weight
    share = w.sum((1, 2, 3)) / disk_mask(torch.full((1, 2), 48.0), 96, 96, 24).logical_not().sum()
    assert share.tolist() == pytest.approx([1 - (2 * math.pi / 3 - math.sqrt(3) / 2) / math.pi] * 6, abs=0.02)
    assert torch.equal(batch.target, images)
    all_ = make_view(images, cfg(fixation="saccades", target="next_fixation", loss_region="all"), gen(4))
    assert torch.equal(all_.loss_weight, revealed.float())


def test_next_fixation_with_the_fovea_filter(images):
    config = cfg(masking="fovea", fixation="saccades", n_fixations=3, target="next_fixation")
    batch = make_view(images, config, gen(5))
    path = view_fixations(config, 6, 96, 96, gen(5))
    assert torch.equal(batch.inputs, foveate(images, path[:, 1]))
    expected = fovea_mask(path[:, 1], 96, 96) & ~fovea_mask(path[:, 2], 96, 96)
    assert torch.equal(batch.loss_weight, expected.float())


def test_views_are_reproducible_from_the_seed(images):
    config = cfg(masking="patches", fill="noise", patch_size=8, colour_jitter=True)
    a, b, c = (make_view(images, config, gen(s)) for s in (1, 1, 2))
    assert torch.equal(a.inputs, b.inputs) and torch.equal(a.mask, b.mask)
    assert not torch.equal(a.inputs, c.inputs)


def test_adjust_colour_matches_torchvision(images):
    x = images[:4, :, :24, :24]
    b = torch.tensor([0.5, 1.0, 1.6, 1.2])
    c = torch.tensor([1.3, 0.4, 1.0, 1.7])
    s = torch.tensor([0.2, 1.5, 1.0, 0.0])
    h = torch.tensor([0.1, -0.2, 0.0, 0.45])
    out = adjust_colour(x, b, c, s, h)
    for i in range(4):
        ref = TF.adjust_brightness(x[i], b[i].item())
        ref = TF.adjust_contrast(ref, c[i].item())
        ref = TF.adjust_saturation(ref, s[i].item())
        ref = TF.adjust_hue(ref, h[i].item())
        assert torch.allclose(out[i], ref, atol=1e-5), i


def test_colour_jitter_probability_and_identity(images):
    assert torch.equal(colour_jitter(images, p=0.0, generator=gen()), images)
    many = images[:1, :, :16, :16].expand(400, -1, -1, -1)
    out = colour_jitter(many, generator=gen(1))
    changed = (out - many).abs().amax(dim=(1, 2, 3)) > 1e-6
    assert changed.float().mean().item() == pytest.approx(0.8, abs=0.06)
    assert out.min() >= 0 and out.max() <= 1


def test_config_validates_the_view_settings():
    with pytest.raises(ValueError, match="'centre', 'uniform', 'saliency', 'saccades'"):
        PretrainConfig(fixation="random")
    with pytest.raises(ValueError, match="next_fixation"):
        PretrainConfig(target="next_fixation")
    with pytest.raises(ValueError, match="foreground_weighted"):
        PretrainConfig(loss_region="foreground")
    with pytest.raises(ValueError, match="n_fixations"):
        PretrainConfig(fixation="saccades", n_fixations=0)
    config = PretrainConfig(fixation="saccades", target="next_fixation", masking="fovea")
    assert PretrainConfig.from_dict(config.to_dict()) == config
