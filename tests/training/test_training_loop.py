"""The loop against a plain hand-written one; schedules, clipping, seeds, resume rules, the log."""

import csv
import math

import numpy as np
import pytest
import torch

from neuroalign.models import create_model
from neuroalign.training import PretrainConfig, load_checkpoint, pretrain, sha256_file
from neuroalign.training.log import plot_log, read_log
from neuroalign.training.trainer import learning_rate, prepare_batch


def smooth_images(n=64, size=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    low = torch.rand(n, 3, size // 8, size // 8, generator=g)
    x = torch.nn.functional.interpolate(low, size=(size, size), mode="bilinear", align_corners=False)
    return (x * 255).to(torch.uint8)


def config(**kw):
    base = dict(model="conv_mae_tiny", steps=6, batch_size=8, lr=3e-3, log_every=2,
                decorrelation_every=2, checkpoint_every=0, seed=5, device="cpu")
    base.update(kw)
    return PretrainConfig(**base)


def weights(path):
    return load_checkpoint(path)["model_state"]


def test_trainer_equals_a_plain_loop(tmp_path):
    """AdamW + warm-up/cosine + clipping, step by step as the settings describe them."""
    images = smooth_images()
    cfg = config(optimizer="adamw", weight_decay=0.05, betas=(0.8, 0.95), warmup_steps=2,
                 cosine_schedule=True, min_lr=1e-4, grad_clip=0.05, masking="patches",
                 mask_ratio=0.5)
    path = pretrain(cfg, tmp_path, images=images, progress=False)

    torch.manual_seed(cfg.seed)
    model = create_model(cfg.model)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=0.05, betas=(0.8, 0.95))
    norms = []
    for step in range(cfg.steps):
        lr = cfg.lr * (step + 1) / 2 if step < 2 else \
            1e-4 + (cfg.lr - 1e-4) * 0.5 * (1 + math.cos(math.pi * (step - 2) / (cfg.steps - 2)))
        for group in opt.param_groups:
            group["lr"] = lr
        batch = prepare_batch(images, cfg, step, "cpu")
        loss, _ = model.training_loss(batch)
        opt.zero_grad()
        loss.backward()
        norms.append(torch.nn.utils.clip_grad_norm_(model.parameters(), 0.05).item())
        opt.step()
    assert max(norms) > 0.05  # clipping did act
    trained = weights(path)
    for k, v in model.state_dict().items():
        torch.testing.assert_close(trained[k], v, rtol=0, atol=1e-6, msg=k)


def test_learning_rate_schedules():
    cfg = config(steps=110, lr=1.0, warmup_steps=10, cosine_schedule=True, min_lr=0.1)
    assert [learning_rate(cfg, s) for s in (0, 4, 9)] == pytest.approx([0.1, 0.5, 1.0])
    assert learning_rate(cfg, 10) == pytest.approx(1.0)
    assert learning_rate(cfg, 60) == pytest.approx(0.55)  # half way down the cosine
    assert learning_rate(cfg, 110) == pytest.approx(0.1)
    flat = config(steps=110, lr=1.0, warmup_steps=10)
    assert learning_rate(flat, 5) == pytest.approx(0.6) and learning_rate(flat, 100) == 1.0


def test_one_seed_decides_everything(tmp_path):
    images = smooth_images()
    a = weights(pretrain(config(), tmp_path / "a", images=images, progress=False))
    b = weights(pretrain(config(), tmp_path / "b", images=images, progress=False))
    c = weights(pretrain(config(seed=6), tmp_path / "c", images=images, progress=False))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)
    state = load_checkpoint(tmp_path / "a" / "checkpoint.pt")
    assert state["seed"] == 5 and state["config"]["seed"] == 5
    assert set(state["rng_states"]) == {"torch", "cuda", "numpy", "python"}
    # the same bytes: activation files record the checkpoint's SHA-256
    np.random.seed(None)  # whatever the process's global generators held before
    assert sha256_file(tmp_path / "a" / "checkpoint.pt") == sha256_file(tmp_path / "b" / "checkpoint.pt")
    pretrain(config(), tmp_path / "d", images=images, progress=False)
    assert sha256_file(tmp_path / "a" / "checkpoint.pt") == sha256_file(tmp_path / "d" / "checkpoint.pt")


def test_resume_rules(tmp_path):
    images = smooth_images()
    pretrain(config(), tmp_path, images=images, progress=False, stop_at=2)
    with pytest.raises(ValueError, match=r"lr: 0\.003 → 0\.01.*--overwrite"):
        pretrain(config(lr=1e-2), tmp_path, images=images, progress=False, resume=True)
    # hardware and logging settings may change; a constant schedule may be extended
    path = pretrain(config(log_every=3, steps=8, channels_last=True), tmp_path, images=images,
                    progress=False, resume=True)
    assert load_checkpoint(path)["step"] == 8
    with pytest.raises(ValueError, match="steps"):
        pretrain(config(steps=12, cosine_schedule=True), tmp_path, images=images, progress=False,
                 resume=True)


def test_a_folder_with_a_checkpoint_needs_resume_or_overwrite(tmp_path):
    images = smooth_images()
    first = weights(pretrain(config(), tmp_path, images=images, progress=False, stop_at=2))
    with pytest.raises(ValueError) as err:
        pretrain(config(), tmp_path, images=images, progress=False)
    message = str(err.value)
    assert "\n" not in message and str(tmp_path / "checkpoint.pt") in message
    assert "--resume" in message and "--overwrite" in message
    assert weights(tmp_path / "checkpoint.pt").keys() == first.keys()  # left as it was
    with pytest.raises(ValueError, match="exclude each other"):
        pretrain(config(), tmp_path, images=images, progress=False, resume=True, overwrite=True)
    # overwrite: a fresh run, whatever the folder held (other settings too), equal to one
    # in an empty folder
    replaced = pretrain(config(lr=1e-2), tmp_path, images=images, progress=False, overwrite=True)
    fresh = pretrain(config(lr=1e-2), tmp_path / "fresh", images=images, progress=False)
    assert load_checkpoint(replaced)["step"] == 6
    a, b = weights(replaced), weights(fresh)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert read_log(tmp_path / "log.csv")["step"].values.tolist() == [2, 4, 6]
    # resume without a checkpoint starts afresh
    path = pretrain(config(), tmp_path / "new", images=images, progress=False, resume=True)
    assert load_checkpoint(path)["step"] == 6


class _DeadLatent(torch.nn.Module):
    """A model whose latent never varies (every unit constant, as all-dead ReLUs)."""

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.ones(()))

    def training_loss(self, batch):
        loss = ((batch.inputs * self.w - batch.target) ** 2).mean()
        return loss, torch.zeros(len(batch.inputs), 4) * self.w


def test_decorrelation_error_is_logged_as_nan_with_one_warning(tmp_path, monkeypatch):
    from neuroalign.training import trainer

    monkeypatch.setattr(trainer, "create_model", lambda name, **kw: _DeadLatent())
    with pytest.warns(RuntimeWarning) as caught:
        pretrain(config(steps=6, decorrelation_every=1), tmp_path, images=smooth_images(),
                 progress=False)
    ours = [w for w in caught if "decorrelation" in str(w.message)]
    assert len(ours) == 1  # once a run, not once a step
    message = str(ours[0].message)
    assert "NaN from step 1" in message and "constant" in message and "log.csv" in message
    log = read_log(tmp_path / "log.csv")
    assert np.isnan(log["decorrelation"].values).all() and np.isfinite(log["loss"].values).all()


def test_channels_last_and_bf16_autocast_train(tmp_path):
    images = smooth_images()
    plain = weights(pretrain(config(steps=3), tmp_path / "p", images=images, progress=False))
    cl = weights(pretrain(config(steps=3, channels_last=True), tmp_path / "c", images=images, progress=False))
    for k in plain:
        torch.testing.assert_close(cl[k].contiguous(), plain[k], rtol=0, atol=1e-5)
    pretrain(config(steps=3, amp=True), tmp_path / "a", images=images, progress=False)
    log = read_log(tmp_path / "a" / "log.csv")
    assert np.isfinite(log["loss"].values).all()


def test_foreground_maps_are_attached(tmp_path, monkeypatch):
    import neuroalign.data.foreground as foreground

    calls = []

    def fake_maps(images, model="u2netp", cache_dir=None, progress=True):
        calls.append((tuple(images.shape), model))
        return np.full((len(images), *images.shape[-2:]), 255, dtype=np.uint8)

    monkeypatch.setattr(foreground, "foreground_maps", fake_maps)
    images = smooth_images(16)
    pretrain(config(steps=1, loss_region="foreground_only", foreground_model="u2netp"), tmp_path,
             images=images, progress=False)
    assert calls == [((16, 3, 32, 32), "u2netp")]


def test_bad_inputs_are_named(tmp_path):
    with pytest.raises(ValueError, match="uint8 tensor"):
        pretrain(config(), tmp_path, images=smooth_images().float(), progress=False)
    with pytest.raises(ValueError, match="larger than the 4 training images"):
        pretrain(config(), tmp_path, images=smooth_images(4), progress=False)
    with pytest.raises(ValueError, match="betas"):
        config(betas=(0.9, 1.5))
    with pytest.raises(ValueError, match="'optimizer' setting must be one of"):
        config(optimizer="sgd")


def test_log_reads_and_plots(tmp_path):
    pretrain(config(), tmp_path, images=smooth_images(), progress=False)
    with open(tmp_path / "log.csv") as f:
        rows = list(csv.DictReader(f))
    log = read_log(tmp_path / "log.csv")
    assert log["step"].values.tolist() == [2, 4, 6] == [int(r["step"]) for r in rows]
    assert log["loss"].values.tolist() == [float(r["loss"]) for r in rows]
    assert (log["decorrelation"].values > 0).all() and (log["images_per_s"].values > 0).all()
    fig = plot_log(tmp_path / "log.csv", tmp_path / "log.png")
    assert (tmp_path / "log.png").stat().st_size > 1000
    assert len(fig.axes) == 3 and len(fig.axes[0].lines[0].get_xdata()) == 3


def test_log_leaves_decorrelation_empty_where_not_computed_and_plots_only_computed(tmp_path):
    pretrain(config(log_every=1, decorrelation_every=3), tmp_path, images=smooth_images(),
             progress=False)
    with open(tmp_path / "log.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["step"] for r in rows] == ["1", "2", "3", "4", "5", "6"]
    assert [r["decorrelation"] == "" for r in rows] == [True, True, False, True, True, False]
    log = read_log(tmp_path / "log.csv")
    assert np.isnan(log["decorrelation"].values[[0, 1, 3, 4]]).all()
    fig = plot_log(tmp_path / "log.csv")
    (line,) = fig.axes[1].lines
    assert line.get_xdata().tolist() == [3, 6]
    assert line.get_ydata().tolist() == [float(rows[2]["decorrelation"]), float(rows[5]["decorrelation"])]
