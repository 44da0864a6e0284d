import math

import pytest
import torch

from neuroalign.fixations import (
    centre_fixations,
    first_fixations,
    saccade_sequences,
    saliency_fixations,
    uniform_fixations,
)


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def test_centre_and_uniform():
    assert centre_fixations(3, 96, 64).tolist() == [[48.0, 32.0]] * 3
    fix = uniform_fixations(4000, 96, 64, generator=gen())
    assert fix.shape == (4000, 2) and fix.dtype == torch.float32
    assert torch.equal(fix, fix.floor())
    assert fix[:, 0].min() >= 0 and fix[:, 0].max() <= 95
    assert fix[:, 1].min() >= 0 and fix[:, 1].max() <= 63
    # uniform: mean near the middle of the grid, every row visited about equally
    assert fix.mean(0).tolist() == pytest.approx([47.5, 31.5], abs=1.5)
    assert torch.equal(fix, uniform_fixations(4000, 96, 64, generator=gen()))


def test_saliency_fixations_land_inside_the_salient_square():
    sal = torch.zeros(500, 1, 32, 32)
    sal[:, :, 5:9, 20:27] = 1.0
    fix = saliency_fixations(sal, generator=gen(1))
    assert fix.shape == (500, 2)
    y, x = fix[:, 0], fix[:, 1]
    assert ((y >= 5) & (y < 9) & (x >= 20) & (x < 27)).all()
    # every pixel of the square is reached (28 pixels, 500 draws)
    assert len({(int(a), int(b)) for a, b in fix.tolist()}) == 28


def test_saliency_fixations_follow_the_map_proportions():
    sal = torch.zeros(6000, 8, 8)
    sal[:, 1, 1] = 1.0
    sal[:, 6, 6] = 3.0
    fix = saliency_fixations(sal, generator=gen(2))
    share = (fix[:, 0] == 6).float().mean().item()
    assert share == pytest.approx(0.75, abs=0.03)
    assert set(map(tuple, fix.long().tolist())) == {(1, 1), (6, 6)}


def test_empty_saliency_map_gives_uniform_draws_and_bad_maps_are_refused():
    fix = saliency_fixations(torch.zeros(2000, 1, 16, 16), generator=gen(3))
    assert fix.min() >= 0 and fix.max() <= 15
    assert fix.mean(0).tolist() == pytest.approx([7.5, 7.5], abs=0.5)
    with pytest.raises(ValueError, match="non-negative"):
        saliency_fixations(-torch.ones(1, 4, 4))
    with pytest.raises(ValueError, match="shape"):
        saliency_fixations(torch.ones(1, 3, 4, 4))


def test_saccades_have_the_configured_amplitude():
    start = torch.full((300, 2), 48.0)
    path = saccade_sequences(start, 5, 12.0, 96, 96, generator=gen(4))
    assert path.shape == (300, 5, 2)
    assert torch.equal(path[:, 0], start)
    steps = (path[:, 1:] - path[:, :-1]).norm(dim=-1)
    # from the centre, 4 saccades of 12 px never leave a 96-px image: exact amplitude
    assert torch.allclose(steps, torch.full_like(steps, 12.0), atol=1e-4)
    # directions are random: the mean displacement is near zero, angles cover the circle
    d = path[:, 1] - path[:, 0]
    assert d.mean(0).abs().max() < 2.0
    angles = torch.atan2(d[:, 0], d[:, 1])
    assert torch.histc(angles, bins=8, min=-math.pi, max=math.pi).min() > 15
    assert torch.equal(path, saccade_sequences(start, 5, 12.0, 96, 96, generator=gen(4)))


def test_saccades_near_borders_stay_inside_and_long_ones_are_clipped():
    start = torch.tensor([[0.0, 0.0], [95.0, 95.0], [0.0, 95.0]]).repeat(100, 1)
    path = saccade_sequences(start, 3, 20.0, 96, 96, generator=gen(5))
    assert path.min() >= 0 and path.max() <= 95
    steps = (path[:, 1:] - path[:, :-1]).norm(dim=-1)
    # a corner allows a quarter of the directions; with 8 tries most saccades keep 20 px
    assert (steps - 20.0).abs().lt(1e-3).float().mean() > 0.85
    assert steps.max() <= 20.0 + 1e-4
    # longer than the image: clipped to the border, so shorter than asked
    long = saccade_sequences(torch.full((50, 2), 16.0), 2, 100.0, 32, 32, generator=gen(6))
    assert long.min() >= 0 and long.max() <= 31
    assert ((long[:, 1] == 0) | (long[:, 1] == 31)).any(dim=1).all()


def test_first_fixations_by_name_and_errors():
    sal = torch.zeros(4, 1, 16, 16)
    sal[:, :, 3, 4] = 1
    assert first_fixations("saliency", 4, 16, 16, gen(), sal).tolist() == [[3.0, 4.0]] * 4
    assert first_fixations("centre", 2, 16, 16).tolist() == [[8.0, 8.0]] * 2
    with pytest.raises(ValueError, match="saliency"):
        first_fixations("saliency", 4, 16, 16)
    with pytest.raises(ValueError, match="'centre', 'uniform', 'saliency'"):
        first_fixations("center", 4, 16, 16)
    with pytest.raises(ValueError, match="n_fixations"):
        saccade_sequences(torch.zeros(1, 2), 0, 1.0, 8, 8)
