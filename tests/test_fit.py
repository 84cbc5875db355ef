"""Tests of joint.fit on a toy counter array (Poisson counts + Gaussian arrival times).

The toy: 196 counters on a 15 m grid with small height differences, expected counts
μ_i = A exp(-r_i² / (2 R²)) 10^(log10 E - 4) + 0.01 (r in the shower plane) and arrival times
t_i = t0 + delay_i with σ_t = 2 ns for counters with a hit. Truths are random, seeds are the truth
smeared; everything runs in float64 (conftest) except the float32 test.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from detectors.shower import FIELDS, Shower, shower_plane_coordinates
from joint import fit
from joint.fit import (CONVERGED, NON_FINITE, OUT_OF_BOUNDS, FitConfig, cramer_rao, fit_events,
                       from_internal, internal_names, pulls, to_internal)

AMPLITUDE = 5.0
LDF_RADIUS_M = 50.0
NOISE = 0.01
SIGMA_T_NS = 2.0
FREE = ("core_x", "core_y", "zenith", "azimuth", "log10_energy", "t0")
CONFIG = FitConfig(free=FREE)
N_TOYS = 400
IDX = {f: i for i, f in enumerate(FIELDS)}


def _positions():
    g = (np.arange(14) - 6.5) * 15.0
    x, y = np.meshgrid(g, g, indexing="ij")
    x, y = x.ravel(), y.ravel()
    z = 1.5 * np.sin(x / 37.0) + 1.0 * np.cos(y / 23.0)  # a few metres of relief
    return jnp.asarray(np.stack([x, y, z], axis=-1))


POSITIONS = _positions()


def toy_expected(shower):
    r, delay = shower_plane_coordinates(shower, POSITIONS.astype(shower.core_x.dtype))
    mu = AMPLITUDE * jnp.exp(-r * r / (2 * LDF_RADIUS_M ** 2)) * 10.0 ** (shower.log10_energy - 4) + NOISE
    return mu, shower.t0 + delay


def toy_nll(shower, data):
    mu, t_exp = toy_expected(shower)
    n, t = data["n"], data["t"]
    hit = n > 0
    poisson = jnp.sum(mu - n * jnp.log(mu))
    timing = jnp.sum(jnp.where(hit, (t - t_exp) ** 2 / (2 * SIGMA_T_NS ** 2), 0.0))
    return poisson + timing


def toy_terms(shower, data):
    mu, t_exp = toy_expected(shower)
    n, t = data["n"], data["t"]
    return {"poisson": jnp.sum(mu - n * jnp.log(mu)),
            "timing": jnp.sum(jnp.where(n > 0, (t - t_exp) ** 2 / (2 * SIGMA_T_NS ** 2), 0.0))}


def toy_stats(shower):
    mu, t_exp = toy_expected(shower)
    return [(mu, mu, 1.0), (t_exp, SIGMA_T_NS ** 2 * jnp.ones_like(t_exp), 1.0 - jnp.exp(-mu))]


def simulate(n_events, seed=1, zenith_deg=(5.0, 40.0)):
    rng = np.random.default_rng(seed)
    truth = Shower.make(
        dtype=jnp.float64,
        core_x=rng.uniform(-40, 40, n_events), core_y=rng.uniform(-40, 40, n_events),
        zenith=np.radians(rng.uniform(*zenith_deg, n_events)),
        azimuth=rng.uniform(0, 2 * np.pi, n_events),
        log10_energy=rng.uniform(3.7, 4.3, n_events), t0=rng.uniform(-50, 50, n_events))
    mu, t_exp = jax.vmap(toy_expected)(truth)
    n = rng.poisson(np.asarray(mu)).astype(float)
    t = np.where(n > 0, np.asarray(t_exp) + rng.normal(0, SIGMA_T_NS, n.shape), 0.0)
    data = {"n": jnp.asarray(n), "t": jnp.asarray(t)}
    u = np.sin(truth.zenith) * np.cos(truth.azimuth) + rng.normal(0, 0.03, n_events)
    v = np.sin(truth.zenith) * np.sin(truth.azimuth) + rng.normal(0, 0.03, n_events)
    seeds = truth._replace(
        core_x=truth.core_x + rng.normal(0, 10, n_events),
        core_y=truth.core_y + rng.normal(0, 10, n_events),
        zenith=jnp.asarray(np.arcsin(np.minimum(np.hypot(u, v), 0.9))),
        azimuth=jnp.asarray(np.mod(np.arctan2(v, u), 2 * np.pi)),
        log10_energy=truth.log10_energy + rng.normal(0, 0.15, n_events),
        t0=truth.t0 + rng.normal(0, 5, n_events))
    return truth, data, seeds


def run(data, seeds, config=CONFIG):
    """All CONFIG fits go through here with the same terms_fn, so they share compilations."""
    return fit_events(toy_nll, data, seeds, config, terms_fn=toy_terms)


def take(tree, idx):
    return jax.tree.map(lambda x: x[idx], tree)


@pytest.fixture(scope="module")
def toys():
    truth, data, seeds = simulate(N_TOYS)
    result, info = run(data, seeds)
    return truth, data, seeds, result, info


def test_toys_converge_with_unit_pulls(toys):
    truth, _, _, result, info = toys
    status = np.asarray(info.status)
    assert np.mean(status == CONVERGED) >= 0.97, np.bincount(status)
    ok = status == CONVERGED
    p = pulls(result, truth, CONFIG)
    assert set(p) == {"core_x", "core_y", "zenith", "azimuth", "log10_energy", "t0"}
    for field, values in p.items():
        values = np.asarray(values)[ok]
        assert abs(values.mean()) < 0.15, (field, values.mean())
        assert 0.85 < values.std() < 1.15, (field, values.std())
    assert np.all(np.asarray(info.n_iter)[ok] <= CONFIG.n_iter)
    assert np.all(np.asarray(info.edm)[ok] < CONFIG.tol)


def test_covariance_matches_cramer_rao(toys):
    truth, _, _, result, info = toys
    ok = np.asarray(info.status) == CONVERGED
    crb = jax.jit(jax.vmap(lambda s: cramer_rao(toy_stats, s, CONFIG)))(truth)
    assert crb.shape == (N_TOYS, 8, 8)
    for field in FREE:
        i = IDX[field]
        fitted = np.asarray(result.covariance[:, i, i])[ok]
        bound = np.asarray(crb[:, i, i])[ok]
        ratio = np.mean(fitted / bound)
        assert 0.8 < ratio < 1.2, (field, ratio)
        # the actual spread of the estimates also reaches the bound
        diff = np.asarray(getattr(result.shower, field) - getattr(truth, field))[ok]
        if field == "azimuth":
            diff = np.pi - np.mod(np.pi - diff, 2 * np.pi)
        spread = np.mean(diff ** 2 / bound)
        assert 0.75 < spread < 1.3, (field, spread)
    fixed = [IDX["xmax"], IDX["log_muon_scale"]]
    assert np.all(np.asarray(crb)[:, fixed, :] == 0)
    assert np.all(np.asarray(result.covariance)[:, :, fixed] == 0)


def test_fixed_parameters_stay_at_seed(toys):
    _, data, seeds, _, _ = toys
    config = FitConfig(free=("core_x", "core_y", "zenith", "azimuth"))
    d, s = take(data, slice(0, 8)), take(seeds, slice(0, 8))
    s = s._replace(xmax=jnp.full(8, 612.3), log_muon_scale=jnp.full(8, -0.7))
    result, info = fit_events(toy_nll, d, s, config)
    for field in ("log10_energy", "xmax", "log_muon_scale", "t0"):
        np.testing.assert_array_equal(getattr(result.shower, field), getattr(s, field))
        assert np.all(np.asarray(result.covariance)[:, IDX[field], :] == 0)
        assert np.all(np.asarray(result.errors)[:, IDX[field]] == 0)
    assert np.any(np.asarray(result.shower.core_x) != np.asarray(s.core_x))
    assert np.all(np.asarray(result.errors)[:, IDX["core_x"]] > 0)


def test_nan_event_is_isolated(toys):
    _, data, seeds, _, _ = toys
    d, s = take(data, slice(0, 8)), take(seeds, slice(0, 8))
    bad = {"n": d["n"].at[2, 5].set(jnp.nan), "t": d["t"]}
    result, info = run(bad, s)
    clean, clean_info = run(d, s)
    status = np.asarray(info.status)
    assert status[2] == NON_FINITE
    assert not np.isfinite(np.asarray(result.nll)[2])
    others = np.array([0, 1, 3, 4, 5, 6, 7])
    assert np.all(status[others] == CONVERGED)
    np.testing.assert_array_equal(np.asarray(result.nll)[others], np.asarray(clean.nll)[others])
    np.testing.assert_array_equal(np.asarray(result.covariance)[others],
                                  np.asarray(clean.covariance)[others])


def test_vmap_equals_one_at_a_time(toys):
    _, data, seeds, result, info = toys
    for i in range(4):
        r1, i1 = run(take(data, slice(i, i + 1)), take(seeds, slice(i, i + 1)))
        for f in FIELDS:
            # XLA fuses the batched and the single-event graphs differently; the damped
            # iterations amplify last-bit differences to ~1e-9 relative (seen with jax 0.10.2)
            np.testing.assert_allclose(getattr(r1.shower, f)[0], getattr(result.shower, f)[i],
                                       rtol=1e-7, atol=1e-8)
        np.testing.assert_allclose(r1.nll[0], result.nll[i], rtol=1e-12)
        np.testing.assert_allclose(r1.covariance[0], result.covariance[i], rtol=1e-6, atol=1e-14)
        assert i1.status[0] == info.status[i]


def test_no_retrace_for_new_data_of_same_shape():
    _, data_a, seeds_a = simulate(8, seed=11)
    _, data_b, seeds_b = simulate(8, seed=12)
    run(data_a, seeds_a)
    before = fit.trace_count()
    result, info = run(data_b, seeds_b)
    assert fit.trace_count() == before
    assert np.all(np.asarray(info.status) == CONVERGED)
    # the per-term nll at the minimum adds up to the total
    total = result.nll_terms["poisson"] + result.nll_terms["timing"]
    np.testing.assert_allclose(total, result.nll, rtol=1e-10)


def _quadratic_nll(shower, data):
    return 0.5 * ((shower.core_x - data) / 3.0) ** 2 + 0.5 * ((shower.core_y + data) / 4.0) ** 2


def test_trace_counter_counts_and_quadratic_is_exact():
    config = FitConfig(free=("core_x", "core_y"), n_iter=4)
    seeds = Shower.make(dtype=jnp.float64, core_x=jnp.zeros(3))
    before = fit.trace_count()
    result, info = fit_events(_quadratic_nll, jnp.array([10.0, -20.0, 250.0]), seeds, config)
    assert fit.trace_count() == before + 1
    fit_events(_quadratic_nll, jnp.array([1.0, 2.0, 3.0]), seeds, config)
    assert fit.trace_count() == before + 1
    fit_events(_quadratic_nll, jnp.array([1.0, 2.0]), take(seeds, slice(0, 2)), config)
    assert fit.trace_count() == before + 2
    # a quadratic is solved by one Newton step (two for the 250 m event: 100 m trust region
    # clips the first steps), its covariance is exact
    np.testing.assert_allclose(result.shower.core_x, [10.0, -20.0, 250.0], atol=1e-9)
    np.testing.assert_allclose(result.shower.core_y, [-10.0, 20.0, -250.0], atol=1e-9)
    np.testing.assert_allclose(result.errors[:, :2], [[3.0, 4.0]] * 3, rtol=1e-9)
    np.testing.assert_allclose(result.covariance[:, 0, 1], 0.0, atol=1e-12)
    assert np.all(np.asarray(info.status) == CONVERGED)
    assert list(np.asarray(info.n_iter)) == [1, 1, 3]


def test_float32_agrees_with_float64(toys):
    truth, data, seeds, result, info = toys
    sl = slice(0, 8)
    d32 = jax.tree.map(lambda x: x.astype(jnp.float32), take(data, sl))
    s32 = jax.tree.map(lambda x: x.astype(jnp.float32), take(seeds, sl))
    r32, i32 = run(d32, s32)
    assert r32.shower.core_x.dtype == jnp.float32
    assert r32.covariance.dtype == jnp.float32
    ok = (np.asarray(i32.status) == CONVERGED) & (np.asarray(info.status)[sl] == CONVERGED)
    assert ok.all(), (i32.status, info.status[sl])
    err64 = np.asarray(result.errors)[sl]
    for f in FREE:
        i = IDX[f]
        diff = np.asarray(getattr(r32.shower, f), float) - np.asarray(getattr(result.shower, f))[sl]
        if f == "azimuth":
            diff = np.pi - np.mod(np.pi - diff, 2 * np.pi)
        # float32 lands within a small fraction of the statistical error of the float64 fit
        assert np.all(np.abs(diff[ok]) < 0.05 * err64[ok, i]), (f, np.abs(diff / err64[:, i]).max())
        np.testing.assert_allclose(np.asarray(r32.errors)[ok, i], err64[ok, i], rtol=0.02)
    np.testing.assert_allclose(np.asarray(r32.nll)[ok], np.asarray(result.nll)[sl][ok],
                               atol=0.02)


def test_vertical_seed_does_not_stall():
    truth, data, seeds = simulate(8, seed=5, zenith_deg=(0.0, 4.0))
    seeds = seeds._replace(zenith=jnp.zeros(8), azimuth=jnp.zeros(8))
    result, info = run(data, seeds)
    status = np.asarray(info.status)
    assert np.all(status == CONVERGED), status
    ok = status == CONVERGED
    # angular distance to the truth within a few sigma (direction errors ~1e-3 rad)
    n_reco = np.stack([np.sin(result.shower.zenith) * np.cos(result.shower.azimuth),
                       np.sin(result.shower.zenith) * np.sin(result.shower.azimuth)], -1)
    n_true = np.stack([np.sin(truth.zenith) * np.cos(truth.azimuth),
                       np.sin(truth.zenith) * np.sin(truth.azimuth)], -1)
    sep = np.hypot(*(n_reco - n_true).T)
    sigma = np.asarray(result.errors)[:, IDX["zenith"]]
    assert np.all(sep[ok] < 5 * sigma[ok] + 1e-4)
    assert np.all(np.asarray(result.shower.zenith) > 0)


def test_energy_at_bound_is_out_of_bounds():
    _, data, seeds = simulate(8, seed=7)
    empty = {"n": jnp.zeros_like(data["n"]), "t": data["t"]}
    config = FitConfig(free=("log10_energy",))
    result, info = fit_events(toy_nll, empty, seeds, config)
    assert np.all(np.asarray(info.status) == OUT_OF_BOUNDS)
    np.testing.assert_allclose(result.shower.log10_energy, config.log10_energy_bounds[0])


def test_internal_round_trip_and_gradient():
    config = FitConfig(free=FIELDS)
    assert internal_names(config) == ("core_x", "core_y", "u", "v", "log10_energy", "xmax",
                                      "log_muon_scale", "t0")
    seed = Shower.make(dtype=jnp.float64, core_x=120.0, core_y=-40.0, zenith=0.4, azimuth=5.9,
                       t0=1000.0)
    rng = np.random.default_rng(3)
    for _ in range(5):
        theta = jnp.asarray(rng.normal(0, 0.3, 8))
        back = to_internal(from_internal(theta, seed, config), seed, config)
        np.testing.assert_allclose(back, theta, rtol=1e-12, atol=1e-12)
    shower = from_internal(theta, seed, config)
    np.testing.assert_allclose(shower.core_x, 120.0 + 100.0 * theta[0])
    np.testing.assert_allclose(shower.t0, 1000.0 + 10.0 * theta[7])
    # the Jacobian of the round trip is the identity
    jac = jax.jacfwd(lambda t: to_internal(from_internal(t, seed, config), seed, config))(theta)
    np.testing.assert_allclose(jac, np.eye(8), atol=1e-10)
    # the seed maps to zero core / t0 offsets
    np.testing.assert_allclose(np.asarray(to_internal(seed, seed, config))[[0, 1, 7]], 0.0)
    # gradients through from_internal match finite differences
    from jax.test_util import check_grads
    _, data, _ = simulate(1, seed=9)
    d0 = take(data, 0)
    check_grads(lambda t: toy_nll(from_internal(t, seed, config), d0), (theta,), order=2,
                modes=("fwd", "rev"), eps=1e-5)


def test_pulls_wrap_azimuth():
    truth = Shower.make(dtype=jnp.float64, azimuth=jnp.array([0.01, 2 * np.pi - 0.01]),
                        zenith=jnp.array([0.3, 0.3]))
    reco = truth._replace(azimuth=jnp.array([2 * np.pi - 0.01, 0.01]))
    errors = jnp.zeros((2, 8)).at[:, IDX["azimuth"]].set(0.01)
    res = fit.FitResult(shower=reco, covariance=jnp.zeros((2, 8, 8)), errors=errors,
                        nll=jnp.zeros(2))
    p = pulls(res, truth)
    assert set(p) == {"azimuth"}
    np.testing.assert_allclose(p["azimuth"], [-2.0, 2.0], rtol=1e-9)


def test_bad_config_raises_before_fitting():
    with pytest.raises(ValueError, match="unknown field"):
        internal_names(FitConfig(free=("core_x", "energy")))
