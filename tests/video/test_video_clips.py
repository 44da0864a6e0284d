"""ClipSet: sampling by rate and by count, sliding windows, frame folders, worker threads, and
one-line errors naming the clip."""

import numpy as np
import pytest
from PIL import Image

from neuroalign.data.clips import ClipError, ClipSet
from neuroalign.extraction.sources import as_source


def test_sampling_by_rate_takes_the_frames_shown_at_those_times(clip_folder, clip_tools):
    c = clip_tools
    clips = ClipSet(clip_folder, frames=8, fps=4, workers=0)  # every 2nd frame of an 8 fps clip
    assert list(clips.stimulus_id) == ["dots", "grating_down", "grating_right", "texture"]
    assert as_source(clips) is clips
    np.testing.assert_array_equal(clips.item(2)[0], c.grating(24)[0:16:2])  # ffv1: lossless
    np.testing.assert_array_equal(clips.item(0)[0], c.dots(24)[0:16:2])
    np.testing.assert_array_equal(clips.item(3)[0], c.texture(24)[:8])
    np.testing.assert_allclose(clips.frame_times, np.arange(8) / 4)
    frames, coords = clips.item(1)
    assert frames.shape == (8, 32, 32, 3) and frames.dtype == np.uint8
    assert coords["clip"] == "grating_down" and coords["window"] == 0
    assert coords["start_time"] == 0 and coords["end_time"] == pytest.approx(2.0)


def test_sliding_windows_are_presentations_with_their_start_times(clip_folder, clip_tools):
    c = clip_tools
    # 3 s clips (last frame at 2.875 s); 4 frames at 4 fps span 0.75 s; a window every 0.5 s
    clips = ClipSet(clip_folder, frames=4, fps=4, stride=0.5, workers=0)
    per_clip = int(np.floor((2.875 - 0.75) / 0.5)) + 1
    assert len(clips) == 4 * per_clip == 20
    assert clips.stimulus_id[:2].tolist() == ["dots/w000", "dots/w001"]
    assert clips.coords["start_time"][:per_clip].tolist() == [0.0, 0.5, 1.0, 1.5, 2.0]
    k = 3  # window 3 of grating_right starts at 1.5 s = frame 12
    i = int(np.flatnonzero((clips.coords["clip"] == "grating_right") & (clips.coords["window"] == k))[0])
    np.testing.assert_array_equal(clips.item(i)[0], c.grating(24)[12:20:2])


def test_sampling_by_count_spreads_frames_over_the_clip(clip_folder, clip_tools):
    c = clip_tools
    clips = ClipSet(clip_folder, frames=5, workers=0)
    assert clips.frame_times is None
    index = np.round(np.linspace(0, 23, 5)).astype(int)
    np.testing.assert_array_equal(clips.item(2)[0], c.grating(24)[index])
    with pytest.raises(ValueError, match="need a sampling rate"):
        ClipSet(clip_folder, frames=5, stride=1.0)


def test_worker_threads_decode_the_same_frames(clip_folder):
    plain = ClipSet(clip_folder, frames=4, fps=4, stride=0.5, workers=0)
    threaded = ClipSet(clip_folder, frames=4, fps=4, stride=0.5, workers=2, prefetch=5)
    try:
        for i in [0, 1, 2, 7, 3, 19]:  # in order, then out of order
            np.testing.assert_array_equal(threaded.item(i)[0], plain.item(i)[0])
    finally:
        threaded.close()


def test_frame_folders_and_compressed_files_read_alike(tmp_path, clip_tools):
    c = clip_tools
    root = tmp_path / "mixed"
    (root / "folder_clip").mkdir(parents=True)
    frames = c.grating(12)
    for t, frame in enumerate(frames):
        Image.fromarray(frame).save(root / "folder_clip" / f"f{t:04d}.png")
    c.write_video(root / "lossy.mp4", frames, codec="libx264")
    clips = ClipSet(root, frames=6, fps=4, frame_rate=c.FPS, workers=0)
    assert list(clips.stimulus_id) == ["folder_clip", "lossy"]
    np.testing.assert_array_equal(clips.item(0)[0], frames[0:12:2])
    lossy = clips.item(1)[0].astype(float)
    assert np.abs(lossy - frames[0:12:2]).mean() < 12  # H.264's loss, not other frames
    resized = ClipSet(root, frames=6, fps=4, frame_rate=c.FPS, resize=16, workers=0)
    assert resized.item(0)[0].shape == resized.item(1)[0].shape == (6, 16, 16, 3)


def test_bad_clips_give_one_line_errors_naming_the_clip(tmp_path, clip_tools):
    c = clip_tools
    root = tmp_path / "bad"
    root.mkdir()
    (root / "broken.mp4").write_text("not a video")
    with pytest.raises(ClipError, match=r"broken\.mp4: unreadable video") as err:
        ClipSet(root, frames=4, fps=4)
    assert "\n" not in str(err.value)
    (root / "broken.mp4").unlink()
    c.write_video(root / "short.mkv", c.grating(6))  # 0.75 s
    with pytest.raises(ClipError, match=r"short\.mkv: too short: 0\.75 s .* need 1\.88 s"):
        ClipSet(root, frames=8, fps=4)
    with pytest.raises(ClipError, match=r"short\.mkv: too short: 6 frames"):
        ClipSet(root, frames=8)
    (root / "frames").mkdir()
    Image.fromarray(c.grating(1)[0]).save(root / "frames" / "0.png")
    with pytest.raises(ClipError, match=r"frames: a frame folder has no frame rate"):
        ClipSet(root, frames=1, fps=4)
    with pytest.raises(ClipError, match="no video files"):
        ClipSet(tmp_path / "bad" / "frames", frames=1)


@pytest.mark.parametrize("codec, suffix", [("ffv1", ".mkv"), ("libx264", ".mp4")])
def test_windows_far_into_a_file_seek_to_the_right_frames(tmp_path, clip_tools, codec, suffix):
    root = tmp_path / "long"
    root.mkdir()
    levels = 2 * np.arange(96)  # 12 s at 8 fps; frame t is a flat grey of level 2t
    frames = np.repeat(levels[:, None, None, None], 16, axis=1).repeat(16, axis=2).repeat(3, axis=3)
    clip_tools.write_video(root / f"movie{suffix}", frames.astype(np.uint8), codec=codec)
    clips = ClipSet(root, frames=4, fps=2, stride=2.5, workers=0)
    # windows at 0, 2.5, …, 10 s: the last one ends at 11.5 s, the clip at 11.875 s
    assert clips.coords["start_time"].tolist() == [0.0, 2.5, 5.0, 7.5, 10.0]
    for i, start in enumerate(clips.coords["start_time"]):
        shown = clips.item(i)[0][:, 8, 8, 0].astype(float)  # window i: frames 8·start + 4k
        np.testing.assert_allclose(shown, 2 * (8 * start + 4 * np.arange(4)), atol=2)
