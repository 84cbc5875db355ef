"""WFCTA's profiled nuisances (profile width, lateral spread) and the pixel model uncertainty κ
(issue 16): recovery, derivatives, the profiled bound, reduction to the old model when off, and
configuration errors."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from detectors import channel, wfcta
from detectors.block import ChannelBlock
from detectors.layout import wfcta_layout
from helpers import wfcta_test_shower as _shower


@pytest.fixture(scope="module")
def x64():
    old = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", True)
    yield
    jax.config.update("jax_enable_x64", old)


#: a lighter image model for speed (32 slices instead of 64; 2 of the 6 telescopes below)
BASE = wfcta.WFCTAPhysics(n_slices=32)


@pytest.fixture(scope="module")
def setup(x64):
    lay = wfcta_layout()
    geo = wfcta.Geometry.from_layout(lay)
    resp = wfcta.Response.nominal(geo)
    keep = np.array([0, 1])
    geo = geo._replace(tel_pos=geo.tel_pos[keep], tel_axis=geo.tel_axis[keep],
                       tel_e_az=geo.tel_e_az[keep], tel_e_el=geo.tel_e_el[keep],
                       pixel_live=geo.pixel_live[keep])
    resp = resp._replace(pixel_gain=resp.pixel_gain[keep], tel_efficiency=resp.tel_efficiency[keep],
                         nsb_pe=resp.nsb_pe[keep])
    return lay, geo, resp


def _observed(q):
    q = jnp.ravel(q)
    return wfcta.Observed(pixels=ChannelBlock(signal=q, time=jnp.zeros_like(q), hit=q > 0,
                                              valid=jnp.ones(q.shape, bool),
                                              n_pulses=(q > 0).astype(jnp.int32)))


def _old_channel_nll(observed, mu, geometry, response):
    """The pixel nll before issue 16 (scaled Poisson in q/F), written out."""
    from jax.scipy.special import gammaln

    p = observed.pixels
    f = response.excess_noise
    mu = jnp.maximum(jnp.ravel(mu), 1e-6)
    q = jnp.maximum(jnp.where(p.valid, p.signal, 0.0), 0.0)
    n_eff, mu_eff = q / f, mu / f
    out = -(n_eff * jnp.log(mu_eff) - mu_eff - gammaln(n_eff + 1.0) - jnp.log(f))
    return jnp.where(p.valid & jnp.ravel(geometry.pixel_live), out, 0.0)


def test_profile_recovers_simulated_width_and_lateral_scale(setup):
    """Noiseless images of a shower with width × 1.08 and lateral spread × 0.85: the inner fit
    (weak priors, σ = 1) finds both scales; with the default priors it is pulled towards 1 by
    no more than the prior can explain, and a few steps converge."""
    lay, geo, resp = setup
    s = _shower(lay)
    truth = BASE._replace(profile_width_scale=1.08, lateral_scale=0.85)
    obs = _observed(wfcta.expected(s, geo, resp, truth).pixel_pe)
    weak = BASE._replace(nuisance_sigmas=(1.0, 1.0), nuisance_steps=5)
    nu = np.asarray(jax.jit(lambda s: wfcta.profile_nuisances(s, obs, geo, resp, weak)[0])(s))
    np.testing.assert_allclose(nu, [1.08, 0.85], atol=2e-3)
    # with the default priors: shrunk towards 1, but most of the way there
    ph = BASE._replace(nuisance_sigmas=wfcta.NUISANCE_SIGMAS, nuisance_steps=5)
    nu2 = np.asarray(jax.jit(lambda s: wfcta.profile_nuisances(s, obs, geo, resp, ph)[0])(s))
    assert 1.04 < nu2[0] <= 1.08 + 1e-3 and 0.85 - 1e-3 <= nu2[1] < 0.9
    # only the lateral nuisance on: width stays at 1, lateral found
    lat = BASE._replace(nuisance_sigmas=(0.0, 1.0), nuisance_steps=5)
    pred = jax.jit(lambda s: wfcta.predict_event(s, obs, geo, resp, lat))(s)
    assert pred.nuisance_residual.shape == (1,)
    assert float(pred.nuisance[0]) == 1.0 and abs(float(pred.nuisance[1]) - 0.85) < 0.03


def test_profiled_gradient_matches_finite_differences(setup):
    """float64, a noisy event: the fitter's gradient Jᵀ ∂loss/∂prediction (Fisher scoring's,
    J through ν̂) equals the finite-difference derivative of the profiled nll in log10 E and
    Xmax."""
    from joint.likelihood import detector_model
    from detectors.registry import WFCTAData

    lay, geo, resp = setup
    s = _shower(lay)
    obs, _ = wfcta.simulate(jax.random.PRNGKey(3), s, geo, resp, BASE)
    data = WFCTAData(geo, resp, obs)
    ph = BASE._replace(nuisance_sigmas=wfcta.NUISANCE_SIGMAS, nuisance_steps=6)
    model = detector_model("wfcta", ph)

    def shower_at(t):
        return s._replace(log10_energy=t[0], xmax=t[1] * 100.0)

    def pred(t):
        return model.predict(shower_at(t), data)

    t0 = jnp.array([6.02, 6.3])

    @jax.jit
    def fitter_grad(t):
        jac = jax.jacfwd(pred)(t)
        p0 = pred(t)
        dloss = jax.grad(model.loss)(p0, data)
        return p0, sum(jnp.tensordot(d, j, axes=d.ndim) for d, j in
                       zip(jax.tree_util.tree_leaves(dloss), jax.tree_util.tree_leaves(jac)))

    p0, grad = fitter_grad(t0)
    f = jax.jit(lambda t: model(shower_at(t), data))
    h = 1e-5
    fd = np.array([(float(f(t0.at[i].add(h))) - float(f(t0.at[i].add(-h)))) / (2 * h) for i in range(2)])
    assert np.all(np.abs(fd) > 1.0)  # a real slope, not a flat point
    np.testing.assert_allclose(np.asarray(grad), fd, rtol=2e-4)
    assert abs(float(p0.nuisance[0]) - 1.0) > 1e-4  # the nuisances moved


def test_profiled_bound_is_the_schur_complement(setup):
    """``fisher_stats`` with the nuisances on gives, through ``joint.fit.cramer_rao``, the bound
    of (log10 E, Xmax) with the two scales free under their priors: the Schur complement of
    the 4 × 4 information written out; and it is wider than the bound without them."""
    from joint.fit import FitConfig, cramer_rao
    from detectors.shower import FIELDS

    lay, geo, resp = setup
    s = _shower(lay)
    sig = (0.05, 0.1)
    on = BASE._replace(nuisance_sigmas=sig)
    off = BASE
    cfg = FitConfig(free=("log10_energy", "xmax"))
    ix = FIELDS.index("xmax")
    bound = lambda ph: float(jnp.sqrt(jax.jit(lambda sh: cramer_rao(
        lambda x: wfcta.fisher_stats(x, geo, resp, ph), sh, cfg))(s)[ix, ix]))
    b_on, b_off = bound(on), bound(off)

    def mu(th):
        sh = s._replace(log10_energy=th[0], xmax=th[1] * 100.0)
        return jnp.ravel(wfcta.predict(sh, geo, resp, off._replace(profile_width_scale=th[2],
                                                                   lateral_scale=th[3])))

    th = jnp.array([6.0, 6.5, 1.0, 1.0])
    j, m = jax.jit(lambda t: (jax.jacfwd(mu)(t), mu(t)))(th)
    w = 1.0 / (resp.excess_noise * jnp.maximum(m, 1e-6))
    info = (j * w[:, None]).T @ j + jnp.diag(jnp.array([0.0, 0.0, 1 / sig[0] ** 2, 1 / sig[1] ** 2]))
    direct = 100.0 * float(jnp.sqrt(jnp.linalg.inv(info)[1, 1]))
    assert b_on == pytest.approx(direct, rel=1e-6)
    assert b_on > 1.2 * b_off


def test_nuisances_off_reproduce_the_old_model(setup):
    """(0, 0) nuisances and κ = 0: the prediction is ``predict``'s array and the nll, weights and
    bound are the old scaled Poisson's, bit for bit."""
    lay, geo, resp = setup
    s = _shower(lay)
    obs, _ = wfcta.simulate(jax.random.PRNGKey(1), s, geo, resp, BASE)
    off = BASE._replace(nuisance_sigmas=(0.0, 0.0), model_rel_sigma=0.0)
    p = wfcta.predict_event(s, obs, geo, resp, off)
    mu = wfcta.predict(s, geo, resp, off)
    assert off.n_slices == 32 and not isinstance(p, wfcta.Profiled)
    np.testing.assert_array_equal(np.asarray(p), np.asarray(mu))
    old = _old_channel_nll(obs, mu, geo, resp)
    np.testing.assert_array_equal(np.asarray(wfcta.channel_nll(obs, mu, geo, resp, off)), np.asarray(old))
    np.testing.assert_array_equal(np.asarray(wfcta.channel_nll(obs, mu, geo, resp)), np.asarray(old))
    assert float(wfcta.nll(obs, mu, geo, resp, off)) == float(jnp.sum(old))
    np.testing.assert_array_equal(
        np.asarray(wfcta.information_weights(mu, geo, resp, off)),
        np.asarray(jnp.asarray(geo.pixel_live, mu.dtype) / (resp.excess_noise * jnp.maximum(mu, 1e-6))))


def test_fit_with_nuisances_off_matches_the_old_likelihood(setup):
    """A Fisher-scoring fit of one event through ``joint.likelihood.detector_model`` with the
    nuisances off gives the same result (1e-6) as a ScoringModel of the old likelihood."""
    from joint.fit import FitConfig, ScoringModel, fit_events
    from joint.likelihood import detector_model
    from detectors.registry import WFCTAData

    lay, geo, resp = setup
    s = _shower(lay)
    obs, _ = wfcta.simulate(jax.random.PRNGKey(2), s, geo, resp, BASE)
    data = jax.tree_util.tree_map(lambda x: jnp.asarray(x)[None], WFCTAData(geo, resp, obs))
    old = ScoringModel(
        predict=lambda sh, d: wfcta.expected(sh, d.geometry, d.response, BASE).pixel_pe,
        loss=lambda m, d: jnp.sum(_old_channel_nll(d.observed, m, d.geometry, d.response)),
        weights=lambda m, d: jnp.asarray(d.geometry.pixel_live, m.dtype)
        / (d.response.excess_noise * jnp.maximum(m, 1e-6)))
    new = detector_model("wfcta", BASE._replace(nuisance_sigmas=(0.0, 0.0)))
    seed = jax.tree_util.tree_map(lambda x: jnp.asarray(x)[None], s._replace(xmax=600.0, log10_energy=5.9))
    cfg = FitConfig(free=("log10_energy", "xmax"), n_iter=4, algorithm="scoring")
    r_old, _ = fit_events(old, data, seed, cfg)
    r_new, _ = fit_events(new, data, seed, cfg)
    np.testing.assert_allclose(float(r_new.shower.xmax[0]), float(r_old.shower.xmax[0]), rtol=1e-6)
    np.testing.assert_allclose(float(r_new.nll[0]), float(r_old.nll[0]), rtol=1e-9)
    assert abs(float(r_new.shower.xmax[0]) - 600.0) > 1.0  # the fit moved


def test_model_uncertainty_variance_term(setup):
    """κ > 0: F_eff = F + κ² μ_s²/μ; the pixel term stays a normalised density in q for a
    bright pixel, its variance is F μ + (κ μ_s)², and the weights are 1/Var."""
    _, geo, resp = setup
    f, mu, mu_s, kappa = 1.2, 900.0, 885.0, 0.1
    assert channel.model_fano(f, mu, mu_s, 0.0) is f
    fe = float(channel.model_fano(f, jnp.asarray(mu), jnp.asarray(mu_s), kappa))
    assert fe == pytest.approx(f + kappa ** 2 * mu_s ** 2 / mu)
    q = np.linspace(0.0, 3000.0, 300001)
    dens = np.exp(-np.asarray(channel.scaled_poisson_nll(jnp.asarray(q), mu, fe)))
    norm = np.trapezoid(dens, q)
    mean = np.trapezoid(q * dens, q) / norm
    var = np.trapezoid((q - mean) ** 2 * dens, q) / norm
    assert abs(norm - 1.0) < 2e-3 and abs(mean / mu - 1.0) < 2e-3
    assert var == pytest.approx(f * mu + (kappa * mu_s) ** 2, rel=0.01)
    # in WFCTA: a bright pixel's weight drops, a dark one's does not
    lay = wfcta_layout()
    s = _shower(lay)
    m = jax.jit(lambda sh: wfcta.predict(sh, geo, resp, BASE))(s)
    w0 = np.ravel(np.asarray(wfcta.information_weights(m, geo, resp, BASE)))
    w1 = np.ravel(np.asarray(wfcta.information_weights(m, geo, resp, BASE._replace(model_rel_sigma=0.1))))
    mm = np.ravel(np.asarray(m))
    bright, dark = np.argmax(mm), np.argmin(mm)
    assert w1[bright] < 0.5 * w0[bright] and w1[dark] == pytest.approx(w0[dark], rel=1e-6)


def test_bad_configuration_raises(setup):
    from detectors import registry

    lay, geo, resp = setup
    s = _shower(lay)
    obs = _observed(jnp.zeros(2 * 1024))
    for bad in (BASE._replace(nuisance_sigmas=(-0.05, 0.1)),
                BASE._replace(nuisance_sigmas=(0.05,)),
                BASE._replace(model_rel_sigma=-0.1),
                BASE._replace(nuisance_sigmas=(0.05, 0.1), nuisance_steps=0)):
        with pytest.raises(ValueError, match="WFCTAPhysics"):
            wfcta.predict_event(s, obs, geo, resp, bad)
    with pytest.raises(ValueError, match="σ_width must be ≥ 0"):
        wfcta.check_physics(BASE._replace(nuisance_sigmas=(-1.0, 0.0)))

    class Settings:
        wfcta_nuisance_sigmas = (0.05, -0.1)

    with pytest.raises(ValueError, match="σ_lateral"):
        registry.get("wfcta").physics(0.0, Settings())
    # the pipeline's default (settings without the field): off; asked for with None: the
    # documented priors
    assert registry.get("wfcta").physics(0.0, object()).nuisance_sigmas == (0.0, 0.0)

    class Asked:
        wfcta_nuisance_sigmas = None

    assert registry.get("wfcta").physics(0.0, Asked()).nuisance_sigmas == wfcta.NUISANCE_SIGMAS
