"""Composition network inputs (analysis.ml.composition_data): feature construction, presence
flags and shapes; the benchmark's selection helpers. Fast (numpy only except the last test)."""
import numpy as np
import pytest

from analysis.ml import composition_data as CD


def _km2a_cols(n, rng):
    return {"reco_log10_energy": rng.uniform(5.5, 6.5, n), "reco_zenith": rng.uniform(0, 0.5, n),
            "reco_core_x": rng.normal(0, 100, n), "reco_core_y": rng.normal(0, 100, n),
            "ne": 10 ** rng.uniform(3, 5, n), "nmu": 10 ** rng.uniform(1, 3, n),
            "age": rng.uniform(0.8, 1.6, n)}


def _image_cols(n, n_tel=6):
    size = np.zeros((n, n_tel))
    size[0, 2] = 5000.0  # event 0: telescope 2 brightest
    size[0, 4] = 100.0
    size[1, 0] = 300.0   # event 1: telescope 0
    # event 2: no image (all zero, NaN Hillas as the cleaning leaves)
    nan = np.full((n, n_tel), np.nan)
    length, width, dist = nan.copy(), nan.copy(), nan.copy()
    length[0, 2], width[0, 2], dist[0, 2] = np.radians(1.0), np.radians(0.3), np.radians(2.0)
    length[0, 4], width[0, 4], dist[0, 4] = np.radians(9.0), np.radians(9.0), np.radians(9.0)
    length[1, 0], width[1, 0], dist[1, 0] = np.radians(0.5), np.radians(0.2), np.radians(4.0)
    return {"hillas_size": size, "hillas_length": length, "hillas_width": width,
            "hillas_dist": dist, "x_dist": np.array([650.0, np.nan, np.nan]),
            "wfcta_size": size.sum(1)}


def test_image_features_brightest_telescope_and_flag():
    f = CD.image_features(_image_cols(3))
    assert f.shape == (3, len(CD.IMAGE_FEATURES)) and f.dtype == np.float32
    names = CD.IMAGE_FEATURES
    col = lambda k: f[:, names.index(k)]
    np.testing.assert_array_equal(col("image_present"), [1, 1, 0])
    np.testing.assert_allclose(col("log10_image_size")[:2], np.log10([5001.0, 301.0]), rtol=1e-6)
    np.testing.assert_allclose(col("hillas_length_deg")[:2], [1.0, 0.5], rtol=1e-5)
    np.testing.assert_allclose(col("hillas_width_deg")[:2], [0.3, 0.2], rtol=1e-5)
    np.testing.assert_allclose(col("hillas_dist_deg")[:2], [2.0, 4.0], rtol=1e-5)
    # x_dist: present for event 0, NaN → 0 for event 1 (flag still 1: the image exists)
    np.testing.assert_allclose(col("x_dist_100"), [6.5, 0.0, 0.0], rtol=1e-6)
    # no image: every feature 0
    assert np.all(f[2] == 0.0)


def test_xmax_features_presence_flag():
    x = np.array([600.0, np.nan, 700.0, 800.0])
    f = CD.xmax_features(x)
    np.testing.assert_allclose(f, [[1, 6.0], [0, 0], [1, 7.0], [1, 8.0]], rtol=1e-6)
    f2 = CD.xmax_features(x, present=np.array([True, True, False, True]))
    np.testing.assert_allclose(f2, [[1, 6.0], [0, 0], [0, 0], [1, 8.0]], rtol=1e-6)


def test_composition_event_features_shapes_and_defaults():
    rng = np.random.default_rng(1)
    n = 3
    k = _km2a_cols(n, rng)
    full = CD.composition_event_features(k, _image_cols(n), np.array([600.0, np.nan, 650.0]))
    assert full.shape == (n, len(CD.COMPOSITION_EVENT_FEATURES)) == (3, 14)
    assert full.dtype == np.float32 and np.all(np.isfinite(full))
    from analysis.ml.data import event_features

    np.testing.assert_allclose(full[:, :6], event_features(k))
    i = CD.COMPOSITION_EVENT_FEATURES.index("xmax_present")
    np.testing.assert_array_equal(full[:, i], [1, 0, 1])
    np.testing.assert_allclose(full[:, i + 1], [6.0, 0.0, 6.5], rtol=1e-6)
    # without image or Xmax (what classify has from a KM2A reco file): zeros and flags 0
    bare = CD.composition_event_features(k)
    np.testing.assert_allclose(bare[:, :6], full[:, :6])
    assert np.all(bare[:, 6:] == 0.0)
    with pytest.raises(ValueError, match="event counts differ"):
        CD.composition_event_features(k, None, np.zeros(n + 1))


def test_nan_km2a_fit_gives_finite_features():
    rng = np.random.default_rng(2)
    k = _km2a_cols(2, rng)
    k["reco_log10_energy"][1] = np.nan
    k["ne"][1] = np.nan
    f = CD.composition_event_features(k, None, np.array([np.nan, np.nan]))
    assert np.all(np.isfinite(f))
    assert f[1, 0] == 0.0 and f[1, 3] == 0.0


def test_subset_keeps_names():
    s = {"label": np.array([1, 0, 1], np.int8), "event": np.zeros((3, 14), np.float32),
         "xmax_source": np.array("km2a"), "event_feature_names": np.array(CD.COMPOSITION_EVENT_FEATURES)}
    t = CD.subset(s, np.array([True, False, True]))
    assert t["event"].shape == (2, 14) and t["label"].tolist() == [1, 1]
    assert str(t["xmax_source"]) == "km2a"
    assert len(t["event_feature_names"]) == 14


def test_selection_helpers_of_the_benchmark():
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import ml_composition as B

    # lost ratio: (1 − 0.9) / (1 − 0.8) = 0.5
    r, e = B.lost_ratio(0.9, 0.8, 0.01, 0.02)
    assert r == pytest.approx(0.5) and e > 0
    # selection table: failed fits (NaN score) count as lost light events
    s = {"label": np.array([1, 1, 1, 0, 1, 0], np.int8),
         "true_log10_energy": np.array([5.6, 5.6, 5.9, 5.9, 6.2, 6.4]),
         "weight": np.ones(6)}
    score = np.array([0.9, np.nan, 0.8, 0.2, 0.7, 0.95])
    chosen = np.isfinite(score) & (score >= 0.5)
    t = B.selection_table(chosen, s, np.ones(6, bool), (5.5, 6.0, 6.5))
    assert t["all"]["n_light_all"] == 4 and t["all"]["n_light_sel"] == 3
    assert t["all"]["efficiency"] == pytest.approx(0.75)
    assert t["all"]["purity"] == pytest.approx(0.75)
    assert t["bins"][0]["efficiency"] == pytest.approx(2 / 3)
    # the Xmax input switch: flag and value from the chosen fit
    base = {"label": np.array([1, 0, 1], np.int8), "event": np.zeros((3, 14), np.float32),
            "status": np.array([0, 0, 1]), "km2a_reco_xmax": np.array([600.0, 700.0, 650.0]),
            "joint_reco_xmax": np.array([610.0, np.nan, 620.0]),
            "joint_status": np.array([0, -1, 0]), "joint_wfcta_size": np.array([100.0, np.nan, 0.0])}
    i = CD.COMPOSITION_EVENT_FEATURES.index("xmax_present")
    km = B.with_xmax_input(base, "km2a")["event"]
    np.testing.assert_allclose(km[:, i:i + 2], [[1, 6.0], [1, 7.0], [0, 0]], rtol=1e-6)
    jo = B.with_xmax_input(base, "joint")["event"]
    np.testing.assert_allclose(jo[:, i:i + 2], [[1, 6.1], [0, 0], [0, 0]], rtol=1e-6)
    assert np.all(base["event"] == 0)  # the input sample is not modified


def test_fisher_selection_cross_fitted_and_trained():
    """The notebook's Fisher on synthetic joint columns: light = deeper Xmax and fewer muons;
    cross-fitted on the test events (each half with the other's cut) or trained on a training
    sample; events without a converged joint fit are never selected."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import ml_composition as B

    def sample(n_per, seed):
        rng = np.random.default_rng(seed)
        a = np.repeat([1, 4, 14, 56], n_per).astype(float)
        light = a < 10
        n = a.size
        lg = rng.uniform(5.5, 6.5, n)
        ne = 10 ** (lg - 1.5)
        return {"label": light.astype(np.int8), "true_mass_number": a,
                "true_log10_energy": lg, "weight": np.ones(n),
                "present_km2a": np.ones(n, bool), "present_wfcta": np.ones(n, bool),
                "has_joint": np.ones(n, bool), "joint_status": np.where(np.arange(n) % 10 == 0, 1, 0),
                "joint_reco_xmax": 600 + 60 * (lg - 6) + np.where(light, 40, -40) + rng.normal(0, 20, n),
                "joint_reco_log10_energy": lg, "joint_ne": ne,
                "joint_nmu": ne ** 0.86 * 10 ** (np.where(light, -0.1, 0.1) + rng.normal(0, 0.05, n)),
                "joint_wfcta_size": np.full(n, 1e4)}

    test = sample(100, 1)
    chosen, rel, info = B.fisher_selection(test, 0.9)
    failed = test["joint_status"] != 0
    assert not chosen[failed].any() and np.all(np.isnan(rel[failed]))
    assert len(info["folds"]) == 2 and "cross-fitted" in info["trained_on"]
    light = test["label"].astype(bool)
    pur = chosen[light].sum() / chosen.sum()
    eff = chosen[light].sum() / light.sum()
    assert pur > 0.8 and 0.5 < eff <= 0.9 + 1e-12  # 10% failed fits are lost
    chosen2, _, info2 = B.fisher_selection(test, 0.9, train_s=sample(100, 2))
    assert len(info2["folds"]) == 1 and info2["folds"][0]["n_train"] == 360
    assert chosen2[light].sum() / chosen2.sum() > 0.8


def test_classify_event_features_without_wfcta():
    """A KM2A-only event file: image features 0 (flag 0), the KM2A fit's Xmax where it
    converged."""
    rng = np.random.default_rng(3)
    k = _km2a_cols(3, rng)
    k["reco_xmax"] = np.array([600.0, 650.0, np.nan])
    k["status"] = np.array([0, 1, 0])
    f = CD.classify_event_features({"event_id": np.arange(3)}, k)
    assert f.shape == (3, 14)
    assert np.all(f[:, 6:12] == 0.0)
    i = CD.COMPOSITION_EVENT_FEATURES.index("xmax_present")
    np.testing.assert_allclose(f[:, i:i + 2], [[1, 6.0], [0, 0], [0, 0]], rtol=1e-6)
