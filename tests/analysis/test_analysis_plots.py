import matplotlib.image
import numpy as np
import pytest
import rsatoolbox
import xarray as xr
from scipy.spatial.distance import pdist

from neuroalign.analysis.decorrelation import layerwise_decorrelation
from neuroalign.analysis.plots import plot_layerwise_metric, plot_layerwise_rsa, plot_rdm
from neuroalign.analysis.rsa import layerwise_rsa

N = 20
IDS = [f"img{i:02d}" for i in range(N)]


@pytest.fixture(scope="module")
def rsa_ds():
    rng = np.random.default_rng(0)
    latent = rng.normal(size=(N, 8))
    brains = rsatoolbox.rdm.RDMs(
        np.array([pdist(latent + rng.normal(size=latent.shape), "correlation") for _ in range(4)]),
        rdm_descriptors={"subject": ["s1", "s2", "s3", "s4"]},
        pattern_descriptors={"stimulus_id": IDS},
        descriptors={"name": "IT"},
    )
    layers = {
        f"encoder/block{i}": latent @ rng.normal(size=(8, 30)) + (4 - i) * rng.normal(size=(N, 30))
        for i in range(5)
    }
    return layerwise_rsa(layers, IDS, brains, n_boot=30)


def assert_written(paths, tmp_path):
    assert [p.suffix for p in paths] == [".png", ".svg"]
    image = matplotlib.image.imread(paths[0])
    assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100
    assert image[..., :3].std() > 0.05  # not a blank canvas
    assert paths[1].read_text().lstrip().startswith("<?xml")
    assert not list(tmp_path.rglob("*.tmp"))  # temporary files were renamed or removed


def test_plot_layerwise_rsa(rsa_ds, tmp_path):
    paths = plot_layerwise_rsa(rsa_ds, tmp_path / "figs" / "rsa.pdf")
    assert paths[0] == tmp_path / "figs" / "rsa.png"
    assert_written(paths, tmp_path)
    # without bootstrap bounds the SEM is used
    plot_layerwise_rsa(rsa_ds.drop_vars(["ci_lo", "ci_hi"]), tmp_path / "rsa_sem")
    with pytest.raises(ValueError, match="noise_ceiling_lower"):
        plot_layerwise_rsa(rsa_ds.drop_vars("noise_ceiling_lower"), tmp_path / "bad")


def test_plot_rdm(tmp_path):
    x = np.random.default_rng(1).normal(size=(N, 10))
    rdms = rsatoolbox.rdm.RDMs(
        pdist(x)[None], pattern_descriptors={"stimulus_id": IDS}, dissimilarity_measure="euclidean"
    )
    assert_written(plot_rdm(rdms, tmp_path / "rdm", order=np.arange(N)[::-1], rank=True), tmp_path)
    assert_written(
        plot_rdm(np.random.default_rng(0).random((100, 100)), tmp_path / "big"), tmp_path
    )
    with pytest.raises(ValueError, match="permutation"):
        plot_rdm(rdms, tmp_path / "x", order=[0, 1, 2])
    with pytest.raises(ValueError, match="square"):
        plot_rdm(np.ones((3, 4)), tmp_path / "x")


def test_plot_layerwise_metric(tmp_path):
    rng = np.random.default_rng(2)
    ds = layerwise_decorrelation(
        {f"layer{i}": rng.normal(size=(30, 12)) for i in range(4)}, n_boot=10
    )
    assert_written(plot_layerwise_metric(ds, "L", tmp_path / "L"), tmp_path)
    acc = xr.Dataset(
        {"accuracy": (("layer", "seed"), rng.uniform(0.4, 0.7, size=(3, 2)))},
        coords={"layer": ["a", "b", "c"], "seed": [0, 1]},
    )
    assert_written(plot_layerwise_metric(acc, "accuracy", tmp_path / "acc"), tmp_path)
    with pytest.raises(ValueError, match="got 'acuracy'"):
        plot_layerwise_metric(acc, "acuracy", tmp_path / "x")
