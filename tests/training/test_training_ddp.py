"""Several processes: a 2-process gloo run on CPU equals the single-process run of the same recipe."""

import csv

import pytest
import torch

from neuroalign.objectives import weighted_mse
from neuroalign.training import PretrainConfig, load_checkpoint, pretrain
from neuroalign.training.distributed import DistInfo, env_world, rank_slice, spawn_local
from neuroalign.training.trainer import prepare_batch, slice_batch


def smooth_images(n=64, size=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    low = torch.rand(n, 3, size // 8, size // 8, generator=g)
    x = torch.nn.functional.interpolate(low, size=(size, size), mode="bilinear", align_corners=False)
    return (x * 255).to(torch.uint8)


def with_foreground(images, seed=1):
    """Random foreground maps: the images of a batch then carry unequal loss-weight totals."""
    fg = torch.rand(len(images), 1, *images.shape[-2:], generator=torch.Generator().manual_seed(seed))
    return torch.cat([images, (fg * 255).to(torch.uint8)], dim=1)


def ddp_config(**kw):
    base = dict(model="conv_mae_tiny", steps=4, batch_size=16, lr=3e-3, log_every=1,
                decorrelation_every=2, checkpoint_every=0, seed=1, fixation="uniform",
                loss_region="foreground_weighted", horizontal_flip=True, device="cpu")
    base.update(kw)
    return PretrainConfig(**base)


def read_log(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def test_two_gloo_processes_equal_one_process(tmp_path):
    images = with_foreground(smooth_images())
    cfg = ddp_config()
    single = pretrain(cfg, tmp_path / "single", images=images, progress=False)
    # fork: the children inherit the imported modules (spawn would re-import everything)
    spawn_local(pretrain, 2, cfg, tmp_path / "two", start_method="fork", images=images, progress=False)
    a = load_checkpoint(single)
    b = load_checkpoint(tmp_path / "two" / "checkpoint.pt")
    assert b["step"] == 4 and b["extra"]["world_size"] == 2 and a["extra"]["world_size"] == 1
    torch.manual_seed(cfg.seed)
    from neuroalign.models import create_model

    init = create_model(cfg.model).state_dict()
    moved = max((a["model_state"][k] - init[k]).abs().max().item() for k in init)
    assert moved > 1e-3  # the weights did train
    for k, v in a["model_state"].items():
        torch.testing.assert_close(b["model_state"][k], v, rtol=0, atol=1e-5, msg=k)
    # the log of rank 0 holds the global batch's loss and decorrelation
    rows_a, rows_b = read_log(tmp_path / "single" / "log.csv"), read_log(tmp_path / "two" / "log.csv")
    assert [r["step"] for r in rows_b] == ["1", "2", "3", "4"]
    for ra, rb in zip(rows_a, rows_b, strict=True):
        assert float(rb["loss"]) == pytest.approx(float(ra["loss"]), rel=1e-5)
        assert (ra["decorrelation"] == "") == (rb["decorrelation"] == "") == (int(ra["step"]) % 2 == 1)
        if ra["decorrelation"]:  # computed every 2 steps
            assert float(rb["decorrelation"]) == pytest.approx(float(ra["decorrelation"]), rel=1e-4)


def test_rank_losses_average_to_the_global_loss():
    """The trainer's rescaling: mean over ranks of W·Σ_slice w/Σ w · loss(slice) = loss(batch)."""
    images = with_foreground(smooth_images(32))
    cfg = ddp_config(batch_size=12)
    batch = prepare_batch(images, cfg, step=0, device="cpu")
    prediction = torch.rand_like(batch.target)
    totals = batch.loss_weight.flatten(1).sum(1)
    assert totals.std() > 0.01 * totals.mean()  # unequal weights: the plain mean would be wrong
    whole = weighted_mse(prediction, batch.target, batch.loss_weight)
    for world in (2, 3, 4):
        per_rank = []
        for rank in range(world):
            share = rank_slice(12, DistInfo(rank, world))
            part = slice_batch(batch, share)
            scale = world * part.loss_weight.sum() / batch.loss_weight.sum()
            per_rank.append(scale * weighted_mse(prediction[share], part.target, part.loss_weight))
        assert torch.stack(per_rank).mean().item() == pytest.approx(whole.item(), rel=1e-6)
        plain = torch.stack([weighted_mse(prediction[rank_slice(12, DistInfo(r, world))],
                                          slice_batch(batch, rank_slice(12, DistInfo(r, world))).target,
                                          slice_batch(batch, rank_slice(12, DistInfo(r, world))).loss_weight)
                             for r in range(world)]).mean()
        assert plain.item() != pytest.approx(whole.item(), rel=1e-6)


def test_rank_slices_tile_the_global_batch():
    slices = [rank_slice(12, DistInfo(r, 3)) for r in range(3)]
    assert [(s.start, s.stop) for s in slices] == [(0, 4), (4, 8), (8, 12)]
    with pytest.raises(ValueError, match="divisible by the number of processes, 5"):
        rank_slice(12, DistInfo(0, 5))


def test_env_world_reads_torchrun_variables(monkeypatch):
    monkeypatch.setenv("RANK", "2")
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("LOCAL_RANK", "0")
    assert env_world() == (2, 4, 0)
    monkeypatch.setenv("RANK", "4")
    with pytest.raises(ValueError, match="RANK=4"):
        env_world()
    monkeypatch.setenv("WORLD_SIZE", "four")
    with pytest.raises(ValueError, match="WORLD_SIZE"):
        env_world()
