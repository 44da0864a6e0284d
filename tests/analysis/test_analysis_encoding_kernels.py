"""The dual form from a streamed linear kernel equals the in-memory RidgeEncoder path."""

import numpy as np
import pytest

from neuroalign.activations import ActivationWriter
from neuroalign.analysis.encoding import RidgeEncoder
from neuroalign.analysis.encoding_kernels import kernel_fit_predict, layer_kernel
from neuroalign.data import make_assembly, write_assembly
from neuroalign.encoding_files import encoding_from_file

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
