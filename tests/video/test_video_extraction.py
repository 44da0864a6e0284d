"""Extracting clips: a random-weight r3d_18 equals a plain forward with hooks, the time dim and
its coordinate, window ids, time pooling, readers and analyses on time layers, resuming."""

import numpy as np
import pytest
import torch

from neuroalign.activations import flatten, layer_activation, open_activations, partial_path
from neuroalign.data.clips import ClipSet
from neuroalign.extraction import extract
from neuroalign.models import load_model

LAYERS = ["stem", "layer2", "fc"]


@pytest.fixture
def clips(clip_folder):
    clips = ClipSet(clip_folder, frames=8, fps=4, stride=1.0)  # 2 windows of 2 s per clip
    yield clips
    clips.close()


@pytest.fixture
def whole_clips(clip_folder):
    clips = ClipSet(clip_folder, frames=8, fps=4)  # one presentation per clip
    yield clips
    clips.close()


def r3d():
    return load_model("torchvision:r3d_18", weights="random", image_size=32, seed=3)


def reference(loaded, clips, layers):
    """A plain forward of every clip with hooks: layer -> (n, ...) numpy."""
    x = torch.stack([loaded.transform[0](clips.clip_frames(i)) for i in range(len(clips))])
    got = {}
    modules = dict(loaded.model.named_modules())
    handles = [modules[name].register_forward_hook(
        lambda m, i, o, name=name: got.__setitem__(name, o.detach().numpy().copy()))
        for name in layers]
    with torch.no_grad():
        loaded.model(x)
    for handle in handles:
        handle.remove()
    return got


def test_r3d_18_extraction_equals_a_plain_forward_with_hooks(clips, tmp_path):
    loaded = r3d()
    out = extract(loaded.model, clips, LAYERS, tmp_path / "a.nc", transform=loaded.transform,
                  batch_size=3, progress=False, attrs=loaded.attrs)
    expected = reference(r3d(), clips, LAYERS)
    tree = open_activations(out)
    try:
        assert tree.attrs["schema_version"] == 2 and tree.attrs["time_units"] == "s"
        stem = layer_activation(tree, "stem")
        assert stem.dims == ("presentation", "time", "channel", "y", "x")
        np.testing.assert_allclose(stem.values, expected["stem"].transpose(0, 2, 1, 3, 4), atol=1e-6)
        layer2 = layer_activation(tree, "layer2")
        np.testing.assert_allclose(layer2.values, expected["layer2"].transpose(0, 2, 1, 3, 4),
                                   atol=1e-6)
        fc = layer_activation(tree, "fc")
        assert fc.dims == ("presentation", "feature")  # no time left: pooled by the model
        np.testing.assert_allclose(fc.values, expected["fc"], atol=1e-6)
        # the frame times (8 frames 0.25 s apart); layer2 halves time: the centres of 2 frames
        np.testing.assert_allclose(stem["time"].values, np.arange(8) / 4)
        np.testing.assert_allclose(layer2["time"].values, [0.125, 0.625, 1.125, 1.625])
        assert tree["stem"]["time"].attrs["units"] == "s"
        # the windows round-trip as presentation coordinates
        assert stem["stimulus_id"].values.tolist() == clips.stimulus_id.tolist()
        assert stem["stimulus_id"].values[:2].tolist() == ["dots/w000", "dots/w001"]
        np.testing.assert_array_equal(stem["window"].values, clips.coords["window"])
        np.testing.assert_allclose(stem["start_time"].values, clips.coords["start_time"])
        assert set(stem["clip"].values) == {"dots", "grating_down", "grating_right", "texture"}
        # flatten folds time into the neuroids (time slowest), or keeps it
        flat = flatten(tree, "layer2")
        np.testing.assert_array_equal(flat.values, layer2.values.reshape(len(clips), -1))
        assert flat.indexes["neuroid"].names == ["layer", "time", "channel", "y", "x"]
        timed = flatten(tree, "layer2", keep_time=True)
        assert timed.dims == ("presentation", "time", "neuroid") and timed.shape[1] == 4
        np.testing.assert_allclose(timed["time"].values, layer2["time"].values)
    finally:
        tree.close()


def test_time_pooling_means_and_maxima_over_time(whole_clips, tmp_path):
    clips = whole_clips
    loaded = r3d()
    options = dict(transform=loaded.transform, batch_size=4, progress=False)
    full = extract(loaded.model, clips, ["layer1"], tmp_path / "full.nc", pooling="avg", **options)
    mean = extract(loaded.model, clips, ["layer1"], tmp_path / "mean.nc", pooling="avg",
                   time_pooling="mean", **options)
    top = extract(loaded.model, clips, ["layer1"], tmp_path / "max.nc", time_pooling="max",
                  **options)
    per_step = reference(r3d(), clips, ["layer1"])["layer1"]  # (n, C, T, H, W)
    with open_activations(full) as a, open_activations(mean) as b, open_activations(top) as c:
        values = layer_activation(a, "layer1")
        assert values.dims == ("presentation", "time", "feature")  # pooled over space per step
        np.testing.assert_allclose(values.values, per_step.mean(axis=(3, 4)).transpose(0, 2, 1),
                                   atol=1e-6)
        assert layer_activation(b, "layer1").dims == ("presentation", "feature")
        np.testing.assert_allclose(layer_activation(b, "layer1").values, values.values.mean(1),
                                   atol=1e-6)
        assert b.attrs["time_pooling"] == "mean"
        np.testing.assert_allclose(layer_activation(c, "layer1").values, per_step.max(axis=2),
                                   atol=1e-6)
    with pytest.raises(ValueError, match="time_pooling"):
        extract(loaded.model, clips, ["layer1"], tmp_path / "x.nc", time_pooling="median", **options)


def test_analyses_on_a_time_layer_see_time_as_features(whole_clips, tmp_path):
    clips = whole_clips
    from neuroalign.analysis.rdms import calc_rdm
    from neuroalign.workflows import decorrelation_from_file, layer_rdms_from_file

    loaded = r3d()
    out = extract(loaded.model, clips, ["layer2"], tmp_path / "a.nc", transform=loaded.transform,
                  pooling=2, projection="random", n_components=6, progress=False)
    with open_activations(out) as tree:
        values = layer_activation(tree, "layer2")
        assert values.dims == ("presentation", "time", "feature") and values.shape[1:] == (4, 6)
        matrix = tree["layer2"]["projection"].values  # (unit, feature): per time step
        assert matrix.shape == (128 * 2 * 2, 6)
        flat = flatten(tree, "layer2").values.astype(np.float64)
    pooled = reference(r3d(), clips, ["layer2"])["layer2"]  # (n, C, T, 8, 8) -> 2x2 grid
    pooled = pooled.reshape(*pooled.shape[:3], 2, 4, 2, 4).mean(axis=(4, 6))
    steps = pooled.transpose(0, 2, 1, 3, 4).reshape(len(clips), 4, -1)
    np.testing.assert_allclose(values.values, steps @ matrix, rtol=1e-4, atol=1e-5)
    rdm = layer_rdms_from_file(out)
    direct = calc_rdm(flat, clips.stimulus_id)
    np.testing.assert_allclose(rdm.dissimilarities[0], direct.dissimilarities[0], atol=1e-6)
    scores = decorrelation_from_file(out)
    from neuroalign.analysis.decorrelation import layerwise_decorrelation

    expected = layerwise_decorrelation({"layer2": flat})
    np.testing.assert_allclose(scores["L"].values, expected["L"].values, rtol=1e-6)


def test_an_interrupted_clip_extraction_resumes_equal(clips, tmp_path):
    options = dict(batch_size=3, progress=False, pooling="avg")
    loaded = r3d()
    whole = extract(loaded.model, clips, LAYERS, tmp_path / "whole.nc",
                    transform=loaded.transform, **options)
    broken, calls = r3d(), []

    def fail_third(module, args):
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("interrupted")

    handle = broken.model.register_forward_pre_hook(fail_third)
    out = tmp_path / "resumed.nc"
    with pytest.raises(RuntimeError, match="interrupted"):
        extract(broken.model, clips, LAYERS, out, transform=broken.transform, **options)
    handle.remove()
    assert partial_path(out).exists() and not out.exists()
    with open_activations(partial_path(out)) as part:
        assert part.sizes["presentation"] == 6
    extract(r3d().model, clips, LAYERS, out, transform=loaded.transform, resume=True, **options)
    with open_activations(whole) as a, open_activations(out) as b:
        assert b.attrs["resumed_from"] == 6
        for layer in LAYERS:
            x, y = layer_activation(a, layer), layer_activation(b, layer)
            np.testing.assert_array_equal(x.values, y.values)
            assert x.dims == y.dims
            if "time" in x.dims:
                np.testing.assert_array_equal(x["time"].values, y["time"].values)
        np.testing.assert_array_equal(a["stimulus_id"].values, b["stimulus_id"].values)


def test_nested_time_layers_and_pca_per_time_step(whole_clips, tmp_path):
    clips = whole_clips
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Sequential(
        torch.nn.Conv3d(3, 4, 3, padding=1),  # keeps the 8 frames
        torch.nn.Conv3d(4, 5, 3, stride=(2, 2, 2), padding=1),  # halves time: 4 steps
    ), torch.nn.AdaptiveAvgPool3d(1), torch.nn.Flatten())
    loaded = r3d()  # its clip transform at 32 px
    out = extract(model, clips, ["0", "0.0", "0.1"], tmp_path / "n.nc", pooling="avg",
                  transform=loaded.transform, progress=False)
    with open_activations(out) as tree:
        outer, inner = layer_activation(tree, "0"), layer_activation(tree, "0.0")
        assert outer.dims == inner.dims == ("presentation", "time", "feature")
        assert outer.shape[1] == 4 and inner.shape[1] == 8  # inner's dim is time_1 in the file
        assert "time_1" in tree["0/0"].dims
        np.testing.assert_allclose(inner["time"].values, np.arange(8) / 4)
        np.testing.assert_allclose(outer["time"].values, [0.125, 0.625, 1.125, 1.625])
        np.testing.assert_array_equal(layer_activation(tree, "0.1").values, outer.values)
        steps = inner.values.reshape(-1, 4)  # every time step of every clip: the PCA's rows
    pca = extract(model, clips, ["0.0"], tmp_path / "p.nc", pooling="avg", projection="pca",
                  n_components=2, transform=loaded.transform, progress=False)
    with open_activations(pca) as tree:
        values = layer_activation(tree, "0.0")
        assert values.shape == (len(clips), 8, 2)
        mean = tree["0/0"]["mean"].values
        components = tree["0/0"]["projection"].values
    np.testing.assert_allclose(mean, steps.mean(axis=0), atol=1e-5)
    np.testing.assert_allclose(values.values.reshape(-1, 2), (steps - mean) @ components, atol=1e-5)
    variance = np.linalg.svd(steps - steps.mean(axis=0), compute_uv=False)[:2] ** 2 / (len(steps) - 1)
    with open_activations(pca) as tree:
        np.testing.assert_allclose(tree["0/0"]["explained_variance"].values, variance, rtol=1e-4)
