"""Faults during pretraining: a run killed with SIGKILL at a random step resumes bit-exact."""

import os
import random
import signal
import subprocess
import sys
import textwrap

import pytest
import torch

from neuroalign.training import PretrainConfig, load_checkpoint, pretrain

STEPS = 14

# The killed child runs on one torch thread, as the runs compared with it (tests/conftest.py).
# Runs pretrain in a fresh process and SIGKILLs it at step k: either as step k's batch is built
# (between optimiser steps) or while it writes the checkpoint after step k (the temporary file
# half written), as a machine losing power would.
CHILD = textwrap.dedent(
    """
    import os, signal, sys
    import torch
    from neuroalign.training import PretrainConfig, checkpoint, pretrain, trainer

    torch.set_num_threads(1)
    setup, out, kill_step, where = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    given = torch.load(setup)

    def die():
        os.kill(os.getpid(), signal.SIGKILL)

    if where == "step":
        build = trainer.prepare_batch

        def prepare_batch(images, config, step, device):
            if step == kill_step:
                die()
            return build(images, config, step, device)

        trainer.prepare_batch = prepare_batch
    else:
        save = torch.save

        def half_save(obj, f, *args, **kwargs):
            if obj.get("step") == kill_step:
                with open(f, "wb") as handle:
                    handle.write(b"half a checkpoint")
                die()
            return save(obj, f, *args, **kwargs)

        checkpoint.torch.save = half_save
    pretrain(PretrainConfig(**given["config"]), out, images=given["images"], progress=False)
    """
)


def setup():
    g = torch.Generator().manual_seed(0)
    low = torch.rand(48, 3, 4, 4, generator=g)
    images = torch.nn.functional.interpolate(low, size=(32, 32), mode="bilinear") * 255
    config = PretrainConfig(model="conv_mae_tiny", steps=STEPS, batch_size=8, lr=3e-3, seed=11,
                            masking="patches", patch_size=4, mask_ratio=0.5,
                            horizontal_flip=True, log_every=1, decorrelation_every=2,
                            checkpoint_every=3, device="cpu")
    return images.to(torch.uint8), config


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    images, config = setup()
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        path = pretrain(config, tmp_path_factory.mktemp("full"), images=images, progress=False)
    finally:
        torch.set_num_threads(before)
    return load_checkpoint(path)


@pytest.mark.slow
@pytest.mark.parametrize("where", ["step", "checkpoint"])
def test_sigkill_at_a_random_step_then_resume_is_bit_exact(tmp_path, uninterrupted, where):
    images, config = setup()
    torch.save({"images": images, "config": config.to_dict()}, tmp_path / "setup.pt")
    (tmp_path / "child.py").write_text(CHILD)
    # a step after the first checkpoint (step 3); for "checkpoint", one that writes a checkpoint
    candidates = range(4, STEPS) if where == "step" else range(6, STEPS, 3)
    kill_step = random.Random(os.urandom(8)).choice(list(candidates))
    context = f"killed at step {kill_step} ({where})"
    out = tmp_path / "run"
    killed = subprocess.run(
        [sys.executable, str(tmp_path / "child.py"), str(tmp_path / "setup.pt"), str(out),
         str(kill_step), where],
        capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert killed.returncode == -signal.SIGKILL, (context, killed.stderr)
    saved = load_checkpoint(out / "checkpoint.pt")["step"]
    assert saved == ((kill_step // 3) * 3 if where == "step" else kill_step - 3), context
    if where == "checkpoint":
        assert (out / "checkpoint.pt.partial").read_bytes() == b"half a checkpoint"

    resumed = load_checkpoint(pretrain(config, out, images=images, resume=True, progress=False))
    a, b = uninterrupted, resumed
    assert a["step"] == b["step"] == STEPS
    assert a["model_state"].keys() == b["model_state"].keys()
    for k in a["model_state"]:
        assert torch.equal(a["model_state"][k], b["model_state"][k]), (context, k)
    moments_a = a["optimizer_state"]["state"].values()
    moments_b = b["optimizer_state"]["state"].values()
    for group_a, group_b in zip(moments_a, moments_b, strict=True):
        for k in group_a:
            assert torch.equal(torch.as_tensor(group_a[k]), torch.as_tensor(group_b[k])), context
    steps = [line.split(",")[0] for line in (out / "log.csv").read_text().splitlines()[1:]]
    assert steps == [str(s) for s in range(1, STEPS + 1)], context  # each step logged once
