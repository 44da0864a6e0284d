"""Synthetic clips with known motion (neuroalign.data.synthetic_clips): the motion is what it
says, the pixel feature families see it, and the written files decode to the same frames."""

import numpy as np
import pytest

from neuroalign.data.clips import ClipSet
from neuroalign.data.synthetic_clips import (
    CLIP_KINDS,
    drifting_grating,
    make_clip,
    motion_energy,
    moving_dots,
    static_energy,
    static_grating,
    write_clip,
)


def test_gratings_and_dots_move_by_their_velocity():
    g = drifting_grating(3, 32, speed=2.0, period=8.0, angle=0.0).astype(int)
    np.testing.assert_allclose(g[1], np.roll(g[0], 2, axis=1), atol=1)  # 2 px to the right
    down = drifting_grating(3, 32, speed=1.0, period=8.0, angle=np.pi / 2).astype(int)
    np.testing.assert_allclose(down[1], np.roll(down[0], 1, axis=0), atol=1)  # 1 px down
    d = moving_dots(2, 32, velocity=(3.0, -2.0), seed=4).astype(int)
    np.testing.assert_allclose(d[1], np.roll(d[0], (3, -2), axis=(0, 1)), atol=1)
    s = static_grating(4, 32)
    assert (s == s[0]).all()


def test_motion_energy_sees_direction_and_static_energy_orientation():
    right = motion_energy(drifting_grating(5, 32, speed=1.0, angle=0.0))
    left = motion_energy(drifting_grating(5, 32, speed=1.0, angle=np.pi))
    assert right.shape == (4, 10)
    # channels: right, down, left, up, temporal energy (full resolution)
    assert right[:, 0].mean() > 10 * right[:, 2].mean()
    assert left[:, 2].mean() > 10 * left[:, 0].mean()
    np.testing.assert_array_equal(motion_energy(static_grating(4, 32)), 0)  # no motion
    vertical = static_energy(static_grating(2, 32, angle=0.0))  # stripes vary along x
    horizontal = static_energy(static_grating(2, 32, angle=np.pi / 2))
    assert vertical[0, 0] > 10 * vertical[0, 1] and horizontal[0, 1] > 10 * horizontal[0, 0]


def test_written_clips_decode_to_their_frames(tmp_path):
    pytest.importorskip("av")
    rng = np.random.default_rng(0)
    frames = {kind: make_clip(kind, 4, 32, rng) for kind in CLIP_KINDS}
    for kind, f in frames.items():
        write_clip(tmp_path / f"{kind}.mkv", f, fps=4)
    clips = ClipSet(tmp_path, frames=4, fps=4)
    try:
        for i, clip_id in enumerate(clips.stimulus_id):
            np.testing.assert_array_equal(clips.clip_frames(i), frames[clip_id])  # ffv1: lossless
    finally:
        clips.close()
    with pytest.raises(ValueError, match="x.mkv: frames must be"):
        write_clip(tmp_path / "x.mkv", np.zeros((2, 8, 8)), fps=4)
    with pytest.raises(ValueError, match="unknown clip kind 'spiral'"):
        make_clip("spiral", 4, 32, rng)
