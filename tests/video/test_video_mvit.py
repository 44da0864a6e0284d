"""MViT blocks written with a time dim: class token + T'·H'·W' tokens -> (presentation, time,
token, feature), the class token repeated at the start of each step; against a plain forward."""

import warnings

import numpy as np
import pytest
import torch
from torchvision.models.video.mvit import MSBlockConfig, MViT

from neuroalign.activations import layer_activation, open_activations
from neuroalign.data.clips import ClipSet
from neuroalign.extraction import extract
from neuroalign.extraction.time import TimeLayout
from neuroalign.models.video import ClipTransform, time_layout


def tiny_mvit(v2: bool) -> MViT:
    """torchvision's MViT (v1: absolute positions; v2: relative positions, residual pooling)
    at 32 px and 4 frames: 2 time steps of 8 x 8, then 4 x 4 tokens."""
    torch.manual_seed(0)
    blocks = [MSBlockConfig(1, 16, 16, [3, 3, 3], [3, 3, 3], [1, 1, 1], [1, 2, 2]),
              MSBlockConfig(2, 16, 32, [3, 3, 3], [3, 3, 3], [1, 2, 2], [1, 1, 1]),
              MSBlockConfig(2, 32, 32, [3, 3, 3], [3, 3, 3], [1, 1, 1], [1, 1, 1])]
    return MViT((32, 32), 4, blocks, residual_pool=v2, residual_with_cls_embed=not v2,
                rel_pos_embed=v2, proj_after_attn=v2).eval()


@pytest.mark.parametrize("v2", [False, True])
def test_mvit_blocks_keep_time_with_the_class_token_at_each_step(clip_folder, tmp_path, v2):
    model = tiny_mvit(v2)
    assert time_layout(model) == TimeLayout(token_steps=2, class_tokens=1)
    transform = ClipTransform(32, mean=(0.45, 0.45, 0.45), std=(0.225, 0.225, 0.225))
    clips = ClipSet(clip_folder, frames=4, fps=4)
    try:
        x = torch.stack([transform(clips.clip_frames(i)) for i in range(len(clips))])
        kept = {}
        handles = [model.blocks[i].register_forward_hook(
            lambda m, inp, out, i=i: kept.__setitem__(i, out)) for i in (0, 2)]
        with torch.no_grad():
            model(x)
        for h in handles:
            h.remove()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # blocks return (tokens, thw)
            path = extract(model, clips, ["blocks.0", "blocks.2"], tmp_path / "mvit.nc",
                           transform=transform, progress=False)
            cls = extract(model, clips, ["blocks.2"], tmp_path / "cls.nc", tokens="cls",
                          transform=transform, progress=False)
            flat = extract(model, clips, ["blocks.2"], tmp_path / "flat.nc", progress=False,
                           transform=transform, time_layout=TimeLayout())
    finally:
        clips.close()
    for block, patches in ((0, 64), (2, 16)):
        tokens, thw = kept[block]
        assert list(thw) == [2, *[int(np.sqrt(patches))] * 2]
        plain = tokens.numpy()  # (4, 1 + 2 * patches, F)
        with open_activations(path) as tree:
            got = layer_activation(tree, f"blocks.{block}")
            assert got.dims == ("presentation", "time", "token", "feature")
            assert got.shape == (4, 2, 1 + patches, plain.shape[-1])
            np.testing.assert_allclose(got["time"].values, [0.125, 0.625])  # 2-frame bins
            for t in range(2):
                np.testing.assert_allclose(got.values[:, t, 0], plain[:, 0], atol=1e-5)  # class
                np.testing.assert_allclose(got.values[:, t, 1:],
                                           plain[:, 1 + t * patches:1 + (t + 1) * patches],
                                           atol=1e-5)
    with open_activations(cls) as tree:  # token 0 of each step is still the class token
        got = layer_activation(tree, "blocks.2")
        assert got.dims == ("presentation", "time", "feature")
        np.testing.assert_allclose(got.values, np.repeat(kept[2][0][:, None, 0].numpy(), 2, 1),
                                   atol=1e-5)
    with open_activations(flat) as tree:  # time_layout=TimeLayout(): the tokens as they come
        got = layer_activation(tree, "blocks.2")
        assert got.dims == ("presentation", "token", "feature")
        np.testing.assert_allclose(got.values, kept[2][0].numpy(), atol=1e-5)
