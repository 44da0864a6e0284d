"""``neuroalign encode`` on a synthetic activation file and a user's responses netCDF."""

import numpy as np
import pytest
import xarray as xr

from neuroalign.activations import ActivationWriter
from neuroalign.cli import main
from neuroalign.data import make_assembly, write_assembly

N = 60
IDS = np.array([f"stim{i:02d}" for i in range(N)])


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("encode")
    rng = np.random.default_rng(0)
    latent = rng.normal(size=(N, 8))
    signal = latent @ rng.normal(size=(8, 5))
    trials = signal[:, :, None] + 0.5 * rng.normal(size=(N, 5, 6))
    trials[::5, :, 5] = np.nan  # missing repeats
    responses = write_assembly(make_assembly(trials, IDS, region="V4"), root / "responses.nc")
    perm = rng.permutation(N)
    layers = {"good": latent @ rng.normal(size=(8, 16)) + 0.1 * rng.normal(size=(N, 16)),
              "noise": rng.normal(size=(N, 90))}
    acts = root / "acts.nc"
    with ActivationWriter(acts) as writer:
        writer.write_batch({k: v[perm].astype(np.float32) for k, v in layers.items()}, IDS[perm])
    other = root / "other.nc"
    with ActivationWriter(other) as writer:
        writer.write_batch({"good": layers["good"].astype(np.float32)},
                           np.array([f"x{i}" for i in range(N)]))
    return acts, responses, other


def test_encode_writes_results_and_figure(files, tmp_path, capsys):
    acts, responses, _ = files
    out, figure = tmp_path / "encoding.nc", tmp_path / "encoding.png"
    assert main(["encode", str(acts), "--brain", str(responses), "--folds", "4", "--alphas",
                 "0.1", "1", "10", "100", "--out", str(out), "--figure", str(figure),
                 "--compare-layers", "good", "noise", "--figure-pairs",
                 str(tmp_path / "pairs.png")]) == 0
    printed = capsys.readouterr().out
    assert "median split-half reliability" in printed and "r_corrected" in printed
    ds = xr.load_dataset(out)
    assert list(ds.layer.values) == ["good", "noise"]
    assert ds["r"].dims == ("layer", "neuroid") and ds.sizes["fold"] == 4
    assert set(np.unique(ds["alpha"].values)) <= {0.1, 1, 10, 100}
    assert float(ds["r"].sel(layer="good").median()) > 0.8
    assert abs(float(ds["r"].sel(layer="noise").median())) < 0.4
    assert list(ds["solver"].values) == ["primal", "kernel"]  # 16 and 90 features, 45 stimuli
    assert figure.is_file() and figure.with_suffix(".svg").is_file()
    assert (tmp_path / "pairs.png").is_file() and (tmp_path / "pairs.svg").is_file()
    assert f"figure: {tmp_path / 'pairs.png'}" in printed


def test_encode_bad_input_is_one_line(files, capsys):
    acts, responses, other = files
    assert main(["encode", str(other), "--brain", str(responses)]) == 2
    err = capsys.readouterr().err
    assert "not in the responses, e.g. ['x0', 'x1', 'x2']" in err and err.count("\n") == 1
    assert main(["encode", str(acts), "--brain", str(responses), "--folds", "61"]) == 2
    assert "folds must be between 2 and the 60 stimuli" in capsys.readouterr().err
    assert main(["encode", str(acts), "--brain", "cowley-v5"]) == 2
    assert "Did you mean 'cowley-v4'" in capsys.readouterr().err


def test_encode_pairs_options(files, capsys):
    acts, responses, _ = files
    assert main(["encode", str(acts), "--brain", str(responses), "--figure-pairs", "p.png"]) == 2
    assert "--compare-layers A B and --figure-pairs go together" in capsys.readouterr().err
    assert main(["encode", str(acts), "--brain", str(responses), "--layers", "good",
                 "--compare-layers", "good", "noise", "--figure-pairs", "p.png"]) == 2
    assert "--compare-layers ['noise'] are not among --layers" in capsys.readouterr().err
