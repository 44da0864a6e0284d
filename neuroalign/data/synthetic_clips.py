"""Synthetic clips with known motion, for sanity checks of a video pipeline: drifting gratings,
moving dots (known speed and direction), static gratings and static textures, written as video
files with PyAV; and the two pixel-level feature families a planted answer can be built from
(motion energy from frame differences, static shape energy from single frames).

Nothing here is a model of the brain: :mod:`analyses.video_streams` (``--quick``) uses it to
make clips and a synthetic brain whose answer is known, to check that the study's pipeline
recovers it.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

__all__ = ["CLIP_KINDS", "drifting_grating", "make_clip", "motion_energy", "moving_dots",
           "static_energy", "static_grating", "static_texture", "write_clip"]

#: The kinds :func:`make_clip` draws from; the first two move.
CLIP_KINDS = ("grating", "dots", "static-grating", "texture")


def _rgb(gray: np.ndarray) -> np.ndarray:
    """(T, H, W) floats in [0, 1] -> (T, H, W, 3) uint8."""
    return np.repeat((np.clip(gray, 0, 1) * 255).round().astype(np.uint8)[..., None], 3, axis=-1)


def drifting_grating(frames: int, size: int, *, speed: float = 2.0, period: float = 8.0,
                     angle: float = 0.0, contrast: float = 0.9) -> np.ndarray:
    """A sine grating drifting ``speed`` px per frame along ``angle`` (radians; 0 = rightward,
    stripes vertical): (frames, size, size, 3) uint8."""
    y, x = np.mgrid[:size, :size].astype(float)
    u = x * np.cos(angle) + y * np.sin(angle)
    t = np.arange(frames)[:, None, None]
    return _rgb(0.5 + 0.5 * contrast * np.sin(2 * np.pi * (u[None] - speed * t) / period))


def static_grating(frames: int, size: int, *, period: float = 8.0, angle: float = 0.0,
                   contrast: float = 0.9) -> np.ndarray:
    """:func:`drifting_grating` at speed 0: the same frame ``frames`` times."""
    return drifting_grating(frames, size, speed=0.0, period=period, angle=angle,
                            contrast=contrast)


def moving_dots(frames: int, size: int, *, velocity: tuple[float, float] = (1.0, 2.0),
                count: int = 12, seed: int = 0) -> np.ndarray:
    """``count`` Gaussian dots (SD 1 px) moving with ``velocity`` (dy, dx) px per frame on black,
    wrapping around: (frames, size, size, 3) uint8."""
    rng = np.random.default_rng(seed)
    start = rng.uniform(0, size, (count, 2))
    yy, xx = np.mgrid[:size, :size]
    out = np.empty((frames, size, size))
    for k in range(frames):
        p = (start + k * np.asarray(velocity, dtype=float)) % size
        dy = np.minimum(abs(yy[None] - p[:, 0, None, None]), size - abs(yy[None] - p[:, 0, None, None]))
        dx = np.minimum(abs(xx[None] - p[:, 1, None, None]), size - abs(xx[None] - p[:, 1, None, None]))
        out[k] = np.exp(-(dy**2 + dx**2) / 2.0).sum(axis=0)
    return _rgb(out)


def static_texture(frames: int, size: int, *, angle: float = 0.0, contrast: float = 0.25,
                   seed: int = 0) -> np.ndarray:
    """Oriented band-pass noise (orientation ``angle``), the same in every frame."""
    rng = np.random.default_rng(seed)
    f = np.fft.fftfreq(size)
    fy, fx = np.meshgrid(f, f, indexing="ij")
    band = np.exp(-((fx * np.cos(angle) + fy * np.sin(angle)) ** 2) / 0.002
                  - (np.hypot(fx, fy) - 0.15) ** 2 / 0.005)
    img = np.real(np.fft.ifft2(np.fft.fft2(rng.standard_normal((size, size))) * band))
    return _rgb(np.repeat((0.5 + contrast * img / img.std())[None], frames, axis=0))


def make_clip(kind: str, frames: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """One clip of ``kind`` (:data:`CLIP_KINDS`) with random direction, speed, period and
    contrast drawn from ``rng``: (frames, size, size, 3) uint8."""
    angle = float(rng.choice(8)) * np.pi / 4
    if kind == "grating":
        return drifting_grating(frames, size, speed=float(rng.choice([1.0, 2.0, 3.0])),
                                period=float(rng.choice([8.0, 12.0])), angle=angle,
                                contrast=float(rng.uniform(0.4, 1.0)))
    if kind == "dots":
        speed = float(rng.choice([1.0, 2.0, 3.0]))
        return moving_dots(frames, size, velocity=(speed * math.sin(angle), speed * math.cos(angle)),
                           seed=int(rng.integers(1 << 31)))
    if kind == "static-grating":
        return static_grating(frames, size, period=float(rng.choice([8.0, 12.0])), angle=angle,
                              contrast=float(rng.uniform(0.4, 1.0)))
    if kind == "texture":
        return static_texture(frames, size, angle=float(rng.uniform(0, np.pi)),
                              contrast=float(rng.uniform(0.1, 0.3)), seed=int(rng.integers(1 << 31)))
    raise ValueError(f"unknown clip kind {kind!r}; the kinds are {CLIP_KINDS}")


def write_clip(path: str | Path, frames: np.ndarray, fps: float, codec: str = "ffv1") -> Path:
    """(T, H, W, 3) uint8 frames -> a video file at ``fps`` frames per second (PyAV; ffv1 in
    ``.mkv`` is lossless, ``libx264`` in ``.mp4`` is not)."""
    from neuroalign.data.clips import _av

    av = _av()  # the one-line error when PyAV is missing
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"{path}: frames must be (time, height, width, 3) uint8; got "
                         f"{frames.shape} {frames.dtype}")
    pix_fmt = {"ffv1": "bgr0", "png": "rgb24"}.get(codec, "yuv420p")
    path = Path(path)
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=int(round(fps)))
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], pix_fmt
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def _gray(frames: np.ndarray) -> np.ndarray:
    return np.asarray(frames, dtype=np.float64).mean(axis=-1) / 255.0


def _half(img: np.ndarray) -> np.ndarray:
    h, w = img.shape[-2] // 2 * 2, img.shape[-1] // 2 * 2
    img = img[..., :h, :w]
    return img.reshape(*img.shape[:-2], h // 2, 2, w // 2, 2).mean(axis=(-3, -1))


def motion_energy(frames: np.ndarray) -> np.ndarray:
    """(T − 1, 10) motion features of (T, H, W, 3) frames, one per frame pair: the rectified
    product of the frame difference and the spatial gradient in 4 directions (right, down,
    left, up) and the temporal energy (mean squared difference), at full and half
    resolution."""
    out = []
    for f in (_gray(frames), _half(_gray(frames))):
        dt = f[1:] - f[:-1]
        gy, gx = np.gradient(f[1:], axis=(1, 2))
        out += [np.maximum(0, -dt * (gx * math.cos(a) + gy * math.sin(a))).mean(axis=(1, 2))
                for a in np.arange(4) * np.pi / 2]
        out.append((dt**2).mean(axis=(1, 2)))
    return np.stack(out, axis=1)


def static_energy(frames: np.ndarray) -> np.ndarray:
    """(T, 10) static shape features of (T, H, W, 3) frames, frame by frame: gradient energy at
    0°, 90°, 45° and 135° and the contrast (SD), at full and half resolution."""
    out = []
    for f in (_gray(frames), _half(_gray(frames))):
        gy, gx = np.gradient(f, axis=(1, 2))
        d1, d2 = (gx + gy) / np.sqrt(2), (gx - gy) / np.sqrt(2)
        out += [(g**2).mean(axis=(1, 2)) for g in (gx, gy, d1, d2)]
        out.append(f.std(axis=(1, 2)))
    return np.stack(out, axis=1)
