import csv
import math
from pathlib import Path

import pytest
import torch

from neuroalign.masking import periphery_mask
from neuroalign.models import create_model, list_models
from neuroalign.models.latent_mim import ema_update, patch_infonce, target_momentum
from neuroalign.models.vit_mae import visible_token_order
from neuroalign.objectives import MIMBatch
from neuroalign.training import PretrainConfig, load_config, load_model, pretrain


def make_batch(n=2, size=32, ratio=0.8, seed=0):
    g = torch.Generator().manual_seed(seed)
    mask = periphery_mask(n, size, size, ratio=ratio)
    images = torch.rand(n, 3, size, size, generator=g)
    inputs = torch.where(mask, images.mean(dim=(2, 3), keepdim=True), images)
    return MIMBatch(images=images, inputs=inputs, mask=mask, target=images.clone(),
                    loss_weight=mask.float())


def plain_infonce(pred, target, tau, weight=None):
    """Loops over images, patches and features, in float64."""
    n, m, d = pred.shape
    total, norm = 0.0, 0.0
    for b in range(n):
        # standardise each feature over the patches of this image (unbiased std)
        p = [[0.0] * d for _ in range(m)]
        for f in range(d):
            col = [float(pred[b, i, f]) for i in range(m)]
            mu = sum(col) / m
            sd = math.sqrt(sum((c - mu) ** 2 for c in col) / (m - 1))
            for i in range(m):
                p[i][f] = (col[i] - mu) / (sd + 1e-4)
        p = [[v / math.sqrt(sum(u * u for u in row)) for v in row] for row in p]
        t = [[float(v) for v in target[b, j]] for j in range(m)]
        t = [[v / math.sqrt(sum(u * u for u in row)) for v in row] for row in t]
        for i in range(m):
            scores = [sum(p[i][f] * t[j][f] for f in range(d)) / tau for j in range(m)]
            log_z = math.log(sum(math.exp(s) for s in scores))
            w = 1.0 if weight is None else float(weight[b, i])
            total += w * (log_z - scores[i])
            norm += w
    return 2 * tau * total / norm


def test_registered_and_shapes():
    assert {"latent_mim_tiny", "latent_mim_small"} <= set(list_models("latent_mim*"))
    model = create_model("latent_mim_tiny")
    x = torch.rand(2, 3, 32, 32)
    assert model(x).shape == (2, 64, 32)
    loss, latent = model.training_loss(make_batch())
    assert latent.shape == (2, 32)
    # at initialisation the 52 hidden patches are nearly indistinguishable: loss ≈ 2τ·log 52
    assert loss.item() == pytest.approx(0.4 * math.log(52), rel=0.05)


def test_infonce_against_a_plain_loop():
    g = torch.Generator().manual_seed(0)
    pred, target = torch.randn(2, 5, 6, generator=g), torch.randn(2, 5, 6, generator=g)
    weight = torch.rand(2, 5, generator=g)
    assert patch_infonce(pred, target, 0.2).item() == pytest.approx(plain_infonce(pred, target, 0.2), rel=1e-5)
    assert patch_infonce(pred, target, 0.5, weight).item() == pytest.approx(
        plain_infonce(pred, target, 0.5, weight), rel=1e-5)


def test_infonce_invariances():
    g = torch.Generator().manual_seed(1)
    pred, target = torch.randn(3, 7, 8, generator=g), torch.randn(3, 7, 8, generator=g)
    loss = patch_infonce(pred, target).item()
    # per-image, per-feature shifts and scales of the predictions are standardised away
    shift, scale = torch.randn(3, 1, 8, generator=g), torch.rand(3, 1, 8, generator=g) + 0.5
    assert patch_infonce(pred * scale + shift, target).item() == pytest.approx(loss, rel=1e-4)
    # targets only enter through their direction
    assert patch_infonce(pred, 3.0 * target).item() == pytest.approx(loss, rel=1e-5)
    # predicting the targets beats predicting them in the wrong order
    good = patch_infonce(target, target).item()
    bad = patch_infonce(target[:, torch.randperm(7, generator=g)], target).item()
    assert good < bad
    with pytest.raises(ValueError, match="at least 2"):
        patch_infonce(pred[:, :1], target[:, :1])


def test_momentum_schedule():
    assert target_momentum(0, 100) == pytest.approx(0.99)
    assert target_momentum(100, 100) == pytest.approx(1.0)
    assert target_momentum(50, 100) == pytest.approx(0.995)
    values = [target_momentum(s, 100) for s in range(101)]
    assert all(a < b for a, b in zip(values, values[1:], strict=False))
    with pytest.raises(ValueError, match="total_steps"):
        target_momentum(0, 0)


def test_ema_update_against_a_plain_reference():
    model = create_model("latent_mim_tiny")
    online, target = model.encoder, model.target_encoder
    assert all(torch.equal(a, b) for a, b in zip(online.parameters(), target.parameters(), strict=True))
    assert not any(p.requires_grad for p in target.parameters())
    with torch.no_grad():
        for p in online.parameters():
            p.add_(torch.randn_like(p))
    before_t = [p.clone() for p in target.parameters()]
    before_o = [p.clone() for p in online.parameters()]
    model.after_optimizer_step(25, 100)
    m = 1 - 0.01 * (1 + math.cos(math.pi / 4)) / 2
    for t0, o0, t1 in zip(before_t, before_o, target.parameters(), strict=True):
        assert torch.allclose(t1, m * t0 + (1 - m) * o0, atol=1e-6)
    assert all(torch.equal(a, b) for a, b in zip(before_o, online.parameters(), strict=True))
    # the plain function on two small modules
    a, b = torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)
    expected = 0.7 * a.weight.detach() + 0.3 * b.weight.detach()
    ema_update(a, b, 0.7)
    assert torch.allclose(a.weight, expected)


def test_target_encoder_sees_only_the_hidden_patches():
    model = create_model("latent_mim_tiny").eval()
    batch = make_batch()
    shapes = {}
    hooks = [model.encoder.blocks[0].register_forward_hook(lambda m, i, o: shapes.__setitem__("online", o.shape)),
             model.target_encoder.blocks[0].register_forward_hook(lambda m, i, o: shapes.__setitem__("target", o.shape))]
    with torch.no_grad():
        loss = model.training_loss(batch)[0]
    for h in hooks:
        h.remove()
    assert shapes == {"online": (2, 12, 32), "target": (2, 52, 32)}
    ids_shuffle, k = visible_token_order(batch.mask, 4)
    kept = torch.ones(2, 64, dtype=torch.bool)
    kept.scatter_(1, ids_shuffle[:, k:], False)
    kept_pixels = kept.view(2, 1, 8, 8).repeat_interleave(4, 2).repeat_interleave(4, 3)

    def loss_with(**changes):
        changed = MIMBatch(**{**batch.__dict__, **changes})
        with torch.no_grad():
            return model.training_loss(changed)[0].item()

    def latent_with(**changes):
        changed = MIMBatch(**{**batch.__dict__, **changes})
        with torch.no_grad():
            return model.training_loss(changed)[1]

    noise = torch.rand(2, 3, 32, 32)
    # the target's visible patches and the input's hidden patches are never seen
    assert loss_with(target=torch.where(kept_pixels, noise, batch.target)) == loss.item()
    assert loss_with(inputs=torch.where(kept_pixels, batch.inputs, noise)) == loss.item()
    # the target's hidden patches are, and the input's visible patches make the latent
    assert loss_with(target=torch.where(kept_pixels, batch.target, noise)) != pytest.approx(loss.item(), rel=1e-3)
    latent = latent_with()
    assert torch.equal(latent_with(inputs=torch.where(kept_pixels, batch.inputs, noise)), latent)
    assert not torch.allclose(latent_with(inputs=torch.where(kept_pixels, noise, batch.inputs)), latent, atol=1e-3)


def test_intermediates_are_the_online_encoder_blocks():
    model = create_model("latent_mim_tiny").eval()
    x = torch.rand(2, 3, 32, 32)
    assert model.default_layers() == ["encoder.blocks.0", "encoder.blocks.1"]
    hooked = []
    handle = model.encoder.blocks[1].register_forward_hook(lambda m, i, o: hooked.append(o))
    with torch.no_grad():
        out = model(x)
        feats = model.forward_intermediates(x)
    handle.remove()
    assert [f.shape for f in feats] == [torch.Size([2, 64, 32])] * 2
    assert torch.equal(hooked[0], feats[1])
    assert torch.allclose(model.encoder.norm(feats[-1]), out)


def test_no_hidden_patches_is_an_error():
    model = create_model("latent_mim_tiny")
    batch = make_batch()
    batch.mask = torch.zeros_like(batch.mask)
    with pytest.raises(ValueError, match="hidden patches"):
        model.training_loss(batch)


def test_a_few_steps_on_a_fixed_batch_reduce_the_loss():
    torch.manual_seed(0)
    model = create_model("latent_mim_tiny")
    batch = make_batch(n=8)
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=2e-3)
    losses = []
    for step in range(15):
        loss, _ = model.training_loss(batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
        model.after_optimizer_step(step, 15)
        losses.append(loss.item())
    assert losses[-1] < 0.88 * losses[0]  # measured: 1.55 → 1.31


def test_trains_through_pretrain(tmp_path):
    images = (torch.rand(32, 3, 32, 32) * 255).to(torch.uint8)
    cfg = PretrainConfig(model="latent_mim_tiny", steps=3, batch_size=8, lr=1e-3, log_every=1,
                         decorrelation_every=1, checkpoint_every=10, device="cpu")
    path = pretrain(cfg, tmp_path, images=images, progress=False)
    with open(tmp_path / "log.csv") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["step"]) for r in rows] == [1, 2, 3]
    assert all(math.isfinite(float(r["loss"])) and math.isfinite(float(r["decorrelation"])) for r in rows)
    model, state = load_model(path)
    assert state["step"] == 3 and type(model).__name__ == "LatentMIM"
    # the EMA target trails the trained encoder: close to it, but not equal
    diffs = [(t - o).abs().max().item() for t, o in zip(model.target_encoder.parameters(), model.encoder.parameters(), strict=True)]
    assert 0 < max(diffs) < 0.01


def test_incomplete_masking_encodes_every_token():
    model = create_model("latent_mim_tiny", visible_only=False).eval()
    shapes = {}
    hooks = [model.encoder.blocks[0].register_forward_hook(lambda m, i, o: shapes.__setitem__("online", o.shape)),
             model.target_encoder.blocks[0].register_forward_hook(lambda m, i, o: shapes.__setitem__("target", o.shape))]
    with torch.no_grad():
        loss, _ = model.training_loss(make_batch())
    for h in hooks:
        h.remove()
    assert shapes == {"online": (2, 64, 32), "target": (2, 52, 32)}
    assert math.isfinite(loss.item())


@pytest.mark.parametrize("recipe, size, visible", [("cifar10_latent_mim_cpu.toml", 32, 12), ("stl10_latent_mim.toml", 96, 32)])
def test_recipes_build_the_model(recipe, size, visible):
    cfg = load_config(Path(__file__).resolve().parents[2] / "pretrain" / recipe)
    model = create_model(cfg.model, **cfg.model_kwargs)
    assert type(model).__name__ == "LatentMIM" and model.image_size == cfg.image_size == size
    mask = periphery_mask(1, size, size, ratio=cfg.mask_ratio)
    assert visible_token_order(mask, model.patch_size)[1] == visible  # tokens in the foveal disk
