"""``read_clip_features(path, layer=...)`` on a real activation file with a time dim (schema 2),
written by ``extract`` from clips, and on to a movie's TR grid."""

import numpy as np
import pytest
import torch

from neuroalign.activations import layer_activation, open_activations
from neuroalign.analysis.timeseries import timeline_features
from neuroalign.data.clips import ClipSet
from neuroalign.data.movies import make_movie_responses, read_clip_features
from neuroalign.extraction import extract
from neuroalign.models import load_model


def test_read_clip_features_from_an_extracted_layer_with_time(clip_folder, tmp_path):
    loaded = load_model("torchvision:r3d_18", weights="random", image_size=32)
    clips = ClipSet(clip_folder, frames=8, fps=4)  # 2 s of each 3 s clip
    try:
        path = extract(loaded.model, clips, ["layer1", "layer3", "fc"], tmp_path / "r3d.nc",
                       transform=loaded.transform, pooling="avg", progress=False)
        x = torch.stack([loaded.transform[0](clips.clip_frames(i)) for i in range(len(clips))])
    finally:
        clips.close()
    with open_activations(path) as tree:
        assert int(tree.attrs["schema_version"]) == 2
        layer3 = layer_activation(tree, "layer3").load()
    assert layer3.dims == ("presentation", "time", "feature")
    features = read_clip_features(path, layer="layer3")
    ids = ["dots", "grating_down", "grating_right", "texture"]
    assert sorted(features) == ids
    # layer3 strides time twice: 8 frames -> 2 steps, centred on 4-frame bins of 1/4 s frames
    times, values = features["dots"]
    np.testing.assert_allclose(times, [0.375, 1.375])
    # a plain forward with a hook gives the same numbers
    kept = []
    handle = loaded.model.layer3.register_forward_hook(lambda m, i, o: kept.append(o))
    with torch.no_grad():
        loaded.model(x)
    handle.remove()
    plain = kept[0].mean(dim=(3, 4)).transpose(1, 2).numpy()  # (clip, time, channel)
    for k, clip in enumerate(ids):
        np.testing.assert_allclose(features[clip][1], plain[k], atol=1e-5)
        np.testing.assert_allclose(features[clip][1], layer3.values[k], atol=0)
    # on a movie's TR grid: each 2 s clip shown once per 2 s volume, a TR of 2 s
    timeline = {"event_run": ["run-1"] * 4, "onset": [0.0, 2.0, 4.0, 6.0],
                "duration": [2.0] * 4, "stimulus_id": ids}
    movie = make_movie_responses(np.random.default_rng(0).standard_normal((5, 3)), ["run-1"] * 5,
                                 2.0, stream=["dorsal", "ventral", "lateral"], timeline=timeline)
    grid = timeline_features(features, movie)
    np.testing.assert_allclose(grid[:4], plain.mean(axis=1), atol=1e-5)  # the mean of each clip
    np.testing.assert_array_equal(grid[4], 0)  # no stimulus
    with pytest.raises(ValueError, match=r"r3d.nc: layer 'fc' has dims \('presentation', "
                                         r"'feature'\) and no frame times"):
        read_clip_features(path, layer="fc")
