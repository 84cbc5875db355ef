"""analysis.dist_xmax: the Dist method's geometry, quality cuts, calibration and leakage on
synthetic inputs with known answers (fast)."""
from typing import NamedTuple

import numpy as np
import pytest

from analysis import dist_xmax as D
from detectors import atmosphere
from detectors.shower import REFERENCE_HEIGHT_M


class _Geo(NamedTuple):
    tel_pos: np.ndarray
    tel_axis: np.ndarray
    tel_e_az: np.ndarray
    tel_e_el: np.ndarray
    col_x: np.ndarray


def _vertical_telescope(n_tel=1):
    """Telescopes at the origin (reference height) pointing at the zenith (azimuth 0)."""
    z = np.zeros((n_tel, 3))
    return _Geo(z, np.tile([0.0, 0, 1], (n_tel, 1)), np.tile([0.0, 1, 0], (n_tel, 1)),
                np.tile([-1.0, 0, 0], (n_tel, 1)), np.zeros(32))


def test_telescope_features_of_a_known_geometry():
    # vertical shower, core 100 m from the telescope; the centroid ray points at the axis point
    # H metres up: tangent-plane η = v·e_el / v·axis = -100/H
    geo = _vertical_telescope()
    h = np.array([2000.0, 5000.0])
    f = D.telescope_features(np.zeros((2, 1)), (-100.0 / h)[:, None], np.zeros(2), np.zeros(2),
                             np.full(2, 100.0), np.zeros(2), geo)
    np.testing.assert_allclose(f["rp"][:, 0], 100.0, rtol=1e-9)
    np.testing.assert_allclose(f["view"][:, 0], 0.0, atol=1e-6)
    np.testing.assert_allclose(f["dist"][:, 0], np.degrees(np.arctan(100.0 / h)), rtol=1e-6)
    want = np.asarray(atmosphere.vertical_depth(REFERENCE_HEIGHT_M + h))
    np.testing.assert_allclose(f["x_dist"][:, 0], want, rtol=1e-4)
    ground = float(np.asarray(atmosphere.vertical_depth(REFERENCE_HEIGHT_M)))
    np.testing.assert_allclose(f["x_ground"][:, 0], ground, rtol=1e-5)
    # the same from the JAX single-event function used by the pipeline's observables
    import jax.numpy as jnp
    from detectors.shower import Shower, FIELDS

    s = Shower(**{k: jnp.asarray(0.0) for k in FIELDS})._replace(core_x=jnp.asarray(100.0))
    xd = D.centroid_depth(jnp.asarray([[0.0, -100.0 / h[0]]]), s, geo)
    assert float(xd[0]) == pytest.approx(want[0], rel=1e-4)


def test_quality_cuts_reject_faint_edge_and_leaking_images():
    fov = D.CAMERA_HALF_FOV_RAD
    pix = np.radians(0.515)
    length = np.radians(1.0)
    big = 10 * D.MIN_SIZE_PE
    # good, faint, centroid near the edge along ξ, along η, leaking, good at the last allowed spot
    size = np.array([big, 0.5 * D.MIN_SIZE_PE, big, big, big, big])
    x = np.array([0.0, 0.0, fov - 0.5 * length, 0.0, 0.0, fov - D.EDGE_LENGTHS * length - pix - 1e-6])
    y = np.array([0.0, 0.0, 0.0, -(fov - 0.1 * length), 0.0, 0.0])
    leak = np.array([0.0, 0.0, 0.0, 0.0, D.MAX_LEAKAGE + 0.05, D.MAX_LEAKAGE])
    ok = D.quality_cuts(size, x, y, np.full(6, length), leak)
    np.testing.assert_array_equal(ok, [True, False, False, False, False, True])
    # without the leakage column the leaking image passes the other cuts
    assert D.quality_cuts(size, x, y, np.full(6, length))[4]


def _synthetic(n, seed, noise_of_rp):
    """Events with 3 telescopes whose features obey a known Dist–Xmax relation (in the span of
    the calibration polynomial) up to per-telescope noise noise_of_rp(rp)."""
    rng = np.random.default_rng(seed)
    xmax = rng.normal(650.0, 60.0, n)
    rp = rng.uniform(20.0, 380.0, (n, 3))
    lgs = rng.uniform(2.8, 4.5, (n, 3))
    view = rng.uniform(0.0, 5.0, (n, 3))
    xg = np.full((n, 3), 690.0) * rng.uniform(0.95, 1.1, (n, 1))
    xdist = rng.uniform(450.0, 700.0, (n, 3))
    u_rp, u_s, u_v = rp / 200.0, lgs - 3.0, view / 5.0
    xg_u = (np.minimum(xdist, xg) - 600.0) / 100.0
    # Xmax + noise = 600 - 80 u_d + 30 u_rp + 25 u_d u_rp + 10 u_s + 5 u_v + 12 xg_u: solve u_d
    target = xmax[:, None] + noise_of_rp(rp) * rng.normal(size=rp.shape)
    u_d = (target - 600.0 - 30 * u_rp - 10 * u_s - 5 * u_v - 12 * xg_u) / (-80.0 + 25 * u_rp)
    f = {"dist": 5.0 * u_d, "rp": rp, "view": view, "x_dist": xdist, "x_ground": xg}
    return f, lgs, xmax


def _relation(f, lgs):
    """The synthetic relation of :func:`_synthetic` evaluated at features ``f``."""
    u_d, u_rp, u_s, u_v = f["dist"] / 5.0, f["rp"] / 200.0, lgs - 3.0, f["view"] / 5.0
    xg_u = (np.minimum(f["x_dist"], f["x_ground"]) - 600.0) / 100.0
    return 600 - 80 * u_d + 30 * u_rp + 25 * u_d * u_rp + 10 * u_s + 5 * u_v + 12 * xg_u


def test_calibration_recovers_a_known_relation_out_of_sample():
    f1, s1, x1 = _synthetic(2000, 1, lambda rp: np.full(rp.shape, 2.0))
    f2, s2, x2 = _synthetic(1000, 2, lambda rp: np.full(rp.shape, 2.0))   # independent sample
    cal = D.DistCalibration.fit(f1, s1, np.ones(s1.shape, bool), x1)
    assert cal.n_images == s1.size
    # applied out of sample: each telescope gives Xmax to its injected noise, ~2 g/cm²
    xt, st = cal.per_telescope(f2, s2, np.ones(s2.shape, bool))
    r = xt - x2[:, None]
    assert abs(np.mean(r)) < 0.5 and np.std(r) == pytest.approx(2.0, rel=0.2)
    np.testing.assert_allclose(st, 2.0, rtol=0.2)
    # the fitted polynomial is the relation itself, also away from the sample's events
    rng = np.random.default_rng(9)
    g = {"dist": rng.uniform(0, 8, (50, 1)), "rp": rng.uniform(20, 380, (50, 1)),
         "view": rng.uniform(0, 5, (50, 1)), "x_dist": rng.uniform(450, 700, (50, 1)),
         "x_ground": np.full((50, 1), 700.0)}
    lg = rng.uniform(2.8, 4.5, (50, 1))
    xg, _ = cal.per_telescope(g, lg, np.ones((50, 1), bool))
    np.testing.assert_allclose(xg, _relation(g, lg), atol=6.0)
    # three telescopes with independent noise: the event's error ≈ 2/√3
    xe, err, nimg = cal.predict(f2, s2, np.ones(s2.shape, bool))
    assert (nimg == 3).all()
    assert np.std(xe - x2) == pytest.approx(2.0 / np.sqrt(3), rel=0.2)
    np.testing.assert_allclose(err, 2.0 / np.sqrt(3), rtol=0.2)


def test_calibration_weights_telescopes_by_their_rp_resolution():
    noise = lambda rp: np.where(rp < 180.0, 5.0, 40.0)
    f1, s1, x1 = _synthetic(3000, 3, noise)
    f2, s2, x2 = _synthetic(2000, 4, noise)
    cal = D.DistCalibration.fit(f1, s1, np.ones(s1.shape, bool), x1)
    xt, st = cal.per_telescope(f2, s2, np.ones(s2.shape, bool))
    near, far = f2["rp"] < 120.0, f2["rp"] > 260.0
    # the σ table tells the precise (near) images from the poor (far) ones, as the residuals do
    r = xt - x2[:, None]
    assert np.median(st[far]) > 3.0 * np.median(st[near])
    assert np.median(st[near]) == pytest.approx(np.std(r[near]), rel=0.25)
    assert np.median(st[far]) == pytest.approx(np.std(r[far]), rel=0.25)
    # the weighted mean per event beats the plain mean of the telescopes
    xe, _, _ = cal.predict(f2, s2, np.ones(s2.shape, bool))
    assert abs(np.mean(xe - x2)) < 2.0
    assert np.std(xe - x2) < 0.7 * np.std(np.nanmean(xt, 1) - x2)


def test_calibration_rejects_bad_images_and_needs_enough():
    f, s, x = _synthetic(400, 5, lambda rp: np.full(rp.shape, 5.0))
    keep = np.ones(s.shape, bool)
    # corrupt the images of telescope 0 and reject them by the mask: the fit must not see them
    f_bad = {k: v.copy() for k, v in f.items()}
    f_bad["dist"][:, 0] = 50.0
    keep[:, 0] = False
    cal = D.DistCalibration.fit(f_bad, s, keep, x)
    assert cal.n_images == 2 * 400
    xe, _, nimg = cal.predict(f_bad, s, keep)
    assert (nimg == 2).all()
    assert np.std(xe - x) < 6.0
    # an event without any kept image has no estimate
    keep[:5] = False
    xe, err, nimg = cal.predict(f_bad, s, keep)
    assert np.isnan(xe[:5]).all() and np.isnan(err[:5]).all() and (nimg[:5] == 0).all()
    assert np.isfinite(xe[5:]).all()
    with pytest.raises(ValueError):
        D.DistCalibration.fit({k: v[:3] for k, v in f.items()}, s[:3], keep[:3] | True, x[:3])
    # a small sample falls back to the linear polynomial, which still fits a linear relation
    assert cal.deg == 2
    small = D.DistCalibration.fit({k: v[:20] for k, v in f.items()}, s[:20],
                                  np.ones((20, 3), bool), x[:20])
    assert small.deg == 1 and small.n_images == 60


def test_image_leakage_counts_the_outer_ring():
    class _Pix(NamedTuple):
        signal: np.ndarray
        valid: np.ndarray

    class _Resp(NamedTuple):
        nsb_pe: np.ndarray

    geo = _vertical_telescope(2)
    img = np.zeros((2, 32, 32))
    img[0, 0:3, 10:13] = 100.0        # a 3x3 blob on the top edge: row 0 is the outer ring
    img[1, 14:17, 14:17] = 100.0      # the same in the centre
    img[1, 20, 20] = 100.0            # an isolated pixel (removed by the cleaning)
    sig = img.reshape(1, -1)
    lk = D.image_leakage(_Pix(sig, np.ones_like(sig, bool)), geo, _Resp(np.zeros((2, 1024))))
    assert lk.shape == (1, 2)
    assert lk[0, 0] == pytest.approx(3.0 / 9.0, rel=1e-5)
    assert lk[0, 1] == 0.0
