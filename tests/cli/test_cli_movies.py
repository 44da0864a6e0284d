"""``neuroalign encode-movie`` on clip feature files and a movie response written here
(synthetic: voxels planted on one feature family each, shifted by 4 s; no real movie fMRI is
available offline)."""

import numpy as np
import pytest
import xarray as xr

from neuroalign.cli import main
from neuroalign.data.movies import make_movie_responses, write_movie_responses

TR, CLIPS, FRAMES = 2.0, 30, 8  # clips of 4 s at 2 frames/s, back to back, 3 runs


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("movie")
    rng = np.random.default_rng(0)
    ids = np.array([f"clip{i:03d}" for i in range(3 * CLIPS)])
    times = np.arange(FRAMES) / 2.0
    fam = {"motion": rng.standard_normal((len(ids), FRAMES, 4)),
           "static": rng.standard_normal((len(ids), FRAMES, 3))}
    for name, x in fam.items():
        np.savez(root / f"{name}.npz", features=x, stimulus_id=ids, time=times)
    # per volume: the mean of the clip's frames in that TR, 2 volumes (4 s) later
    per_tr = {k: v.reshape(len(ids) * 2, FRAMES // 2, -1).mean(axis=1) for k, v in fam.items()}
    drive = np.c_[per_tr["motion"] @ rng.standard_normal((4, 4)),
                  per_tr["static"] @ rng.standard_normal((3, 4))]
    bold = np.concatenate([np.r_[np.zeros((2, 8)), d[:-2]] for d in np.split(drive, 3)])
    bold += 0.5 * rng.standard_normal(bold.shape)
    run = np.repeat(["r1", "r2", "r3"], 2 * CLIPS)
    timeline = {"event_run": np.repeat(["r1", "r2", "r3"], CLIPS),
                "onset": np.tile(np.arange(CLIPS) * 4.0, 3), "duration": np.full(3 * CLIPS, 4.0),
                "stimulus_id": ids}
    brain = write_movie_responses(make_movie_responses(
        bold, run, TR, stream=["dorsal"] * 4 + ["ventral"] * 4, timeline=timeline),
        root / "movie.nc")
    return root / "motion.npz", root / "static.npz", brain


def test_encode_movie_twice_gives_equal_results(files, tmp_path, capsys):
    motion, static, brain = files
    outs = []
    for k in range(2):
        out = tmp_path / f"enc{k}.nc"
        assert main(["encode-movie", str(motion), f"shape={static}", "--brain", str(brain),
                     "--delays", "2", "4", "--alphas", "1", "10", "100", "1000",
                     "--out", str(out)]) == 0
        outs.append(xr.load_dataset(out))
    xr.testing.assert_identical(outs[0], outs[1])
    ds = outs[0]
    assert ds["layer"].values.tolist() == ["motion", "shape"]
    r = ds["r"].groupby(ds["stream"]).median()
    assert float(r.sel(layer="motion", stream="dorsal")) > 0.6
    assert float(r.sel(layer="shape", stream="ventral")) > 0.6
    assert float(r.sel(layer="motion", stream="ventral")) < 0.2
    text = capsys.readouterr().out
    assert "leave-one-run-out" in text and "dorsal" in text and "motion=" in text


def test_encode_movie_partition(files, tmp_path, capsys):
    motion, static, brain = files
    out = tmp_path / "part.nc"
    assert main(["encode-movie", str(motion), str(static), "--brain", str(brain), "--partition",
                 "--delays", "2", "4", "--n-iter", "10", "--out", str(out)]) == 0
    ds = xr.load_dataset(out)
    u = ds["r2_unique"].groupby(ds["stream"]).median()
    assert float(u.sel(space="motion", stream="dorsal")) > float(u.sel(space="static", stream="dorsal")) + 0.3
    assert float(u.sel(space="static", stream="ventral")) > float(u.sel(space="motion", stream="ventral")) + 0.3
    assert "r2_unique" in capsys.readouterr().out


def test_encode_movie_errors_are_one_line(files, tmp_path, capsys):
    motion, _, brain = files
    assert main(["encode-movie", str(motion), "--brain", str(brain), "--delays", "3"]) == 2
    assert "multiples of the TR of 2 s" in capsys.readouterr().err
    bad = tmp_path / "bad.npz"
    np.savez(bad, features=np.ones((2, 3, 1)), stimulus_id=np.array(["clip000", "x"]),
             time=np.arange(3.0))
    assert main(["encode-movie", str(bad), "--brain", str(brain)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "bad.npz" in err and "have no features" in err
