"""Tests for detectors/profile.py: landmarks, PHYSICS.md reference numbers, gradients, dtypes."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from detectors import profile as P

integrate = pytest.importorskip("scipy.integrate")


# --------------------------------------------------------------------------- landmarks
@pytest.mark.parametrize("xmax,n_max,x0,lam", [(500.0, 1e5, -100.0, 70.0),
                                               (350.0, 2.0e3, 10.0, 60.0),
                                               (700.0, 3.0e6, 150.0, 80.0)])
def test_gaisser_hillas_peak(xmax, n_max, x0, lam):
    value = P.gaisser_hillas(xmax, xmax, n_max, x0, lam)
    np.testing.assert_allclose(value, n_max, rtol=1e-12)
    # derivative zero at the maximum, in X and in xmax
    d_dx = jax.grad(P.gaisser_hillas, argnums=(0, 1))(xmax, xmax, n_max, x0, lam)
    np.testing.assert_allclose(np.array(d_dx) / n_max, 0.0, atol=1e-12)
    # and it is the global maximum on a grid
    X = jnp.linspace(x0 + 1e-3, xmax + 2000.0, 20001)
    n = jax.vmap(P.gaisser_hillas, in_axes=(0, None, None, None, None))(X, xmax, n_max, x0, lam)
    assert float(n.max()) <= n_max * (1 + 1e-12)
    assert abs(float(X[jnp.argmax(n)]) - xmax) < 0.2


def test_gaisser_hillas_zero_before_x0_and_finite():
    xmax, n_max, x0, lam = 500.0, 1e5, 100.0, 70.0
    for X in (-50.0, 0.0, 99.0, 100.0):
        assert float(P.gaisser_hillas(X, xmax, n_max, x0, lam)) == 0.0
        g = jax.grad(P.gaisser_hillas, argnums=(0, 1, 2, 3, 4))(X, xmax, n_max, x0, lam)
        assert np.all(np.isfinite(g)) and np.allclose(g, 0.0)
    # continuous approach to zero just above x0
    assert 0.0 < float(P.gaisser_hillas(100.5, xmax, n_max, x0, lam)) < 1e-10 * n_max
    # unphysical shape (x0 >= xmax, lam <= 0) -> 0, finite gradient
    for args in ((300.0, 500.0, 1e5, 600.0, 70.0), (300.0, 500.0, 1e5, 100.0, -1.0)):
        assert float(P.gaisser_hillas(*args)) == 0.0
        assert np.all(np.isfinite(jax.grad(P.gaisser_hillas, argnums=(0, 1, 3, 4))(*args)))


def test_usp_equals_gh_with_mapped_params():
    L, R = 220.0, 0.3
    xmax, n_max = 550.0, 1e6
    X = jnp.linspace(-200.0, 2500.0, 1001)
    usp = jax.vmap(P.usp_profile, in_axes=(0, None, None, None, None))(X, xmax, n_max, L, R)
    gh = jax.vmap(P.gaisser_hillas, in_axes=(0, None, None, None, None))(
        X, xmax, n_max, xmax - L / R, L * R)
    np.testing.assert_allclose(usp, gh, rtol=1e-12, atol=1e-300)
    assert float(usp[0]) == 0.0  # X = -200 < X0 = 550 - 733


def test_gh_shape_params_physics_table():
    # PHYSICS §8b: 10^17.9 eV: lam 58.8, Xmax-870; 10^16: 71.5, 633; 10^15: 77.3, 547; 10^14: 82.6, 477
    table = [(17.9, 870.0, 58.8), (16.0, 633.0, 71.5), (15.0, 547.0, 77.3), (14.0, 477.0, 82.6)]
    for lg_ev, offset, lam in table:
        off, la = P.gh_shape_params(lg_ev - 9.0)
        assert abs(float(off) - offset) < 1.0
        assert abs(float(la) - lam) < 0.1
    L, R = P.usp_shape_params(17.9 - 9.0)
    assert float(L) == pytest.approx(226.2) and float(R) == pytest.approx(0.26)


def test_shower_age():
    assert float(P.shower_age(612.0, 612.0)) == pytest.approx(1.0, abs=1e-15)
    assert float(P.shower_age(0.0, 500.0)) == 0.0
    assert float(P.shower_age(1e9, 500.0)) == pytest.approx(3.0, rel=1e-6)
    assert float(P.shower_age(250.0, 500.0)) == pytest.approx(750.0 / 1250.0)


def test_alpha_nerling_by_hand():
    # alpha(1) = 3.90883 / 2.05301^9.91717 + 2.41715 + 0.13180
    by_hand = 3.90883 / 2.05301 ** 9.91717 + 2.41715 + 0.13180
    assert float(P.mean_energy_deposit_per_particle(1.0)) == pytest.approx(by_hand, rel=1e-14)
    assert by_hand == pytest.approx(2.5521, abs=1e-4)
    assert float(P.mean_energy_deposit_per_particle(0.0)) == pytest.approx(
        3.90883 / 1.05301 ** 9.91717 + 2.41715, rel=1e-14)
    g = jax.grad(P.mean_energy_deposit_per_particle)(-2.0)  # unphysical base, guarded
    assert np.isfinite(g)


def test_energy_deposit_is_alpha_times_n():
    X, xmax, n_max, x0, lam = 650.0, 500.0, 1e5, -50.0, 70.0
    expect = P.mean_energy_deposit_per_particle(P.shower_age(X, xmax)) * P.gaisser_hillas(
        X, xmax, n_max, x0, lam)
    assert float(P.energy_deposit(X, xmax, n_max, x0, lam)) == pytest.approx(float(expect))


@pytest.mark.parametrize("lg_ev,expected", [(14.0, 1.29), (15.0, 1.34), (16.0, 1.38),
                                            (17.0, 1.42), (18.0, 1.46), (19.0, 1.51)])
def test_calorimetric_energy_per_particle_hadron(lg_ev, expected):
    # PHYSICS §8b [D]: E_cal / N_max = integral of alpha(s) N dX / N_max with the GH shape above
    off, lam = P.gh_shape_params(lg_ev - 9.0)
    xmax = 700.0
    x0 = xmax - float(off)
    f = jax.jit(lambda X: P.energy_deposit(X, xmax, 1.0, x0, lam))
    e_cal, _ = integrate.quad(lambda X: float(f(X)), x0, x0 + 20000.0, points=[xmax], limit=500)
    assert e_cal / 1000.0 == pytest.approx(expected, abs=0.01)


def test_greisen_gamma_xmax_physics_values():
    for lg, xm in zip((3.0, 4.0, 5.0, 6.0), (346.0, 430.0, 515.0, 599.0)):
        assert abs(float(P.gamma_xmax(lg)) - xm) < 1.0
        assert float(P.gamma_xmax(lg)) == pytest.approx(36.7 * math.log(10 ** lg / 0.081))


@pytest.mark.parametrize("lg", [3.0, 4.0, 5.0, 6.0])
def test_greisen_profile_peak_and_gamma_energy_per_particle(lg):
    xm = float(P.gamma_xmax(lg))
    beta0 = math.log(10 ** lg / 0.081)
    n_peak = float(P.greisen_profile(xm, lg))
    assert n_peak == pytest.approx(0.31 / math.sqrt(beta0) * 10 ** lg / 0.081, rel=1e-12)
    assert abs(float(jax.grad(P.greisen_profile)(xm, lg))) < 1e-9 * n_peak
    # calorimetric E0/N_max of the Greisen shape reproduces the photon table (PHYSICS §8b)
    f = jax.jit(lambda X: P.mean_energy_deposit_per_particle(P.shower_age(X, xm))
                * P.greisen_profile(X, lg))
    e_cal, _ = integrate.quad(lambda X: float(f(X)), 0.0, 6000.0, points=[xm], limit=500)
    assert e_cal / n_peak / 1000.0 == pytest.approx(float(P.energy_per_particle_gev(lg, 1.0)),
                                                    abs=0.01)
    assert float(P.greisen_profile(0.0, lg)) == 0.0
    assert float(P.greisen_profile(-10.0, lg)) == 0.0


def test_n_max_from_energy():
    for lg, ratio in zip((3.0, 4.0, 5.0, 6.0), (0.90, 1.00, 1.09, 1.17)):
        assert float(P.energy_per_particle_gev(lg, 1.0)) == pytest.approx(ratio, abs=1e-12)
        assert float(P.n_max_from_energy(lg, 1.0)) == pytest.approx(10 ** lg / ratio, rel=1e-12)
        assert float(P.n_max_from_energy(lg)) == pytest.approx(10 ** lg / 1.6, rel=1e-12)
    assert float(P.n_max_from_energy(5.0, hadron_gev_per_particle=1.4)) == pytest.approx(1e5 / 1.4)
    # blend flag is differentiable
    g = jax.grad(P.n_max_from_energy, argnums=(0, 1))(5.0, 0.5)
    assert np.all(np.isfinite(g)) and float(g[1]) > 0


# --------------------------------------------------------------------------- gradients
def _vcheck(f, args, order=2, **kw):
    """check_grads of ``vmap(f)`` over a batch of points: one random tangent per point, each
    output element compared separately (check_grads scales its default tolerance, 1e-5 in
    float64, by the output size: 4e-5 for the 4-point batches used here)."""
    args = tuple(jnp.asarray(a, jnp.float64) for a in args)
    check_grads(jax.vmap(f), args, order=order, modes=["fwd", "rev"], **kw)


def test_check_grads_gaisser_hillas_and_usp():
    u = np.random.default_rng(0).uniform(size=(8, 4))
    xmax = 300.0 + 500.0 * u[0]
    x0 = xmax - (400.0 + 500.0 * u[1])
    lam = 50.0 + 40.0 * u[2]
    X = x0 + 5.0 + 1500.0 * u[3]
    n_max = 1e5 * (1.0 + u[4])
    _vcheck(P.gaisser_hillas, (X, xmax, n_max, x0, lam))
    # R ~ 0.3 with exponent 1/R^2: the default FD step 1e-4 is too coarse in R
    _vcheck(P.usp_profile, (X, xmax, n_max, 200.0 + 50 * u[5], 0.2 + 0.2 * u[6]), eps=1e-6)
    _vcheck(P.energy_deposit, (X, xmax, n_max, x0, lam))
    # edge: just above x0 (shape exponent (xmax - x0)/lam ~ 6 keeps it smooth)
    _vcheck(P.gaisser_hillas, ([100.5, 103.0, 100.5, 120.0], [500.0] * 4, [1e5] * 4,
                               [100.0] * 4, [70.0, 70.0, 40.0, 90.0]))


def test_check_grads_other_functions():
    u = np.random.default_rng(1).uniform(size=(8, 4))
    lg = 3.0 + 4.0 * u[0]
    X = 10.0 + 1000.0 * u[1]
    _vcheck(P.greisen_profile, (X, lg))
    _vcheck(P.gamma_xmax, (lg,))
    _vcheck(P.shower_age, (X, 300.0 + 500.0 * u[2]))
    _vcheck(P.mean_energy_deposit_per_particle, (3.0 * u[3],))
    _vcheck(P.n_max_from_energy, (lg, u[4]))
    _vcheck(P.gh_shape_params, (lg,))
    # edges: Greisen near X = 0, age near X = 0
    _vcheck(P.greisen_profile, ([0.5, 0.5, 2.0, 5.0], [3.0, 5.0, 5.0, 7.0]), order=1)
    _vcheck(P.shower_age, ([1e-3, 1e-3, 0.1, 1.0], [500.0, 300.0, 500.0, 800.0]))


def test_gradients_finite_at_edges():
    fns = [
        (P.gaisser_hillas, (100.0, 500.0, 1e5, 100.0, 70.0)),
        (P.gaisser_hillas, (100.0 + 1e-10, 500.0, 1e5, 100.0, 70.0)),
        (P.usp_profile, (-1e4, 500.0, 1e5, 220.0, 0.3)),
        (P.greisen_profile, (0.0, 5.0)),
        (P.greisen_profile, (1e-12, 5.0)),
        (P.greisen_profile, (100.0, -3.0)),  # E < E_c
        (P.shower_age, (-1000.0, 400.0)),
        (P.energy_deposit, (0.0, 500.0, 1e5, -100.0, 70.0)),
    ]
    for f, args in fns:
        assert np.all(np.isfinite(f(*args)))
        g = jax.grad(f, argnums=tuple(range(len(args))))(*args)
        assert np.all(np.isfinite(np.array(g))), f.__name__


# --------------------------------------------------------------------------- transformations
def test_vmap_jit_equal_loop():
    X = jnp.linspace(-100.0, 1500.0, 37)
    xmax = jnp.linspace(400.0, 700.0, 37)
    batched = jax.jit(jax.vmap(P.gaisser_hillas, in_axes=(0, 0, None, None, None)))(
        X, xmax, 1e5, -50.0, 70.0)
    loop = np.array([float(P.gaisser_hillas(x, xm, 1e5, -50.0, 70.0)) for x, xm in zip(X, xmax)])
    np.testing.assert_allclose(batched, loop, rtol=1e-13, atol=0)
    lg = jnp.linspace(3.0, 7.0, 9)
    np.testing.assert_allclose(jax.vmap(P.greisen_profile)(jnp.full(9, 400.0), lg),
                               [float(P.greisen_profile(400.0, e)) for e in lg], rtol=1e-13)


def test_float32_agrees_with_float64():
    cases = [
        (P.gaisser_hillas, (650.0, 520.0, 1e5, -60.0, 72.0)),
        (P.gaisser_hillas, (300.0, 520.0, 1e5, -60.0, 72.0)),
        (P.usp_profile, (900.0, 520.0, 1e5, 215.0, 0.35)),
        (P.energy_deposit, (650.0, 520.0, 1e5, -60.0, 72.0)),
        (P.greisen_profile, (500.0, 5.0)),
        (P.gamma_xmax, (5.3,)),
        (P.shower_age, (650.0, 520.0)),
        (P.mean_energy_deposit_per_particle, (0.8,)),
        (P.n_max_from_energy, (5.3, 1.0)),
        (P.gh_shape_params, (5.3,)),
    ]
    for f, args in cases:
        out64 = f(*[jnp.asarray(a, jnp.float64) for a in args])
        out32 = f(*[jnp.asarray(a, jnp.float32) for a in args])
        for o32, o64 in zip(jax.tree_util.tree_leaves(out32), jax.tree_util.tree_leaves(out64)):
            assert o32.dtype == jnp.float32, f.__name__
            np.testing.assert_allclose(o32, o64, rtol=2e-6, err_msg=f.__name__)
