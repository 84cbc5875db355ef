"""Lateral distributions: electromagnetic (NKG-type) and muon (Greisen-type), and muon numbers.

Each density is a kernel for ONE distance r (and one shower); batching over detectors or events
is the caller's ``vmap``. All functions are pure, jit-, grad- and vmap-safe, work in float32 and
float64 (the output follows the dtype of the array arguments) and are finite everywhere: the
distance is floored at ``r_min`` (the densities are integrable but singular at r = 0), the ages
are clipped into the range where the normalisation exists, and logarithms are guarded with the
double-``where`` idiom.

Units (canonical, see DESIGN.md): distances in the shower plane r, r_m, r0 in m; densities in
particles (or muons) per m² of shower-plane area; sizes N_size, N_μ dimensionless; energies as
``log10_energy`` = log10(E/GeV).

All normalisations follow from the Beta-function identity (PHYSICS.md §6.1 [D])

.. math::

    \\int_0^\\infty x^{a-1}(1+x)^{-a-b}\\,dx = B(a, b),

so that ∫ρ 2πr dr equals the size; partial integrals are regularised incomplete Beta functions
I_y(a, b) with y = x/(1 + x).

References: Kamata & Nishimura, Prog. Theor. Phys. Suppl. 6 (1958) 93; Greisen, Ann. Rev. Nucl.
Sci. 10 (1960) 63 (NKG and muon LDF); LHAASO KM2A G4KM2A reconstruction code (modified NKG, [U]);
Matthews, Astropart. Phys. 22 (2005) 387 (Heitler–Matthews muon number); PHYSICS.md §6.1, §6.2,
§7.3.
"""
from __future__ import annotations

import math

import jax.numpy as jnp
from jax.scipy.special import betainc, betaln, gammaln

__all__ = [
    "nkg_normalisation",
    "nkg_density",
    "modified_nkg_normalisation",
    "modified_nkg_density",
    "greisen_muon_normalisation",
    "greisen_muon_density",
    "annulus_fraction",
    "muon_number",
]

_TWO_PI = 2.0 * math.pi
_LN10 = math.log(10.0)

#: Margin keeping the age strictly inside the range where the NKG normalisation exists.
_AGE_EPS = 1e-6


def _log_ratio(r, scale, r_min):
    """log(max(r, r_min)/scale); finite with finite gradients for any r."""
    r_safe = jnp.where(r > r_min, r, r_min)
    return jnp.log(r_safe / scale), r_safe / scale


def nkg_normalisation(s, r_m=136.0):
    r"""Normalisation C(s) of the classic NKG function [1/m²].

    .. math::

        C(s) = \frac{\Gamma(4.5 - s)}{2\pi r_m^2\,\Gamma(s)\,\Gamma(4.5 - 2s)}

    so that ∫ρ 2πr dr = N_size (PHYSICS.md §6.1 [D]; Greisen 1960; Kamata & Nishimura 1958).
    Valid for 0 < s < 2.25; s is clipped into that open interval (C → 0 at both ends).
    Computed with ``gammaln`` for stability.

    Parameters
    ----------
    s : array_like, shape ()
        Lateral age [dimensionless].
    r_m : array_like, shape ()
        Molière radius [m]; default 136 m is an unconfirmed assumption ([M], PHYSICS §6.1:
        r_M = 9.6 g/cm²/ρ two radiation lengths above 4410 m).

    Returns
    -------
    c : jax.Array, shape ()
        [1/m²].
    """
    s = jnp.clip(s, _AGE_EPS, 2.25 - _AGE_EPS)
    log_c = gammaln(4.5 - s) - gammaln(s) - gammaln(4.5 - 2.0 * s)
    return jnp.exp(log_c) / (_TWO_PI * r_m * r_m)


def nkg_density(r, n_size, s, r_m=136.0, r_min=1e-6):
    r"""Classic NKG electron lateral density [particles/m²].

    .. math::

        \rho(r) = N_\mathrm{size}\,C(s)\left(\frac{r}{r_m}\right)^{s-2}
                  \left(1 + \frac{r}{r_m}\right)^{s-4.5}

    with C(s) from :func:`nkg_normalisation` (PHYSICS.md §6.1; Kamata & Nishimura 1958; Greisen
    1960). Valid for 0 < s < 2.25 (the age is clipped into that range in C(s) only).

    Parameters
    ----------
    r : array_like, shape ()
        Distance from the axis in the shower plane [m].
    n_size : array_like, shape ()
        Shower size N_size [particles].
    s : array_like, shape ()
        Lateral age [dimensionless].
    r_m : array_like, shape ()
        Molière radius [m]; default 136 m is an unconfirmed assumption ([M], PHYSICS §6.1).
    r_min : float
        Floor on r [m], > 0: for r < r_min the density is ρ(r_min) (it is singular but
        integrable at r = 0). Values at r ≥ r_min are exact; the fraction of N_size inside
        1e-6 m is < 1e-4 for s ≥ 0.6.

    Returns
    -------
    rho : jax.Array, shape ()
        Density [particles/m²].
    """
    log_x, x = _log_ratio(r, r_m, r_min)
    log_shape = (s - 2.0) * log_x + (s - 4.5) * jnp.log1p(x)
    return n_size * nkg_normalisation(s, r_m) * jnp.exp(log_shape)


def modified_nkg_normalisation(s, r_m=136.0):
    r"""Normalisation C(s) of KM2A's modified NKG function [1/m²].

    .. math::

        C(s) = \frac{\Gamma(4.5 - s)}{2\pi r_m^2\,\Gamma(s - 0.5)\,\Gamma(5 - 2s)}

    (PHYSICS.md §6.1 [U: ``G4KM2A_Reconstruction.cc``], derived [D] from the Beta identity).
    Valid for 0.5 < s < 2.5; s is clipped into that open interval.

    Parameters
    ----------
    s : array_like, shape ()
        Lateral age of the modified form [dimensionless].
    r_m : array_like, shape ()
        Molière radius [m]; default 136 m is an unconfirmed assumption ([M], PHYSICS §6.1).

    Returns
    -------
    c : jax.Array, shape ()
        [1/m²].
    """
    s = jnp.clip(s, 0.5 + _AGE_EPS, 2.5 - _AGE_EPS)
    log_c = gammaln(4.5 - s) - gammaln(s - 0.5) - gammaln(5.0 - 2.0 * s)
    return jnp.exp(log_c) / (_TWO_PI * r_m * r_m)


def modified_nkg_density(r, n_size, s, r_m=136.0, r_min=1e-6):
    r"""KM2A modified NKG electron lateral density [particles/m²].

    .. math::

        \rho(r) = N_\mathrm{size}\,C(s)\left(\frac{r}{r_m}\right)^{s-2.5}
                  \left(1 + \frac{r}{r_m}\right)^{s-4.5}

    with C(s) from :func:`modified_nkg_normalisation` (PHYSICS.md §6.1; the form is [U], its use
    by KM2A and r_m = 136 m are [M], PHYSICS §9.3). The age s of this form is not the
    longitudinal age (PHYSICS §6.1). Valid for 0.5 < s < 2.5.

    Parameters
    ----------
    r : array_like, shape ()
        Distance from the axis in the shower plane [m].
    n_size : array_like, shape ()
        Shower size [particles].
    s : array_like, shape ()
        Lateral age [dimensionless].
    r_m : array_like, shape ()
        Molière radius [m]; default 136 m is an unconfirmed assumption ([M]).
    r_min : float
        Floor on r [m], > 0: for r < r_min the density is ρ(r_min). Values at r ≥ r_min are
        exact. Note the modified form is very peaked for s → 0.5: the fraction of N_size
        inside r scales as (r/r_m)^(s−0.5); inside 1e-6 m it is 1.6e-4 at s = 1.0 but 3 % at
        s = 0.7 and 18 % at s = 0.6 — a property of the function, not of the floor.

    Returns
    -------
    rho : jax.Array, shape ()
        Density [particles/m²].
    """
    log_x, x = _log_ratio(r, r_m, r_min)
    log_shape = (s - 2.5) * log_x + (s - 4.5) * jnp.log1p(x)
    return n_size * modified_nkg_normalisation(s, r_m) * jnp.exp(log_shape)


def greisen_muon_normalisation(r0=320.0, inner_index=0.75, outer_index=2.5):
    r"""Normalisation C of the Greisen muon lateral density [1/m²].

    .. math::

        C = \frac{1}{2\pi r_0^2\,B(2 - a,\ a + b - 2)}
          = \frac{\Gamma(2.5)}{2\pi r_0^2\,\Gamma(1.25)^2}\ \ (a = 0.75,\ b = 2.5)
          = 0.25752 / r_0^2

    (PHYSICS.md §6.2 [D]; Greisen, Ann. Rev. Nucl. Sci. 10 (1960) 63). Requires a < 2 and
    a + b > 2.

    Parameters
    ----------
    r0 : array_like, shape ()
        Muon scale radius [m]; default 320 m is an unconfirmed assumption ([M]).
    inner_index : array_like, shape ()
        a, the inner slope (r/r0)^(−a); default 0.75 ([M], unconfirmed assumption).
    outer_index : array_like, shape ()
        b, the outer slope (1 + r/r0)^(−b); default 2.5 ([M], unconfirmed assumption).

    Returns
    -------
    c : jax.Array, shape ()
        [1/m²].
    """
    p = 2.0 - inner_index
    q = inner_index + outer_index - 2.0
    return jnp.exp(-betaln(p, q)) / (_TWO_PI * r0 * r0)


def greisen_muon_density(r, n_mu, r0=320.0, inner_index=0.75, outer_index=2.5, r_min=1e-6):
    r"""Greisen muon lateral density [muons/m²].

    .. math::

        \rho_\mu(r) = N_\mu\,C\left(\frac{r}{r_0}\right)^{-a}\left(1 + \frac{r}{r_0}\right)^{-b},
        \qquad a = 0.75,\ b = 2.5,\ r_0 = 320\ \mathrm{m}

    with C from :func:`greisen_muon_normalisation`, so that ∫ρ_μ 2πr dr = N_μ over the whole
    plane (PHYSICS.md §6.2; Greisen 1960). r0, a and b are [M] (the LDF used by KM2A is not
    confirmed, PHYSICS §9.3): unconfirmed assumptions exposed as parameters. N_μ is the total
    muon number of the LDF, not an annulus count (see :func:`annulus_fraction`).

    Parameters
    ----------
    r : array_like, shape ()
        Distance from the axis in the shower plane [m].
    n_mu : array_like, shape ()
        Total muon number [muons].
    r0 : array_like, shape ()
        Scale radius [m] (320, [M]).
    inner_index, outer_index : array_like, shape ()
        a and b (0.75, 2.5, [M]).
    r_min : float
        Floor on r [m], > 0: for r < r_min the density is ρ(r_min) (singular as r^(−a) at 0).

    Returns
    -------
    rho : jax.Array, shape ()
        Density [muons/m²].
    """
    log_x, x = _log_ratio(r, r0, r_min)
    log_shape = -inner_index * log_x - outer_index * jnp.log1p(x)
    return n_mu * greisen_muon_normalisation(r0, inner_index, outer_index) * jnp.exp(log_shape)


def annulus_fraction(r1, r2, r0=320.0, inner_index=0.75, outer_index=2.5):
    r"""Fraction of the Greisen muon number between r1 and r2 in the shower plane.

    .. math::

        \frac{1}{N_\mu}\int_{r_1}^{r_2}\rho_\mu\,2\pi r\,dr = I_{y_2}(p, q) - I_{y_1}(p, q),
        \quad y_i = \frac{r_i}{r_i + r_0},\ p = 2 - a,\ q = a + b - 2

    with I the regularised incomplete Beta function (PHYSICS.md §6.2 [D]: 34.2 % for 15–200 m,
    28.7 % for 40–200 m, 97.4 % beyond 15 m at r0 = 320 m). Gradients are available with
    respect to r1, r2 and r0 (``jax.scipy.special.betainc`` differentiates in its last
    argument only, so not with respect to the indices). Negative radii are treated as 0.

    Parameters
    ----------
    r1, r2 : array_like, shape ()
        Inner and outer radius [m]; use ``jnp.inf`` for an open annulus. r2 < r1 gives a
        negative fraction.
    r0 : array_like, shape ()
        Scale radius [m] (320, [M]).
    inner_index, outer_index : float
        a and b (0.75, 2.5, [M]).

    Returns
    -------
    fraction : jax.Array, shape ()
        [dimensionless].
    """
    p = 2.0 - inner_index
    q = inner_index + outer_index - 2.0

    def cdf(r):
        r = jnp.maximum(r, 0.0)
        finite = jnp.isfinite(r)
        r_safe = jnp.where(finite, r, 0.0)
        y = jnp.where(finite, r_safe / (r_safe + r0), 1.0)
        return betainc(p, q, y)

    return cdf(r2) - cdf(r1)


def muon_number(log10_energy, mass_number, beta=0.92, xi_c_gev=20.0, gamma_muon_fraction=0.1):
    r"""Mean total muon number from the Heitler–Matthews model.

    .. math::

        N_\mu(A, E) = A\left(\frac{E}{A\,\xi_c^\pi}\right)^{\beta}
                    = A^{1-\beta}\,(E/\xi_c^\pi)^{\beta}

    (PHYSICS.md §7.3; Matthews, Astropart. Phys. 22 (2005) 387; β = 0.92 [C, Gora et al.,
    PoS(ICRC2023)243]; ξ_c^π = 20 GeV is an unconfirmed assumption [M]: it sets the absolute
    scale only to an order of magnitude, so calibrate it (or fit ``log_muon_scale``) against
    simulation. N_μ(Fe)/N_μ(p) = 56^(1−β).

    Photons (``mass_number`` < 0.5, use 0): the model does not apply (muons come only from
    photoproduction); N_μ is taken as ``gamma_muon_fraction`` × the proton value at the same
    energy, with default 0.1 — an unconfirmed assumption [M] (i.e. ``log_muon_scale`` =
    ln 0.1 ≈ −2.3). For the photon branch A = 1 is used inside the formula (double ``where``),
    so A = 0 is safe and gradients are finite; for A ≥ 0.5 the formula is used as is (smooth
    in A, no kink at the proton).

    Parameters
    ----------
    log10_energy : array_like, shape ()
        log10(E/GeV) of the primary.
    mass_number : array_like, shape ()
        A (1 proton, 4 He, 14 CNO, 56 Fe, 0 photon); float so that it can be traced.
    beta : array_like, shape ()
        Heitler–Matthews exponent β (0.92).
    xi_c_gev : array_like, shape ()
        Pion critical energy ξ_c^π [GeV] (20, [M]).
    gamma_muon_fraction : array_like, shape ()
        Photon muon number as a fraction of a proton's (0.1, [M]).

    Returns
    -------
    n_mu : jax.Array, shape ()
        Mean muon number [muons].
    """
    is_gamma = mass_number < 0.5
    a_safe = jnp.where(is_gamma, 1.0, mass_number)  # double where: log(A) never sees A < 0.5
    log_n = (1.0 - beta) * jnp.log(a_safe) + beta * (log10_energy * _LN10 - jnp.log(xi_c_gev))
    n_hadron = jnp.exp(log_n)
    return jnp.where(is_gamma, gamma_muon_fraction * n_hadron, n_hadron)
