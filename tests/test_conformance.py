"""Shared detector conformance tests (DESIGN.md): every detector module passes the same checks.

* gradients of ``expected`` and ``nll`` against finite differences in float64, at random points
  and at edges (core on a channel, vertical shower, no hits);
* ``vmap`` over events equals a Python loop; ``jit`` equals eager;
* no retrace per event (one compilation for a detector set);
* simulate -> fit recovers the truth with unit pulls (``test_fit_km2a.py`` for KM2A, once the
  fitter exists).

A detector enters by adding a ``Case`` factory to ``DETECTORS``.
"""
from __future__ import annotations

import math
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from detectors import km2a
from detectors.layout import km2a_layout
from detectors.shower import Shower


class Case(NamedTuple):
    shower: Shower                       # float64, scalar leaves
    expected: Callable                   # shower -> pytree of arrays
    nll: Callable                        # (shower, observed) -> scalar
    simulate: Callable                   # (key, shower) -> observed
    name: str


def _km2a_case(n_ed=300, n_md=60, edge=None) -> Case:
    lay = km2a_layout("full")
    s = Shower.make(dtype=jnp.float64, core_x=40.0, core_y=-25.0, zenith=0.35, azimuth=2.0,
                    log10_energy=5.3, xmax=560.0, log_muon_scale=0.1, t0=3.0)
    if edge == "vertical_on_channel":
        s = s._replace(core_x=jnp.float64(lay.ed_pos[0, 0]), core_y=jnp.float64(lay.ed_pos[0, 1]),
                       zenith=jnp.float64(0.0), azimuth=jnp.float64(0.0))
    c = np.array([float(s.core_x), float(s.core_y)])
    ed_idx = np.argsort(np.hypot(*(lay.ed_pos[:, :2] - c).T))[:n_ed]
    md_idx = np.argsort(np.hypot(*(lay.md_pos[:, :2] - c).T))[:n_md]
    geo = km2a.Geometry(ed_pos=lay.ed_pos[ed_idx], md_pos=lay.md_pos[md_idx],
                        ed_live=np.ones(n_ed, bool), md_live=np.ones(n_md, bool))
    resp = km2a.Response.nominal(geo)
    phys = km2a.KM2APhysics()

    def expected(sh):
        return km2a.expected(sh, geo, resp, phys)

    def simulate(key, sh):
        return km2a.simulate(key, sh, geo, resp, phys)[0]

    def nll(sh, obs):
        return km2a.nll(obs, km2a.expected(sh, geo, resp, phys), geo, resp)

    return Case(s, expected, nll, simulate, "km2a")


def _wcda_case(n_cells=400, edge=None) -> Case:
    from detectors import wcda
    from detectors.layout import wcda_layout

    lay = wcda_layout()
    c = lay.cell_pos[lay.pond == 1, :2].mean(axis=0) + np.array([12.0, -7.0])
    s = Shower.make(dtype=jnp.float64, core_x=float(c[0]), core_y=float(c[1]), zenith=0.3,
                    azimuth=1.2, log10_energy=3.8, xmax=420.0, log_muon_scale=-0.5, t0=3.0)
    if edge == "vertical_on_channel":
        s = s._replace(core_x=jnp.float64(lay.cell_pos[0, 0]), core_y=jnp.float64(lay.cell_pos[0, 1]),
                       zenith=jnp.float64(0.0), azimuth=jnp.float64(0.0))
    cxy = np.array([float(s.core_x), float(s.core_y)])
    idx = np.argsort(np.hypot(*(lay.cell_pos[:, :2] - cxy).T))[:n_cells]
    geo = wcda.Geometry(cell_pos=lay.cell_pos[idx], pond=lay.pond[idx],
                        cell_live=np.ones(n_cells, bool))
    resp = wcda.Response.nominal(geo)
    phys = wcda.WCDAPhysics()

    def expected(sh):
        return wcda.expected(sh, geo, resp, phys)

    def simulate(key, sh):
        return wcda.simulate(key, sh, geo, resp, phys)[0]

    def nll(sh, obs):
        return wcda.nll(obs, wcda.expected(sh, geo, resp, phys), geo, resp)

    return Case(s, expected, nll, simulate, "wcda")


def _wfcta_case(edge=None) -> Case:
    from detectors import wfcta
    from detectors.layout import wfcta_layout

    lay = wfcta_layout(tel_ids=[1, 3])
    az, ze = float(lay.azimuth[0]), float(lay.zenith[0])
    core = lay.tel_pos[0, :2] + 120.0 * np.array([np.cos(az + 0.6), np.sin(az + 0.6)])
    s = Shower.make(dtype=jnp.float64, core_x=float(core[0]), core_y=float(core[1]),
                    zenith=ze + 0.02, azimuth=az + 0.03, log10_energy=5.8, xmax=620.0,
                    log_muon_scale=0.0, t0=0.0)
    if edge == "vertical_on_channel":  # the core next to a telescope, the axis along its optics
        s = s._replace(core_x=jnp.float64(lay.tel_pos[0, 0] + 5.0),
                       core_y=jnp.float64(lay.tel_pos[0, 1]), zenith=jnp.float64(ze),
                       azimuth=jnp.float64(az))
    geo = wfcta.Geometry.from_layout(lay)
    resp = wfcta.Response.nominal(geo)
    phys = wfcta.WFCTAPhysics(n_slices=32)

    def expected(sh):
        return wfcta.expected(sh, geo, resp, phys)

    def simulate(key, sh):
        return wfcta.simulate(key, sh, geo, resp, phys)[0]

    def nll(sh, obs):
        return wfcta.nll(obs, wfcta.expected(sh, geo, resp, phys), geo, resp)

    return Case(s, expected, nll, simulate, "wfcta")


DETECTORS = {"km2a": _km2a_case, "wcda": _wcda_case, "wfcta": _wfcta_case}


def _perturb(s: Shower, rng, scale=1.0) -> Shower:
    d = dict(core_x=5.0, core_y=5.0, zenith=0.02, azimuth=0.05, log10_energy=0.05, xmax=20.0,
             log_muon_scale=0.05, t0=2.0)
    return Shower(*[getattr(s, f) + scale * d[f] * rng.normal() for f in s._fields])


@pytest.mark.parametrize("det", DETECTORS)
@pytest.mark.parametrize("edge", [pytest.param(None, marks=pytest.mark.slow), "vertical_on_channel"])
def test_expected_and_nll_gradients(det, edge):
    case = DETECTORS[det](edge=edge)
    rng = np.random.default_rng(0)
    obs = case.simulate(jax.random.PRNGKey(1), case.shower)
    # the edge point itself, or the nominal shower and a random point near it
    points = [case.shower] if edge else [case.shower, _perturb(case.shower, rng)]
    # expected: a scalar summary of every output (weights make all channels count); jitted, so
    # that check_grads' finite differences and its jvp/vjp run compiled programs, not op by op
    @jax.jit
    def summary(sh):
        leaves = jax.tree_util.tree_leaves(case.expected(sh))
        return sum(jnp.sum(jnp.sin(0.01 * jnp.arange(x.size).reshape(x.shape) + 1.0) * x)
                   for x in leaves)

    nll = jax.jit(case.nll)
    for s in points:
        check_grads(summary, (s,), order=1, modes=["fwd", "rev"], eps=1e-5, rtol=2e-3, atol=1e-4)
        check_grads(lambda sh: nll(sh, obs), (s,), order=1, modes=["rev"], eps=1e-5,
                    rtol=2e-3, atol=1e-3)


@pytest.mark.parametrize("det", DETECTORS)
def test_nll_with_no_hits_is_finite_with_gradient(det):
    case = DETECTORS[det]()
    obs = case.simulate(jax.random.PRNGKey(2), case.shower)
    empty = jax.tree_util.tree_map(jnp.zeros_like, obs)  # no signal, no time, hit False
    # keep the channels valid but remove every hit
    empty = type(obs)(*[b._replace(valid=jnp.ones_like(b.valid)) for b in empty])
    v, g = jax.jit(jax.value_and_grad(case.nll))(case.shower, empty)
    assert np.isfinite(float(v))
    assert all(np.isfinite(float(x)) for x in g)
    # an event with no hits prefers a smaller energy than the truth (fewer particles expected)
    assert float(g.log10_energy) > 0


def test_km2a_nll_of_an_empty_event_is_the_scaled_poisson_empty_probability():
    """No hit anywhere: every channel contributes −ln[e^{−μ_eff}(1 − p_noise)] with
    μ_eff = μ/(1 + σ_q²) and p_noise = 1 − e^{−rate·W} (detectors.km2a, Likelihood)."""
    case = DETECTORS["km2a"]()
    obs = case.simulate(jax.random.PRNGKey(2), case.shower)
    empty = type(obs)(*[jax.tree_util.tree_map(jnp.zeros_like, b)._replace(
        valid=jnp.ones_like(b.valid)) for b in obs])
    e = case.expected(case.shower)
    resp = km2a.Response.nominal(km2a.Geometry(ed_pos=np.zeros((1, 3)), md_pos=np.zeros((1, 3))))
    want = 0.0
    for mu, sq, rate in ((e.ed_particles, resp.ed_charge_resolution, resp.ed_noise_rate_hz),
                         (e.md_muons, resp.md_charge_resolution, resp.md_noise_rate_hz)):
        p_noise = -math.expm1(-rate * resp.window_ns * 1e-9)
        mu = np.maximum(np.asarray(mu), 1e-6)
        want += np.sum(mu / (1.0 + sq ** 2)) - mu.size * math.log1p(-p_noise)
    assert float(case.nll(case.shower, empty)) == pytest.approx(want, rel=1e-12)


@pytest.mark.parametrize("det", DETECTORS)
def test_vmap_equals_loop_and_jit_equals_eager(det):
    case = DETECTORS[det]()
    rng = np.random.default_rng(3)
    showers = [_perturb(case.shower, rng) for _ in range(4)]
    keys = jax.random.split(jax.random.PRNGKey(4), 4)
    obs = [case.simulate(k, s) for k, s in zip(keys, showers)]
    stack = lambda xs: jax.tree_util.tree_map(lambda *a: jnp.stack(a), *xs)
    batched = jax.jit(jax.vmap(case.nll))(stack(showers), stack(obs))
    loop = np.array([float(case.nll(s, o)) for s, o in zip(showers, obs)])
    np.testing.assert_allclose(np.asarray(batched), loop, rtol=1e-10)
    sim_b = jax.vmap(case.simulate)(keys, stack(showers))
    for i in range(4):
        for a, b in zip(jax.tree_util.tree_leaves(sim_b), jax.tree_util.tree_leaves(obs[i])):
            np.testing.assert_allclose(np.asarray(a[i]), np.asarray(b), rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("det", DETECTORS)
def test_no_retrace_per_event(det):
    case = DETECTORS[det]()
    traces = []

    def f(sh, ob):
        traces.append(1)
        return case.nll(sh, ob)

    jf = jax.jit(f)
    rng = np.random.default_rng(5)
    for i in range(3):
        s = _perturb(case.shower, rng)
        o = case.simulate(jax.random.PRNGKey(10 + i), s)
        jf(s, o).block_until_ready()
    assert len(traces) == 1


@pytest.mark.parametrize("det", DETECTORS)
def test_nll_minimum_near_truth(det):
    """The expected nll (averaged over simulated events) is smallest at the truth: scanning the
    energy by ±0.1 in log10 raises it (a likelihood that prefers a biased value would fail)."""
    case = DETECTORS[det]()
    keys = jax.random.split(jax.random.PRNGKey(6), 8)
    obs = [case.simulate(k, case.shower) for k in keys]
    def mean_nll(dlog):
        s = case.shower._replace(log10_energy=case.shower.log10_energy + dlog)
        return np.mean([float(case.nll(s, o)) for o in obs])
    m0, mp, mm = mean_nll(0.0), mean_nll(0.1), mean_nll(-0.1)
    assert m0 < mp and m0 < mm
