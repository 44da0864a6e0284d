"""SIGINT/SIGTERM sent to a running ``neuroalign extract``: the batch being processed is written,
the ``.partial`` keeps every complete batch, one line names it and the resume command, and
``--resume`` gives the file of an uninterrupted run. The Python API raises ``Interrupted``."""

import os
import shlex
import signal
import textwrap

import netCDF4
import numpy as np
import pytest
import torch
from PIL import Image

from neuroalign.activations import partial_path
from neuroalign.cli import main
from neuroalign.data.stimuli import StimulusSet
from neuroalign.extraction import extract
from neuroalign.interrupts import Interrupted

N, BATCH, WAIT_AT = 14, 2, 3  # the signal arrives during the 3rd forward pass

# the CLI in a child whose forward pass WAIT_AT waits until the parent has sent its signal
CHILD = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from neuroalign.extraction import hooks
    from neuroalign.cli import main

    ready, sent, wait_at = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
    features, calls = hooks.Runner.features, [0]

    def waiting(self, x):
        calls[0] += 1
        if calls[0] == wait_at:
            ready.touch()
            while not sent.exists():
                time.sleep(0.01)
        return features(self, x)

    hooks.Runner.features = waiting
    sys.exit(main(sys.argv[4:]))
""")


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("stimuli")
    rng = np.random.default_rng(0)
    for i in range(N):
        Image.fromarray(rng.integers(0, 256, (24, 24, 3), dtype=np.uint8)).save(folder / f"{i:02d}.png")
    return folder


def cli_args(folder, out):
    return ["extract", "torchvision/resnet18", "--stimuli", str(folder), "--out", str(out),
            "--image-size", "32", "--batch-size", str(BATCH), "--device", "cpu", "--seed", "0",
            "--layers", "layer1.0.conv1", "layer2.*", "--projection", "random",
            "--n-components", "6"]


@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_cli_signal_keeps_the_partial_and_resume_completes_it(tmp_path, folder, same_contents,
                                                              signal_child, sig, code):
    out = tmp_path / "acts.nc"
    args = [*cli_args(folder, out), "--overwrite"]  # dropped from the resume command
    returncode, _, err = signal_child(CHILD, [str(WAIT_AT), *args], sig)
    assert returncode == code, err
    assert "Traceback" not in err
    kept = WAIT_AT * BATCH  # the batch running when the signal came is written too
    lines = [line for line in err.splitlines() if line.startswith("neuroalign")]
    assert err.rstrip().splitlines()[-1] == lines[-1]
    assert lines == [
        f"neuroalign: interrupted by {signal.Signals(sig).name}: {kept} of {N} stimuli in "
        f"{partial_path(out)}; resume with: neuroalign {shlex.join(cli_args(folder, out))} --resume"
    ]
    assert not out.exists()
    with netCDF4.Dataset(partial_path(out)) as ds:
        assert ds.getncattr("presentations_complete") == kept
    assert main([*cli_args(folder, out), "--resume"]) == 0
    assert not partial_path(out).exists()
    reference = tmp_path / "reference.nc"
    assert main(cli_args(folder, reference)) == 0
    same_contents(out, reference)


class SignalAt(torch.nn.Module):
    """A small conv net that sends this process ``sig`` during forward pass ``at``."""

    def __init__(self, at: int, sig: int):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 3)
        self.at, self.sig, self.calls = at, sig, 0

    def forward(self, x):
        self.calls += 1
        if self.calls == self.at:
            os.kill(os.getpid(), self.sig)
        return self.conv(x)


def test_api_raises_interrupted_after_the_batch(tmp_path):
    images = np.random.default_rng(1).integers(0, 256, (10, 8, 8, 3), dtype=np.uint8)
    stimuli = StimulusSet(stimulus_id=[f"s{i}" for i in range(10)], images=images)
    out = tmp_path / "a.nc"
    before = signal.getsignal(signal.SIGINT)
    with pytest.raises(Interrupted) as caught:
        extract(SignalAt(2, signal.SIGINT), stimuli, "conv", out,
                transform=lambda im: torch.from_numpy(np.array(im)).permute(2, 0, 1).float(),
                batch_size=3, progress=False)
    assert signal.getsignal(signal.SIGINT) is before
    err = caught.value
    assert err.exit_code == 130 and err.saved == partial_path(out)
    assert str(err).startswith(f"interrupted by SIGINT: 6 of 10 stimuli in {partial_path(out)}")
    with netCDF4.Dataset(partial_path(out)) as ds:
        assert ds.getncattr("presentations_complete") == 6
