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


def test_plot_rdm_in_category_order(tmp_path):
    from neuroalign.analysis.plots.rdm import _category_groups
    from neuroalign.data.stimulus_sets import CATEGORIES_92, category_coords_92

    coords = category_coords_92()
    perm = np.random.default_rng(3).permutation(92)  # stimuli listed out of category order
    category = coords["category"][perm]
    names = [c for c, _ in CATEGORIES_92]
    order_names, position = _category_groups(category, names, 92)
    shown = category[np.argsort(position, kind="stable")]
    assert [str(c) for c in dict.fromkeys(shown)] == names  # grouped, in the given order
    _, by_index = _category_groups(coords["category_index"][perm], None, 92)
    np.testing.assert_array_equal(by_index, coords["category_index"][perm])
    # an RDM with category structure: small within, large between categories
    index = coords["category_index"][perm]
    matrix = (index[:, None] != index[None, :]) + 0.1 * np.random.default_rng(0).random((92, 92))
    matrix = (matrix + matrix.T) / 2
    np.fill_diagonal(matrix, 0)
    rdms = rsatoolbox.rdm.RDMs(
        matrix[np.triu_indices(92, 1)][None], pattern_descriptors={"stimulus_id": list(range(92))}
    )
    paths = plot_rdm(rdms, tmp_path / "rdm92", categories=category, category_order=names)
    assert_written(paths, tmp_path)
    with pytest.raises(ValueError, match="missing.*human face"):
        plot_rdm(rdms, tmp_path / "x", categories=category, category_order=names[:1])
    with pytest.raises(ValueError, match="one category per pattern"):
        plot_rdm(rdms, tmp_path / "x", categories=category[:5])


def test_plot_rsa_matrix_and_cka(tmp_path):
    from neuroalign.analysis.cka import cka_matrix
    from neuroalign.analysis.plots import plot_rsa_matrix
    from neuroalign.analysis.rdms import calc_rdms
    from neuroalign.analysis.rsa_inference import rsa_matrix

    rng = np.random.default_rng(4)
    base = rng.normal(size=(N, 6))
    layers = {
        f"block{i}": base @ rng.normal(size=(6, 20)) + i * rng.normal(size=(N, 20))
        for i in range(5)
    }
    da = rsa_matrix(calc_rdms(layers, IDS), compare_method="spearman")
    assert_written(plot_rsa_matrix(da, tmp_path / "rsa_matrix"), tmp_path)
    assert_written(plot_rsa_matrix(cka_matrix(layers), tmp_path / "cka", vmin=0, vmax=1), tmp_path)
    with pytest.raises(ValueError, match="2-D xr.DataArray"):
        plot_rsa_matrix(np.ones((3, 3)), tmp_path / "x")


def test_plot_partitioning(tmp_path):
    from neuroalign.analysis.partitioning import variance_partitioning
    from neuroalign.analysis.plots import plot_partitioning

    rng = np.random.default_rng(5)
    n_pairs = N * (N - 1) // 2
    common = rng.normal(size=n_pairs)
    vectors = np.stack([common + rng.normal(size=n_pairs) for _ in range(3)])
    models = rsatoolbox.rdm.RDMs(
        vectors,
        rdm_descriptors={"model": ["pixels", "category", "depth"]},
        pattern_descriptors={"stimulus_id": IDS},
    )
    brain = rsatoolbox.rdm.RDMs(
        (vectors[0] + 2 * vectors[1] + 3 * rng.normal(size=n_pairs))[None],
        pattern_descriptors={"stimulus_id": IDS},
        descriptors={"name": "IT"},
    )
    ds = variance_partitioning(brain, models)
    assert_written(plot_partitioning(ds, tmp_path / "vp"), tmp_path)
    with pytest.raises(ValueError, match="commonality"):
        plot_partitioning(ds.drop_vars("commonality"), tmp_path / "x")


def test_plot_dimensionality_with_bootstrap_bounds(tmp_path):
    rng = np.random.default_rng(6)
    ds = layerwise_decorrelation(
        {
            f"layer{i}": rng.normal(size=(40, 3 + i)) @ rng.normal(size=(3 + i, 30))
            for i in range(4)
        },
        n_boot=20,
        mean_abs_r=False,
    )
    for var in ("L", "participation_ratio"):
        assert_written(plot_layerwise_metric(ds, var, tmp_path / var), tmp_path)
