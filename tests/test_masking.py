import math

import pytest
import torch
from torchvision.transforms.functional import gaussian_blur

from neuroalign.masking import (
    apply_mask,
    fovea_radius,
    make_mask,
    patch_mask,
    periphery_mask,
    uniform_fixations,
)


def test_periphery_ratio_matches_formula_at_96px():
    assert fovea_radius(96, 96, 0.8) == 24
    mask = periphery_mask(2, 96, 96, 0.8)
    # plain count of the pixels within 24 px of the centre (48, 48)
    visible = sum((y - 48) ** 2 + (x - 48) ** 2 <= 24**2 for y in range(96) for x in range(96))
    assert mask.shape == (2, 1, 96, 96) and mask.dtype == torch.bool
    assert mask[0].sum().item() == 96 * 96 - visible
    assert mask.float().mean().item() == pytest.approx(0.805, abs=0.001)
    assert torch.equal(mask[0], mask[1])


def test_periphery_radius_formula_other_sizes():
    for size, ratio in [(32, 0.8), (64, 0.5), (96, 0.9)]:
        assert fovea_radius(size, size, ratio) == int(math.sqrt(size * size * (1 - ratio) / math.pi))


def test_patch_mask_hides_exact_count_of_whole_patches():
    gen = torch.Generator().manual_seed(1)
    mask = patch_mask(5, 96, 96, 0.6, 8, generator=gen)
    blocks = mask.view(5, 12, 8, 12, 8).permute(0, 1, 3, 2, 4).reshape(5, 144, 64)
    # each 8x8 patch is hidden or visible as a whole
    assert torch.all(blocks.all(-1) | (~blocks).all(-1))
    assert blocks.all(-1).sum(1).tolist() == [86] * 5
    # different images get different patches
    assert not torch.equal(mask[0], mask[1])


def test_masks_are_reproducible_from_seed():
    a = make_mask("patches", 3, 32, 32, 0.6, patch_size=4, generator=torch.Generator().manual_seed(7))
    b = make_mask("patches", 3, 32, 32, 0.6, patch_size=4, generator=torch.Generator().manual_seed(7))
    c = make_mask("patches", 3, 32, 32, 0.6, patch_size=4, generator=torch.Generator().manual_seed(8))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_fovea_lands_on_fixation():
    fix = uniform_fixations(16, 96, 96, generator=torch.Generator().manual_seed(0))
    mask = periphery_mask(16, 96, 96, 0.95, fixations=fix)
    for i, (fy, fx) in enumerate(fix.long().tolist()):
        assert not mask[i, 0, fy, fx]
        visible = (~mask[i, 0]).nonzero().float()
        # the visible disk is centred on the fixation (up to clipping at the border)
        if 15 < fy < 80 and 15 < fx < 80:
            assert visible.mean(0).tolist() == pytest.approx([fy, fx], abs=1e-4)


def test_centre_mask_is_complement_and_none_hides_nothing():
    cen = make_mask("centre", 1, 32, 32, 0.2)
    per = make_mask("periphery", 1, 32, 32, 0.8)
    assert torch.equal(cen, ~per)
    assert not make_mask("none", 2, 32, 32, 0.0).any()


def test_mean_fill_uses_each_images_own_colour():
    images = torch.rand(3, 3, 32, 32)
    mask = periphery_mask(3, 32, 32, 0.8)
    out = apply_mask(images, mask, "mean")
    means = images.mean(dim=(2, 3))
    for i in range(3):
        hidden = mask[i, 0]
        for c in range(3):
            assert torch.allclose(out[i, c][hidden], means[i, c].expand(int(hidden.sum())))
            assert torch.equal(out[i, c][~hidden], images[i, c][~hidden])


def test_blur_fill_reaches_the_input():
    images = torch.rand(2, 3, 64, 64)
    mask = periphery_mask(2, 64, 64, 0.8)
    out = apply_mask(images, mask, "blur")
    blurred = gaussian_blur(images, [33, 33], [100.0, 100.0])
    hidden = mask.expand_as(images)
    assert torch.allclose(out[hidden], blurred[hidden])
    # and it is not the mean colour (the reference's bug overwrote the blur)
    assert not torch.allclose(out, apply_mask(images, mask, "mean"))
    assert torch.equal(out[~hidden], images[~hidden])


def test_bad_arguments_name_the_allowed_values():
    with pytest.raises(ValueError, match="periphery"):
        make_mask("peripheral", 1, 32, 32, 0.8)
    with pytest.raises(ValueError, match="ratio"):
        periphery_mask(1, 32, 32, 1.5)
    with pytest.raises(ValueError, match="fill"):
        apply_mask(torch.rand(1, 3, 8, 8), torch.zeros(1, 1, 8, 8, dtype=torch.bool), "gray")
    with pytest.raises(ValueError, match="divisible"):
        patch_mask(1, 30, 30, 0.5, 8)


@pytest.mark.requires_gpu
def test_masks_follow_the_device_of_fixations():
    fix = torch.tensor([[3.0, 5.0], [8.0, 8.0]])
    on_cpu = periphery_mask(2, 16, 16, 0.5, fixations=fix)
    on_gpu = periphery_mask(2, 16, 16, 0.5, fixations=fix.to("cuda"))
    assert on_gpu.device.type == "cuda"
    assert torch.equal(on_gpu.cpu(), on_cpu)  # the same mask, wherever it is computed


def test_fovea_strategy_hides_what_the_fovea_filter_blurs():
    fix = torch.tensor([[10.0, 12.0], [31.0, 0.0]])
    mask = make_mask("fovea", 2, 32, 32, 0.8, fixations=fix)
    for i, (fy, fx) in enumerate(fix.tolist()):
        visible = sum((y - fy) ** 2 + (x - fx) ** 2 <= 8.75**2 for y in range(32) for x in range(32))
        assert (~mask[i, 0]).sum().item() == visible
    # the centre by default, and the last point of a scanpath
    assert torch.equal(make_mask("fovea", 1, 32, 32, 0.8), make_mask("fovea", 1, 32, 32, 0.8, fixations=torch.full((1, 2), 16.0)))
    path = torch.stack([torch.zeros(2, 2), fix], dim=1)
    assert torch.equal(make_mask("fovea", 2, 32, 32, 0.8, fixations=path), mask)


def test_periphery_with_a_scanpath_shows_the_union_of_the_disks():
    path = torch.tensor([[[8.0, 8.0], [8.0, 24.0], [24.0, 16.0]]])
    mask = periphery_mask(1, 32, 32, 0.9, fixations=path)
    r = fovea_radius(32, 32, 0.9)
    for y in range(32):
        for x in range(32):
            seen = any((y - fy) ** 2 + (x - fx) ** 2 <= r**2 for fy, fx in path[0].tolist())
            assert mask[0, 0, y, x].item() == (not seen)
    with pytest.raises(ValueError, match=r"\(N, K, 2\)"):
        periphery_mask(1, 32, 32, 0.9, fixations=torch.zeros(1, 2, 3))


def test_blur_fill_works_on_images_smaller_than_the_kernel():
    images = torch.rand(2, 3, 8, 8)
    mask = periphery_mask(2, 8, 8, 0.5)
    out = apply_mask(images, mask, "blur")
    expected = gaussian_blur(images, [15, 15], [100.0, 100.0])
    hidden = mask.expand_as(images)
    assert torch.allclose(out[hidden], expected[hidden])
