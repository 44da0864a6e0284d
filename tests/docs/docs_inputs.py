"""Small synthetic stand-ins for the reader's own files that a few doc pages' examples start
from (no such data exist offline here): `make(page, folder)` writes them into ``folder`` (the
examples' working directory) and returns the variables the page's first block uses.

- movies.md: three runs' BIDS ``events.tsv`` files, the BOLD arrays ``bold``, ``run``,
  ``rois``, ``streams`` (voxels driven by one of two clip feature sets through a gamma HRF,
  plus noise), and those clip features as ``motion.npz`` and ``static.npz``;
- video.md: a folder ``movies/`` of two H.264 clips (2.5 s at 16 fps, 64 × 64 px) and a
  folder ``frames/`` of two frame folders (75 PNG frames each, shot at 30 fps);
- cluster.md: ``nsd/vitl.manifest.json`` and its two shards, extracted by two local processes
  (as torchrun would start them) from a 24-block token model standing in for ViT-L.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

TR = 2.0
CLIP_SECONDS = 4.0
CLIP_RATE = 4.0  # feature samples per second within a clip
RUNS = ("run-1", "run-2", "run-3")
VOLUMES = 48  # per run: 96 s, 24 clips of 4 s


def make(page: str, folder: Path) -> dict:
    return {"movies": _movies, "video": _video, "cluster": _cluster}.get(
        page, lambda folder: {})(Path(folder))


def _tokens_model():
    """Patch tokens (16 of 16 features from a 32 px image) through 24 blocks, named as ViT-L's."""
    import torch
    from torch import nn

    class Tokens(nn.Module):
        def __init__(self):
            super().__init__()
            self.patch = nn.Conv2d(3, 16, 8, stride=8)
            self.blocks = nn.Sequential(*[nn.Linear(16, 16) for _ in range(24)])

        def forward(self, x):
            return self.blocks(self.patch(x).flatten(2).transpose(1, 2))

    torch.manual_seed(0)
    return Tokens()


def _extract_shard(out: str) -> None:
    from neuroalign.data.stimuli import StimulusSet
    from neuroalign.extraction import extract, image_transform

    rng = np.random.default_rng(0)
    stimuli = StimulusSet(stimulus_id=[f"im{i:02d}" for i in range(12)],
                          images=rng.integers(0, 256, (12, 32, 32, 3), dtype=np.uint8),
                          name="random")
    extract(_tokens_model(), stimuli, "blocks.*", out, transform=image_transform(32),
            batch_size=4, progress=False, compression_threads=1)


def _cluster(folder: Path) -> dict:
    from neuroalign.training.distributed import spawn_local

    (folder / "nsd").mkdir()
    spawn_local(_extract_shard, 2, str(folder / "nsd" / "vitl.nc"), start_method="fork")
    return {}


def _movies(folder: Path) -> dict:
    rng = np.random.default_rng(0)
    n_clips, n_times = 12, int(CLIP_SECONDS * CLIP_RATE)
    ids = np.array([f"clip{i:02d}.mp4" for i in range(n_clips)])
    times = np.arange(n_times) / CLIP_RATE
    spaces = {name: rng.standard_normal((n_clips, n_times, 6)) for name in ("motion", "static")}
    for name, x in spaces.items():
        np.savez(folder / f"{name}.npz", features=x, stimulus_id=ids, time=times)
    per_run = int(VOLUMES * TR / CLIP_SECONDS)
    dt = 1 / CLIP_RATE
    t = np.arange(0, 20, dt)
    hrf = t ** 5 * np.exp(-t)  # a gamma kernel peaking at 5 s
    hrf /= hrf.sum()
    weights = {name: rng.standard_normal((6, 6)) for name in spaces}  # 6 voxels per stream
    bold, run = [], []
    for r, name in enumerate(RUNS):
        order = np.arange(per_run) % n_clips
        order = rng.permutation(order) if r else order
        with open(folder / f"sub-01_task-movie_{name}_events.tsv", "w") as f:
            f.write("onset\tduration\tstim_file\n")
            for k, c in enumerate(order):
                f.write(f"{k * CLIP_SECONDS:g}\t{CLIP_SECONDS:g}\t{ids[c]}\n")
        drive = []
        for space in spaces.values():  # samples at CLIP_RATE, then the HRF, then one per TR
            x = np.concatenate([space[c] for c in order])
            y = np.apply_along_axis(lambda v: np.convolve(v, hrf)[: len(v)], 0, x)
            drive.append(y[:: int(TR * CLIP_RATE)])
        signal = np.concatenate([drive[0] @ weights["motion"], drive[1] @ weights["static"]], 1)
        bold.append(signal + signal.std() * rng.standard_normal(signal.shape))
        run += [name] * VOLUMES
    streams = ["dorsal"] * 6 + ["ventral"] * 6
    return {"bold": np.concatenate(bold), "run": np.array(run), "rois": [f"{s}-roi" for s in streams],
            "streams": streams}


def _video(folder: Path) -> dict:
    import av
    from PIL import Image

    yy, xx = np.mgrid[:64, :64]

    def grating(n: int, rate: float, angle: float) -> np.ndarray:
        t = np.arange(n)[:, None, None] / rate
        phase = 2 * np.pi * ((xx * np.cos(angle) + yy * np.sin(angle)) / 16 - t)
        gray = (127.5 + 127.5 * np.sin(phase)).astype(np.uint8)
        return np.repeat(gray[..., None], 3, axis=-1)

    (folder / "movies").mkdir()
    for i, angle in enumerate((0.0, np.pi / 2)):
        with av.open(str(folder / "movies" / f"grating{i}.mp4"), "w") as container:
            stream = container.add_stream("libx264", rate=16)
            stream.width = stream.height = 64
            stream.pix_fmt = "yuv420p"
            for frame in grating(40, 16, angle):
                for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                    container.mux(packet)
            for packet in stream.encode():
                container.mux(packet)
    for i, angle in enumerate((np.pi / 4, 3 * np.pi / 4)):
        clip = folder / "frames" / f"grating{i}"
        clip.mkdir(parents=True)
        for k, frame in enumerate(grating(75, 30, angle)):
            Image.fromarray(frame).save(clip / f"{k:04d}.png")
    return {}
