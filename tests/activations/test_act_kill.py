"""Faults: a CLI extraction killed (SIGKILL) at a random batch, then resumed, gives the file of
an uninterrupted run."""

import subprocess
import sys
import textwrap

import netCDF4
import numpy as np
from PIL import Image

from neuroalign.activations import partial_path
from neuroalign.cli import main

N, BATCH = 14, 2


def cli_args(folder, out):
    return ["extract", "torchvision/resnet18", "--stimuli", str(folder), "--out", str(out),
            "--image-size", "32", "--batch-size", str(BATCH), "--device", "cpu", "--seed", "0",
            "--layers", "layer1.0.conv1", "layer2.*", "fc", "--projection", "random",
            "--n-components", "6", "--mask", "patches:0.5:noise", "--compression-threads", "2"]


def kill_at(batch: int, args) -> subprocess.CompletedProcess:
    """Run the CLI in a subprocess that SIGKILLs itself when forward pass ``batch`` starts
    (batches before it are on disk: on CPU each batch is written before the next runs)."""
    script = textwrap.dedent(f"""
        import os, signal
        from neuroalign.extraction import hooks
        from neuroalign.cli import main

        features, calls = hooks.Runner.features, [0]

        def killing(self, x):
            calls[0] += 1
            if calls[0] == {batch}:
                os.kill(os.getpid(), signal.SIGKILL)
            return features(self, x)

        hooks.Runner.features = killing
        main({args!r})
    """)
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=300)


def test_sigkill_then_resume_equals_an_uninterrupted_run(tmp_path, same_contents):
    folder = tmp_path / "stimuli"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(N):
        Image.fromarray(rng.integers(0, 256, (24, 24, 3), dtype=np.uint8)).save(folder / f"{i:02d}.png")
    batch = int(np.random.default_rng().integers(2, N // BATCH + 1))  # 1 .. all-but-one written
    out = tmp_path / "killed.nc"
    proc = kill_at(batch, cli_args(folder, out))
    assert proc.returncode == -9, f"batch {batch}: {proc.stderr}"
    assert not out.exists()
    with netCDF4.Dataset(partial_path(out)) as ds:
        assert ds.getncattr("presentations_complete") == (batch - 1) * BATCH, f"batch {batch}"
    assert main([*cli_args(folder, out), "--resume"]) == 0
    assert not partial_path(out).exists()
    with netCDF4.Dataset(out) as ds:
        assert ds.getncattr("resumed_from") == (batch - 1) * BATCH
    reference = tmp_path / "reference.nc"
    assert main(cli_args(folder, reference)) == 0
    same_contents(out, reference)
