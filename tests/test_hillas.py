"""Tests of analysis/hillas.py: WFCTA tail-cuts cleaning, Hillas parameters, dist/alpha.

Synthetic images are 2-D elliptical Gaussians on the WFCTA camera (known centroid, length, width,
psi, total charge) with Poisson noise (pedestal-subtracted night-sky background). The reference
is ctapipe (``tailcuts_clean`` and ``hillas_parameters`` with the camera described to it as a
``CameraGeometry``); those comparisons are skipped when ctapipe is not installed.
"""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from analysis.hillas import (HillasParameters, dist_alpha, hillas_parameters, image_parameters,
                             neighbor_matrix, tailcuts_clean)
from detectors.layout import WFCTA_FOCAL_LENGTH, WFCTA_PIXEL_PITCH, camera_pixel_xy

PIX = camera_pixel_xy()  # (1024, 2) [m]
PITCH = WFCTA_PIXEL_PITCH
NB = neighbor_matrix(PIX, PITCH)
HALF_SIDE = np.abs(PIX).max()  # ≈ 0.413 m, centre of the outermost pixels

# (x0 [m], y0 [m], length [m], width [m], psi [rad], total charge [PE]); last two cut by the edge
CASES = [
    (0.05, -0.08, 0.10, 0.03, 0.0, 4000.0),
    (-0.10, 0.12, 0.09, 0.025, 0.02, 3000.0),
    (0.02, 0.03, 0.12, 0.035, np.pi / 2 - 0.01, 5000.0),
    (-0.15, -0.05, 0.08, 0.03, -np.pi / 2 + 0.015, 2500.0),
    (0.12, 0.10, 0.11, 0.04, np.pi / 4, 6000.0),
    (-0.05, 0.20, 0.07, 0.02, -1.0, 1500.0),
    (0.39, 0.05, 0.12, 0.03, 0.3, 5000.0),
    (-0.10, -0.40, 0.10, 0.03, 1.2, 4000.0),
]


def gaussian_image(x0, y0, length, width, psi, total, pix=PIX, pitch=PITCH):
    """Expected charge [PE] per pixel of an elliptical Gaussian (pdf × pixel area)."""
    dx, dy = pix[:, 0] - x0, pix[:, 1] - y0
    c, s = np.cos(psi), np.sin(psi)
    lo, tr = dx * c + dy * s, -dx * s + dy * c
    pdf = np.exp(-0.5 * ((lo / length) ** 2 + (tr / width) ** 2)) / (2 * np.pi * length * width)
    return total * pdf * pitch**2


def noisy_image(rng, *case, nsb=3.0):
    """Poisson(signal + NSB) − NSB: pedestal-subtracted, can be negative."""
    mu = gaussian_image(*case)
    return rng.poisson(mu + nsb).astype(np.float64) - nsb


@pytest.fixture(scope="module")
def images():
    rng = np.random.default_rng(20240611)
    return np.stack([noisy_image(rng, *case) for case in CASES])


# --------------------------------------------------------------------------------------------
# without ctapipe
# --------------------------------------------------------------------------------------------
def test_neighbor_matrix_square_grid_with_gaps():
    assert NB.shape == (1024, 1024) and NB.dtype == bool
    assert np.array_equal(NB, NB.T) and not NB.diagonal().any()
    n_nb = NB.sum(axis=1).reshape(32, 32)
    assert n_nb[1:-1, 1:-1].min() == 4 and n_nb[[0, 0, -1, -1], [0, -1, 0, -1]].tolist() == [2] * 4
    assert NB.sum() == 2 * 2 * 32 * 31  # horizontal + vertical edges, both directions
    assert NB[3, 4] and NB[3 * 32, 4 * 32]  # across the 1 mm gaps
    assert not NB[0, 33] and not NB[31, 32]  # no diagonal, no wrap-around
    assert np.array_equal(neighbor_matrix(PIX), NB)  # nearest-distance scale (ctapipe's rule)
    assert np.array_equal(neighbor_matrix(PIX / WFCTA_FOCAL_LENGTH, PITCH / WFCTA_FOCAL_LENGTH), NB)
    nb8 = neighbor_matrix(PIX, PITCH, diagonal=True)
    assert nb8.sum(axis=1).max() == 8 and nb8[0, 33] and (nb8 | ~NB).all()


def test_tailcuts_small_cases():
    """Hand-made cases on a 1-D strip of 6 pixels (neighbours i ± 1)."""
    nb = neighbor_matrix(np.column_stack([np.arange(6.0), np.zeros(6)]), 1.0)
    img = np.array([12.0, 6.0, 0.0, 11.0, 0.0, 6.0])
    # 0 (picture) + 1 (boundary next to picture); 3 is an isolated picture pixel; 5 alone
    assert tailcuts_clean(img, nb).tolist() == [True, True, False, False, False, False]
    assert tailcuts_clean(img, nb, keep_isolated_pixels=True).tolist() == [
        True, True, False, True, False, False]
    img2 = np.array([12.0, 13.0, 6.0, 11.0, 0.0, 0.0])
    # min 1 picture neighbour: 0 and 1 survive as picture, 3 does not; 2 kept as boundary
    assert tailcuts_clean(img2, nb, min_number_picture_neighbors=1).tolist() == [
        True, True, True, False, False, False]
    assert not tailcuts_clean(np.zeros(6), nb).any()


def test_noiseless_gaussian_moments():
    """All pixels, no noise: recover the input centroid / length / width / psi within a few %."""
    for psi in (0.0, 0.4, np.pi / 2, -1.2):
        img = gaussian_image(0.03, -0.02, 0.10, 0.04, psi, 5000.0)
        h = hillas_parameters(PIX[:, 0], PIX[:, 1], img, np.ones(1024, bool))
        assert float(h.intensity) == pytest.approx(5000.0, rel=0.02)
        assert float(h.x) == pytest.approx(0.03, abs=0.02 * PITCH)
        assert float(h.y) == pytest.approx(-0.02, abs=0.02 * PITCH)
        assert float(h.length) == pytest.approx(0.10, rel=0.03)
        assert float(h.width) == pytest.approx(0.04, rel=0.03)
        dpsi = (float(h.psi) - psi + np.pi / 2) % np.pi - np.pi / 2
        assert abs(dpsi) < 0.01
        assert -np.pi / 2 < float(h.psi) <= np.pi / 2
        assert abs(float(h.skewness)) < 0.02 and float(h.kurtosis) == pytest.approx(3.0, rel=0.03)
        assert float(h.r) == pytest.approx(np.hypot(float(h.x), float(h.y)))


def test_skewness_sign_and_psi_convention():
    """Head/tail asymmetry towards +(cos psi, sin psi) gives positive skewness."""
    psi = 0.6
    core = gaussian_image(0.0, 0.0, 0.06, 0.03, psi, 4000.0)
    tail = gaussian_image(0.08 * np.cos(psi), 0.08 * np.sin(psi), 0.06, 0.03, psi, 1000.0)
    h = hillas_parameters(PIX[:, 0], PIX[:, 1], core + tail, np.ones(1024, bool))
    assert float(h.psi) == pytest.approx(psi, abs=0.02)
    assert float(h.skewness) > 0.1
    h2 = hillas_parameters(PIX[:, 0], PIX[:, 1], core[::-1] + tail[::-1], np.ones(1024, bool))
    assert float(h2.skewness) == pytest.approx(-float(h.skewness), rel=1e-6)  # point reflection


def test_degenerate_images_are_finite():
    z = hillas_parameters(PIX[:, 0], PIX[:, 1], np.zeros(1024), np.zeros(1024, bool))
    assert all(float(v) == 0.0 for v in z)
    one = np.zeros(1024)
    one[500] = 20.0
    h = hillas_parameters(PIX[:, 0], PIX[:, 1], one, one > 0)
    assert float(h.intensity) == 20.0 and int(h.n_pixels) == 1
    assert (float(h.x), float(h.y)) == pytest.approx((PIX[500, 0], PIX[500, 1]), rel=1e-14)
    assert float(h.length) == float(h.width) == float(h.psi) == float(h.skewness) == 0.0
    d, a = dist_alpha(z, jnp.zeros(2))
    assert float(d) == 0.0 and float(a) == 0.0
    # NaN-free gradients of an empty image too (the double-where guards)
    g = jax.grad(lambda im: sum(hillas_parameters(PIX[:, 0], PIX[:, 1], im,
                                                  np.zeros(1024, bool))[:-1]))(np.zeros(1024))
    assert np.all(np.isfinite(g))


def test_dist_alpha_geometry():
    h = HillasParameters(*[jnp.float64(0.0)] * 11)._replace(x=jnp.float64(0.1), y=jnp.float64(0.2),
                                                           psi=jnp.float64(0.5))
    on_axis = np.array([0.1, 0.2]) + 0.3 * np.array([np.cos(0.5), np.sin(0.5)])
    d, a = dist_alpha(h, on_axis)
    assert float(d) == pytest.approx(0.3) and float(a) == pytest.approx(0.0, abs=1e-12)
    d, a = dist_alpha(h, np.array([0.1, 0.2]) - 0.2 * np.array([np.cos(0.5), np.sin(0.5)]))
    assert float(d) == pytest.approx(0.2) and float(a) == pytest.approx(0.0, abs=1e-12)
    d, a = dist_alpha(h, np.array([0.1, 0.2]) + 0.2 * np.array([-np.sin(0.5), np.cos(0.5)]))
    assert float(a) == pytest.approx(np.pi / 2)
    rng = np.random.default_rng(3)
    src = rng.normal(0, 0.2, (200, 2))
    d, a = jax.vmap(dist_alpha, in_axes=(None, 0))(h, src)
    v = src - np.array([0.1, 0.2])
    cosang = np.abs(v @ np.array([np.cos(0.5), np.sin(0.5)])) / np.linalg.norm(v, axis=1)
    np.testing.assert_allclose(np.asarray(a), np.arccos(np.clip(cosang, 0, 1)), atol=1e-7)
    np.testing.assert_allclose(np.asarray(d), np.linalg.norm(v, axis=1), rtol=1e-12)


def test_jit_vmap_equals_loop(images):
    rng = np.random.default_rng(5)
    src = rng.normal(0, 0.1, (len(images), 2))
    f = functools.partial(image_parameters, picture_thresh=10.0, boundary_thresh=5.0)
    batched = jax.jit(jax.vmap(f, in_axes=(0, None, None, 0)))(images, PIX, NB, src)
    for k in range(len(images)):
        single = image_parameters(images[k], PIX, NB, src[k])
        assert np.array_equal(np.asarray(batched.mask[k]), np.asarray(single.mask))
        for name in HillasParameters._fields:
            np.testing.assert_allclose(getattr(batched.hillas, name)[k],
                                       getattr(single.hillas, name), rtol=1e-12, atol=1e-15,
                                       err_msg=name)
        np.testing.assert_allclose(batched.dist[k], single.dist, rtol=1e-12)
        np.testing.assert_allclose(batched.alpha[k], single.alpha, rtol=1e-12, atol=1e-15)
    assert np.all(np.asarray(batched.hillas.n_pixels) > 10)


# --------------------------------------------------------------------------------------------
# against ctapipe
# --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def ctapipe_mods():
    pytest.importorskip("ctapipe", reason="ctapipe not installed (pip install '.[test]'): "
                                          "reference comparisons skipped")
    import astropy.units as u
    from ctapipe.image import hillas_parameters as ct_hillas
    from ctapipe.image import tailcuts_clean as ct_clean
    from ctapipe.instrument import CameraGeometry
    return u, CameraGeometry, ct_clean, ct_hillas


def ctapipe_geometry(mods, scale=1.0, unit_name="m"):
    """The WFCTA camera described to ctapipe (pixel positions × scale, in unit_name)."""
    u, CameraGeometry = mods[0], mods[1]
    unit = u.Unit(unit_name)
    return CameraGeometry(name="WFCTA", pix_id=np.arange(1024),
                          pix_x=u.Quantity(PIX[:, 0] * scale, unit),
                          pix_y=u.Quantity(PIX[:, 1] * scale, unit),
                          pix_area=u.Quantity(np.full(1024, (PITCH * scale) ** 2), unit**2),
                          pix_type="square", pix_rotation=0 * u.deg, cam_rotation=0 * u.deg)


CLEAN_OPTIONS = [dict(), dict(min_number_picture_neighbors=2),
                 dict(keep_isolated_pixels=True), dict(picture_thresh=7.0, boundary_thresh=4.0)]


def test_neighbors_match_ctapipe(ctapipe_mods):
    geom = ctapipe_geometry(ctapipe_mods)
    assert np.array_equal(geom.neighbor_matrix, NB)
    assert np.array_equal(geom.calc_pixel_neighbors(diagonal=True).toarray(),
                          neighbor_matrix(PIX, PITCH, diagonal=True))


def test_tailcuts_masks_match_ctapipe(ctapipe_mods, images):
    geom = ctapipe_geometry(ctapipe_mods)
    ct_clean = ctapipe_mods[2]
    noise = np.random.default_rng(11).exponential(4.0, (3, 1024))  # many isolated pixels
    clean = jax.jit(tailcuts_clean, static_argnames="keep_isolated_pixels")
    for img in np.concatenate([images, noise]):
        for opt in CLEAN_OPTIONS:
            opt = {"picture_thresh": 10.0, "boundary_thresh": 5.0, **opt}
            ours = np.asarray(clean(img, NB, **opt))
            ref = ct_clean(geom, img, **opt)
            assert np.array_equal(ours, ref), opt
    # per-pixel threshold arrays
    thr = np.random.default_rng(2).uniform(6, 14, 1024)
    assert np.array_equal(np.asarray(tailcuts_clean(noise[0], NB, thr, thr / 2)),
                          ct_clean(geom, noise[0], thr, thr / 2))


def _compare_hillas(ours, ref, fov=False, scale=1.0):
    """ours (HillasParameters) vs a ctapipe container, 1e-3 relative; psi modulo π."""
    x_ref = (ref.fov_lon if fov else ref.x).value
    y_ref = (ref.fov_lat if fov else ref.y).value
    atol = 1e-9 * PITCH * scale  # only matters for quantities that are ~0
    np.testing.assert_allclose(float(ours.intensity), ref.intensity, rtol=1e-3)
    for name, val in (("x", x_ref), ("y", y_ref), ("r", ref.r.value),
                      ("length", ref.length.value), ("width", ref.width.value)):
        np.testing.assert_allclose(float(getattr(ours, name)), val, rtol=1e-3, atol=atol,
                                   err_msg=name)
    np.testing.assert_allclose(float(ours.phi), ref.phi.to_value("rad"), rtol=1e-3, atol=1e-9)
    dpsi = float(ours.psi) - ref.psi.to_value("rad")
    wrapped = (dpsi + np.pi / 2) % np.pi - np.pi / 2
    assert abs(wrapped) < 1e-3 * max(abs(ref.psi.to_value("rad")), 1e-3), (ours.psi, ref.psi)
    # the skewness sign follows the axis direction (cos psi, sin psi): flips if psi differs by π
    sign = 1.0 if abs(dpsi) < np.pi / 2 else -1.0
    np.testing.assert_allclose(float(ours.skewness), sign * ref.skewness, rtol=1e-3, atol=1e-9)
    np.testing.assert_allclose(float(ours.kurtosis), ref.kurtosis, rtol=1e-3)


def test_hillas_match_ctapipe(ctapipe_mods, images):
    geom = ctapipe_geometry(ctapipe_mods)
    ct_clean, ct_hillas = ctapipe_mods[2], ctapipe_mods[3]
    hillas = jax.jit(hillas_parameters)
    cut_by_edge = 0
    for case, img in zip(CASES, images):
        mask = ct_clean(geom, img, picture_thresh=10.0, boundary_thresh=5.0)
        assert mask.sum() > 10
        ref = ct_hillas(geom[mask], img[mask])
        ours = hillas(PIX[:, 0], PIX[:, 1], img, mask)
        _compare_hillas(ours, ref)
        assert int(ours.n_pixels) == mask.sum()
        # sanity vs the truth (noise + cleaning bias only): orientation within a few degrees
        dpsi = (float(ours.psi) - case[4] + np.pi / 2) % np.pi - np.pi / 2
        if max(abs(case[0]), abs(case[1])) < 0.3:
            assert abs(dpsi) < 0.1
        else:
            cut_by_edge += int(np.abs(PIX[mask]).max() >= HALF_SIDE - 1e-9)
    assert cut_by_edge == 2


def test_hillas_match_ctapipe_in_radians(ctapipe_mods, images):
    """Camera described with pixel angles (rad): ctapipe returns fov_lon/fov_lat."""
    f = WFCTA_FOCAL_LENGTH
    geom = ctapipe_geometry(ctapipe_mods, scale=1 / f, unit_name="rad")
    ct_hillas = ctapipe_mods[3]
    for img in images[::3]:
        mask = np.asarray(tailcuts_clean(img, NB))
        ref = ct_hillas(geom[mask], img[mask])
        _compare_hillas(hillas_parameters(PIX[:, 0] / f, PIX[:, 1] / f, img, mask), ref,
                        fov=True, scale=1 / f)
