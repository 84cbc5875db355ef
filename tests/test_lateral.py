"""Tests for detectors/lateral.py: normalisations, PHYSICS.md numbers, gradients, dtypes."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from detectors import lateral as Lt

integrate = pytest.importorskip("scipy.integrate")

AGES = [0.6, 0.8, 1.0, 1.2, 1.5, 1.8]


def _integral_2pi_r(density):
    """∫ρ(r) 2πr dr from 0 to ∞, in u = ln r (integrand ρ 2π r² du, smooth, decays both ways)."""
    f = jax.jit(lambda u: density(jnp.exp(u)) * 2.0 * math.pi * jnp.exp(2.0 * u))
    # lower limit e^-300 m: the (r/r_m)^(s-0.5) tail below it is < 1e-13 for s >= 0.6
    val, err = integrate.quad(lambda u: float(f(u)), -300.0, 40.0, points=[0.0, 5.0],
                              limit=1000, epsrel=1e-10, epsabs=0.0)
    return val


@pytest.mark.parametrize("s", AGES)
def test_nkg_integrates_to_size(s):
    n_size = 3.0e5
    total = _integral_2pi_r(lambda r: Lt.nkg_density(r, n_size, s, r_min=1e-300))
    assert total / n_size == pytest.approx(1.0, abs=1e-3)


@pytest.mark.parametrize("s", AGES)
def test_modified_nkg_integrates_to_size(s):
    n_size = 3.0e5
    total = _integral_2pi_r(lambda r: Lt.modified_nkg_density(r, n_size, s, r_min=1e-300))
    assert total / n_size == pytest.approx(1.0, abs=1e-3)


@pytest.mark.parametrize("r0,a,b", [(320.0, 0.75, 2.5), (250.0, 0.75, 2.5), (320.0, 0.6, 2.2)])
def test_greisen_muon_integrates_to_n_mu(r0, a, b):
    n_mu = 1.2e4
    total = _integral_2pi_r(lambda r: Lt.greisen_muon_density(r, n_mu, r0, a, b, r_min=1e-300))
    assert total / n_mu == pytest.approx(1.0, abs=1e-3)


def test_default_r_min_keeps_classic_nkg_normalised():
    # with the default floor (1e-6 m) the classic form still integrates to N_size at s = 0.6
    total = _integral_2pi_r(lambda r: Lt.nkg_density(r, 1.0, 0.6))
    assert total == pytest.approx(1.0, abs=1e-4)


def test_normalisations_by_hand():
    # PHYSICS §6.2: C = Gamma(2.5) / (2 pi r0^2 Gamma(1.25)^2) = 0.25752 / r0^2
    c = float(Lt.greisen_muon_normalisation(320.0))
    by_hand = math.gamma(2.5) / (2 * math.pi * 320.0 ** 2 * math.gamma(1.25) ** 2)
    assert c == pytest.approx(by_hand, rel=1e-12)
    assert c * 320.0 ** 2 == pytest.approx(0.25752, abs=1e-5)
    for s in (0.7, 1.0, 1.6):
        assert float(Lt.nkg_normalisation(s, 100.0)) == pytest.approx(
            math.gamma(4.5 - s) / (2 * math.pi * 1e4 * math.gamma(s) * math.gamma(4.5 - 2 * s)),
            rel=1e-12)
        assert float(Lt.modified_nkg_normalisation(s, 100.0)) == pytest.approx(
            math.gamma(4.5 - s) / (2 * math.pi * 1e4 * math.gamma(s - 0.5) * math.gamma(5 - 2 * s)),
            rel=1e-12)
    # the G4KM2A form at s = 1: rho(r_m) = N C 2^-3.5
    assert float(Lt.modified_nkg_density(136.0, 1.0, 1.0)) == pytest.approx(
        float(Lt.modified_nkg_normalisation(1.0)) * 2 ** -3.5, rel=1e-12)


def test_annulus_fractions_physics_values():
    # PHYSICS §6.2 with r0 = 320 m: 28.7 % (40-200 m), 34.2 % (15-200 m), 97.4 % beyond 15 m
    assert float(Lt.annulus_fraction(40.0, 200.0)) == pytest.approx(0.287, abs=5e-4)
    assert float(Lt.annulus_fraction(15.0, 200.0)) == pytest.approx(0.342, abs=5e-4)
    assert float(Lt.annulus_fraction(15.0, jnp.inf)) == pytest.approx(0.974, abs=5e-4)
    assert float(Lt.annulus_fraction(0.0, jnp.inf)) == pytest.approx(1.0, abs=1e-12)
    # agrees with direct integration of the density
    f = jax.jit(lambda r: Lt.greisen_muon_density(r, 1.0, 250.0) * 2 * math.pi * r)
    direct, _ = integrate.quad(lambda r: float(f(r)), 40.0, 200.0, epsrel=1e-11)
    assert float(Lt.annulus_fraction(40.0, 200.0, r0=250.0)) == pytest.approx(direct, rel=1e-8)


def test_muon_number_heitler_matthews():
    beta = 0.92
    ratio = Lt.muon_number(6.0, 56.0) / Lt.muon_number(6.0, 1.0)
    assert float(ratio) == pytest.approx(56 ** (1 - beta), rel=1e-12)
    assert float(ratio) == pytest.approx(1.38, abs=0.01)
    # N_mu = A (E / (A xi))^beta by hand: iron at 10 PeV
    assert float(Lt.muon_number(7.0, 56.0)) == pytest.approx(56 * (1e7 / (56 * 20.0)) ** beta,
                                                             rel=1e-12)
    # energy slope beta; custom beta, xi
    assert float(Lt.muon_number(6.0, 1.0, beta=0.85) / Lt.muon_number(5.0, 1.0, beta=0.85)) == \
        pytest.approx(10 ** 0.85, rel=1e-12)
    assert float(Lt.muon_number(6.0, 1.0, beta=0.85, xi_c_gev=10.0)) == pytest.approx(
        (1e6 / 10.0) ** 0.85, rel=1e-12)
    # photons: fraction of a proton, finite gradients at A = 0
    assert float(Lt.muon_number(5.0, 0.0) / Lt.muon_number(5.0, 1.0)) == pytest.approx(0.1)
    assert float(Lt.muon_number(5.0, 0.0, gamma_muon_fraction=0.03)
                 / Lt.muon_number(5.0, 1.0)) == pytest.approx(0.03)
    g = jax.grad(Lt.muon_number, argnums=(0, 1))(5.0, 0.0)
    assert np.all(np.isfinite(g))
    dlnA = jax.grad(lambda a: jnp.log(Lt.muon_number(5.0, a)))(14.0)
    assert float(dlnA) == pytest.approx((1 - beta) / 14.0, rel=1e-12)


def test_densities_positive_and_decreasing():
    r = jnp.geomspace(1e-2, 3e3, 200)
    for dens in (jax.vmap(lambda x: Lt.nkg_density(x, 1e5, 1.2)),
                 jax.vmap(lambda x: Lt.modified_nkg_density(x, 1e5, 1.2)),
                 jax.vmap(lambda x: Lt.greisen_muon_density(x, 1e4))):
        v = np.asarray(dens(r))
        assert np.all(v > 0) and np.all(np.diff(v) < 0)


# --------------------------------------------------------------------------- gradients
def _vcheck(f, args, order=2, **kw):
    """check_grads of ``vmap(f)`` over a batch of points: one random tangent per point, each
    output element compared separately (check_grads scales its default tolerance, 1e-5 in
    float64, by the output size: 4e-5 for the 4-point batches used here)."""
    args = tuple(jnp.asarray(a, jnp.float64) for a in args)
    check_grads(jax.vmap(f), args, order=order, modes=["fwd", "rev"], **kw)


# every batch has N_PTS points so that the eagerly dispatched primitives compile once per shape
N_PTS = 4


def test_check_grads_random_points():
    rng = np.random.default_rng(2)
    n = N_PTS
    r = 10 ** rng.uniform(0.0, 3.0, n)
    s = rng.uniform(0.6, 1.8, n)
    rm = rng.uniform(60.0, 150.0, n)
    size = rng.uniform(1e4, 1e6, n)
    # first order in every argument; second order in all arguments for the classic form only
    # (second derivatives of gammaln/betaln go through polygamma, slow to evaluate eagerly),
    # second order in (r, size) for the others
    _vcheck(Lt.nkg_density, (r, size, s, rm), order=2)
    _vcheck(Lt.modified_nkg_density, (r, size, s, rm), order=1)
    _vcheck(lambda r_, n_: Lt.modified_nkg_density(r_, n_, 1.3, 120.0), (r, size), order=2)
    r0, a, b = rng.uniform(200.0, 400.0, n), rng.uniform(0.6, 0.9, n), rng.uniform(2.2, 2.8, n)
    _vcheck(Lt.greisen_muon_density, (r, size, r0, a, b), order=1)
    _vcheck(lambda r_, n_, r0_: Lt.greisen_muon_density(r_, n_, r0_), (r, size, r0), order=2)
    _vcheck(Lt.muon_number, (rng.uniform(3.0, 8.0, n), rng.uniform(0.8, 56.0, n),
                             rng.uniform(0.85, 0.95, n), rng.uniform(10.0, 30.0, n)))
    r1 = rng.uniform(1.0, 100.0, n)
    _vcheck(lambda a_, b_, c_: Lt.annulus_fraction(a_, b_, c_),
            (r1, r1 + rng.uniform(10, 500, n), r0), order=1)


def test_check_grads_edges():
    # small r (1e-3 m) with a finite-difference step well below r; ages near the range edges
    r = [1e-3, 1e-3, 50.0, 2e-3]
    size = [1e5, 1e5, 1e5, 1e5]
    rm = [136.0, 136.0, 136.0, 136.0]
    _vcheck(Lt.nkg_density, (r, size, [1.0, 0.1, 2.2, 0.7], rm), order=1, eps=1e-7)
    _vcheck(Lt.modified_nkg_density, (r, size, [1.5, 0.8, 0.55, 2.4], rm), order=1, eps=1e-7)
    _vcheck(lambda r_, s_: Lt.nkg_density(r_, 1e5, s_), (r, [1.0, 0.1, 2.2, 0.7]), order=2,
            eps=1e-7)
    _vcheck(lambda r_, n_, r0_: Lt.greisen_muon_density(r_, n_, r0_), (r, size, [320.0] * 4),
            eps=1e-7)
    # the proton itself (no kink at A = 1) and the photon branch
    _vcheck(Lt.muon_number, ([5.0, 5.0, 6.0, 7.0], [1.0, 0.0, 1.0, 0.0]))
    _vcheck(lambda a_, b_, c_: Lt.annulus_fraction(a_, b_, c_),
            ([1e-3, 0.0, 1e-3, 15.0], [15.0, 15.0, 1e4, 200.0], [320.0] * 4), order=1, eps=1e-7)


def test_finite_everywhere():
    cases = [
        (Lt.nkg_density, (0.0, 1e5, 1.0, 136.0)),
        (Lt.nkg_density, (-3.0, 1e5, 1.0, 136.0)),
        (Lt.nkg_density, (10.0, 1e5, 2.6, 136.0)),   # outside validity: clipped, finite
        (Lt.nkg_density, (10.0, 1e5, -0.5, 136.0)),
        (Lt.nkg_density, (10.0, 0.0, 1.0, 136.0)),
        (Lt.modified_nkg_density, (0.0, 1e5, 0.4, 136.0)),
        (Lt.modified_nkg_density, (1e7, 1e5, 2.7, 136.0)),
        (Lt.greisen_muon_density, (0.0, 1e4, 320.0)),
        (Lt.annulus_fraction, (0.0, 0.0, 320.0)),
        (Lt.muon_number, (5.0, 0.0, 0.92, 20.0)),
    ]
    for f, args in cases:
        assert np.isfinite(f(*args)), (f.__name__, args)
        g = jax.grad(f, argnums=tuple(range(len(args))))(*args)
        assert np.all(np.isfinite(np.array(g))), (f.__name__, args)
    # clipped age outside the range: C(s) -> 0 at the edges, not an explosion
    assert float(Lt.nkg_normalisation(2.25)) < 1e-4 * float(Lt.nkg_normalisation(1.0))
    assert float(Lt.modified_nkg_normalisation(0.5)) < 1e-4 * float(
        Lt.modified_nkg_normalisation(1.0))


# --------------------------------------------------------------------------- transformations
def test_vmap_jit_equal_loop():
    r = jnp.geomspace(0.5, 1500.0, 23)
    s = jnp.linspace(0.7, 1.7, 23)
    batched = jax.jit(jax.vmap(Lt.modified_nkg_density, in_axes=(0, None, 0)))(r, 2e5, s)
    loop = np.array([float(Lt.modified_nkg_density(ri, 2e5, si)) for ri, si in zip(r, s)])
    np.testing.assert_allclose(batched, loop, rtol=1e-13, atol=0)
    lg = jnp.linspace(3.0, 8.0, 7)
    a = jnp.array([0.0, 1.0, 4.0, 14.0, 28.0, 56.0, 0.0])
    np.testing.assert_allclose(jax.vmap(Lt.muon_number)(lg, a),
                               [float(Lt.muon_number(e, m)) for e, m in zip(lg, a)], rtol=1e-13)


def test_float32_agrees_with_float64():
    cases = [
        (Lt.nkg_density, (35.0, 1e5, 1.3, 136.0)),
        (Lt.nkg_density, (0.7, 1e5, 0.8, 136.0)),
        (Lt.modified_nkg_density, (35.0, 1e5, 1.3, 136.0)),
        (Lt.modified_nkg_density, (800.0, 1e5, 1.7, 136.0)),
        (Lt.greisen_muon_density, (120.0, 1e4, 320.0)),
        (Lt.nkg_normalisation, (1.1, 136.0)),
        (Lt.annulus_fraction, (15.0, 200.0, 320.0)),
        (Lt.muon_number, (5.5, 56.0)),
        (Lt.muon_number, (5.5, 0.0)),
    ]
    for f, args in cases:
        out64 = f(*[jnp.asarray(a, jnp.float64) for a in args])
        out32 = f(*[jnp.asarray(a, jnp.float32) for a in args])
        assert out32.dtype == jnp.float32, f.__name__
        np.testing.assert_allclose(out32, out64, rtol=1e-5, err_msg=f.__name__)
