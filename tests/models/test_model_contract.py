"""What the trainer and extraction expect of every registered model, checked on each of them.

The trainer (``neuroalign.training.trainer``) builds ``create_model(name)`` after seeding torch,
calls ``training_loss(batch) -> (loss, latent)`` on a ``MIMBatch``, backpropagates the loss,
steps Adam, calls ``after_optimizer_step(step, steps)`` when the model has one, computes the
decorrelation of the latent, and saves / reloads the state dict. Extraction calls
``default_layers()``, hooks those modules and runs ``model(images)`` in eval mode.
"""

import numpy as np
import pytest
import torch

import neuroalign
from neuroalign.analysis.decorrelation import decorrelation_torch
from neuroalign.extraction import extract
from neuroalign.models import create_model, list_models
from neuroalign.training import PretrainConfig, load_model, save_checkpoint
from neuroalign.training.trainer import make_optimizer, prepare_batch

MODELS = list_models()
N = 4


def test_the_registry_is_not_empty():
    assert {"conv_mae", "conv_mae_tiny"} <= set(MODELS)


def batch_for(name):
    g = torch.Generator().manual_seed(1)
    images = (torch.rand(8, 3, 32, 32, generator=g) * 255).to(torch.uint8)
    config = PretrainConfig(model=name, batch_size=N, image_size=32, device="cpu", seed=2)
    return prepare_batch(images, config, step=0, device="cpu"), config


def build(name, seed=0):
    torch.manual_seed(seed)
    return create_model(name)


@pytest.mark.parametrize("name", MODELS)
def test_the_seed_decides_the_initial_weights(name):
    a, b, c = build(name, 0).state_dict(), build(name, 0).state_dict(), build(name, 1).state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


@pytest.mark.parametrize("name", MODELS)
def test_training_loss_trains(name):
    model = build(name).train()
    batch, config = batch_for(name)
    loss, latent = model.training_loss(batch)
    assert isinstance(loss, torch.Tensor) and loss.ndim == 0 and loss.dtype == torch.float32
    assert torch.isfinite(loss) and loss.item() > 0 and loss.requires_grad
    # the latent: one row per image, the batch dim first, finite, with a decorrelation L
    assert isinstance(latent, torch.Tensor) and latent.ndim >= 2 and latent.shape[0] == N
    assert torch.isfinite(latent).all()
    assert np.isfinite(decorrelation_torch(latent.detach().flatten(1)).item())
    optimizer = make_optimizer(model, config)
    optimizer.zero_grad()
    loss.backward()
    trained = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    assert trained, "no trainable parameters"
    # every trainable parameter takes part in the loss (else DDP stalls waiting for its grad)
    without = [n for n, p in trained if p.grad is None or not p.grad.abs().sum() > 0]
    assert not without, without
    assert all(torch.isfinite(p.grad).all() for _, p in trained)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    optimizer.step()
    if hasattr(model, "after_optimizer_step"):
        model.after_optimizer_step(0, 10)
    assert any(not torch.equal(before[k], v) for k, v in model.state_dict().items())
    again, _ = model.training_loss(batch)
    assert torch.isfinite(again)


@pytest.mark.parametrize("name", MODELS)
def test_default_layers_exist_and_run(name):
    model = build(name).eval()
    layers = model.default_layers()
    assert isinstance(layers, list) and layers and all(isinstance(n, str) for n in layers)
    assert len(set(layers)) == len(layers)
    modules = dict(model.named_modules())
    missing = [n for n in layers if n not in modules]
    assert not missing, missing
    outputs = {}
    handles = [modules[n].register_forward_hook(
        lambda m, i, o, n=n: outputs.__setitem__(n, o)) for n in layers]
    x = torch.rand(N, 3, 32, 32)
    with torch.no_grad():
        first = model(x)
        again = model(x)
    for h in handles:
        h.remove()
    assert set(outputs) == set(layers)  # forward runs every default layer
    for n, out in outputs.items():
        out = out[0] if isinstance(out, tuple | list) else out
        assert isinstance(out, torch.Tensor) and out.shape[0] == N, n
    first = first[0] if isinstance(first, tuple) else first
    again = again[0] if isinstance(again, tuple) else again
    assert torch.equal(first, again)  # eval forward is deterministic: extraction resumes


@pytest.mark.parametrize("name", MODELS)
def test_checkpoint_round_trip(name, tmp_path):
    model = build(name, seed=3)
    batch, config = batch_for(name)
    optimizer = make_optimizer(model, config)
    loss, _ = model.train().training_loss(batch)
    loss.backward()
    optimizer.step()
    path = save_checkpoint(tmp_path / "c.pt", model=model, optimizer=optimizer,
                           config=config.to_dict(), step=1)
    loaded, state = load_model(path)
    assert not loaded.training and type(loaded) is type(model)
    theirs, ours = loaded.state_dict(), model.state_dict()
    assert theirs.keys() == ours.keys() and all(torch.equal(theirs[k], ours[k]) for k in ours)
    x = torch.rand(N, 3, 32, 32)
    with torch.no_grad():
        a, b = model.eval()(x), loaded(x)
    a, b = (a[0], b[0]) if isinstance(a, tuple) else (a, b)
    assert torch.equal(a, b)


@pytest.mark.parametrize("name", MODELS)
def test_extraction_writes_every_default_layer(name, tmp_path):
    model = build(name)
    images = torch.rand(3, 3, 32, 32)
    data = torch.utils.data.TensorDataset(images, torch.arange(3))
    path = extract(model, data, None, tmp_path / "a.nc", batch_size=2, progress=False)
    tree = neuroalign.open_activations(path)
    for layer in model.default_layers():
        group = tree[layer.replace(".", "/")]
        assert group["activation"].shape[0] == 3, layer
        assert np.isfinite(group["activation"].values).all(), layer
