"""Clip extraction: decoding + ``extract`` of r3d_18 against a bare forward over pre-decoded
tensors, and the decoding throughput.

Clips: H.264 mp4 files of 16 frames at 8 fps, 128 × 172 px (about r3d_18's resize size, 128 × 171; drifting
gratings with noise), written with PyAV into a scratch folder. r3d_18 with random weights
(``torchvision:r3d_18 --weights random``: the weights' own preprocessing, a 112-px crop).
Timed:
  bare     model(x) under torch.no_grad over batches of clips decoded and transformed
           beforehand (the floor: the model's own work);
  extract  ``extract`` from the ClipSet (decoding in its worker threads, the transform, the
           forward with hooks, writing layer1-4 and fc with zlib), the best of ``repeats``;
  decode   ClipSet items one after another with workers=0 (one thread: the decoding work)
           and with 2 worker threads, clips/s.
``results(quick)``: extract vs bare (target ≤ 1.2) and decode clips/s vs the bare forward's
clips/s (target ≥ 1: decoding keeps up with the model; on a GPU the forward is far faster,
so the absolute clips/s is the figure to read).

    python benchmarks/bench_video.py [--n 16] [--batch-size 4] [--repeats 2]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from neuroalign.data.clips import ClipSet
from neuroalign.extraction import extract
from neuroalign.models import load_model

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _table import Row, overhead, throughput  # noqa: E402

LAYERS = ["layer1", "layer2", "layer3", "layer4", "fc"]
FRAMES, FPS, HEIGHT, WIDTH = 16, 8, 128, 172  # H.264 (yuv420p) needs even sides


def write_clips(folder: Path, n: int) -> None:
    """n H.264 clips: gratings drifting at different speeds and angles, with pixel noise."""
    import av

    rng = np.random.default_rng(0)
    y, x = np.mgrid[:HEIGHT, :WIDTH].astype(float)
    for i in range(n):
        angle, speed = rng.uniform(0, np.pi), rng.uniform(0.5, 4)
        u = x * np.cos(angle) + y * np.sin(angle)
        with av.open(str(folder / f"clip{i:03d}.mp4"), "w") as container:
            stream = container.add_stream("libx264", rate=FPS)
            stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
            for t in range(FRAMES):
                g = 127 + 100 * np.sin(2 * np.pi * (u - speed * t) / 16) + rng.normal(0, 10, u.shape)
                frame = np.repeat(np.clip(g, 0, 255).astype(np.uint8)[..., None], 3, axis=-1)
                for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                    container.mux(packet)
            for packet in stream.encode():
                container.mux(packet)


def _scratch() -> str | None:
    given = os.environ.get("NEUROALIGN_BENCH_DIR")
    return given or ("/dev/shm" if os.path.isdir("/dev/shm") else None)


def measure(n: int, batch_size: int, repeats: int) -> list[Row]:
    with tempfile.TemporaryDirectory(dir=_scratch()) as tmp:
        folder = Path(tmp) / "clips"
        folder.mkdir()
        write_clips(folder, n)
        loaded = load_model("torchvision:r3d_18", weights="random")
        model, (transform, _) = loaded.model, loaded.transform
        plain = ClipSet(folder, FRAMES, FPS, workers=0)
        t0 = time.perf_counter()
        frames = [plain.clip_frames(i) for i in range(n)]
        decode_one = n / (time.perf_counter() - t0)
        threaded = ClipSet(folder, FRAMES, FPS, workers=2)
        t0 = time.perf_counter()
        for i in range(n):
            threaded.item(i)
        decode_two = n / (time.perf_counter() - t0)
        threaded.close()
        batches = [torch.stack([transform(f) for f in frames[s:s + batch_size]])
                   for s in range(0, n, batch_size)]
        bare, ours = [], []
        for r in range(repeats):
            t0 = time.perf_counter()
            with torch.no_grad():
                for x in batches:
                    model(x)
            bare.append(time.perf_counter() - t0)
            clips = ClipSet(folder, FRAMES, FPS)
            t0 = time.perf_counter()
            extract(model, clips, LAYERS, Path(tmp) / f"acts{r}.nc", transform=loaded.transform,
                    batch_size=batch_size, progress=False)
            ours.append(time.perf_counter() - t0)
            clips.close()
            (Path(tmp) / f"acts{r}.nc").unlink()
    load = "/".join(f"{v:.2f}" for v in os.getloadavg())
    notes = (f"{n} clips, batch {batch_size}, best of {repeats}, {torch.get_num_threads()} torch "
             f"threads, load {load}")
    bare_rate = n / min(bare)
    return [
        overhead(f"r3d_18 clips: decode + extract (layer1-4, fc; zlib), {n} x {FRAMES} frames "
                 f"at 112 px", min(ours), min(bare), "bare forward over pre-decoded tensors", 1.2,
                 notes),
        throughput(f"clip decoding (H.264 {HEIGHT}x{WIDTH}, {FRAMES} frames), 1 thread",
                   decode_one, bare_rate, "r3d_18 bare forward clips/s", "clips/s", 1.0,
                   f"{decode_two:.1f} clips/s with 2 worker threads; {notes}"),
    ]


def results(quick: bool = False) -> list[Row]:
    """Quick: 8 clips, batch 4, once; full: 32 clips, batch 8, best of 2."""
    return measure(8, 4, 1) if quick else measure(32, 8, 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="the table rows at small sizes")
    args = parser.parse_args()
    rows = results(True) if args.quick else measure(args.n, args.batch_size, args.repeats)
    for row in rows:
        print(f"{row.summary()}\n  {row.notes}")


if __name__ == "__main__":
    main()
