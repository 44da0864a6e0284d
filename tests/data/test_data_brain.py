"""Brain RDM loaders (shapes, descriptors, published reference values) and stimulus matching."""

import numpy as np
import pytest
import rsatoolbox
from scipy.stats import spearmanr

from neuroalign.analysis import match_stimuli
from neuroalign.data import brain, stimulus_sets


def _upper(matrix):
    return matrix[np.triu_indices(matrix.shape[0], 1)]


def _check_valid(rdms, n_rdm, n_cond):
    m = rdms.get_matrices()
    assert m.shape == (n_rdm, n_cond, n_cond)
    np.testing.assert_array_equal(m, m.transpose(0, 2, 1))
    np.testing.assert_array_equal(np.diagonal(m, axis1=1, axis2=2), 0)
    assert np.isfinite(m).all() and (m >= 0).all()
    assert len(rdms.pattern_descriptors["stimulus_id"]) == n_cond
    for key in ("dataset", "subject", "session", "roi"):
        assert len(rdms.rdm_descriptors[key]) == n_rdm, key


def test_kriegeskorte_hit(shared_data):
    hit = brain.load_kriegeskorte_hit()
    _check_valid(hit, 8, 92)
    assert hit.rdm_descriptors["subject"] == ["BE", "BE", "KO", "KO", "SN", "SN", "TI", "TI"]
    assert hit.rdm_descriptors["session"] == [1, 2] * 4
    assert set(hit.rdm_descriptors["roi"]) == {"IT"}
    assert hit.dissimilarity_measure == "correlation"
    assert hit.pattern_descriptors["stimulus_id"] == stimulus_sets.ids_92().tolist()


def test_hit_vs_mit_reference(shared_data):
    """Kriegeskorte 2008: human IT vs monkey IT, Spearman 0.439."""
    fig1 = brain.load_kriegeskorte_fig1()
    _check_valid(fig1, 2, 92)
    mit = brain.load_kriegeskorte_mit()
    assert mit.n_rdm == 1 and mit.rdm_descriptors["species"] == ["monkey"]
    hit_fig1 = fig1.subset("species", "human").get_matrices()[0]
    rho = spearmanr(_upper(mit.get_matrices()[0]), _upper(hit_fig1))[0]
    assert rho == pytest.approx(0.439, abs=0.005)
    # The pooled hIT is rank-identical to the mean of the 8 session RDMs.
    mean_hit = brain.load_kriegeskorte_hit().get_matrices().mean(0)
    assert spearmanr(_upper(mean_hit), _upper(hit_fig1))[0] == pytest.approx(1.0, abs=1e-9)
    # The demo's "monkeyIT" model RDM is the same monkey IT RDM.
    models = brain.load_kriegeskorte_models()
    monkey_model = models.subset("model", "monkeyIT").get_matrices()[0]
    np.testing.assert_allclose(monkey_model, mit.get_matrices()[0])


def test_cichy_vs_kriegeskorte_reference(shared_data):
    """Mean Cichy IT RDM vs Kriegeskorte human IT: Spearman 0.56."""
    cichy = brain.load_cichy("IT")
    _check_valid(cichy, 15, 92)
    assert cichy.rdm_descriptors["subject"][0] == "sub01" and set(cichy.rdm_descriptors["roi"]) == {
        "IT"
    }
    hit = brain.load_kriegeskorte_hit()
    assert cichy.pattern_descriptors["stimulus_id"] == hit.pattern_descriptors["stimulus_id"]
    rho = spearmanr(_upper(cichy.get_matrices().mean(0)), _upper(hit.get_matrices().mean(0)))[0]
    assert rho == pytest.approx(0.557, abs=0.005)
    evc = brain.load_cichy("EVC")
    _check_valid(evc, 15, 92)
    assert not np.allclose(evc.dissimilarities, cichy.dissimilarities)


def test_other_loaders(shared_data):
    behaviour = brain.load_kriegeskorte_behaviour()
    _check_valid(behaviour, 16, 92)
    assert behaviour.rdm_descriptors["subject"][-1] == "subject16"
    models = brain.load_kriegeskorte_models()
    assert models.rdm_descriptors["model"] == [
        "animacy",
        "FaceBodyManmadeNatobj",
        "monkeyIT",
        "EVA",
        "HMAX",
        "V1",
        "Silhouette",
        "RADON",
    ]
    assert models.get_matrices().shape == (8, 92, 92)
    for roi in ("IT", "EVC"):
        alg = brain.load_algonauts(roi)
        _check_valid(alg, 15, 78)
        assert alg.pattern_descriptors["stimulus_id"] == stimulus_sets.ids_78().tolist()
        raw = np.load(shared_data / f"algonauts78/fmri_{roi}_RDMs.npz")["arr_0"]
        np.testing.assert_allclose(alg.get_matrices(), raw, rtol=0, atol=1e-12)


def test_bad_roi():
    with pytest.raises(ValueError, match=r"\('EVC', 'IT'\).*'V1'"):
        brain.load_cichy("V1")


def test_nan_rdms_name_the_file(tmp_path, monkeypatch):
    root = tmp_path / "data"
    (root / "cichy92").mkdir(parents=True)
    matrices = np.zeros((15, 92, 92))
    matrices[3, 1, 2] = np.nan
    np.savez(root / "cichy92" / "fmri_IT_RDMs.npz", Net_RDM=matrices)
    monkeypatch.setenv("NEUROALIGN_DATA", str(root))
    with pytest.raises(ValueError, match="fmri_IT_RDMs.npz.*1 NaN"):
        brain.load_cichy("IT")


def _toy_rdms(ids, seed=0):
    rng = np.random.default_rng(seed)
    vectors = rng.random((3, len(ids) * (len(ids) - 1) // 2))
    return rsatoolbox.rdm.RDMs(
        vectors,
        pattern_descriptors={"stimulus_id": list(ids)},
        rdm_descriptors={"subject": ["a", "b", "c"]},
    )


def test_match_stimuli_reorders_by_name():
    ids = [f"s{i}" for i in range(6)]
    rdms = _toy_rdms(ids)
    order = [4, 0, 5, 2, 1, 3]
    matched = match_stimuli(rdms, [ids[i] for i in order])
    expected = rdms.get_matrices()[:, order][:, :, order]  # plain indexing reference
    np.testing.assert_array_equal(matched.get_matrices(), expected)
    assert matched.pattern_descriptors["stimulus_id"] == [ids[i] for i in order]
    assert rdms.pattern_descriptors["stimulus_id"] == ids  # the input is untouched
    assert matched.rdm_descriptors["subject"] == ["a", "b", "c"]


def test_match_stimuli_lists_differences():
    rdms = _toy_rdms(["a", "b", "c", "d"])
    with pytest.raises(ValueError) as err:
        match_stimuli(rdms, ["a", "b", "c", "x", "y"])
    message = str(err.value)
    assert "2 requested ids missing" in message and "'x'" in message and "'y'" in message
    assert "1 ids of RDMs not requested" in message and "'d'" in message
    with pytest.raises(ValueError, match=r"duplicated ids: \['a'\]"):
        match_stimuli(rdms, ["a", "a", "b", "c"])
    no_ids = rsatoolbox.rdm.RDMs(np.ones((1, 6)))
    with pytest.raises(ValueError, match="no 'stimulus_id'"):
        match_stimuli(no_ids, ["a"])


def test_load_rdms_file_round_trip(tmp_path):
    rdms = _toy_rdms(["a", "b", "c", "d"], seed=2)
    path = tmp_path / "mine.hdf5"
    rdms.save(str(path), file_type="hdf5")
    back = brain.load_rdms_file(path)
    np.testing.assert_array_equal(back.dissimilarities, rdms.dissimilarities)
    assert list(back.pattern_descriptors["stimulus_id"]) == ["a", "b", "c", "d"]
    bad = rsatoolbox.rdm.RDMs(np.array([[0.1, np.nan, 0.3]]))
    bad.save(str(tmp_path / "bad.pkl"), file_type="pkl")
    with pytest.raises(ValueError, match="bad.pkl.*NaN"):
        brain.load_rdms_file(tmp_path / "bad.pkl")
    with pytest.raises(FileNotFoundError, match="nothere.pkl"):
        brain.load_rdms_file(tmp_path / "nothere.pkl")
    (tmp_path / "mine.txt").write_text("0.1 0.2 0.3")
    with pytest.raises(ValueError, match=r"mine.txt.*suffix.*'.txt'"):
        brain.load_rdms_file(tmp_path / "mine.txt")


def test_sessions_pooled_as_rdms_are_the_plain_mean_of_sessions(shared_data):
    from neuroalign.analysis.rsa import pool_subjects
    from neuroalign.data import load_brain_rdms

    rdms, subject = load_brain_rdms("kriegeskorte-hit")
    assert subject == "subject" and rdms.n_rdm == 8  # as recorded: the analyses pool sessions
    pooled = pool_subjects(rdms, subject, "rdms")
    assert pooled.rdms.n_rdm == 4
    assert list(pooled.labels) == ["BE", "KO", "SN", "TI"]
    assert list(pooled.rdms.rdm_descriptors["subject"]) == ["BE", "KO", "SN", "TI"]
    assert list(pooled.rdms.pattern_descriptors["stimulus_id"]) == list(
        rdms.pattern_descriptors["stimulus_id"]
    )
    mats = rdms.get_matrices()
    subjects = list(rdms.rdm_descriptors["subject"])
    for i, s in enumerate(["BE", "KO", "SN", "TI"]):
        idx = [j for j, v in enumerate(subjects) if v == s]
        assert len(idx) == 2
        assert np.allclose(pooled.rdms.get_matrices()[i], (mats[idx[0]] + mats[idx[1]]) / 2)
    with pytest.raises(ValueError, match="subject_descriptor.*got 'subjects'"):
        pool_subjects(rdms, "subjects")


def test_registry_names_and_errors(tmp_path):
    from neuroalign.data import BRAIN_DATA, load_brain_rdms

    assert {"kriegeskorte-hit", "cichy-it", "algonauts-evc"} <= set(BRAIN_DATA)
    with pytest.raises(ValueError, match="Unknown brain data 'kriegeskorte-hti'.*Did you mean 'kriegeskorte-hit'"):
        load_brain_rdms("kriegeskorte-hti")
    rdms = _toy_rdms(["a", "b", "c", "d"])
    rdms.save(str(tmp_path / "mine.hdf5"), file_type="hdf5")
    back, subject = load_brain_rdms(str(tmp_path / "mine.hdf5"))
    assert subject == "subject" and back.n_rdm == 3
