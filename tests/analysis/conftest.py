"""Fixtures of the analysis tests: a synthetic movie for the movie-fMRI sanity check (numpy
frames, no video decoding).

Clips: drifting gratings, moving dots with known speed and direction, static gratings and
static oriented textures. Two feature families computed from the frames (motion energy from
frame differences; static shape/contrast energy from single frames); a "dorsal" stream driven
by the motion family, a "ventral" one by the static family, a "lateral" one by both, through
SPM's double-gamma HRF, plus noise.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import gamma

from neuroalign.data.movies import make_movie_responses

TR, FPS, CLIP_S, SIZE = 2.0, 4, 4.0, 24
FRAMES = int(CLIP_S * FPS)


# ---------------------------------------------------------------- synthetic clips and features
def _grating(rng, moving: bool) -> np.ndarray:
    theta = rng.choice(8) * np.pi / 4  # drift direction, normal to the stripes
    wavelength, contrast = rng.choice([6.0, 10.0]), rng.uniform(0.3, 1.0)
    speed = rng.choice([0.5, 1.0, 2.0]) if moving else 0.0  # pixels per frame
    yy, xx = np.mgrid[:SIZE, :SIZE]
    phase = xx * np.cos(theta) + yy * np.sin(theta)
    return np.stack([0.5 + 0.5 * contrast * np.sin(2 * np.pi * (phase - speed * k) / wavelength)
                     for k in range(FRAMES + 1)])


def _dots(rng) -> np.ndarray:
    theta, speed = rng.uniform(0, 2 * np.pi), rng.choice([1.0, 2.0])
    xy = rng.uniform(0, SIZE, (12, 2))
    yy, xx = np.mgrid[:SIZE, :SIZE]
    frames = []
    for k in range(FRAMES + 1):
        p = (xy + k * speed * np.array([np.cos(theta), np.sin(theta)])) % SIZE
        d2 = (xx[None] - p[:, 0, None, None]) ** 2 + (yy[None] - p[:, 1, None, None]) ** 2
        frames.append(np.exp(-d2 / 2.0).sum(axis=0).clip(0, 1))
    return np.stack(frames)


def _texture(rng) -> np.ndarray:
    noise = rng.standard_normal((SIZE, SIZE))
    f = np.fft.fftfreq(SIZE)
    fy, fx = np.meshgrid(f, f, indexing="ij")
    theta = rng.uniform(0, np.pi)
    band = np.exp(-((fx * np.cos(theta) + fy * np.sin(theta)) ** 2) / 0.002
                  - (np.hypot(fx, fy) - 0.15) ** 2 / 0.005)
    img = np.real(np.fft.ifft2(np.fft.fft2(noise) * band))
    img = 0.5 + rng.uniform(0.1, 0.4) * img / img.std()
    return np.repeat(img[None], FRAMES + 1, axis=0)


def make_clip(rng) -> np.ndarray:
    """(FRAMES + 1, SIZE, SIZE): one frame before the clip's first, for frame differences."""
    kind = rng.choice(4)
    if kind == 0:
        return _grating(rng, moving=True)
    if kind == 1:
        return _dots(rng)
    if kind == 2:
        return _grating(rng, moving=False)
    return _texture(rng)


def _blur(img: np.ndarray) -> np.ndarray:
    return img.reshape(*img.shape[:-2], SIZE // 2, 2, SIZE // 2, 2).mean(axis=(-3, -1))


def motion_energy(frames: np.ndarray) -> np.ndarray:
    """(FRAMES, 10): directional energy in 4 directions (frame difference × spatial gradient,
    rectified) and temporal energy, at two scales."""
    out = []
    for f in (frames, _blur(frames)):
        dt = f[1:] - f[:-1]
        gy, gx = np.gradient(f[1:], axis=(1, 2))
        feats = [np.maximum(0, -dt * (gx * math.cos(a) + gy * math.sin(a))).mean(axis=(1, 2))
                 for a in np.arange(4) * np.pi / 2]
        out += [*feats, (dt**2).mean(axis=(1, 2))]
    return np.stack(out, axis=1)


def static_energy(frames: np.ndarray) -> np.ndarray:
    """(FRAMES, 10): oriented gradient energy (structure tensor), luminance and contrast of
    single frames, at two scales."""
    out = []
    for f in (frames[1:], _blur(frames[1:])):
        gy, gx = np.gradient(f, axis=(1, 2))
        d1, d2 = (gx + gy) / np.sqrt(2), (gx - gy) / np.sqrt(2)
        out += [(gx**2).mean(axis=(1, 2)), (gy**2).mean(axis=(1, 2)), (d1**2).mean(axis=(1, 2)),
                (d2**2).mean(axis=(1, 2)), f.std(axis=(1, 2))]
    return np.stack(out, axis=1)


def hrf(dt: float, length: float = 32.0) -> np.ndarray:
    """SPM's canonical double-gamma HRF (peak 6 s, undershoot 16 s, ratio 1/6) at step dt."""
    t = np.arange(0, length, dt)
    h = gamma.pdf(t, 6) - gamma.pdf(t, 16) / 6
    return h / h.sum()


def synthetic_movie(n_runs=4, volumes=100, repeats=0, n_voxels=(12, 12, 8), noise=1.0, seed=0):
    """Movie responses (runs ``run-1`` … plus ``rep-1`` … showing one clip sequence again),
    the clip features of both families, and the ground truth's family per stream."""
    rng = np.random.default_rng(seed)
    clips_per_run = int((volumes * TR - 4.0) // CLIP_S)
    run_clips = [[f"r{r}c{c:03d}" for c in range(clips_per_run)] for r in range(n_runs)]
    repeated = [f"rep-c{c:03d}" for c in range(clips_per_run)]
    feats = {"motion": {}, "static": {}}
    for cid in [c for run in run_clips for c in run] + (repeated if repeats else []):
        frames = make_clip(rng)
        feats["motion"][cid] = motion_energy(frames)
        feats["static"][cid] = static_energy(frames)
    # z-scored over all clips, so both families drive the voxels equally hard
    for fam in feats:
        allf = np.concatenate(list(feats[fam].values()))
        m, s = allf.mean(axis=0), allf.std(axis=0)
        feats[fam] = {k: (v - m) / s for k, v in feats[fam].items()}
    n_d, n_v, n_l = n_voxels
    w_motion = np.abs(rng.standard_normal((10, n_d + n_v + n_l)))
    w_static = np.abs(rng.standard_normal((10, n_d + n_v + n_l)))
    w_motion[:, n_d:n_d + n_v] = 0  # ventral: static only
    w_static[:, :n_d] = 0  # dorsal: motion only
    kernel = hrf(1 / FPS)
    runs = [(f"run-{r + 1}", run_clips[r]) for r in range(n_runs)]
    runs += [(f"rep-{k + 1}", repeated) for k in range(repeats)]
    bold, run_labels, timeline = [], [], {k: [] for k in ("event_run", "onset", "duration",
                                                          "stimulus_id")}
    for name, clips in runs:
        fine = np.zeros((int(volumes * TR * FPS), w_motion.shape[1]))
        for c, cid in enumerate(clips):
            onset = 4.0 + c * CLIP_S
            start = int(onset * FPS)
            fine[start:start + FRAMES] = feats["motion"][cid] @ w_motion + feats["static"][cid] @ w_static
            for k, v in zip(timeline, (name, onset, CLIP_S, cid), strict=True):
                timeline[k].append(v)
        signal = np.apply_along_axis(lambda s: np.convolve(s, kernel)[:len(s)], 0, fine)
        sampled = signal[::int(TR * FPS)]  # each volume: the signal at its start
        sampled = sampled / sampled.std(axis=0)
        bold.append(sampled + noise * rng.standard_normal(sampled.shape))
        run_labels += [name] * volumes
    stream = ["dorsal"] * n_d + ["ventral"] * n_v + ["lateral"] * n_l
    responses = make_movie_responses(np.concatenate(bold), run_labels, TR, stream=stream,
                                     roi=stream, timeline=timeline)
    times = np.arange(FRAMES) / FPS
    clip_feats = {fam: {k: (times, v) for k, v in d.items()} for fam, d in feats.items()}
    return responses, clip_feats


@pytest.fixture(scope="session")
def movie():
    """(responses with 4 runs and 2 repeats of a fifth sequence, {family: features on the TR
    grid}, {family: clip features})."""
    from neuroalign.analysis.timeseries import timeline_features

    responses, clip_feats = synthetic_movie(n_runs=4, repeats=2, seed=0)
    spaces = {fam: timeline_features(f, responses) for fam, f in clip_feats.items()}
    return responses, spaces, clip_feats
