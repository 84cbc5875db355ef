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

Small charges: the exact compound Poisson–gamma density (``compound=``)
-------------------------------------------------------------------------
The scaled Poisson is a continuous Poisson in q/F, not a normalised density in q: at a few
particles its maximum in the gain G (F ∝ G) is biased (a toy with μ known: ML ln G +0.145 at
μ = 1 particle, +0.01 at μ = 3, 0 from μ = 10; docs/calibration.md). Fine for shower fits (G
fixed), wrong for learning gains. With ``compound=(gain, sigma_rel, n_switch)`` the charge of a
hit is scored with the density the charge actually has when each particle gives a gamma-
distributed charge of mean G and relative width σ (the KM2A simulation's model):

    f(q) = Σ_{n=1..K} Pois(n; μ) · Gamma(q; n/σ², σ² G)        (K = :data:`COMPOUND_K`)

blended in the log with the scaled Poisson by w = sigmoid((n_switch − q/G)/0.5) (the exact sum
below n_switch particles, the scaled Poisson above: smooth in G and μ; truncation at K is
negligible where w is not), and the empty / no-signal probability is the exact e^{−μ}. The
probability that a single particle stays below the hit threshold (ED 8 PE at G = 40, σ = 0.4:
1.5·10⁻³) is neglected.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import erfcx, gammaln, log_ndtr

__all__ = ["MU_FLOOR", "LOG_SQRT_2PI", "noise_probability", "counting_channel_nll",
           "counting_channel_log_terms", "time_log_density",
           "emg_time_variance",
           "information_weights", "delegate_fields", "deviance_sums", "GOF_MIN_MU_EFF",
           "compound_log_density", "COMPOUND_K", "model_fano", "scaled_poisson_nll"]

#: floor of a mean charge [PE]: keeps logarithms finite for channels far from the core
MU_FLOOR = 1e-6
LOG_SQRT_2PI = float(0.5 * np.log(2 * np.pi))
_SQRT2 = float(np.sqrt(2.0))
_LOG_2_SQRT_PI = float(np.log(2.0 * np.sqrt(np.pi)))


def noise_probability(rate_hz, window_ns):
    """Probability of at least one noise hit at ``rate_hz`` in a window of ``window_ns``."""
    return -jnp.expm1(-rate_hz * window_ns * 1e-9)


#: particle counts summed by :func:`compound_log_density`
COMPOUND_K = 24
#: width (in particles) of the switch from the compound density to the scaled Poisson
COMPOUND_SWITCH_WIDTH = 0.5


def compound_log_density(q, mu_particles, gain, sigma_rel, k_max: int = COMPOUND_K):
    """ln Σ_{n=1..k_max} Pois(n; μ) Gamma(q; n/σ², σ² G): the density [1/PE] of a charge q > 0
    that is the sum of a Poisson(μ) number (≥ 1) of gamma-distributed single-particle charges
    of mean ``gain`` and relative width ``sigma_rel`` (arrays broadcast)."""
    n = jnp.arange(1, k_max + 1, dtype=jnp.result_type(q, float))
    qq = jnp.maximum(q, 1e-6)[..., None]
    mu = jnp.maximum(mu_particles, MU_FLOOR)[..., None]
    theta = jnp.asarray(sigma_rel ** 2 * gain)[..., None]
    a = n / sigma_rel ** 2
    log_pois = n * jnp.log(mu) - mu - gammaln(n + 1.0)
    log_gamma = (a - 1.0) * jnp.log(qq) - qq / theta - gammaln(a) - a * jnp.log(theta)
    return jax.scipy.special.logsumexp(log_pois + log_gamma, axis=-1)


def time_log_density(t, t_exp, sigma_t, t_lag=None):
    """ln density [1/ns] of a hit time: Gaussian N(t_exp, σ_t) (``t_lag`` None), or the
    exponentially modified Gaussian of a first particle lagging the front ``t_exp`` by an
    exponential of mean ``t_lag`` (the first of n particles of a front with thickness T:
    T/n), smeared by a Gaussian σ_t (electronics, model uncertainty):

        ln f = −ln τ + (σ²/2τ² − x/τ) + ln Φ(x/σ − σ/τ),   x = t − t_exp, τ = t_lag.

    Its late tail is exponential (a late first particle costs linearly, not quadratically) and
    it tends to the Gaussian N(t_exp + τ, σ) when τ ≪ σ (τ is floored at σ/30, which keeps
    σ²/2τ² ≤ 450 for float32)."""
    if t_lag is None:
        z = (t - t_exp) / sigma_t
        return -0.5 * z * z - jnp.log(sigma_t) - LOG_SQRT_2PI
    tau = jnp.maximum(t_lag, sigma_t / 30.0)
    x = t - t_exp
    k = sigma_t / tau
    u = x / sigma_t
    z = u - k
    # z < 0 (most hits): ½k² − x/τ + ln Φ(z) = −½u² + ln(½ erfcx(−z/√2)), free of the
    # cancellation of terms ~k²/2 (≤ 450) that costs float32 its digits; z ≥ 0: as written
    y = -jnp.minimum(z, 0.0) / _SQRT2
    # ln(½ erfcx(y)); beyond y = 8 its asymptotic series (JAX's erfcx derivative cancels there:
    # 20× off at y = 1e4 in float32, which early noise hits reach)
    y_small = jnp.minimum(y, 8.0)
    y_big = jnp.maximum(y, 8.0)
    inv2 = 1.0 / (y_big * y_big)
    log_erfcx = jnp.where(y < 8.0, jnp.log(0.5 * erfcx(y_small)),
                          -_LOG_2_SQRT_PI - jnp.log(y_big) + jnp.log1p(-0.5 * inv2 + 0.75 * inv2 * inv2))
    log_neg = -0.5 * u * u + log_erfcx
    log_pos = 0.5 * k * k - x / tau + log_ndtr(jnp.maximum(z, 0.0))
    return -jnp.log(tau) + jnp.where(z < 0.0, log_neg, log_pos)


#: Fisher information of the location of an exponentially modified Gaussian, times σ², on a
#: grid of log10(τ/σ) from −2 to 2 (numerical integration of (∂ ln f/∂x)² f with scipy's
#: ``exponnorm``; tests/test_time_model.py recomputes it). Beyond τ/σ = 100 it falls as ≈ 0.9 σ/τ.
_EMG_LOG10_K = np.linspace(-2.0, 2.0, 17)
_EMG_INFO = np.array([0.9999, 0.99968, 0.999, 0.99685, 0.9901, 0.96941, 0.91067, 0.77998, 0.58822,
                      0.39681, 0.24825, 0.14838, 0.08638, 0.04953, 0.02816, 0.01593, 0.00899])


def emg_time_variance(sigma_t, t_lag):
    """The inverse Fisher information [ns²] of the front time for a hit scored with
    :func:`time_log_density` (σ_t, mean lag τ): σ² for τ ≪ σ, ≈ 1.1 σ τ for τ ≫ σ — the sharp
    leading edge carries more information than the variance σ² + τ² suggests."""
    log_k = jnp.log10(jnp.maximum(t_lag, 1e-12) / sigma_t)
    # log-log: ~1/k at large k; the grids in the dtype of the data (a float64 grid with float32
    # data breaks the lowering of jnp.interp under jax_enable_x64)
    log_k = jnp.asarray(log_k)
    log_info = jnp.interp(log_k, jnp.asarray(_EMG_LOG10_K, log_k.dtype),
                          jnp.asarray(np.log10(_EMG_INFO), log_k.dtype))
    info = jnp.where(log_k > 2.0, _EMG_INFO[-1] * 10.0 ** (2.0 - log_k), 10.0 ** log_info)
    return sigma_t ** 2 / info


def counting_channel_nll(q, t, hit, valid, mu, fano, t_exp, sigma_t, threshold, saturation,
                         p_noise, window_ns, noise_logpdf, compound=None, t_lag=None):
    """−ln L per channel (shape of ``q``), see the module docstring.

    Parameters (arrays broadcast against ``q``)
    ----------
    q, t : observed charge [PE] and time [ns];  hit, valid : bool masks
    mu : expected charge [PE];  fano : Var(q)/E(q) [PE] of the signal charge
    t_exp, sigma_t : expected time of the hit [ns] and its spread [ns]
    t_lag : None (Gaussian time term) or the mean exponential lag [ns] of the hit behind
        ``t_exp`` (exponentially modified Gaussian, :func:`time_log_density`)
    threshold, saturation : [PE]
    p_noise : probability of a noise hit in the window;  window_ns : [ns]
    noise_logpdf : q -> log density of a noise hit's charge [1/PE]
    compound : None, or (gain [PE per particle], σ_rel, n_switch [particles]): score charges
        below ~n_switch particles with the exact compound Poisson–gamma density (module doc)
    """
    is_hit, log_signal, log_noise, log_empty = counting_channel_log_terms(
        q, t, hit, mu, fano, t_exp, sigma_t, threshold, saturation, p_noise, window_ns,
        noise_logpdf, compound=compound, t_lag=t_lag)
    log_hit = jnp.logaddexp(log_signal, log_noise)
    out = -jnp.where(is_hit, log_hit, log_empty)
    return jnp.where(valid, out, 0.0)


def counting_channel_log_terms(q, t, hit, mu, fano, t_exp, sigma_t, threshold, saturation,
                               p_noise, window_ns, noise_logpdf, compound=None, t_lag=None):
    """The terms of :func:`counting_channel_nll` (same arguments, no ``valid``), per channel:
    ``(is_hit, log_signal, log_noise, log_empty)``. A hit channel's ln L is
    logaddexp(log_signal, log_noise) — log_signal = ln[Pois_c(n_eff; μ_eff)/F · f(t)] (or the
    saturated tail), log_noise = ln[e^{−μ_eff} p_noise f_noise(q)/W] — so
    σ(log_signal − log_noise) is the posterior probability that the hit is the shower's
    (``analysis.noise``); an empty channel's is log_empty = ln[e^{−μ_eff}(1 − p_noise)]."""
    mu = jnp.maximum(mu, MU_FLOOR)
    is_hit = hit & (q >= threshold)
    sat = q >= saturation
    n_eff = jnp.where(is_hit, q, 0.0) / fano
    mu_eff = mu / fano
    log_pois = n_eff * jnp.log(mu_eff) - mu_eff - gammaln(n_eff + 1.0) - jnp.log(fano)
    log_sat = log_ndtr((mu_eff - saturation / fano) / jnp.sqrt(mu_eff))
    log_p0 = -mu_eff  # ln P(no signal)
    if compound is not None:
        gain, sigma_rel, n_switch = compound
        log_c = compound_log_density(q, mu / gain, gain, sigma_rel)
        w = jax.nn.sigmoid((n_switch - q / gain) / COMPOUND_SWITCH_WIDTH)
        log_pois = w * log_c + (1.0 - w) * log_pois
        log_p0 = -mu / gain
    log_q_sig = jnp.where(sat, log_sat, log_pois)
    log_t_sig = time_log_density(jnp.where(is_hit, t, t_exp), t_exp, sigma_t, t_lag)
    log_noise = log_p0 + jnp.log(p_noise) + noise_logpdf(q) - jnp.log(window_ns)
    log_empty = log_p0 + jnp.log1p(-p_noise)
    return is_hit, log_q_sig + log_t_sig, log_noise, log_empty


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


# ---------------------------------------------------------------------------------------------
# model uncertainty: a relative error of the prediction in the channel variance
# ---------------------------------------------------------------------------------------------

def model_fano(fano, mu, mu_signal, model_rel_sigma):
    """Effective variance-to-mean ratio [PE] of a channel whose variance is

        Var(q) = F·μ + (κ·μ_signal)²,

    F = ``fano`` (the counting noise), κ = ``model_rel_sigma`` (a relative uncertainty of the
    *predicted* signal: what the model does not capture, scaling with the signal like a
    multiplicative error) and μ_signal the signal part of the mean μ (backgrounds are known):
    F_eff = F + κ² μ_signal² / μ. κ = 0 (a Python number) returns ``fano`` itself (bit for bit).

    With F_eff in :func:`scaled_poisson_nll` (or ``counting_channel_nll``'s ``fano``) the channel
    keeps a normalised likelihood: the scaled Poisson in q/F_eff is a continuous Poisson whose
    mean and variance match μ and Var(q) (≈ the Gaussian N(μ, Var) for large μ/F_eff, a
    negative-binomial-like over-dispersed count in between; its −ln F_eff Jacobian term keeps
    values comparable between channels and makes a larger κ cost likelihood); where
    κ μ_signal ≪ √(Fμ) it is the plain scaled Poisson."""
    if isinstance(model_rel_sigma, (int, float)) and float(model_rel_sigma) == 0.0:
        return fano
    mu = jnp.maximum(mu, MU_FLOOR)
    return fano + (model_rel_sigma * mu_signal) ** 2 / mu


def scaled_poisson_nll(q, mu, fano):
    """−ln L of a charge q ≥ 0 [PE] under the scaled Poisson of mean ``mu`` [PE] and
    variance-to-mean ratio ``fano`` [PE] (arrays broadcast): n_eff = q/F, μ_eff = μ/F,
    −[n_eff ln μ_eff − μ_eff − lnΓ(n_eff + 1) − ln F] (constants and the Jacobian kept).
    ``mu`` is floored at :data:`MU_FLOOR`; no masks (the caller's)."""
    mu = jnp.maximum(mu, MU_FLOOR)
    n_eff, mu_eff = q / fano, mu / fano
    return -(n_eff * jnp.log(mu_eff) - mu_eff - gammaln(n_eff + 1.0) - jnp.log(fano))
