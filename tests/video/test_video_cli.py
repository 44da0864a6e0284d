"""``neuroalign extract --clips``: a clip folder from the command line."""

import numpy as np

from neuroalign.activations import layer_activation, open_activations
from neuroalign.cli import main


def test_extract_clips_from_the_command_line(clip_folder, tmp_path, capsys):
    out = tmp_path / "acts.nc"
    main(["extract", "torchvision:r3d_18", "--weights", "random", "--clips", str(clip_folder),
          "--frames", "4", "--fps", "4", "--stride", "1", "--image-size", "32",
          "--layers", "layer1", "fc", "--pooling", "avg", "--out", str(out)])
    with open_activations(out) as tree:
        layer1 = layer_activation(tree, "layer1")
        assert layer1.dims == ("presentation", "time", "feature") and layer1.shape[:2] == (12, 4)
        np.testing.assert_allclose(layer1["time"].values, np.arange(4) / 4)
        assert tree.attrs["clip_sampling"] == "4 frames at 4 fps, windows every 1 s"
        assert tree.attrs["model_spec"] == "torchvision:r3d_18"
    pooled = tmp_path / "frames.nc"  # an image model, frame by frame, averaged over time
    main(["extract", "torchvision:resnet18", "--weights", "random", "--clips", str(clip_folder),
          "--frames", "3", "--image-size", "32", "--layers", "layer2", "--pooling", "avg",
          "--time-pooling", "mean", "--out", str(pooled)])
    with open_activations(pooled) as tree:
        assert layer_activation(tree, "layer2").shape == (4, 128)
        assert tree.attrs["time_pooling"] == "mean" and tree.attrs["frame_wise"] == 1
    main(["layers", "torchvision:r3d_18", "--weights", "random", "--image-size", "32",
          "--frames", "4"])
    assert "input 3×4×32×32" in capsys.readouterr().out


def test_clip_options_without_clips_are_an_error(tmp_path, capsys):
    code = main(["extract", "torchvision:resnet18", "--weights", "random", "--stimuli",
                 str(tmp_path), "--fps", "8", "--time-pooling", "mean", "--out", str(tmp_path / "a.nc")])
    assert code == 2
    assert "--fps, --time-pooling apply to clips: give --clips FOLDER" in capsys.readouterr().err
