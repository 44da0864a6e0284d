"""Before a large extraction, one line estimates the file's size and names the options that
make it smaller."""

import numpy as np
import pytest
import torch

from neuroalign.data.stimuli import StimulusSet
from neuroalign.extraction import extract, pipeline
from neuroalign.extraction.pipeline import size_notice


class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 5, 3)  # (5, 6, 6) = 180 units on 8x8 inputs
        self.fc = torch.nn.Linear(180, 7)

    def forward(self, x):
        return self.fc(self.conv(x).flatten(1))


def stimuli(n=9):
    images = np.random.default_rng(0).integers(0, 256, (n, 8, 8, 3), dtype=np.uint8)
    return StimulusSet(stimulus_id=[f"s{i}" for i in range(n)], images=images)


def to_tensor(image):
    return torch.from_numpy(np.array(image)).permute(2, 0, 1).float() / 255


def run(tmp_path, name, **kw):
    return extract(Net(), stimuli(), ["conv", "fc"], tmp_path / name, transform=to_tensor,
                   batch_size=4, **kw)


@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_one_line_with_the_estimate_above_the_threshold(tmp_path, capsys, monkeypatch, dtype):
    expected = 9 * (180 + 7) * 4  # stimuli x units x bytes (float16: float32 values, rounded)
    monkeypatch.setattr(pipeline, "LARGE_FILE_BYTES", expected - 1)
    run(tmp_path, "a.nc", dtype=dtype)
    err = capsys.readouterr().err
    lines = [line for line in err.replace("\r", "\n").splitlines() if line.startswith("extract: the")]
    assert len(lines) == 1, err
    assert f"about {expected / 1000:.1f} kB uncompressed (9 stimuli x 187 values x 4 bytes, 2 layers" in lines[0]
    assert "--pooling" in lines[0] and "--projection" in lines[0]
    assert ("--dtype float16" in lines[0]) == (dtype == "float32")
    assert ("compress to about half" in lines[0]) == (dtype == "float16")


def test_nothing_at_or_below_the_threshold_or_without_progress(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(pipeline, "LARGE_FILE_BYTES", 9 * 187 * 4)
    run(tmp_path, "a.nc")
    monkeypatch.setattr(pipeline, "LARGE_FILE_BYTES", 1)
    run(tmp_path, "b.nc", progress=False)
    assert "extract: the" not in capsys.readouterr().err


def test_the_estimate_counts_reductions():
    arrays = {"a": np.zeros((2, 64, 10, 10), np.float32), "b": np.zeros((2, 1000), np.float32)}
    assert size_notice(arrays, 100, "float32", threshold=100 * 7400 * 4) is None
    notice = size_notice(arrays, 100_000, "float32")
    assert notice is not None and "about 3.0 GB" in notice
    assert size_notice(arrays, 10_000, "float32") is None  # 296 MB
    assert "about 29.6 GB" in size_notice(arrays, 10**6, "float16")
