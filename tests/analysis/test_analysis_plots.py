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


# --- what the figures say, and that their text is readable (issue 10) ---


def _texts(fig):
    """Every visible, non-empty text of a figure."""
    from matplotlib.text import Text

    return [t.get_text() for t in fig.findobj(Text) if t.get_visible() and t.get_text().strip()]


def _rectangle(text, renderer):
    """The 4 corners of a (possibly rotated) Text in window pixels: its unrotated extent,
    turned by its rotation about the centre of its rotated bounding box."""
    box = text.get_window_extent(renderer)
    angle = text.get_rotation()
    text.set_rotation(0)
    flat = text.get_window_extent(renderer)
    text.set_rotation(angle)
    theta = np.deg2rad(angle)
    turn = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    half = np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]]) * [flat.width / 2, flat.height / 2]
    return half @ turn.T + [(box.x0 + box.x1) / 2, (box.y0 + box.y1) / 2]


def _rectangles_overlap(a, b) -> bool:
    """Separating-axis test of two convex quadrilaterals (touching edges do not count)."""
    for quad in (a, b):
        for i in range(4):
            edge = quad[(i + 1) % 4] - quad[i]
            axis = np.array([-edge[1], edge[0]])
            pa, pb = a @ axis, b @ axis
            if pa.max() <= pb.min() + 1e-6 or pb.max() <= pa.min() + 1e-6:
                return False
    return True


def _overlaps(fig):
    """Pairs of texts whose (rotated) rectangles overlap."""
    from matplotlib.text import Text

    renderer = fig.canvas.get_renderer()
    texts = [
        t for t in fig.findobj(Text)
        if t.get_visible() and t.get_text().strip() and (t.axes is None or t.axes.get_visible())
    ]
    corners = [_rectangle(t, renderer) for t in texts]
    return [
        (texts[i].get_text(), texts[j].get_text())
        for i in range(len(texts))
        for j in range(i + 1, len(texts))
        if _rectangles_overlap(corners[i], corners[j])
    ]


@pytest.fixture
def captured(monkeypatch):
    """The figures the plot functions build, kept open for inspection (saved all the same)."""
    import neuroalign.analysis.plots.figures as figures

    figs = []
    real_save = figures.save_figure

    def save(fig, out):
        figs.append(fig)
        fig.canvas.draw()  # lay out as when saving, before the figure is closed
        found.append(_overlaps(fig))
        texts.append([" ".join(t.split()) for t in _texts(fig)])  # wrapped lines joined
        return real_save(fig, out)

    found, texts = [], []
    for module in ("layerwise", "matrices", "rdm"):
        monkeypatch.setattr(f"neuroalign.analysis.plots.{module}.save_figure", save)
    return found, texts


def test_overlap_check_finds_overprinted_text():
    """The layout check itself: two labels at one place overlap, apart they do not."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    ax.set_xticks(range(8), [f"acts:encoder.blocks.{i} (unique)" for i in range(8)])
    fig.canvas.draw()
    assert _overlaps(fig)  # long horizontal tick labels one unit apart overprint
    ax.set_xticks(range(8), list("abcdefgh"))
    fig.canvas.draw()
    assert not _overlaps(fig)
    plt.close(fig)


def _partition_ds(names):
    from neuroalign.analysis.partitioning import variance_partitioning

    rng = np.random.default_rng(5)
    n_pairs = N * (N - 1) // 2
    common = rng.normal(size=n_pairs)
    vectors = np.stack([common + rng.normal(size=n_pairs) for _ in names])
    models = rsatoolbox.rdm.RDMs(
        vectors, rdm_descriptors={"model": names}, pattern_descriptors={"stimulus_id": IDS}
    )
    brain = rsatoolbox.rdm.RDMs(
        (vectors[0] + 2 * vectors[1] + 3 * rng.normal(size=n_pairs))[None],
        pattern_descriptors={"stimulus_id": IDS},
    )
    return variance_partitioning(brain, models)


@pytest.mark.parametrize("names", [
    ["acts:encoder.blocks.2", "acts:encoder.blocks.5", "acts:encoder.blocks.8"],
    ["run_a/acts_kriegeskorte92:encoder.blocks.2", "run_b/acts_kriegeskorte92:encoder.blocks.2"],
    ["pixels", "category", "depth", "a_rather_long_model_name:layer.with.many.parts.7"],
])
def test_partition_figure_text_does_not_overlap(names, captured, tmp_path):
    from neuroalign.analysis.plots import plot_partitioning

    found, texts = captured
    assert_written(plot_partitioning(_partition_ds(names), tmp_path / "vp"), tmp_path)
    assert found == [[]]
    shown = "\n".join(texts[0])
    if names[0].startswith("acts:"):  # the file prefix is said once, in the title
        assert "encoder.blocks.2 (unique)" in shown and "acts:encoder" not in shown
        assert "by layers of acts" in shown


def test_rsa_figure_names_model_stimuli_and_brain_and_labels_the_ceiling(rsa_ds, captured, tmp_path):
    from neuroalign.analysis.plots import plot_layerwise_panels

    found, texts = captured
    ds = rsa_ds.copy()
    ds.attrs.update(model_description="conv_mae, checkpoint run/checkpoint.pt (step 400)",
                    stimulus_set="kriegeskorte92",
                    brain_description="human IT fMRI, Kriegeskorte et al. 2008, 4 subjects")
    plot_layerwise_rsa(ds, tmp_path / "rsa")
    title = next(t for t in texts[0] if t.startswith("conv_mae"))
    assert title == (
        "conv_mae, checkpoint run/checkpoint.pt (step 400) on kriegeskorte92 "
        "vs human IT fMRI, Kriegeskorte et al. 2008, 4 subjects "
        "model RDMs: correlation distance; compared by spearman"
    )
    lower, upper = float(ds.noise_ceiling_lower), float(ds.noise_ceiling_upper)
    assert f"lower {lower:.2f}" in texts[0] and f"upper {upper:.2f}" in texts[0]
    assert "layer (encoder/block*)" not in texts[0]  # '/' paths: no dotted prefix to cut
    rng = np.random.default_rng(0)
    L = xr.Dataset({"L": ("layer", rng.random(5))}, coords={"layer": ds.layer.values})
    plot_layerwise_panels(ds, [(L, "L", "decorrelation L")], tmp_path / "panels")
    assert found == [[], []]
    assert any(t.startswith("conv_mae") for t in texts[1]) and "decorrelation L" in texts[1]


def test_layer_axis_says_a_common_dotted_prefix_once(captured, tmp_path):
    found, texts = captured
    ds = xr.Dataset({"L": ("layer", np.arange(9.0))},
                    coords={"layer": [f"encoder.blocks.{i}" for i in range(9)]})
    plot_layerwise_metric(ds, "L", tmp_path / "L")
    assert "layer (encoder.blocks.*)" in texts[0]
    assert [str(i) for i in range(9)] == [t for t in texts[0] if t.isdigit()][:9]
    assert found == [[]]


def test_rsa_figure_of_one_rdm_says_why_there_is_no_band(rsa_ds, captured, tmp_path):
    _, texts = captured
    one = rsa_ds.isel(subject=[0])
    one["noise_ceiling_lower"] = np.nan
    one["noise_ceiling_upper"] = np.nan
    plot_layerwise_rsa(one.drop_vars(["ci_lo", "ci_hi"]), tmp_path / "one")
    assert "one RDM: no SEM or noise ceiling" in texts[0]
    assert not any(t.startswith(("lower", "upper")) for t in texts[0])


def test_matrix_axes_name_the_files(captured, tmp_path):
    from neuroalign.analysis.cka import cka_matrix
    from neuroalign.analysis.plots import plot_rsa_matrix

    found, texts = captured
    rng = np.random.default_rng(4)
    da = cka_matrix({f"block{i}": rng.normal(size=(N, 8)) for i in range(4)})
    da["layer_a"].attrs["long_name"] = "layer of a.nc: conv_mae, checkpoint r/checkpoint.pt"
    da["layer_b"].attrs["long_name"] = "layer of b.nc: vit_mae, random initialisation, seed 0"
    plot_rsa_matrix(da, tmp_path / "cka")
    assert "layer of a.nc: conv_mae, checkpoint r/checkpoint.pt" in texts[0]
    assert "layer of b.nc: vit_mae, random initialisation, seed 0" in texts[0]
    assert found == [[]]


@pytest.mark.parametrize("umask", [0o022, 0o027, 0o002])
def test_figures_respect_the_umask(umask, tmp_path):
    import os

    old = os.umask(umask)
    try:
        paths = plot_layerwise_metric(
            xr.Dataset({"L": ("layer", [1.0, 2.0])}, coords={"layer": ["a", "b"]}), "L",
            tmp_path / "L")
        plain = tmp_path / "plain.txt"
        plain.write_text("x")  # what open() gives, as for the netCDF files
    finally:
        os.umask(old)
    want = 0o666 & ~umask
    assert plain.stat().st_mode & 0o777 == want
    for path in paths:
        assert path.stat().st_mode & 0o777 == want, path


def test_plot_encoding_pairs(tmp_path):
    from neuroalign.analysis.plots.encoding import plot_encoding_pairs

    rng = np.random.default_rng(0)
    ids = [f"n{i}" for i in range(30)]
    scores = rng.uniform(0, 1, size=(2, 30))
    ds = xr.Dataset({"r": (("layer", "neuroid"), scores),
                     "r_corrected": (("layer", "neuroid"), scores * 1.2)},
                    coords={"layer": ["a", "b"], "neuroid_id": ("neuroid", ids)})
    paths = plot_encoding_pairs(ds, ("a", "b"), tmp_path / "pairs.png")
    assert [p.suffix for p in paths] == [".png", ".svg"] and all(p.is_file() for p in paths)
    # another model's results, neuroids in another order, matched by neuroid_id
    other = ds.isel(neuroid=rng.permutation(30))
    plot_encoding_pairs(ds, ("a", "b"), tmp_path / "models.png", other=other,
                        labels=("model 1", "model 2"))
    with pytest.raises(ValueError, match="layer 'c' is not in the results"):
        plot_encoding_pairs(ds, ("a", "c"), tmp_path / "x.png")
    with pytest.raises(ValueError, match="neuroids of the first result are not in the second"):
        plot_encoding_pairs(ds, ("a", "b"), tmp_path / "x.png",
                            other=ds.assign_coords(neuroid_id=("neuroid", [f"m{i}" for i in range(30)])))


@pytest.mark.parametrize("corrected", [False, True])
def test_plot_banded_encoding_bars_are_the_medians(tmp_path, monkeypatch, corrected):
    import neuroalign.analysis.plots.encoding as encoding_plots

    seen = []
    real_save = encoding_plots.save_figure

    def save(fig, out):
        fig.canvas.draw()
        seen.append((fig, _overlaps(fig)))
        return real_save(fig, out)

    monkeypatch.setattr(encoding_plots, "save_figure", save)
    rng = np.random.default_rng(0)
    spaces = ["encoder.blocks.2", "encoder.blocks.8", "pixels"]
    ds = xr.Dataset({"r2_unique": (("space", "neuroid"), rng.normal(size=(3, 40))),
                     "r2_shared": ("neuroid", rng.normal(size=40)),
                     "r2_joint": ("neuroid", rng.normal(size=40))}, coords={"space": spaces})
    if corrected:  # the noise-corrected values are drawn when the result has them
        for name in ("r2_unique", "r2_shared", "r2_joint"):
            ds[f"{name}_corrected"] = ds[name] * 2
    suffix = "_corrected" if corrected else ""
    assert_written(encoding_plots.plot_banded_encoding(ds, tmp_path / "banded"), tmp_path)
    fig, overlaps = seen[0]
    assert overlaps == []
    expected = [*np.median(ds[f"r2_unique{suffix}"].values, axis=1),
                np.median(ds[f"r2_shared{suffix}"].values), np.median(ds[f"r2_joint{suffix}"].values)]
    np.testing.assert_allclose([p.get_height() for p in fig.axes[0].patches], expected)
    assert ("NCSNR" in fig.axes[0].get_ylabel()) == corrected
