"""Cherenkov light of an air shower: yield, angular distribution, atmospheric transmission.

Pure jax.numpy, one emission point or arrays of them; every number from PHYSICS.md with its tag.

Yield (Nerling et al., Astropart. Phys. 24 (2006) 241; PHYSICS.md §7.5 [C])
------------------------------------------------------------------------
Photons in 290–430 nm per metre of track per charged particle,

    dN/dl = 2π α (1/λ₁ − 1/λ₂) · (m_e c²)² ∫_{E > E_th} (1/E_th² − 1/E²) f(E, s) dln E,

with the universal electron spectrum f(E, s) = a₀ E / ((E + a₁)(E + a₂)^s) and the threshold
(total energy) E_th = m_e c² n / sqrt(n² − 1) from the local refractive index. The integral is a
fixed 128-point trapezoid in ln E from E_th to 10⁶ MeV (relative error < 1e-3 against a
20000-point reference, ``tests/test_wfcta.py``).

Angular distribution (Nerling, [C])
-----------------------------------
dN/dβ = a(s)/θ_c e^{−β/θ_c} + b(s)/θ_cc e^{−β/θ_cc}, θ_c = 0.62694 E_th^−0.6059 rad,
θ_cc = (10.509 − 4.9444 s) θ_c (the b-term dropped when θ_cc ≤ 0). PHYSICS.md notes that
∫dβ = a + b is 0.76–1.11; here the distribution is **divided by a + b** so that the photon number
of the yield is conserved (our choice). dN/dΩ = (dN/dβ) / (2π sin β).

Angular distribution at small angles (Arbeletche & de Souza, Eur. Phys. J. C 81 (2021) 195)
------------------------------------------------------------------------------------------
Nerling's form was fitted at the angles a fluorescence detector sees; near the axis its dN/dΩ
diverges as 1/β and it has no Cherenkov ring. :func:`angular_pdf_ads` is the parametrisation of
Arbeletche & de Souza, fitted to CORSIKA photon and proton showers (TeV–EeV) over 0–60°:

    dN/dθ ∝ K(θ_em) (π − ln(1 − θ/θ_em)) sin θ / sin θ_em     (θ < θ_em)
    dN/dθ ∝ K(θ) (π − ln(1 − θ_em/θ))                          (θ > θ_em)
    K(θ) = θ^(ν−1) (e^{−ω₁θ} + ε e^{−ω₂θ}),  θ_em = arccos(1/n)

with ν, ω₁, ω₂, ε functions of n − 1, the age s (clamped to 0.5–1.5) and, for protons, the
energy (coefficients in :func:`ads_parameters`); normalised on 0–60° (small-angle closed form
below θ_em, 64-point Gauss–Legendre in t = sqrt(1 − θ_em/θ) above; checked against a 2·10⁶
point trapezoid, ``tests/test_wfcta.py``). dN/dΩ is finite on the axis and peaks on the cone
θ_em: the Cherenkov ring, whose log spike −ln|1 − θ/θ_em| is smoothed to
−½ ln((1 − θ/θ_em)² + ε²), ε = ``ADS_RING_WIDTH`` = 0.1 [M] (a kinked likelihood stalls the fits).

Transmission (PHYSICS.md §8b)
-----------------------------
Rayleigh T_R = exp[−(X_path/Λ_R)(λ₀/λ)⁴], Λ_R = 1645 g/cm² at 350 nm [C, ShowerModel];
aerosols T_A = exp(−τ_A / cos ζ), τ_A(h₁→h₂) = (H_A/L_A)[e^{−Δh₁/H_A} − e^{−Δh₂/H_A}] with
H_A = 1.2 km, L_A = 20 km [M] above the ground. Both are averaged over wavelength with the
Cherenkov 1/λ² spectrum times the telescope's efficiency on an 8-point grid.

Units: heights m a.s.l., depths g/cm², energies MeV, angles rad, lengths m.
"""
from __future__ import annotations

from typing import NamedTuple

import jax.numpy as jnp
import numpy as np

from . import atmosphere

__all__ = ["ALPHA_FS", "ELECTRON_MASS_MEV", "LAMBDA_MIN_NM", "LAMBDA_MAX_NM",
           "threshold_energy_mev", "electron_spectrum", "mean_sin2_theta", "yield_per_metre",
           "theta_c", "angular_pdf", "angular_pdf_per_sr", "ads_parameters", "angular_pdf_ads",
           "angular_pdf_ads_per_sr", "ADS_MAX_THETA", "Transmission", "transmission",
           "WAVELENGTH_GRID_NM"]

ALPHA_FS = 1.0 / 137.036
ELECTRON_MASS_MEV = 0.51099895
LAMBDA_MIN_NM = 290.0
LAMBDA_MAX_NM = 430.0
_N_QUAD = 128
_E_MAX_MEV = 1.0e6
#: wavelength grid [nm] for the transmission and efficiency averages
WAVELENGTH_GRID_NM = np.linspace(295.0, 425.0, 8)


def threshold_energy_mev(height_m, atm=None):
    """Cherenkov threshold (total energy) of an electron [MeV] at ``height_m`` [m a.s.l.]:
    m_e c² n / sqrt(n² − 1) (26.8 MeV at 4410 m with η₀ = 2.83e-4, PHYSICS.md §8b)."""
    n = atmosphere.refractive_index(height_m, atm)
    return ELECTRON_MASS_MEV * n / jnp.sqrt(n * n - 1.0)


def _spectrum_coeffs(s):
    a0 = 0.145098 * jnp.exp(6.20114 * s - 0.596851 * s * s)
    a1 = 6.42522 - 1.53183 * s
    a2 = 168.168 - 42.1368 * s
    return a0, a1, a2


def electron_spectrum(energy_mev, s):
    """Normalised dN/dln E of shower electrons at age s (Nerling universality, [C])."""
    a0, a1, a2 = _spectrum_coeffs(s)
    return a0 * energy_mev / ((energy_mev + a1) * (energy_mev + a2) ** s)


def mean_sin2_theta(height_m, s, atm=None):
    """(m_e c²)² ∫_{E>E_th} (1/E_th² − 1/E²) f(E, s) dln E: the mean sin²θ_ch of the shower's
    electrons (dimensionless); broadcasts over height and s."""
    e_th = threshold_energy_mev(height_m, atm)
    u0 = jnp.log(e_th)
    t = jnp.linspace(0.0, 1.0, _N_QUAD)
    u = u0[..., None] + (jnp.log(_E_MAX_MEV) - u0[..., None]) * t
    e = jnp.exp(u)
    s_ = jnp.asarray(s)[..., None]
    integrand = (1.0 / e_th[..., None] ** 2 - 1.0 / e ** 2) * electron_spectrum(e, s_)
    du = (jnp.log(_E_MAX_MEV) - u0) / (_N_QUAD - 1)
    integral = du * (jnp.sum(integrand, axis=-1) - 0.5 * (integrand[..., 0] + integrand[..., -1]))
    return ELECTRON_MASS_MEV ** 2 * integral


def yield_per_metre(height_m, s, atm=None, lambda_min_nm=LAMBDA_MIN_NM,
                    lambda_max_nm=LAMBDA_MAX_NM):
    """Cherenkov photons per metre of track per charged particle in [λ_min, λ_max]
    (≈ 7.7 at 4410 m for s = 1, PHYSICS.md §7.5 [D])."""
    k = 2.0 * np.pi * ALPHA_FS * (1.0 / (lambda_min_nm * 1e-9) - 1.0 / (lambda_max_nm * 1e-9))
    height_m = jnp.asarray(height_m)
    s = jnp.broadcast_to(jnp.asarray(s, height_m.dtype), height_m.shape)
    return k * mean_sin2_theta(height_m, s, atm)


def theta_c(height_m, atm=None):
    """Scale angle of the Cherenkov angular distribution [rad]: 0.62694 E_th^−0.6059 (E_th MeV)."""
    return 0.62694 * threshold_energy_mev(height_m, atm) ** -0.6059


def angular_pdf(beta, height_m, s, atm=None):
    """dN/dβ [1/rad] of the photons at angle β [rad] to the shower axis, normalised to 1."""
    tc = theta_c(height_m, atm)
    a = 0.42489 + 0.58371 * s - 0.082373 * s * s
    b = 0.055108 - 0.095587 * s + 0.056952 * s * s
    tcc = (10.509 - 4.9444 * s) * tc
    ok = tcc > 0
    tcc_safe = jnp.where(ok, tcc, 1.0)
    second = jnp.where(ok, b / tcc_safe * jnp.exp(-beta / tcc_safe), 0.0)
    norm = a + jnp.where(ok, b, 0.0)
    return (a / tc * jnp.exp(-beta / tc) + second) / norm


def angular_pdf_per_sr(beta, height_m, s, atm=None, smoothing=0.0):
    """dN/dΩ [1/sr] = (dN/dβ)/(2π sin β).

    Near the axis 1/sin β diverges for light from a point on the axis; the emitting electrons
    are spread laterally, which ``smoothing`` [rad] (their angular size seen from the
    observer) takes into account: sin β → sqrt(sin²β + smoothing²) (floored at 1e-4)."""
    sb = jnp.sqrt(jnp.sin(beta) ** 2 + smoothing ** 2)
    return angular_pdf(beta, height_m, s, atm) / (2.0 * np.pi * jnp.maximum(sb, 1e-4))


#: upper end of the Arbeletche–de Souza parametrisation [rad] (dN/dθ = 0 beyond)
ADS_MAX_THETA = np.pi / 3.0
_GL_T, _GL_W = np.polynomial.legendre.leggauss(64)


def ads_parameters(n_minus_1, s, is_gamma=1.0, energy_tev=1.0):
    """(ν, ω₁ [1/rad], ω₂ [1/rad], ε) of Arbeletche & de Souza (2021) [C, published fit];
    photon coefficients for ``is_gamma`` = 1, proton ones for 0 (used for every nucleus),
    linear in between. ``n_minus_1`` ≥ 3e-5 and s ∈ [0.5, 1.5] as in the fit."""
    nm1 = jnp.maximum(n_minus_1, 3e-5)
    sc = jnp.clip(s, 0.5, 1.5)
    ls = jnp.log(sc)
    e = jnp.maximum(energy_tev, 1e-3)
    nu_g = 0.34329 * nm1 ** -0.10683 + 1.46852 * ls
    w1_g = 1.0 / (1.4053 * nm1 ** 0.32382 - 0.048841 * ls)
    w2_g = w1_g * (1.0 - 1.0 / (0.95734 + 0.26472 * sc))
    eps_g = 0.0031206
    nu_p = 0.21155 * nm1 ** -0.16639 + 1.21803 * ls
    w1_p = 1.0 / (4.513 * nm1 ** 0.45092 * e ** -0.008843 - 0.058687 * ls)
    w2_p = w1_p * (1.0 - 1.0 / (0.90725 + 0.41722 * sc))
    eps_p = 0.009528 + 0.022552 * e ** -0.4207
    g = is_gamma
    return (g * nu_g + (1 - g) * nu_p, g * w1_g + (1 - g) * w1_p, g * w2_g + (1 - g) * w2_p,
            g * eps_g + (1 - g) * eps_p)


def _ads_k(theta, nu, w1, w2, eps):
    return theta ** (nu - 1.0) * (jnp.exp(-w1 * theta) + eps * jnp.exp(-w2 * theta))


#: relative width ε of the smoothed ring: −ln|1 − θ/θ_em| → −½ ln((1 − θ/θ_em)² + ε²) [M]. The
#: exact log spike (and any floor on it) makes the likelihood kinked where the ring crosses a
#: telescope or a node of the lateral convolution, and the fits stall there (measured: 26 of 64
#: joint KM2A+WFCTA fits at MAX_ITER with a floored spike); ε = 0.1 smears the ring over
#: ±0.1 θ_em (≈ 0.1°), less than the electrons' lateral spread does.
ADS_RING_WIDTH = 0.1
_U_LEFT = (np.arange(512) + 0.5) / 512
#: shape of the level inside the Cherenkov cone, π·(c + (1 − c)(θ/θ_em)^p) with p = 2 [M]: the
#: constant π of ADS's form below θ_em (c = 1) gives too much light on the axis against CORSIKA
#: 100–200 GeV photons (docs/cherenkov_light.md); c (``WFCTAPhysics.cone_inside_level``) is
#: fitted to CORSIKA, p only makes the level continuous at the ring.
ADS_INSIDE_POWER = 2.0


def _soft_log(x, width):
    """−½ ln(x² + ε²): −ln|x| smoothed at x = 0 over ε."""
    return -0.5 * jnp.log(x * x + width * width)


def _inside_level(u, level, power):
    """Level of the distribution inside the cone, in units of ADS's π: level + (1 − level)·u^p
    at u = θ/θ_em ∈ [0, 1] (1 at the ring, so continuous there; ``level`` = 1 is ADS)."""
    return np.pi * (level + (1.0 - level) * u ** power)


def _ads_setup(height_m, s, atm, is_gamma, energy_tev, ring_width=ADS_RING_WIDTH,
               inside_level=1.0, inside_power=ADS_INSIDE_POWER):
    """Parameters, θ_em, K(θ_em) and the normalisation, at the shape of (height, s)."""
    n = atmosphere.refractive_index(height_m, atm)
    nu, w1, w2, eps = ads_parameters(n - 1.0, s, is_gamma, energy_tev)
    tem = jnp.arccos(1.0 / n)
    k_em = _ads_k(tem, nu, w1, w2, eps)
    # below θ_em: ∫ (c(u) + L(1 − θ/θ_em)) sin θ dθ / sin θ_em ≈ θ_em ∫₀¹ (c(u) + L(1 − u)) u du
    # (sin θ ≈ θ; c = π: θ_em (π/2 + 3/4) for the exact log), midpoint rule on 512 points
    u_int = jnp.mean((_inside_level(_U_LEFT, inside_level, inside_power)
                      - 0.5 * np.log((1.0 - _U_LEFT) ** 2 + ring_width ** 2)) * _U_LEFT)
    left = k_em * tem ** 2 / jnp.sin(tem) * u_int
    t_max = jnp.sqrt(1.0 - tem / ADS_MAX_THETA)[..., None]
    t = 0.5 * (_GL_T + 1.0) * t_max
    th = tem[..., None] / (1.0 - t * t)
    f = (_ads_k(th, nu[..., None], w1[..., None], w2[..., None], jnp.asarray(eps)[..., None])
         * (np.pi + _soft_log(t * t, ring_width)) * 2.0 * t * tem[..., None] / (1.0 - t * t) ** 2)
    right = jnp.sum(0.5 * _GL_W * t_max * f, -1)
    return (nu, w1, w2, eps), tem, k_em, left + right, ring_width, inside_level, inside_power


def _ads_eval(beta, setup, per_sr):
    (nu, w1, w2, eps), tem, k_em, norm, width, level, power = setup
    r = beta / tem
    b_hi = jnp.maximum(beta, tem)
    hi = _ads_k(b_hi, nu, w1, w2, eps) * (np.pi + _soft_log(1.0 - tem / b_hi, width))
    log_lo = _inside_level(jnp.clip(r, 0.0, 1.0), level, power) + _soft_log(1.0 - r, width)
    if per_sr:
        lo = k_em * log_lo / (2.0 * np.pi * jnp.sin(tem))
        hi = hi / (2.0 * np.pi * jnp.maximum(jnp.sin(beta), 1e-7))
    else:
        lo = k_em * log_lo * jnp.sin(beta) / jnp.sin(tem)
    out = jnp.where(r < 1.0, lo, hi) / norm
    return jnp.where(beta <= ADS_MAX_THETA, out, 0.0)


def angular_pdf_ads(beta, height_m, s, atm=None, is_gamma=1.0, energy_tev=1.0,
                    ring_width=ADS_RING_WIDTH, inside_level=1.0, inside_power=ADS_INSIDE_POWER):
    """dN/dβ [1/rad] of Arbeletche & de Souza, normalised to 1 on 0–60°, the ring's log spike
    smoothed over ``ring_width`` (:data:`ADS_RING_WIDTH`). The parameters and the
    normalisation are computed at the shape of (height_m, s): give those the slices' shape
    and let β broadcast (e.g. h (K, 1), β (K, M))."""
    return _ads_eval(beta, _ads_setup(height_m, s, atm, is_gamma, energy_tev, ring_width,
                                      inside_level, inside_power), per_sr=False)


def angular_pdf_ads_per_sr(beta, height_m, s, atm=None, is_gamma=1.0, energy_tev=1.0,
                           ring_width=ADS_RING_WIDTH, inside_level=1.0,
                           inside_power=ADS_INSIDE_POWER):
    """dN/dΩ [1/sr] of Arbeletche & de Souza (finite on the axis, ring at θ_em); the level
    inside the cone scaled by ``inside_level`` (see :data:`ADS_INSIDE_POWER`)."""
    return _ads_eval(beta, _ads_setup(height_m, s, atm, is_gamma, energy_tev, ring_width,
                                      inside_level, inside_power), per_sr=True)


class Transmission(NamedTuple):
    """Atmospheric transmission parameters (PHYSICS.md §8b).

    rayleigh_length : Λ_R [g/cm²] at ``rayleigh_lambda_nm``, 1645 at 350 nm [C]
    aerosol_scale_height_m : H_A, 1200 m [M];  aerosol_length_m : L_A at 350 nm, 20 km [M]
    angstrom : Ångström exponent of the aerosol optical depth, 1.0 [M]
    ground_m : height of the ground for the aerosol layer [m a.s.l.]
    """

    rayleigh_length: float = 1645.0
    rayleigh_lambda_nm: float = 350.0
    aerosol_scale_height_m: float = 1200.0
    aerosol_length_m: float = 20000.0
    angstrom: float = 1.0
    ground_m: float = 4410.0


def transmission(h_emit, h_tel, cos_zeta, weights, params: Transmission = Transmission(),
                 atm=None):
    """Wavelength-averaged transmission from an emission height to a telescope.

    h_emit, h_tel : [m a.s.l.];  cos_zeta : cosine of the line of sight's zenith angle
    weights : (8,) relative photon weights on :data:`WAVELENGTH_GRID_NM` (spectrum × efficiency,
        summing to 1)
    """
    lam = jnp.asarray(WAVELENGTH_GRID_NM)
    cz = jnp.maximum(cos_zeta, 0.05)
    dx = jnp.abs(atmosphere.vertical_depth(h_tel, atm) - atmosphere.vertical_depth(h_emit, atm)) / cz
    tau_r = (dx / params.rayleigh_length)[..., None] * (params.rayleigh_lambda_nm / lam) ** 4
    ha = params.aerosol_scale_height_m
    d1 = jnp.maximum(jnp.minimum(h_emit, h_tel) - params.ground_m, 0.0)
    d2 = jnp.maximum(jnp.maximum(h_emit, h_tel) - params.ground_m, 0.0)
    tau_a0 = ha / params.aerosol_length_m * (jnp.exp(-d1 / ha) - jnp.exp(-d2 / ha)) / cz
    tau_a = tau_a0[..., None] * (lam / 350.0) ** (-params.angstrom)
    return jnp.sum(weights * jnp.exp(-tau_r - tau_a), axis=-1)
