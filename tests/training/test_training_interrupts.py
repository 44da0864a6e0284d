"""SIGINT/SIGTERM sent to a running ``neuroalign pretrain``: the step ends, a checkpoint is
written, one line says how to resume, and the resumed run equals an uninterrupted one bit for
bit. The Python API raises ``Interrupted`` and restores the previous signal handlers."""

import os
import signal
import textwrap
import time

import numpy as np
import pytest
import torch
from PIL import Image

from neuroalign.cli import main
from neuroalign.interrupts import Interrupted, deferred_signals
from neuroalign.training import load_checkpoint, pretrain
from neuroalign.training.config import load_config

STEPS, STOP_STEP = 12, 4

RECIPE = f"""\
model = "conv_mae_tiny"
dataset = "folder"
image_size = 32
batch_size = 8
steps = {STEPS}
lr = 3e-3
seed = 7
masking = "patches"
patch_size = 4
mask_ratio = 0.5
horizontal_flip = true
log_every = 5
decorrelation_every = 0
checkpoint_every = 100
device = "cpu"
"""

# the CLI in a child whose step STOP_STEP waits (in the main thread, where handlers run) until
# the parent has sent its signal: the signal then always arrives during that step
CHILD = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from neuroalign.training import trainer
    from neuroalign.cli import main

    ready, sent, stop_step = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
    build = trainer.prepare_batch

    def prepare_batch(images, config, step, device):
        if step == stop_step:
            ready.touch()
            while not sent.exists():
                time.sleep(0.01)
        return build(images, config, step, device)

    trainer.prepare_batch = prepare_batch
    sys.exit(main(sys.argv[4:]))
""")


@pytest.fixture(scope="module")
def recipe(tmp_path_factory):
    root = tmp_path_factory.mktemp("recipe")
    images = root / "images"
    images.mkdir()
    rng = np.random.default_rng(0)
    for i in range(24):
        low = rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)
        Image.fromarray(low).resize((32, 32), Image.BILINEAR).save(images / f"{i:02d}.png")
    path = root / "recipe.toml"
    path.write_text(RECIPE + f'data_path = "{images}"\n')
    return path


def same_state(a: dict, b: dict) -> None:
    assert a["step"] == b["step"]
    for k in a["model_state"]:
        assert torch.equal(a["model_state"][k], b["model_state"][k]), k
    states_a = a["optimizer_state"]["state"].values()
    states_b = b["optimizer_state"]["state"].values()
    for group_a, group_b in zip(states_a, states_b, strict=True):
        for k in group_a:
            assert torch.equal(torch.as_tensor(group_a[k]), torch.as_tensor(group_b[k])), k


@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_cli_signal_saves_a_checkpoint_and_resume_is_bit_exact(tmp_path, recipe, signal_child,
                                                               sig, code):
    out = tmp_path / "run"
    argv = ["pretrain", str(recipe), "--out", str(out)]
    returncode, _, err = signal_child(CHILD, [str(STOP_STEP), *argv], sig)
    assert returncode == code, err
    lines = [line for line in err.splitlines() if line.startswith("neuroalign")]
    assert "Traceback" not in err
    assert err.rstrip().splitlines()[-1] == lines[-1]  # the last line, after the progress bar
    assert lines == [
        f"neuroalign: interrupted by {signal.Signals(sig).name}: checkpoint of step "
        f"{STOP_STEP + 1} of {STEPS} in {out / 'checkpoint.pt'}; resume with: neuroalign "
        f"pretrain {recipe} --out {out} --resume"
    ]
    assert load_checkpoint(out / "checkpoint.pt")["step"] == STOP_STEP + 1
    log_steps = [line.split(",")[0] for line in (out / "log.csv").read_text().splitlines()[1:]]
    assert log_steps == ["5"]  # logged at step 5, the step the run stopped after

    assert main([*argv, "--resume"]) == 0
    config = load_config(recipe)
    reference = pretrain(config, tmp_path / "reference", progress=False)
    same_state(load_checkpoint(reference), load_checkpoint(out / "checkpoint.pt"))
    log_steps = [line.split(",")[0] for line in (out / "log.csv").read_text().splitlines()[1:]]
    assert log_steps == ["5", "10", "12"]


def test_api_raises_interrupted_and_restores_the_handlers(tmp_path, recipe, monkeypatch):
    from neuroalign.training import trainer

    config = load_config(recipe)
    build = trainer.prepare_batch

    def prepare_batch(images, cfg, step, device):
        if step == 2:
            os.kill(os.getpid(), signal.SIGTERM)  # handled at once, in this (main) thread
        return build(images, cfg, step, device)

    monkeypatch.setattr(trainer, "prepare_batch", prepare_batch)
    mine = []

    def handler(signum, frame):
        mine.append(signum)

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        with pytest.raises(Interrupted) as caught:
            pretrain(config, tmp_path / "run", progress=False)
        assert signal.getsignal(signal.SIGTERM) is handler and not mine
        os.kill(os.getpid(), signal.SIGTERM)  # the caller's handler is back
        assert mine == [signal.SIGTERM]
    finally:
        signal.signal(signal.SIGTERM, previous)
    err = caught.value
    assert isinstance(err, KeyboardInterrupt) and err.exit_code == 143
    assert err.saved == tmp_path / "run" / "checkpoint.pt"
    assert load_checkpoint(err.saved)["step"] == 3
    assert "resume=True" in str(err) and "step 3 of 12" in str(err)


def test_handlers_only_in_the_main_thread_and_not_over_an_ignored_signal():
    import threading

    before = signal.getsignal(signal.SIGINT)
    seen = []
    thread = threading.Thread(target=lambda: seen.append(_installed()))
    thread.start()
    thread.join()
    assert seen == [False] and signal.getsignal(signal.SIGINT) is before
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        with deferred_signals():
            assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
            assert signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL
    finally:
        signal.signal(signal.SIGINT, previous)


def _installed() -> bool:
    with deferred_signals():
        return signal.getsignal(signal.SIGINT) is not signal.default_int_handler


def test_a_second_signal_stops_at_once():
    with pytest.raises(KeyboardInterrupt), deferred_signals() as stop:
        os.kill(os.getpid(), signal.SIGINT)
        assert stop and stop.signum == signal.SIGINT
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(1)  # not reached: the second signal raised
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_a_signal_to_one_rank_stops_every_rank_at_the_same_step(tmp_path, recipe):
    """Two gloo processes; only rank 1 gets SIGINT (during step 1): both finish step 2, rank 0
    writes the checkpoint, both raise Interrupted (no deadlock in a collective)."""
    from neuroalign.training import trainer
    from neuroalign.training.distributed import spawn_local

    config = load_config(recipe)

    def run(out):
        rank = int(os.environ["RANK"])
        build = trainer.prepare_batch

        def prepare_batch(images, cfg, step, device):
            if step == 1 and rank == 1:
                os.kill(os.getpid(), signal.SIGINT)
            return build(images, cfg, step, device)

        trainer.prepare_batch = prepare_batch
        try:
            pretrain(config, out, progress=False)
        except Interrupted as err:
            (out.parent / f"rank{rank}").write_text(f"{err.signum} {err.saved}")

    out = tmp_path / "run"
    spawn_local(run, 2, out, start_method="fork")
    for rank in (0, 1):
        assert (tmp_path / f"rank{rank}").read_text() == f"{int(signal.SIGINT)} {out / 'checkpoint.pt'}"
    assert load_checkpoint(out / "checkpoint.pt")["step"] == 2
