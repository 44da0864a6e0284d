import csv

import numpy as np
import pytest
import torch

from neuroalign.objectives import weighted_mse
from neuroalign.training import PretrainConfig, load_checkpoint, load_config, load_model, pretrain
from neuroalign.training.trainer import batch_indices, prepare_batch


def smooth_images(n=256, size=32, seed=0):
    """Images with structure a small autoencoder can learn: smoothed noise."""
    g = torch.Generator().manual_seed(seed)
    low = torch.rand(n, 3, size // 8, size // 8, generator=g)
    x = torch.nn.functional.interpolate(low, size=(size, size), mode="bilinear", align_corners=False)
    return (x * 255).to(torch.uint8)


def tiny_config(**kw):
    base = dict(model="conv_mae_tiny", steps=12, batch_size=16, lr=3e-3, log_every=2,
                decorrelation_every=3, checkpoint_every=100, seed=3)
    base.update(kw)
    return PretrainConfig(**base)


def test_resume_equals_uninterrupted(tmp_path):
    images = smooth_images(100)
    cfg = tiny_config(patch_size=4, masking="patches", mask_ratio=0.5, horizontal_flip=True)
    full = pretrain(cfg, tmp_path / "full", images=images, progress=False)
    pretrain(cfg, tmp_path / "split", images=images, progress=False, stop_at=5)
    assert load_checkpoint(tmp_path / "split" / "checkpoint.pt")["step"] == 5
    split = pretrain(cfg, tmp_path / "split", images=images, progress=False, resume=True)
    a, b = load_checkpoint(full)["model_state"], load_checkpoint(split)["model_state"]
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    # the resumed log holds every logged step once
    with open(tmp_path / "split" / "log.csv") as f:
        steps = [int(r["step"]) for r in csv.DictReader(f)]
    # rows every 2 steps and where L is computed (every 3); the interrupted run logged its last
    # step (5); the resumed one goes on from there
    assert steps == [2, 3, 4, 5, 6, 8, 9, 10, 12]


def test_loss_falls_with_periphery_masking(tmp_path):
    images = smooth_images(256)
    cfg = tiny_config(steps=60, log_every=10, random_resized_crop=False)
    pretrain(cfg, tmp_path, images=images, progress=False)
    with open(tmp_path / "log.csv") as f:
        rows = list(csv.DictReader(f))
    losses = [float(r["loss"]) for r in rows]
    assert losses[-1] < 0.8 * losses[0]
    # L on the rows of the steps it is computed on (every 3rd), an empty cell on the others
    assert [int(r["step"]) for r in rows] == sorted(set(range(3, 61, 3)) | set(range(10, 61, 10)))
    for r in rows:
        if int(r["step"]) % 3:
            assert r["decorrelation"] == "", r
        else:
            assert np.isfinite(float(r["decorrelation"])), r
    model, state = load_model(tmp_path / "checkpoint.pt")
    assert state["config"]["masking"] == "periphery" and not model.training


def test_batches_walk_each_epoch_once():
    seen = np.concatenate([batch_indices(50, 10, seed=1, step=s) for s in range(5)])
    assert sorted(seen.tolist()) == list(range(50))
    assert not np.array_equal(batch_indices(50, 10, 1, 0), batch_indices(50, 10, 1, 5))


def test_batches_are_the_seeded_epoch_permutation_whatever_the_caller_does_with_them():
    # the epoch's permutation is cached: a batch is a copy, and equals a fresh draw
    first = batch_indices(50, 10, seed=3, step=7)  # epoch 1, position 2
    first[:] = -1
    expected = np.random.default_rng([3, 1]).permutation(50)[20:30]
    assert np.array_equal(batch_indices(50, 10, seed=3, step=7), expected)
    assert np.array_equal(batch_indices(50, 10, seed=4, step=7),
                          np.random.default_rng([4, 1]).permutation(50)[20:30])


def test_prepare_batch_masks_the_input_not_the_target():
    images = smooth_images(32)
    cfg = tiny_config(random_resized_crop=False, mask_ratio=0.8)
    batch = prepare_batch(images, cfg, step=0, device="cpu")
    inputs, target, mask = batch.inputs, batch.target, batch.mask
    assert torch.equal(batch.loss_weight, mask.float())
    assert mask.float().mean().item() == pytest.approx(0.8, abs=0.03)
    visible = ~mask.expand_as(target)
    assert torch.equal(inputs[visible], target[visible])
    assert not torch.equal(inputs[~visible], target[~visible])


def test_weighted_mse_against_plain_loop():
    rec, tgt = torch.rand(2, 3, 4, 4), torch.rand(2, 3, 4, 4)
    mask = torch.rand(2, 1, 4, 4) > 0.5
    total, count = 0.0, 0
    for i in range(2):
        for c in range(3):
            for y in range(4):
                for x in range(4):
                    if mask[i, 0, y, x]:
                        total += (rec[i, c, y, x] - tgt[i, c, y, x]).item() ** 2
                        count += 1
    assert weighted_mse(rec, tgt, mask).item() == pytest.approx(total / count, rel=1e-5)
    assert weighted_mse(rec, tgt, None).item() == pytest.approx(((rec - tgt) ** 2).mean().item())


def test_recipe_errors_name_the_setting(tmp_path):
    path = tmp_path / "r.toml"
    path.write_text('model = "conv_mae_tiny"\n[masking]\nmaskig = "periphery"\n')
    with pytest.raises(ValueError, match="did you mean 'masking'"):
        load_config(path)
    path.write_text('[masking]\nmasking = "fovae"\n')
    with pytest.raises(ValueError, match="must be one of"):
        load_config(path)
    path.write_text('model = "conv_mae_tiny"\n[optim]\nlr = 0.01\nsteps = 3\n')
    cfg = load_config(path, steps=5)
    assert cfg.lr == 0.01 and cfg.steps == 5


def test_computing_decorrelation_does_not_change_training(tmp_path):
    """L is computed from the latent only: how often it is logged leaves the weights as they are."""
    images = smooth_images(64)
    paths = [pretrain(tiny_config(steps=6, decorrelation_every=every), tmp_path / str(every),
                      images=images, progress=False) for every in (0, 1, 4)]
    states = [load_checkpoint(p)["model_state"] for p in paths]
    for k in states[0]:
        assert torch.equal(states[0][k], states[1][k]) and torch.equal(states[0][k], states[2][k]), k
