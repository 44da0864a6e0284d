"""The dual form from a streamed linear kernel equals the in-memory RidgeEncoder path."""

import numpy as np
import pytest

from neuroalign.activations import ActivationWriter
from neuroalign.analysis.encoding import RidgeEncoder
from neuroalign.analysis.encoding_kernels import kernel_fit_predict, layer_kernel
from neuroalign.data import make_assembly, write_assembly
from neuroalign.workflows import encoding_from_file

N = 48
IDS = np.array([f"s{i:02d}" for i in range(N)])
ALPHAS = np.logspace(-1, 5, 13)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("kernels")
    rng = np.random.default_rng(0)
    latent = rng.normal(size=(N, 6))
    wide = latent @ rng.normal(size=(6, 300)) + rng.normal(size=(N, 300)) + 20  # a large mean
    trials = (latent @ rng.normal(size=(6, 4)))[:, :, None] + rng.normal(size=(N, 4, 3))
    responses = write_assembly(make_assembly(trials, IDS), root / "responses.nc")
    acts = root / "acts.nc"
    with ActivationWriter(acts) as writer:
        for start in range(0, N, 16):  # three disk chunks of stimuli
            writer.write_batch({"wide": wide[start:start + 16].astype(np.float32)},
                               IDS[start:start + 16])
    return acts, responses, wide.astype(np.float32).astype(np.float64)


@pytest.mark.parametrize("max_bytes", [None, 16 * 300 * 4 * 2])  # one block; 16-row blocks
def test_kernel_fit_equals_ridge_encoder(files, max_bytes):
    acts, _, x = files
    kernel = layer_kernel(acts, "wide", max_bytes=max_bytes, chunk_size=128)
    assert kernel.gram.shape == (N, N) and kernel.n_features == 300
    y = x[:, :4] @ np.random.default_rng(1).normal(size=(4, 3))
    train = np.arange(N) % 4 != 0
    predicted, alphas = kernel_fit_predict(kernel, y, train, ~train, ALPHAS, seed=3)
    model = RidgeEncoder(ALPHAS, solver="kernel", seed=3).fit(x[train], y[train])
    np.testing.assert_array_equal(alphas, model.best_alphas_)
    np.testing.assert_allclose(predicted, model.predict(x[~train]), rtol=0,
                               atol=1e-6 * np.abs(y).max())


def test_encoding_from_file_streams_wide_layers(files):
    acts, responses, _ = files
    kw = {"folds": 4, "alphas": ALPHAS, "n_splits": 5}
    streamed = encoding_from_file(acts, str(responses), **kw)  # 300 features > 48 stimuli
    whole = encoding_from_file(acts, str(responses), stream_kernels=False, **kw)
    np.testing.assert_array_equal(streamed["alpha"].values, whole["alpha"].values)
    np.testing.assert_allclose(streamed["r"].values, whole["r"].values, atol=1e-6, rtol=0)
    np.testing.assert_allclose(streamed["r2"].values, whole["r2"].values, atol=1e-6, rtol=0)
    assert list(streamed["solver"].values) == ["kernel"]


@pytest.fixture(scope="module")
def two_layers(tmp_path_factory):
    """An activation file with a wide layer (300 features) and a narrow one (5), and trials."""
    root = tmp_path_factory.mktemp("banded")
    rng = np.random.default_rng(2)
    latent = rng.normal(size=(N, 6))
    layers = {"wide": latent[:, :3] @ rng.normal(size=(3, 300)) + rng.normal(size=(N, 300)) + 5,
              "narrow": latent[:, 2:] @ rng.normal(size=(4, 5)) + 0.3 * rng.normal(size=(N, 5))}
    trials = (latent @ rng.normal(size=(6, 4)))[:, :, None] + rng.normal(size=(N, 4, 3))
    responses = write_assembly(make_assembly(trials, IDS), root / "responses.nc")
    acts = root / "acts.nc"
    with ActivationWriter(acts) as writer:
        writer.write_batch({k: v.astype(np.float32) for k, v in layers.items()}, IDS)
    return acts, responses, {k: v.astype(np.float32).astype(np.float64) for k, v in layers.items()}


def test_banded_from_streamed_kernels_equals_in_memory(two_layers):
    from neuroalign.analysis.banded import banded_encoding
    from neuroalign.analysis.reliability import noise_ceilings
    from neuroalign.data import read_assembly
    from neuroalign.workflows import banded_encoding_from_file

    acts, responses, layers = two_layers
    kw = {"folds": 3, "alphas": ALPHAS, "n_iter": 6, "n_splits": 5, "seed": 1}
    streamed = banded_encoding_from_file(acts, str(responses), ["wide", "narrow"],
                                         stream_kernels=True, **kw)
    assert streamed.attrs["solver"] == "kernel"
    trials = read_assembly(responses)
    in_memory = banded_encoding(layers, trials, stimulus_id=IDS, solver="primal", **kw)
    assert in_memory.attrs["solver"] == "primal"
    np.testing.assert_allclose(streamed["band_alpha"].values, in_memory["band_alpha"].values,
                               rtol=1e-6)
    for name in ("r2_unique", "r2_split", "r2_without", "r2_joint", "r2_shared", "r_joint"):
        np.testing.assert_allclose(streamed[name].values, in_memory[name].values, atol=1e-6,
                                   rtol=0, err_msg=name)
    # noise-corrected: each R² over the NCSNR ceiling (a fraction), r over √ split-half
    ceilings = noise_ceilings(trials, n_splits=5, seed=1)
    np.testing.assert_array_equal(streamed["ncsnr_ceiling"].values, ceilings["ncsnr_ceiling"])
    for name in ("r2_unique", "r2_shared", "r2_joint", "r2_split"):
        np.testing.assert_allclose(streamed[f"{name}_corrected"].values,
                                   streamed[name].values / (ceilings["ncsnr_ceiling"].values / 100))
    np.testing.assert_allclose(streamed["r_joint_corrected"].values, streamed["r_joint"].values
                               / np.sqrt(ceilings["split_half_reliability"].values))
    with pytest.raises(ValueError, match="needs 2 to 6 layers"):
        banded_encoding_from_file(acts, str(responses), ["wide"])
