"""The CLI's errors for paths and names: a missing checkpoint or stimulus folder is named as a
path, an unknown layer points to ``neuroalign layers``; ``--stimulus-ids`` maps a folder's files
to a brain set's ids, which the RSA id-mismatch error suggests."""

import netCDF4
import numpy as np
import pytest
import rsatoolbox
from PIL import Image

from neuroalign.analysis.rdms import match_stimuli
from neuroalign.cli import main


def error_line(capsys) -> str:
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


@pytest.fixture
def folder(tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(1, 5):
        Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(folder / f"image_{i:02d}.jpg")
    return folder


@pytest.mark.parametrize("model", ["runs/x/checkpoint.pt", "model.pth", "last.ckpt", "./weights",
                                   "runs/x/model"])
def test_a_missing_checkpoint_is_no_such_file(tmp_path, capsys, folder, model):
    code = main(["extract", model, "--stimuli", str(folder), "--out", str(tmp_path / "a.nc")])
    assert code == 2
    assert error_line(capsys) == f"neuroalign: error: no such file: {model}"


def test_model_names_with_a_slash_are_still_names(tmp_path, capsys, folder):
    assert main(["layers", "torchvision/resnet1"]) == 2
    assert "Unknown torchvision model 'resnet1'" in error_line(capsys)


def test_a_missing_folder_is_no_such_folder(tmp_path, capsys):
    missing = tmp_path / "stimuli"
    code = main(["extract", "conv_mae_tiny", "--stimuli", str(missing), "--out", str(tmp_path / "a.nc")])
    assert code == 2
    assert error_line(capsys) == f"neuroalign: error: no such folder: {missing}"


def test_an_unknown_layer_points_to_the_layers_command(tmp_path, capsys, folder):
    code = main(["extract", "conv_mae_tiny", "--stimuli", str(folder), "--out",
                 str(tmp_path / "a.nc"), "--layers", "encoder.blocks.77", "--device", "cpu"])
    assert code == 2
    line = error_line(capsys)
    assert line.startswith("neuroalign: error: ConvMAE has no module matching 'encoder.blocks.77'")
    assert line.endswith("List them with neuroalign layers conv_mae_tiny.")
    assert not (tmp_path / "a.nc").exists()


def test_stimulus_ids_map_a_folder_to_a_brain_sets_ids(tmp_path, capsys, folder):
    table = tmp_path / "map.csv"
    table.write_text("file,stimulus_id\n" + "".join(
        f"image_{i:02d}.jpg,kriegeskorte92/{i:03d}\n" for i in range(1, 5)))
    out = tmp_path / "a.nc"
    assert main(["extract", "conv_mae_tiny", "--stimuli", str(folder), "--stimulus-ids",
                 str(table), "--out", str(out), "--image-size", "32", "--device", "cpu",
                 "--layers", "encoder.blocks.0"]) == 0
    with netCDF4.Dataset(out) as ds:
        assert list(ds["stimulus_id"][:]) == [f"kriegeskorte92/{i:03d}" for i in range(1, 5)]
    capsys.readouterr()
    assert main(["extract", "conv_mae_tiny", "--stimuli", "cichy92", "--stimulus-ids", str(table),
                 "--out", str(tmp_path / "b.nc")]) == 2
    assert "the registered set cichy92 has its own ids" in error_line(capsys)


def test_the_id_mismatch_error_names_the_map_option():
    rdms = rsatoolbox.rdm.RDMs(np.arange(6.0)[None], pattern_descriptors={
        "stimulus_id": [f"kriegeskorte92/{i:03d}" for i in range(1, 5)]})
    with pytest.raises(ValueError, match="--stimulus-ids map.csv") as err:
        match_stimuli(rdms, [f"image_{i:02d}" for i in range(1, 5)])
    assert "file,stimulus_id" in str(err.value)
