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


def test_encode_spaces_fits_one_banded_model_twice_equal(files, tmp_path, capsys):
    acts, responses, _ = files
    outs = []
    for run in range(2):
        out, figure = tmp_path / f"banded{run}.nc", tmp_path / f"banded{run}.png"
        assert main(["encode", str(acts), "--brain", str(responses), "--spaces", "good", "noise",
                     "--folds", "3", "--n-iter", "5", "--alphas", "0.1", "10", "1000", "--out",
                     str(out), "--figure", str(figure)]) == 0
        assert figure.is_file() and figure.with_suffix(".svg").is_file()
        outs.append(xr.load_dataset(out))
    printed = capsys.readouterr().out
    assert "r2_unique_corrected" in printed and "joint model: median r_joint" in printed
    a, b = outs
    xr.testing.assert_identical(a, b)
    assert list(a["space"].values) == ["good", "noise"] and a.attrs["solver"] == "kernel"
    unique = a["r2_unique"].median("neuroid")
    assert float(unique.sel(space="good")) > 0.5 and -0.15 < float(unique.sel(space="noise")) < 0.05
    np.testing.assert_allclose(a["r2_joint_corrected"], a["r2_joint"] / (a["ncsnr_ceiling"] / 100))
    assert main(["encode", str(acts), "--brain", str(responses), "--spaces", "good"]) == 2
    assert "needs 2 to 6 layers" in capsys.readouterr().err
    assert main(["encode", str(acts), "--brain", str(responses), "--spaces", "good", "noise",
                 "--layers", "good"]) == 2
    assert "--spaces fits one banded model" in capsys.readouterr().err


def test_rsa_with_cross_validated_rdms_of_a_responses_file_twice_equal(files, tmp_path, capsys):
    """``--brain responses.nc:crossnobis``: rsa against the file's crossnobis RDMs."""
    from neuroalign.data.assemblies import read_assembly
    from neuroalign.data.responses import response_rdms

    acts, responses, _ = files
    outs = []
    for run in range(2):
        out = tmp_path / f"rsa{run}.nc"
        assert main(["rsa", str(acts), "--brain", f"{responses}:crossnobis", "--layers", "good",
                     "--n-boot", "20", "--out", str(out)]) == 0
        outs.append(xr.load_dataset(out))
    xr.testing.assert_identical(*outs)
    # the same as the rsa of the crossnobis RDMs computed here (a plain Spearman of vectors)
    from scipy.stats import spearmanr

    from neuroalign.analysis.rdms import calc_rdm

    brain = response_rdms(read_assembly(responses), "crossnobis")
    order = list(brain.pattern_descriptors["stimulus_id"])
    with xr.open_dataset(acts, group="good") as g:
        ids = [str(s) for s in xr.open_dataset(acts)["stimulus_id"].values]
        x = g[list(g.data_vars)[0]].values.reshape(len(ids), -1)
    model = calc_rdm(x[[ids.index(s) for s in order]].astype(np.float64), order)
    rho = spearmanr(model.get_vectors()[0], brain.get_vectors()[0])[0]
    score = [v for v in outs[0].data_vars if outs[0][v].dims == ("layer",)]
    assert any(np.isclose(float(outs[0][v].values[0]), rho, atol=1e-6) for v in score), (
        rho, {v: float(outs[0][v].values[0]) for v in score})
