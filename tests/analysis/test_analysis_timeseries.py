"""Movie fMRI encoding: resampling, FIR delays, splits by run, and an honest sanity check.

The sanity check is synthetic and says only that the pipeline can recover a planted answer:
clips are numpy frames (drifting gratings, moving dots with known speed and direction, static
textures), two feature families are computed here from the frames (motion energy from frame
differences; static shape/contrast energy from single frames), a "dorsal" brain responds to the
motion family and a "ventral" one to the static family through a double-gamma HRF, plus noise.
No real movie fMRI is available offline. The synthetic movie is the ``movie`` fixture of
``conftest.py``.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from neuroalign.analysis.movie_encoding import (
    movie_encoding,
    movie_variance_partitioning,
    repeat_groups,
    run_splits,
    summarize_neuroids,
)
from neuroalign.analysis.timeseries import (
    clip_features,
    delay_features,
    delays_in_trs,
    resample_to_tr,
    timeline_features,
    zscore_by_run,
)
from neuroalign.data.movies import make_movie_responses, run_names, select_runs


def _train_runs(responses, spaces):
    keep = np.char.startswith(responses["run"].values.astype(str), "run-")
    runs = [r for r in run_names(responses) if r.startswith("run-")]
    return select_runs(responses, runs), {k: v[keep] for k, v in spaces.items()}


# ---------------------------------------------------------------- the sanity check
def test_partitioning_recovers_which_family_explains_which_stream(movie):
    responses, spaces = _train_runs(*movie[:2])
    ds = movie_variance_partitioning(spaces, responses, delays=(2, 4, 6, 8), n_iter=20)
    by = summarize_neuroids(ds, "stream")
    unique = by["r2_unique"]
    dorsal, ventral = unique.sel(stream="dorsal"), unique.sel(stream="ventral")
    assert float(dorsal.sel(space="motion")) > float(dorsal.sel(space="static")) + 0.1
    assert float(ventral.sel(space="static")) > float(ventral.sel(space="motion")) + 0.1
    # per voxel too, not only on the medians
    streams = ds["stream"].values
    d = ds["r2_unique"].sel(space="motion") - ds["r2_unique"].sel(space="static")
    assert (d[streams == "dorsal"] > 0).all() and (d[streams == "ventral"] < 0).all()
    assert float(by["r2_joint"].min()) > 0.2
    # with two spaces, the model without one is the other alone: movie_encoding's fit
    alone = movie_encoding(spaces, responses, delays=(2, 4, 6, 8))
    np.testing.assert_allclose(ds["r2_without"].sel(space="motion"),
                               alone["r2"].sel(layer="static"), atol=1e-10)
    np.testing.assert_allclose(
        ds["r2_shared"], alone["r2"].sum("layer") - ds["r2_joint"], atol=1e-10)
    assert list(ds["test_run"].values) == ["run-1", "run-2", "run-3", "run-4"]


def test_held_out_scores_are_positive_and_vanish_with_shuffled_features(movie):
    responses, spaces = _train_runs(*movie[:2])
    clip_feats = movie[2]
    ds = movie_encoding(spaces, responses, delays=(2, 4, 6, 8))
    by = summarize_neuroids(ds, "stream")
    assert float(by["r"].sel(layer="motion", stream="dorsal")) > 0.5
    assert float(by["r"].sel(layer="static", stream="ventral")) > 0.5
    # the same with Lanczos resampling
    lanczos = {fam: timeline_features(f, movie[0], method="lanczos") for fam, f in clip_feats.items()}
    by = summarize_neuroids(movie_encoding(_train_runs(movie[0], lanczos)[1], responses,
                                           delays=(2, 4, 6, 8)), "stream")
    assert float(by["r"].sel(layer="motion", stream="dorsal")) > 0.5
    assert float(by["r"].sel(layer="static", stream="ventral")) > 0.5
    assert float(by["r"].sel(layer="motion", stream="ventral")) < 0.2
    # the null: every clip gets another clip's features (timing within clips kept)
    rng = np.random.default_rng(1)
    ids = sorted(clip_feats["motion"])
    perm = dict(zip(ids, rng.permutation(ids), strict=True))
    shuffled = {fam: {k: f[perm[k]] for k in ids} for fam, f in clip_feats.items()}
    null_spaces = {fam: timeline_features(f, movie[0]) for fam, f in shuffled.items()}
    null = movie_encoding(_train_runs(movie[0], null_spaces)[1], responses, delays=(2, 4, 6, 8))
    # the voxels of a stream share one drive and the clips are few, so one null draw's median
    # r spreads by ≈ 0.05; R² is the steadier check
    assert float(np.abs(null["r"].median("neuroid")).max()) < 0.15
    assert -0.05 < float(null["r2"].median()) < 0.01


def test_scores_are_unbiased_on_noise():
    """White-noise bold and features: r averaged over test runs is ≈ 0 (pooling the runs'
    predictions gave −0.04 here, the reason the scores are per run)."""
    means = []
    for seed in range(8):
        rng = np.random.default_rng(seed)
        responses = make_movie_responses(rng.standard_normal((400, 30)),
                                         np.repeat(list("abcd"), 100), 2.0)
        ds = movie_encoding(rng.standard_normal((400, 10)), responses)
        assert ds["r_split"].shape == (1, 4, 30)
        np.testing.assert_allclose(ds["r"], ds["r_split"].mean("split"))
        means.append(float(ds["r"].mean()))
    assert abs(np.mean(means)) < 0.012


def test_repeated_test_runs_give_noise_ceilings(movie):
    responses, spaces = movie[:2]
    ds = movie_encoding(spaces, responses, delays=(2, 4, 6, 8), test_runs=["rep-1", "rep-2"],
                        n_splits=20)
    assert ds.attrs["split"] == "held-out runs rep-1+rep-2"
    assert {"split_half_reliability", "ncsnr_ceiling", "r_corrected", "r2_corrected"} <= set(ds)
    dorsal = ds.sel(layer="motion").isel(neuroid=ds["stream"].values == "dorsal")
    assert (dorsal["r_corrected"] > dorsal["r"]).all()
    # the noise has the signal's SD: one run's reliability is 1/2, the two repeats' average
    # has 2·½ / (1 + ½) = 2/3 (Spearman–Brown)
    assert abs(float(np.median(ds["split_half_reliability"])) - 2 / 3) < 0.08
    # the right family explains nearly all the explainable signal
    assert 0.8 < float(dorsal["r_corrected"].median()) < 1.1


# ---------------------------------------------------------------- the building blocks
def test_resample_average_and_lanczos_equal_plain_references():
    rng = np.random.default_rng(0)
    times = np.sort(rng.uniform(0, 20, 90))
    x = rng.standard_normal((90, 3))
    got = resample_to_tr(x, times, 10, 2.0, "average")
    for i in range(10):
        inside = [j for j in range(90) if 2.0 * i <= times[j] < 2.0 * (i + 1)]
        want = np.mean(x[inside], axis=0) if inside else np.zeros(3)
        np.testing.assert_allclose(got[i], want, atol=1e-12)
    regular = np.arange(0, 20, 0.25)
    xr_ = rng.standard_normal((len(regular), 2))
    got = resample_to_tr(xr_, regular, 10, 2.0, "lanczos")
    for i in range(10):
        want = np.zeros(2)
        for j, t in enumerate(regular):
            u = ((i + 0.5) * 2.0 - t) / 2.0
            if u == 0:
                w = 1.0
            elif abs(u) < 3:
                w = 3 * math.sin(math.pi * u) * math.sin(math.pi * u / 3) / (math.pi * u) ** 2
            else:
                w = 0.0
            want += w * 0.25 / 2.0 * xr_[j]
        np.testing.assert_allclose(got[i], want, atol=1e-12)
    # a constant keeps its value away from the edges
    flat = resample_to_tr(np.ones((len(regular), 1)), regular, 10, 2.0, "lanczos")
    np.testing.assert_allclose(flat[3:7, 0], 1.0, atol=0.02)


def test_timeline_places_clip_samples_at_run_time():
    responses = make_movie_responses(
        np.random.default_rng(0).standard_normal((12, 2)), ["a"] * 6 + ["b"] * 6, 2.0,
        timeline={"event_run": ["a", "b", "b"], "onset": [2.0, 0.0, 6.0], "duration": [4.0] * 3,
                  "stimulus_id": ["c1", "c2", "c1"], "clip_offset": [0.0, 0.0, 2.0]})
    t = np.arange(0, 6, 0.5)
    feats = {"c1": (t, t[:, None] * 10), "c2": (t, np.full((12, 1), -1.0))}
    got = timeline_features(feats, responses)[:, 0]
    # run a: c1 from 2 s, its first 4 s; run b: c2 over 0-4 s, c1 from its second 2 at 6 s
    want = [0, 10 * 0.75, 10 * 2.75, 0, 0, 0, -1, -1, 0, 10 * 2.75, 10 * 4.75, 0]
    np.testing.assert_allclose(got, want)
    with pytest.raises(ValueError, match="sparser than the TR"):
        timeline_features({"c1": (t[::6], t[::6, None]), "c2": feats["c2"]}, responses)
    with pytest.raises(ValueError, match="no features, e.g. \\['c2'\\]"):
        timeline_features({"c1": feats["c1"]}, responses)
    with pytest.raises(ValueError, match="clip 'c2'"):
        timeline_features({"c1": feats["c1"], "c2": (t, np.full((12, 1), np.nan))}, responses)
    x = np.random.default_rng(1).standard_normal((2, 12, 3, 2))
    got = clip_features(x, ["c1", "c2"], t)
    assert got["c2"][1].shape == (12, 6) and np.array_equal(got["c2"][0], t)


def test_fir_delays_shape_values_and_run_boundaries():
    x = np.arange(1, 13, dtype=float).reshape(12, 1) * [1, 100]
    run = ["a"] * 5 + ["b"] * 7
    d = delay_features(x, [0, 2, 4], 2.0, run)
    assert d.shape == (12, 6)
    np.testing.assert_array_equal(d[:, :2], x)
    np.testing.assert_array_equal(d[:, 2], [0, 1, 2, 3, 4, 0, 6, 7, 8, 9, 10, 11])
    np.testing.assert_array_equal(d[:, 4], [0, 0, 1, 2, 3, 0, 0, 6, 7, 8, 9, 10])
    np.testing.assert_array_equal(d[:, 5], d[:, 4] * 100)
    assert delays_in_trs([2, 4, 6, 8], 2.0).tolist() == [1, 2, 3, 4]
    with pytest.raises(ValueError, match="multiples of the TR of 1.5 s; got 2 s"):
        delays_in_trs([2, 4], 1.5)
    with pytest.raises(ValueError, match="run 'a' has 5 volumes, not more than the largest delay"):
        delay_features(x, [2, 10], 2.0, run)
    with pytest.raises(ValueError, match="12 volumes but the run labels 11"):
        delay_features(x, [2], 2.0, run[:-1])
    with pytest.raises(ValueError, match="NaN"):
        delay_features(np.where(x > 11, np.nan, x), [2], 2.0, run)
    z = zscore_by_run(np.c_[x[:, 0], np.ones(12)], run)
    for r in ("a", "b"):
        rows = np.asarray(run) == r
        np.testing.assert_allclose([z[rows, 0].mean(), z[rows, 0].std()], [0, 1], atol=1e-12)
    assert (z[:, 1] == 0).all()


def test_split_by_run_never_leaks_a_test_volume():
    run = np.repeat(["r1", "r2", "r3", "rep"], [5, 6, 7, 5])
    splits = run_splits(run)
    assert len(splits) == 4
    covered = np.concatenate([test for _, test in splits])
    assert sorted(covered) == list(range(len(run)))
    for train, test in splits:
        assert len(set(run[test])) == 1 and not set(run[train]) & set(run[test])
    [(train, test)] = run_splits(run, ["rep", "r1"])
    assert set(run[test]) == {"rep", "r1"} and set(run[train]) == {"r2", "r3"}
    with pytest.raises(ValueError, match=r"leaves \['rep'\] to train on; .* at least two training"):
        run_splits(run, ["r1", "r2", "r3"])
    with pytest.raises(ValueError, match="are not runs"):
        run_splits(run, ["r9"])


def test_repeats_are_held_out_together_and_never_split():
    """Two runs showing one stimulus sequence: leave-one-run-out holds both out (and scores
    their average); holding out one while the other trains is refused."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((50, 2))
    x[40:] = x[30:40]  # run "rep-2" repeats "rep-1"
    run = np.repeat(["a", "b", "c", "rep-1", "rep-2"], 10)
    group = repeat_groups(run, {"f": x})
    assert group.tolist() == ["a"] * 10 + ["b"] * 10 + ["c"] * 10 + ["rep-1+rep-2"] * 20
    splits = run_splits(run, groups=group)
    assert [sorted(set(run[t])) for _, t in splits] == [["a"], ["b"], ["c"], ["rep-1", "rep-2"]]
    with pytest.raises(ValueError, match=r"training runs \['rep-2'\] repeat the stimuli of test "
                                         r"runs \['rep-1'\]"):
        run_splits(run, ["rep-1"], group)
    bold = x @ rng.standard_normal((2, 3)) + rng.standard_normal((50, 3))
    responses = make_movie_responses(bold, run, 2.0)
    ds = movie_encoding(x, responses, delays=[0, 2])
    assert ds["test_run"].values.tolist() == ["a", "b", "c", "rep-1+rep-2"]
    # the repeat split: a plain ridge on runs a, b, c at the chosen penalty, scored on the
    # average of the two repeats
    from sklearn.linear_model import Ridge

    y = zscore_by_run(bold, run)
    design = delay_features(zscore_by_run(x, run), [0, 2], 2.0, run)
    train, rep1, rep2 = run < "d", run == "rep-1", run == "rep-2"
    for v in range(3):
        alpha = float(ds["alpha"].isel(layer=0, split=3, neuroid=v))
        pred = Ridge(alpha=alpha, fit_intercept=False).fit(design[train], y[train, v]).predict(
            design[rep1])
        want = np.corrcoef(pred, (y[rep1, v] + y[rep2, v]) / 2)[0, 1]
        np.testing.assert_allclose(float(ds["r_split"].isel(layer=0, split=3, neuroid=v)), want,
                                   atol=1e-6)
    with pytest.raises(ValueError, match="repeat the stimuli of test runs"):
        movie_encoding(x, responses, delays=[0, 2], test_runs=["rep-2"])


def test_no_test_volume_reaches_the_fit(monkeypatch):
    """The fit sees only training rows: a test run's bold replaced by noise changes nothing
    in the other runs' predictions... and the chosen penalties come from training runs."""
    import neuroalign.analysis.movie_encoding as me

    seen = []
    real = me._fit_predict

    def spy(xs_train, y_train, xs_test, run_train, *args):
        seen.append(set(run_train))
        return real(xs_train, y_train, xs_test, run_train, *args)

    monkeypatch.setattr(me, "_fit_predict", spy)
    rng = np.random.default_rng(0)
    responses = make_movie_responses(rng.standard_normal((40, 3)), np.repeat(["a", "b", "c", "d"], 10),
                                     2.0)
    ds = movie_encoding(rng.standard_normal((40, 2)), responses, delays=[2, 4])
    assert [sorted(s) for s in seen] == [["b", "c", "d"], ["a", "c", "d"], ["a", "b", "d"],
                                         ["a", "b", "c"]]
    assert list(ds["test_run"].values) == ["a", "b", "c", "d"]


def test_bad_input_errors():
    rng = np.random.default_rng(0)
    responses = make_movie_responses(rng.standard_normal((30, 2)), np.repeat(["a", "b", "c"], 10), 2.0)
    with pytest.raises(ValueError, match="features 'features' have 29 volumes; the responses have 30"):
        movie_encoding(rng.standard_normal((29, 2)), responses)
    with pytest.raises(ValueError, match="run 'a' has 10 volumes, not more than the largest delay"):
        movie_encoding(rng.standard_normal((30, 2)), responses, delays=[2, 20])
    with pytest.raises(ValueError, match="features 'shape': .* NaN"):
        movie_encoding({"shape": np.full((30, 2), np.nan)}, responses)
    bold = rng.standard_normal((30, 2))
    bold[12, 1] = np.nan
    with pytest.raises(ValueError, match="run 'b' volume 2, neuroid '1'"):
        make_movie_responses(bold, np.repeat(["a", "b", "c"], 10), 2.0)
    flat = rng.standard_normal((30, 2))
    flat[10:20, 0] = 3.0
    with pytest.raises(ValueError, match="constant within run 'b'"):
        movie_encoding(rng.standard_normal((30, 2)), make_movie_responses(
            flat, np.repeat(["a", "b", "c"], 10), 2.0))
    with pytest.raises(ValueError, match="2 to 6 feature spaces"):
        movie_variance_partitioning({"a": rng.standard_normal((30, 2))}, responses)


@pytest.mark.parametrize("solver", ["primal", "kernel"])
def test_fit_equals_plain_ridge_at_the_chosen_penalty(solver):
    """Each split's held-out r is a plain ridge (no intercept) on the per-run z-scored,
    delayed design at the penalty chosen for each voxel, fitted on the training runs only."""
    from sklearn.linear_model import Ridge

    rng = np.random.default_rng(3)
    run = np.repeat(["a", "b", "c"], 30)
    x = rng.standard_normal((90, 3))
    bold = np.r_[np.zeros((2, 3)), x[:-2]] @ rng.standard_normal((3, 4)) \
        + rng.standard_normal((90, 4))
    responses = make_movie_responses(bold, run, 2.0)
    ds = movie_encoding(x, responses, delays=[2, 4], solver=solver, alphas=np.logspace(-2, 4, 7))
    design = delay_features(zscore_by_run(x, run), [2, 4], 2.0, run)
    y = zscore_by_run(bold, run)
    for k, (train, test) in enumerate(run_splits(run)):
        for v in range(4):
            alpha = float(ds["alpha"].isel(layer=0, split=k, neuroid=v))
            assert np.isclose(alpha, np.logspace(-2, 4, 7)).any()
            pred = Ridge(alpha=alpha, fit_intercept=False).fit(
                design[train], y[train, v]).predict(design[test])
            np.testing.assert_allclose(float(ds["r_split"].isel(layer=0, split=k, neuroid=v)),
                                       np.corrcoef(pred, y[test, v])[0, 1], atol=1e-6)
    assert (ds["solver"] == solver).all()
    assert float(ds["r"].mean()) > 0.3


def test_torch_backend_matches_numpy():
    rng = np.random.default_rng(4)
    run = np.repeat(["a", "b", "c"], 30)
    x = rng.standard_normal((90, 3))
    bold = np.r_[np.zeros((1, 3)), x[:-1]] @ rng.standard_normal((3, 4)) + rng.standard_normal((90, 4))
    responses = make_movie_responses(bold, run, 2.0)
    grid = np.logspace(-2, 4, 7)
    a = movie_encoding(x, responses, delays=[2, 4], alphas=grid)
    b = movie_encoding(x, responses, delays=[2, 4], alphas=grid, device="cpu")
    np.testing.assert_allclose(b["r"], a["r"], atol=1e-4)
    np.testing.assert_array_equal(b["alpha"], a["alpha"])
