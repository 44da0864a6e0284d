import pytest
import torch
import torch.nn.functional as F

from neuroalign.foveation import (
    HALF_RESOLUTION_ECCENTRICITY,
    LEVELS,
    PIXELS_PER_DEGREE,
    SIGMA,
    blending_weights,
    fovea_mask,
    foveate,
    gaussian_pyramid,
    resolution_map,
)

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def test_reference_parameters():
    assert (LEVELS, SIGMA, PIXELS_PER_DEGREE, HALF_RESOLUTION_ECCENTRICITY) == (6, 0.248, 3.5, 2.5)


def test_resolution_map_formula():
    fix = torch.tensor([[10.0, 20.0]])
    r = resolution_map(fix, 32, 48)
    assert r.shape == (1, 1, 32, 48)
    y, x = 3, 40
    theta = ((y - 10) ** 2 + (x - 20) ** 2) ** 0.5 / 3.5
    assert r[0, 0, y, x].item() == pytest.approx(2.5 / (theta + 2.5), rel=1e-6)
    assert r[0, 0, 10, 20].item() == 1.0


def test_blending_weights_are_a_partition_of_unity_and_continuous():
    r = torch.linspace(1e-3, 1.0, 20001).view(1, 1, 1, -1)
    w = blending_weights(r)[0, :, 0]  # (levels, points)
    assert torch.allclose(w.sum(0), torch.ones(w.shape[1]), atol=1e-6)
    assert (w >= 0).all()
    assert ((w > 0).sum(0) <= 2).all()
    # full resolution for R >= 1/2, one level down per halving of R, coarsest below 2^-6
    assert (w[0, r.flatten() >= 0.5] == 1).all()
    assert w[3, (r.flatten() - 2.0**-4).abs().argmin()].item() == pytest.approx(1.0, abs=1e-3)
    assert (w[-1, r.flatten() < 2.0**-6] == 1).all()
    # continuous in R: no jump between neighbouring points
    assert (w[:, 1:] - w[:, :-1]).abs().max() < 0.01


def test_identity_inside_the_fovea_and_mask_radius():
    torch.manual_seed(0)
    images = torch.rand(2, 3, 64, 64)
    fix = torch.tensor([[32.0, 32.0], [10.0, 50.0]])
    out = foveate(images, fix)
    mask = fovea_mask(fix, 64, 64)
    # the fovea is everything within α·p = 8.75 px of the fixation (plain count)
    for i, (fy, fx) in enumerate(fix.tolist()):
        inside = torch.tensor([[(y - fy) ** 2 + (x - fx) ** 2 <= 8.75**2 for x in range(64)]
                               for y in range(64)])
        assert torch.equal(~mask[i, 0], inside)
        assert torch.equal(out[i][:, inside], images[i][:, inside])
        assert not torch.allclose(out[i][:, ~inside], images[i][:, ~inside], atol=1e-3)


def _high_frequency_energy(x):
    lap = torch.tensor([[0.0, 1, 0], [1, -4, 1], [0, 1, 0]]).view(1, 1, 3, 3).repeat(3, 1, 1, 1)
    return F.conv2d(x, lap, padding=1, groups=3).pow(2).mean(1)  # (N, H, W)


def test_more_blur_with_eccentricity():
    torch.manual_seed(1)
    images = torch.rand(4, 3, 96, 96)
    out = foveate(images)  # centre fixation (48, 48)
    energy_in, energy_out = _high_frequency_energy(images), _high_frequency_energy(out)
    yy, xx = torch.meshgrid(torch.arange(96.0), torch.arange(96.0), indexing="ij")
    dist = ((yy - 48) ** 2 + (xx - 48) ** 2).sqrt()
    rings = [(0, 7), (12, 20), (24, 32), (36, 44)]
    kept = [
        (energy_out[:, (dist >= a) & (dist < b)].mean() / energy_in[:, (dist >= a) & (dist < b)].mean()).item()
        for a, b in rings
    ]
    assert kept[0] == pytest.approx(1.0, abs=1e-6)
    assert all(k1 > 1.5 * k2 for k1, k2 in zip(kept[:-1], kept[1:], strict=True)), kept
    assert kept[-1] < 0.05


@pytest.mark.parametrize("device", DEVICES)
def test_shape_device_and_batching(device):
    torch.manual_seed(2)
    images = torch.rand(3, 3, 40, 56, device=device)
    fix = torch.tensor([[5.0, 5.0], [20.0, 28.0], [39.0, 55.0]], device=device)
    out = foveate(images, fix)
    assert out.shape == images.shape and out.device == images.device and out.dtype == images.dtype
    assert out.min() >= 0 and out.max() <= 1
    # batched = one image at a time
    for i in range(3):
        assert torch.allclose(out[i : i + 1], foveate(images[i : i + 1], fix[i : i + 1]), atol=1e-6)
    assert fovea_mask(fix, 40, 56).device == images.device


def test_pyramid_levels():
    levels = gaussian_pyramid(torch.full((1, 3, 32, 32), 0.3))
    assert len(levels) == 6 and all(level.shape == (1, 3, 32, 32) for level in levels)
    assert all(torch.allclose(level, torch.full_like(level, 0.3), atol=1e-6) for level in levels)
    # a checkerboard (Nyquist frequency) is gone from level 1 on
    board = ((torch.arange(32).view(-1, 1) + torch.arange(32)) % 2).float().expand(1, 3, 32, 32)
    levels = gaussian_pyramid(board)
    assert torch.equal(levels[0], board)
    assert all(level.std() < 0.05 for level in levels[1:])
    with pytest.raises(ValueError, match="level"):
        gaussian_pyramid(board, levels=0)
