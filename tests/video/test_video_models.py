"""Video models on clips: VideoMAE never masked, image models frame by frame, RAFT optic flow
and the flow CNN, the video classifiers' own preprocessing, where time sits in outputs."""

import numpy as np
import pytest
import torch
import torchvision

from neuroalign.activations import layer_activation, open_activations
from neuroalign.data.clips import ClipSet
from neuroalign.extraction import extract
from neuroalign.extraction.time import TimeLayout, split_time, step_times
from neuroalign.models import load_model
from neuroalign.models.pretrained import _torchvision_preprocessing
from neuroalign.models.video import VIDEO_CLASSIFIERS, ClipTransform, adapt_torchvision


@pytest.fixture
def clips(clip_folder):
    clips = ClipSet(clip_folder, frames=4, fps=4)
    yield clips
    clips.close()


def batch(loaded, clips):
    return torch.stack([loaded.transform[0](clips.clip_frames(i)) for i in range(len(clips))])


def test_videomae_sees_every_patch_of_every_frame_at_extraction(clips, tmp_path):
    transformers = pytest.importorskip("transformers")
    config = transformers.VideoMAEConfig(
        image_size=32, patch_size=8, num_frames=4, tubelet_size=2, hidden_size=32,
        num_hidden_layers=2, num_attention_heads=2, intermediate_size=64)
    folder = tmp_path / "videomae"
    transformers.VideoMAEModel(config).save_pretrained(folder)
    transformers.VideoMAEImageProcessor(
        size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(folder)
    loaded = load_model(f"hf:{folder}", weights="random", seed=1)
    assert loaded.preprocessing.clip_layout == "TCHW"
    out = extract(loaded.model, clips, ["encoder.layer.1"], tmp_path / "a.nc",
                  transform=loaded.transform, progress=False, attrs=loaded.attrs)
    x = batch(loaded, clips)
    assert x.shape == (4, 4, 3, 32, 32)
    n_patches = 2 * 4 * 4  # 2 tubelets x 4 x 4 patches
    with torch.no_grad():
        plain = loaded.model(pixel_values=x, output_hidden_states=True).hidden_states[2]
        unmasked = loaded.model(pixel_values=x, bool_masked_pos=torch.zeros(4, n_patches, dtype=torch.bool),
                                output_hidden_states=True).hidden_states[2]
        hidden = torch.zeros(4, n_patches, dtype=torch.bool)
        hidden[:, ::2] = True
        masked = loaded.model(pixel_values=x, bool_masked_pos=hidden).last_hidden_state
    assert plain.shape[1] == n_patches and masked.shape[1] == n_patches // 2
    torch.testing.assert_close(plain, unmasked)
    with open_activations(out) as tree:
        values = layer_activation(tree, "encoder.layer.1")
        assert values.dims == ("presentation", "time", "token", "feature")
        assert values.shape == (4, 2, 16, 32)  # every patch: 2 time steps of 4 x 4 tokens
        np.testing.assert_allclose(values.values.reshape(4, n_patches, 32), plain.numpy(), atol=1e-5)
        np.testing.assert_allclose(values["time"].values, [0.125, 0.625])  # tubelets of 2 frames
    mean = extract(loaded.model, clips, ["encoder.layer.1"], tmp_path / "m.nc", tokens="mean",
                   transform=loaded.transform, progress=False)
    with open_activations(mean) as tree:  # no class token: the mean over each step's patches
        np.testing.assert_allclose(layer_activation(tree, "encoder.layer.1").values,
                                   plain.numpy().reshape(4, 2, 16, 32).mean(axis=2), atol=1e-5)


def test_an_image_model_runs_frame_by_frame(clips, tmp_path):
    loaded = load_model("torchvision:resnet18", weights="random", image_size=32, clips=True)
    assert loaded.attrs["frame_wise"] == 1
    out = extract(loaded.model, clips, ["layer1", "fc"], tmp_path / "a.nc", pooling="avg",
                  transform=loaded.transform, progress=False)
    x = batch(loaded, clips)  # (4, T=4, 3, 32, 32)
    plain = torchvision.models.resnet18()
    plain.load_state_dict(loaded.model.state_dict())
    with torch.no_grad():
        per_frame = torch.stack([plain.eval()(x[:, t]) for t in range(4)], dim=1)
    with open_activations(out) as tree:
        fc = layer_activation(tree, "fc")
        assert fc.dims == ("presentation", "time", "feature") and fc.shape == (4, 4, 1000)
        np.testing.assert_allclose(fc.values, per_frame.numpy(), atol=1e-5)
        np.testing.assert_allclose(fc["time"].values, np.arange(4) / 4)
        assert layer_activation(tree, "layer1").shape == (4, 4, 64)


def test_raft_flow_fields_and_the_flow_cnn(clips, tmp_path):
    loaded = load_model("torchvision:raft_small", weights="random")
    out = extract(loaded.model, clips, ["flow"], tmp_path / "flow.nc", transform=loaded.transform,
                  progress=False, batch_size=2)
    x = batch(loaded, clips)
    assert x.shape == (4, 4, 3, 128, 128) and x.min() >= -1 and x.max() <= 1
    raft = torchvision.models.optical_flow.raft_small()
    raft.load_state_dict(loaded.model.raft.state_dict())
    with torch.no_grad():
        pairs = [raft.eval()(x[:, t], x[:, t + 1])[-1] for t in range(3)]
    with open_activations(out) as tree:
        flow = layer_activation(tree, "flow")
        assert flow.dims == ("presentation", "time", "channel", "y", "x")
        assert flow.shape == (4, 3, 2, 128, 128)
        np.testing.assert_allclose(flow.values, torch.stack(pairs, 1).numpy(), atol=1e-4)
        np.testing.assert_allclose(flow["time"].values, [0.125, 0.375, 0.625])  # pair midpoints
    cnn = load_model("torchvision:raft_small+resnet18", weights="random")
    assert cnn.model.cnn.conv1.in_channels == 2
    out = extract(cnn.model, clips, ["flow.flow", "cnn.layer2"], tmp_path / "cnn.nc",
                  transform=cnn.transform, pooling="avg", progress=False)
    with open_activations(out) as tree:
        assert layer_activation(tree, "cnn.layer2").shape == (4, 3, 128)
        assert layer_activation(tree, "flow.flow").shape == (4, 3, 2)
    with pytest.raises(ValueError, match="FLOW\\+CNN"):
        load_model("torchvision:resnet18+resnet18", weights="random")


@pytest.mark.parametrize("name", VIDEO_CLASSIFIERS)
def test_video_classifiers_take_clips_with_their_weights_preprocessing(name):
    weights = torchvision.models.get_model_weights(name).DEFAULT
    preprocessing, transform = _torchvision_preprocessing(weights)
    _, clip_preprocessing, (own, description) = adapt_torchvision(name, None, preprocessing, transform)
    assert clip_preprocessing.clip_layout == "CTHW" and "clips CTHW" in description
    frames = np.random.default_rng(0).integers(0, 256, (3, 40, 48, 3), dtype=np.uint8)
    x = own(frames)
    size = weights.transforms().crop_size[0]
    assert x.shape == (3, 3, size, size)
    ours = ClipTransform(size, preprocessing.mean, preprocessing.std, preprocessing.resize,
                         preprocessing.interpolation)(frames)
    assert ours.shape == x.shape and float((ours - x).abs().mean()) < 0.1  # antialiasing aside


def test_where_time_sits_in_outputs():
    x = torch.arange(2 * 3 * 4 * 5 * 6, dtype=torch.float32).reshape(2, 3, 4, 5, 6)
    out, timed = split_time(x, 2, TimeLayout())  # (b, C, T, H, W)
    assert timed and torch.equal(out, x.transpose(1, 2))
    last, _ = split_time(x, 2, TimeLayout(channels_last=True))  # Swin3D: (b, T, H, W, C)
    assert torch.equal(last[0, 1, :, 2, 3], x[0, 1, 2, 3, :])
    tokens, timed = split_time(torch.zeros(2, 12, 7), 2, TimeLayout(token_steps=3))
    assert timed and tokens.shape == (2, 3, 4, 7)
    folded, timed = split_time(torch.zeros(6, 7), 2, TimeLayout(fold=True))
    assert timed and folded.shape == (2, 3, 7)
    assert not split_time(torch.zeros(2, 7), 2, TimeLayout())[1]
    t = np.arange(8) / 4
    np.testing.assert_allclose(step_times(8, t), t)
    np.testing.assert_allclose(step_times(7, t), t[:-1] + 0.125)
    np.testing.assert_allclose(step_times(2, t), [t[:4].mean(), t[4:].mean()])


def test_swin3d_layers_keep_time_whichever_their_channel_axis(clips, tmp_path):
    model = torchvision.models.video.swin3d_t()  # random weights
    transform = ClipTransform(64, layout="CTHW")
    out = extract(model, clips, ["patch_embed.proj", "features.1", "norm"], tmp_path / "s.nc",
                  transform=(transform, transform.description), progress=False)
    x = torch.stack([transform(clips.clip_frames(i)) for i in range(len(clips))])
    got = {}
    for name in ["patch_embed.proj", "features.1"]:
        model.get_submodule(name).register_forward_hook(
            lambda m, i, o, name=name: got.__setitem__(name, o.detach()))
    with torch.no_grad():
        model.eval()(x)
    with open_activations(out) as tree:
        proj = layer_activation(tree, "patch_embed.proj")  # Conv3d: (b, C, T, H, W)
        assert proj.shape == (4, 2, 96, 16, 16)
        np.testing.assert_allclose(proj.values, got["patch_embed.proj"].transpose(1, 2).numpy(),
                                   atol=1e-5)
        stage = layer_activation(tree, "features.1")  # channels last: (b, T, H, W, C)
        assert stage.dims == ("presentation", "time", "channel", "y", "x")
        np.testing.assert_allclose(stage.values,
                                   got["features.1"].permute(0, 1, 4, 2, 3).numpy(), atol=1e-5)
        np.testing.assert_allclose(stage["time"].values, [0.125, 0.625])
