"""Extraction options: token choice, random projection, PCA, masking at extraction time."""

import netCDF4
import numpy as np
import pytest
import torch
from sklearn.decomposition import PCA
from torch import nn

from neuroalign import masking
from neuroalign.activations import layer_activation, open_activations
from neuroalign.data.stimuli import StimulusSet
from neuroalign.extraction import extract, image_transform, random_projection

N = 12


@pytest.fixture(scope="module")
def stimuli():
    rng = np.random.default_rng(3)
    images = rng.integers(0, 256, size=(N, 32, 32, 3), dtype=np.uint8)
    return StimulusSet(stimulus_id=[f"s{i:02d}" for i in range(N)], images=images, name="toy")


def conv_net():
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 6, 3, stride=2, padding=1),
        nn.Flatten(), nn.Linear(6 * 16 * 16, 5),
    )


class Tokens(nn.Module):
    """(b, 3, 32, 32) -> tokens (b, 17, 8): a learned class token and 16 patch tokens."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(1)
        self.embed = nn.Conv2d(3, 8, 8, stride=8)
        self.cls = nn.Parameter(torch.randn(1, 1, 8))
        self.block = nn.Linear(8, 8)

    def forward(self, x):
        t = self.embed(x).flatten(2).transpose(1, 2)
        return self.block(torch.cat([self.cls.expand(len(x), -1, -1), t], dim=1))


def inputs(stimuli, size=32):
    transform, _ = image_transform(size)
    return torch.stack([transform(stimuli.image(i)) for i in range(len(stimuli))])


def read(path, layer):
    tree = open_activations(path)
    values = layer_activation(tree, layer).values
    attrs = dict(tree.attrs)
    tree.close()
    return values, attrs


@pytest.mark.parametrize("tokens", ["all", "cls", "mean"])
def test_token_choice(tmp_path, stimuli, tokens):
    model = Tokens()
    path = extract(model, stimuli, ["block", "embed"], tmp_path / "t.nc",
                   transform=image_transform(32), tokens=tokens, batch_size=5, progress=False)
    with torch.no_grad():
        ref = model(inputs(stimuli)).numpy()  # (N, 17, 8)
    got, attrs = read(path, "block")
    expected = {"all": ref, "cls": ref[:, 0], "mean": ref.mean(axis=1)}[tokens]
    np.testing.assert_allclose(got, expected, atol=1e-5)
    assert attrs["tokens"] == tokens
    assert read(path, "embed")[0].shape == (N, 8, 4, 4)  # 4-D outputs untouched
    with pytest.raises(ValueError, match=r"'tokens'.*'cls'.*'first'"):
        extract(model, stimuli, ["block"], tmp_path / "x.nc", transform=image_transform(32),
                tokens="first")


def test_random_projection(tmp_path, stimuli):
    model = conv_net()
    k = 20
    with pytest.warns(RuntimeWarning, match=r"'4' has 5 units"):
        path = extract(model, stimuli, ["0", "2", "4"], tmp_path / "r.nc",
                       transform=image_transform(32), projection="random", n_components=k,
                       seed=11, batch_size=5, progress=False)
    x = inputs(stimuli)
    with torch.no_grad():
        conv0 = model[0](x)
        conv2 = model[2](model[1](conv0.clone()))
    with netCDF4.Dataset(path) as ds:
        p0 = np.asarray(ds["0/projection"][:])
        p2 = np.asarray(ds["2/projection"][:])
        assert ds["0"].getncattr("source_shape") == "4x32x32"
        assert ds["0"].getncattr("projection") == "random"
        assert ds["4"].getncattr("projection") == "none"
        assert ds.getncattr("projection_seed") == 11 and ds.getncattr("n_components") == k
    assert p0.shape == (4 * 32 * 32, k) and p2.shape == (6 * 16 * 16, k)
    # seeded, per layer, and N(0, 1/k)
    np.testing.assert_array_equal(p0, random_projection(4 * 32 * 32, k, 11, "0"))
    assert not np.allclose(p0[: p2.shape[0]], p2)
    assert abs(np.mean(p0**2) * k - 1) < 0.05 and abs(np.mean(p0)) < 0.01
    got0, _ = read(path, "0")
    np.testing.assert_allclose(got0, conv0.reshape(N, -1).numpy() @ p0, rtol=1e-4, atol=1e-4)
    got2, _ = read(path, "2")
    np.testing.assert_allclose(got2, conv2.reshape(N, -1).numpy() @ p2, rtol=1e-4, atol=1e-4)
    assert read(path, "4")[0].shape == (N, 5)
    # Johnson-Lindenstrauss: squared norms are kept on average
    ratio = (got0**2).sum(1) / (conv0.reshape(N, -1).numpy() ** 2).sum(1)
    assert 0.4 < ratio.mean() < 1.6


@pytest.mark.parametrize("fit", [9, "set"])
def test_pca_matches_sklearn(tmp_path, stimuli, fit):
    model = conv_net()
    k = 4
    fit_stimuli = 9 if fit == 9 else StimulusSet(
        stimulus_id=[f"f{i}" for i in range(10)],
        images=np.random.default_rng(5).integers(0, 256, (10, 32, 32, 3), dtype=np.uint8),
        name="fitset",
    )
    path = extract(model, stimuli, ["2"], tmp_path / "p.nc", transform=image_transform(32),
                   projection="pca", n_components=k, fit_stimuli=fit_stimuli, batch_size=4,
                   progress=False)
    with torch.no_grad():
        feats = model[2](model[1](model[0](inputs(stimuli)))).reshape(N, -1).numpy()
        fit_x = feats[:9] if fit == 9 else model[:3](inputs(fit_stimuli)).reshape(10, -1).numpy()
    ref = PCA(n_components=k, svd_solver="full").fit(fit_x.astype(np.float64))
    with netCDF4.Dataset(path) as ds:
        components = np.asarray(ds["2/projection"][:])
        np.testing.assert_allclose(ds["2/mean"][:], ref.mean_, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(ds["2/explained_variance"][:], ref.explained_variance_,
                                   rtol=1e-3)
        assert "first 9 stimuli" in ds.getncattr("pca_fit") or "fitset" in ds.getncattr("pca_fit")
    signs = np.sign(np.sum(components * ref.components_.T, axis=0))
    np.testing.assert_allclose(components * signs, ref.components_.T, atol=2e-4)
    got, _ = read(path, "2")
    np.testing.assert_allclose(got * signs, ref.transform(feats), rtol=1e-3, atol=2e-3)
    with pytest.raises(ValueError, match=r"'2'.*k = 20.*min\(8"):
        extract(model, stimuli, ["2"], tmp_path / "q.nc", transform=image_transform(32),
                projection="pca", n_components=20, fit_stimuli=9, progress=False)


def test_projection_argument_errors(tmp_path, stimuli):
    with pytest.raises(ValueError, match=r"'projection'.*'random', 'pca'.*'svd'"):
        extract(conv_net(), stimuli, ["2"], tmp_path / "a.nc", transform=image_transform(32),
                projection="svd", n_components=3)
    with pytest.raises(ValueError, match="n_components"):
        extract(conv_net(), stimuli, ["2"], tmp_path / "a.nc", transform=image_transform(32),
                projection="random")


class Identity(nn.Module):
    def __init__(self):
        super().__init__()
        self.seen = nn.Identity()

    def forward(self, x):
        return self.seen(x)


def test_periphery_mask_at_extraction(tmp_path, stimuli):
    path = extract(Identity(), stimuli, ["seen"], tmp_path / "m.nc",
                   transform=image_transform(32), mask={"strategy": "periphery", "ratio": 0.8,
                                                        "fill": "grey"},
                   batch_size=5, progress=False)
    got, attrs = read(path, "seen")
    x = inputs(stimuli)
    hidden = masking.periphery_mask(N, 32, 32, 0.8)
    np.testing.assert_array_equal(got, masking.apply_mask(x, hidden, "grey").numpy())
    # independent check: outside the disk of radius int(sqrt(32*32*0.2/pi)) = 8 -> 0.5
    yy, xx = np.mgrid[:32, :32]
    outside = (yy - 16) ** 2 + (xx - 16) ** 2 > 8**2
    assert np.all(got[:, :, outside] == 0.5)
    np.testing.assert_array_equal(got[:, :, ~outside], x.numpy()[:, :, ~outside])
    assert attrs["input_mask"] == "periphery ratio=0.8 fill=grey"
    assert attrs["input_mask_strategy"] == "periphery" and attrs["input_mask_seed"] == 0


def test_random_masks_are_seeded_per_stimulus(tmp_path, stimuli):
    def run(name, batch_size, seed):
        spec = {"strategy": "patches", "ratio": 0.5, "fill": "grey"}
        path = extract(Identity(), stimuli, ["seen"], tmp_path / name,
                       transform=image_transform(32), mask=spec, seed=seed,
                       batch_size=batch_size, progress=False)
        return read(path, "seen")

    a, attrs = run("a.nc", 5, 0)
    b, _ = run("b.nc", 12, 0)
    c, _ = run("c.nc", 5, 1)
    np.testing.assert_array_equal(a, b)  # the batch size does not matter
    assert not np.array_equal(a, c)  # the seed does
    grey = (a == 0.5).all(axis=1).reshape(N, 4, 8, 4, 8).all(axis=(2, 4))  # (N, 4, 4) patches
    assert (grey.sum(axis=(1, 2)) == 8).all()  # int(16 * 0.5) hidden patches each
    assert len({g.tobytes() for g in grey}) > N // 2  # different masks per stimulus
    assert attrs["input_mask_patch_size"] == 8


def test_callable_mask_and_errors(tmp_path, stimuli):
    def black_out(x):
        return torch.zeros_like(x)

    path = extract(Identity(), stimuli, ["seen"], tmp_path / "c.nc",
                   transform=image_transform(32), mask=black_out, progress=False)
    got, attrs = read(path, "seen")
    assert not got.any() and attrs["input_mask"] == "callable black_out"
    with pytest.raises(ValueError, match=r"strategy must be one of \('periphery'.*'disk'"):
        extract(Identity(), stimuli, ["seen"], tmp_path / "d.nc",
                transform=image_transform(32), mask="disk")
    with pytest.raises(ValueError, match=r"Unknown 'mask' keys \['radius'\]"):
        extract(Identity(), stimuli, ["seen"], tmp_path / "d.nc",
                transform=image_transform(32), mask={"strategy": "centre", "radius": 3})
