"""The per-channel likelihood shared by the ground arrays (KM2A EDs/MDs, WCDA cells).

One statement of the term every counting channel uses, so that KM2A and WCDA differ only in
what they predict (mean charge, its variance-to-mean ratio, the front time and its spread), not
in how a charge and a time are scored.

Model of one channel (all charges in PE)
----------------------------------------
The charge is a compound Poisson sum (a Poisson number of particles, each with a spread of
charges). It is approximated by a *scaled Poisson*: with ``fano`` F = Var(q)/E(q) [PE],
n_eff = q / F and μ_eff = μ / F follow a Poisson law (continuous in n_eff through lnΓ), which
matches mean and variance; the Jacobian dn_eff/dq = 1/F is kept so that values of different
events and channels compare. A hit channel (``hit`` and q ≥ threshold) is a mixture

    L = Pois_c(n_eff; μ_eff) / F · N(t; t_exp, σ_t)  +  e^{−μ_eff} p_noise f_noise(q) / W,

the second term a random noise hit (probability p_noise in the readout window W, charge density
``noise_logpdf``, time uniform in W) that explains an isolated hit and cannot pull the fit.
A saturated channel (q ≥ saturation) contributes P(n_eff ≥ n_sat) in the normal approximation
(``log_ndtr``: twice differentiable, unlike ``gammainc`` in JAX). An empty channel contributes
e^{−μ_eff}(1 − p_noise): the empty probability of the same scaled Poisson, which keeps the
score unbiased (E[∂ln L/∂μ] = E[n_eff]/μ − 1/F = 0; docs/km2a.md measured the alternative
e^{−μ} to bias the energy by −13%). Invalid channels contribute 0.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import gammaln, log_ndtr

__all__ = ["MU_FLOOR", "LOG_SQRT_2PI", "noise_probability", "counting_channel_nll",
           "information_weights", "delegate_fields", "deviance_sums", "GOF_MIN_MU_EFF"]

#: floor of a mean charge [PE]: keeps logarithms finite for channels far from the core
MU_FLOOR = 1e-6
LOG_SQRT_2PI = float(0.5 * np.log(2 * np.pi))


def noise_probability(rate_hz, window_ns):
    """Probability of at least one noise hit at ``rate_hz`` in a window of ``window_ns``."""
    return -jnp.expm1(-rate_hz * window_ns * 1e-9)


def counting_channel_nll(q, t, hit, valid, mu, fano, t_exp, sigma_t, threshold, saturation,
                         p_noise, window_ns, noise_logpdf):
    """−ln L per channel (shape of ``q``), see the module docstring.

    Parameters (arrays broadcast against ``q``)
    ----------
    q, t : observed charge [PE] and time [ns];  hit, valid : bool masks
    mu : expected charge [PE];  fano : Var(q)/E(q) [PE] of the signal charge
    t_exp, sigma_t : expected time of the hit [ns] and its spread [ns]
    threshold, saturation : [PE]
    p_noise : probability of a noise hit in the window;  window_ns : [ns]
    noise_logpdf : q -> log density of a noise hit's charge [1/PE]
    """
    mu = jnp.maximum(mu, MU_FLOOR)
    is_hit = hit & (q >= threshold)
    sat = q >= saturation
    n_eff = jnp.where(is_hit, q, 0.0) / fano
    mu_eff = mu / fano
    log_pois = n_eff * jnp.log(mu_eff) - mu_eff - gammaln(n_eff + 1.0) - jnp.log(fano)
    log_sat = log_ndtr((mu_eff - saturation / fano) / jnp.sqrt(mu_eff))
    log_q_sig = jnp.where(sat, log_sat, log_pois)
    z = jnp.where(is_hit, (t - t_exp) / sigma_t, 0.0)
    log_t_sig = -0.5 * z * z - jnp.log(sigma_t) - LOG_SQRT_2PI
    log_noise = -mu_eff + jnp.log(p_noise) + noise_logpdf(q) - jnp.log(window_ns)
    log_hit = jnp.logaddexp(log_q_sig + log_t_sig, log_noise)
    log_empty = -mu_eff + jnp.log1p(-p_noise)
    out = -jnp.where(is_hit, log_hit, log_empty)
    return jnp.where(valid, out, 0.0)


def information_weights(expectation, moments_fn):
    """Expected information of each predicted number, a pytree shaped like ``expectation`` (a
    Prediction, or an Expectation holding one in ``.prediction``), for Fisher scoring
    (``joint.fit.ScoringModel``): weight/variance of ``moments_fn(prediction)`` (a dict field ->
    (mean, variance, weight)) for the listed fields, 0 for the others."""
    zero = jax.tree_util.tree_map(jnp.zeros_like, expectation)
    if hasattr(expectation, "prediction"):
        return zero._replace(prediction=information_weights(expectation.prediction, moments_fn))
    return zero._replace(**{k: w / var for k, (_, var, w) in moments_fn(expectation).items()})


def delegate_fields(outer, inner):
    """Make every field of NamedTuple class ``inner`` readable on ``outer`` (which holds one in
    ``.prediction``): ``e.ed_particles`` for ``e.prediction.ed_particles``."""
    for name in inner._fields:
        setattr(outer, name, property(lambda self, _n=name: getattr(self.prediction, _n)))


#: channels enter the goodness of fit when their predicted effective count μ/F is at least this:
#: far channels predict ~0 and are dominated by noise hits the deviance does not model
GOF_MIN_MU_EFF = 1.0
_K = np.arange(101.0)


def _poisson_deviance_moments(mu):
    """(E, Var) of the Poisson deviance 2[μ − k + k ln(k/μ)] of one channel: exact sums over
    k = 0…100 for μ ≤ 30, 1 + 1/(6μ) and 2 + 0.7/μ above (within 1e-3 of the exact values)."""
    m = jnp.clip(mu, 1e-6, 30.0)[..., None]
    logp = _K * jnp.log(m) - m - gammaln(_K + 1.0)
    p = jnp.exp(logp)
    d = 2.0 * (m - _K + jnp.where(_K > 0, _K * jnp.log(jnp.maximum(_K, 1.0) / m), 0.0))
    e_exact = jnp.sum(p * d, -1)
    v_exact = jnp.sum(p * d * d, -1) - e_exact ** 2
    big = mu > 30.0
    mu_b = jnp.maximum(mu, 30.0)
    return jnp.where(big, 1.0 + 1.0 / (6.0 * mu_b), e_exact), jnp.where(big, 2.0 + 0.7 / mu_b, v_exact)


def deviance_sums(n_eff, mu_eff, mask):
    """Charge goodness of fit of a set of channels in effective counts (n_eff = q/F, μ_eff = μ/F
    of the scaled Poisson): (D, E[D], Var[D], N) summed over ``mask`` & (μ_eff ≥
    :data:`GOF_MIN_MU_EFF`), D = Σ 2[μ − n + n ln(n/μ)] the Poisson deviance. For a detector
    the model describes, (D − E)/sqrt(Var) is ≈ N(0, 1) (times are not included)."""
    mu = jnp.maximum(mu_eff, MU_FLOOR)
    n = jnp.maximum(n_eff, 0.0)
    use = mask & (mu >= GOF_MIN_MU_EFF)
    d = 2.0 * (mu - n + jnp.where(n > 0, n * jnp.log(jnp.maximum(n, 1e-30) / mu), 0.0))
    e, v = _poisson_deviance_moments(mu)
    w = use.astype(mu.dtype)
    return jnp.sum(w * d), jnp.sum(w * e), jnp.sum(w * v), jnp.sum(w)
