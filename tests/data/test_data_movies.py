"""Movie responses as data: the time × neuroid object, its timeline, readers and writer; and
clip stimulus ids through the per-clip path (assemblies, RDMs, encoding)."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from neuroalign.analysis.encoding import layerwise_encoding
from neuroalign.data.assemblies import make_assembly
from neuroalign.data.movies import (
    check_movie_responses,
    make_movie_responses,
    read_clip_features,
    read_movie_responses,
    run_names,
    select_runs,
    timeline_from_events,
    write_movie_responses,
)
from neuroalign.data.responses import responses_to_rdms

TIMELINE = {"event_run": ["r1", "r1", "r2"], "onset": [0.0, 4.0, 2.0],
            "duration": [4.0, 4.0, 6.0], "stimulus_id": ["clips/a.mp4", "clips/b.mp4", "movie"],
            "clip_offset": [0.0, 0.0, 120.0]}


def _movie(seed=0):
    rng = np.random.default_rng(seed)
    return make_movie_responses(
        rng.standard_normal((9, 3)), ["r1"] * 5 + ["r2"] * 4, 1.5,
        stream=["ventral", "dorsal", "lateral"], roi=["FFA", "MT", "STS"], subject="s01",
        timeline=TIMELINE)


def test_layout_and_run_time():
    ds = _movie()
    assert ds["bold"].dims == ("time", "neuroid") and ds.attrs["tr"] == 1.5
    assert run_names(ds) == ["r1", "r2"]
    np.testing.assert_allclose(ds["run_time"], [0, 1.5, 3, 4.5, 6, 0, 1.5, 3, 4.5])
    assert ds["stream"].values.tolist() == ["ventral", "dorsal", "lateral"]
    assert ds["subject"].values.tolist() == ["s01"] * 3
    assert ds["stimulus_id"].dims == ("event",) and ds["clip_offset"].values[2] == 120.0
    two = select_runs(ds, ["r2"])
    assert two.sizes["time"] == 4 and two["event_run"].values.tolist() == ["r2"]


@pytest.mark.parametrize("suffix", [".nc", ".npz"])
def test_round_trip(tmp_path, suffix):
    ds = _movie()
    path = tmp_path / f"movie{suffix}"
    if suffix == ".nc":
        write_movie_responses(ds, path)
        assert [p.name for p in tmp_path.iterdir()] == ["movie.nc"]  # no temporary left
    else:
        np.savez(path, bold=ds["bold"].values, run=ds["run"].values, tr=1.5,
                 stream=ds["stream"].values, roi=ds["roi"].values, subject="s01",
                 **{k: np.asarray(v) for k, v in TIMELINE.items()})
    back = read_movie_responses(path)
    xr.testing.assert_identical(back.drop_attrs(), ds.drop_attrs())
    assert back.attrs["tr"] == 1.5


def test_bad_files_and_layouts(tmp_path):
    ds = _movie()
    with pytest.raises(ValueError, match="must be contiguous"):
        make_movie_responses(np.ones((4, 1)), ["a", "b", "a", "b"], 2.0)
    with pytest.raises(ValueError, match="run has 3 labels for 4 volumes"):
        make_movie_responses(np.ones((4, 1)), ["a", "a", "b"], 2.0)
    with pytest.raises(ValueError, match=r"event 1 \(x, run 'r9'\) names a run"):
        make_movie_responses(np.ones((4, 1)), ["r1"] * 4, 2.0, timeline={
            "event_run": ["r1", "r9"], "onset": [0, 1], "duration": [1, 1], "stimulus_id": ["y", "x"]})
    with pytest.raises(ValueError, match="starts at 9.0 s, after the run's 8.0 s"):
        make_movie_responses(np.ones((4, 1)), ["r1"] * 4, 2.0, timeline={
            "event_run": ["r1"], "onset": [9], "duration": [1], "stimulus_id": ["y"]})
    with pytest.raises(ValueError, match="stream has 2 labels for 3 neuroids"):
        make_movie_responses(np.ones((4, 3)), ["r1"] * 4, 2.0, stream=["a", "b"])
    with pytest.raises(ValueError, match="needs the attribute 'tr'"):
        check_movie_responses(ds.drop_attrs())
    bad = tmp_path / "bad.npz"
    np.savez(bad, bold=np.ones((4, 2)), run=np.array(["a"] * 4))
    with pytest.raises(ValueError, match=r"bad.npz: lacks \['tr'\]"):
        read_movie_responses(bad)
    np.savez(bad, bold=np.ones((4, 2)), run=np.array(["a"] * 4), tr=2.0, voxels=np.ones(2))
    with pytest.raises(ValueError, match=r"bad.npz: unknown keys \['voxels'\]"):
        read_movie_responses(bad)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        read_movie_responses(tmp_path / "none.nc")


def test_one_response_per_clip_goes_through_rdms_and_encoding():
    """(a) Per-clip responses (presentation × neuroid) with clip ids as stimulus ids: the
    assembly, RDM and encoding path takes them unchanged, matched by id."""
    rng = np.random.default_rng(0)
    ids = [f"clips/grating_{i:03d}.mp4" for i in range(40)]
    features = rng.standard_normal((40, 6))
    responses = make_assembly(features @ rng.standard_normal((6, 5))
                              + 0.3 * rng.standard_normal((40, 5)), ids, region="dorsal")
    order = rng.permutation(40)
    ds = layerwise_encoding({"clip features": features[order]}, responses,
                            stimulus_id=np.array(ids)[order], folds=4, inner_folds=3)
    assert float(ds["r"].min()) > 0.8
    assert ds["stimulus_id"].values.tolist() == np.array(ids)[order].tolist()
    rdms = responses_to_rdms(responses)
    assert rdms.pattern_descriptors["stimulus_id"] == ids


def test_read_clip_features_npz_and_netcdf(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 5, 2, 2))
    ids, t = np.array(["a", "b", "c"]), np.arange(5) * 0.25
    np.savez(tmp_path / "f.npz", features=x, stimulus_id=ids, time=t)
    xr.Dataset({"layer": (("presentation", "time", "c", "s"), x)},
               coords={"stimulus_id": ("presentation", ids), "time": t}).to_netcdf(tmp_path / "f.nc")
    for name in ("f.npz", "f.nc"):
        got = read_clip_features(tmp_path / name)
        assert list(got) == ["a", "b", "c"]
        np.testing.assert_array_equal(got["b"][0], t)
        np.testing.assert_array_equal(got["b"][1], x[1].reshape(5, 4))
    np.savez(tmp_path / "g.npz", features=x, stimulus_id=ids)
    with pytest.raises(ValueError, match=r"g.npz: lacks \['time'\]"):
        read_clip_features(tmp_path / "g.npz")
    np.savez(tmp_path / "g.npz", features=x, stimulus_id=ids, time=np.arange(4.0))
    with pytest.raises(ValueError, match=r"g.npz: times must be \(time,\)"):
        read_clip_features(tmp_path / "g.npz")


def test_read_clip_features_needs_a_layer_kept_over_time(tmp_path):
    from neuroalign.activations import ActivationWriter

    path = tmp_path / "acts.nc"
    with ActivationWriter(path) as writer:
        writer.write_batch({"block": np.ones((2, 4), dtype=np.float32)}, np.array(["a", "b"]))
    with pytest.raises(ValueError, match=r"acts.nc: layer 'block' has dims \('presentation', "
                                         r"'feature'\) and no frame times"):
        read_clip_features(path, layer="block")


def test_timeline_from_bids_events(tmp_path):
    (tmp_path / "r1_events.tsv").write_text(
        "onset\tduration\ttrial_type\tstim_file\n0\t4\tclip\tclips/a.mp4\n"
        "4\t4\tclip\tclips/b.mp4\n8\t2\tfixation\tn/a\n")
    (tmp_path / "r2_events.tsv").write_text(
        "onset\tduration\tstim_file\tclip_offset\n2\t6\tmovie\t120\n")
    timeline = timeline_from_events({"r1": tmp_path / "r1_events.tsv",
                                      "r2": tmp_path / "r2_events.tsv"})
    assert {k: np.asarray(v).tolist() for k, v in timeline.items()} == {
        k: list(v) for k, v in TIMELINE.items()}
    ds = make_movie_responses(np.ones((9, 1)) * np.arange(9)[:, None], ["r1"] * 5 + ["r2"] * 4,
                              1.5, timeline=timeline)
    assert ds["stimulus_id"].values.tolist() == TIMELINE["stimulus_id"]
    (tmp_path / "bad.tsv").write_text("onset\tstim_file\n0\ta\n")
    with pytest.raises(ValueError, match=r"bad.tsv: lacks the columns \['duration'\]"):
        timeline_from_events({"r1": tmp_path / "bad.tsv"})
