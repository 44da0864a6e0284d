"""Several neuroalign checkpoints on clips: each frame through the image model, time kept or
pooled (``extract_checkpoints(..., time_pooling=...)``)."""

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from neuroalign.activations import layer_activation, open_activations
from neuroalign.data.clips import ClipSet
from neuroalign.extraction import extract_checkpoints, image_transform

SIZE = 32  # the clips' size: the transforms' resize and crop are the identity


def save_checkpoint(path, seed):
    from neuroalign.models import create_model
    from neuroalign.training.checkpoint import save_checkpoint as save

    torch.manual_seed(seed)
    model = create_model("conv_mae_tiny")
    config = {"model": "conv_mae_tiny", "model_kwargs": {}, "seed": seed, "image_size": SIZE,
              "masking": "periphery", "mask_ratio": 0.8, "fill": "mean"}
    path.parent.mkdir(parents=True, exist_ok=True)
    save(path, model=model, optimizer=None, config=config, step=10 * (seed + 1))
    return model.eval()


def plain_forward(model, clips, layer):
    """(clip, frame, ...) outputs of ``layer`` from a hook, one frame at a time."""
    out = []
    handle = model.get_submodule(layer).register_forward_hook(lambda m, i, o: out.append(o))
    transform = image_transform(SIZE)[0]
    per_clip = []
    with torch.no_grad():
        for i in range(len(clips)):
            steps = []
            for frame in clips.clip_frames(i):
                model(transform(Image.fromarray(frame))[None])
                steps.append(out.pop()[0])
            per_clip.append(torch.stack(steps))
    handle.remove()
    return torch.stack(per_clip).numpy()


@pytest.mark.parametrize("time_pooling", [None, "mean", "max"])
def test_checkpoints_on_clips_frame_by_frame_with_time_pooling(clip_folder, tmp_path, time_pooling):
    paths = [tmp_path / f"seed{s}" / "checkpoint.pt" for s in (0, 1)]
    models = [save_checkpoint(p, s) for s, p in enumerate(paths)]
    clips = ClipSet(clip_folder, frames=3, fps=4)
    try:
        index = extract_checkpoints(paths, clips, ["encoder.blocks.1"], tmp_path / "acts",
                                    time_pooling=time_pooling, progress=False, batch_size=2)
        table = pd.read_csv(index)
        for model, file in zip(models, table["file"], strict=True):
            expected = plain_forward(model, clips, "encoder.blocks.1")  # (4, 3, ...)
            if time_pooling == "mean":
                expected = expected.mean(axis=1)
            elif time_pooling == "max":
                expected = expected.max(axis=1)
            with open_activations(tmp_path / "acts" / file) as tree:
                got = layer_activation(tree, "encoder.blocks.1")
                assert tree.attrs["time_pooling"] == (time_pooling or "none")
                assert int(tree.attrs["frame_wise"]) == 1
                if time_pooling is None:
                    assert got.dims[:2] == ("presentation", "time")
                    np.testing.assert_allclose(got["time"].values, np.arange(3) / 4)
                else:
                    assert "time" not in got.dims
                np.testing.assert_allclose(got.values.reshape(expected.shape), expected, atol=1e-5)
    finally:
        clips.close()
    with pytest.raises(ValueError, match="time_pooling"):
        extract_checkpoints(paths, clips, None, tmp_path / "bad", time_pooling="median")
