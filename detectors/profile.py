"""Longitudinal shower development: Gaisser–Hillas / USP profiles, shower age, N_max(E).

Every function here is a pure kernel for ONE depth (or one shower); batching is the caller's
``vmap``. All functions are jit-, grad- and vmap-safe, work in float32 and float64 (the output
follows the dtype of the array arguments), and are finite everywhere: logarithms and negative
bases are guarded with the double-``where`` idiom so gradients stay finite outside the physical
domain too.

Units (canonical, see DESIGN.md): depth X, Xmax, X0, lambda, L in g/cm² (slant depth along the
axis); energies as ``log10_energy`` = log10(E/GeV); particle numbers dimensionless; energy
deposit in MeV/(g/cm²).

References are to ``shared/PHYSICS.md`` sections and to the original papers:

- Gaisser & Hillas, Proc. 15th ICRC (Plovdiv) 8 (1977) 353 — GH profile (PHYSICS §7.4).
- Andringa, Conceição & Pimenta, Astropart. Phys. 34 (2011) 360 — USP (L, R) form;
  Pierre Auger Collab., JCAP 03 (2019) 018 (arXiv:1811.04660) — measured L, R (PHYSICS §7.4).
- Nerling et al., Astropart. Phys. 24 (2006) 241 (astro-ph/0506729) — mean energy deposit per
  particle alpha(s) (PHYSICS §7.4).
- Greisen, Prog. Cosmic Ray Physics 3 (1956) 1 — photon-initiated profile (PHYSICS §8b).
- Constants and the L, R energy dependence as coded in ``JaimeRosado/ShowerModel``
  ``showermodel/profile.py`` (PHYSICS §7.4, §8b).
"""
from __future__ import annotations

import math

import jax.numpy as jnp

__all__ = [
    "gaisser_hillas",
    "usp_profile",
    "usp_shape_params",
    "gh_shape_params",
    "energy_per_particle_gev",
    "n_max_from_energy",
    "shower_age",
    "mean_energy_deposit_per_particle",
    "energy_deposit",
    "gamma_xmax",
    "greisen_profile",
    "RADIATION_LENGTH_AIR",
    "CRITICAL_ENERGY_GEV",
]

#: Radiation length of air [g/cm²] as used in ShowerModel (PHYSICS §8b; PDG value 36.62).
RADIATION_LENGTH_AIR = 36.7
#: Critical energy of air [GeV] in the Rossi/Greisen convention (PHYSICS §8b).
CRITICAL_ENERGY_GEV = 0.081

# Nerling et al. (2006) alpha(s) coefficients (PHYSICS §7.4) [C]:
# alpha(s) = c1 / (c2 + s)^c3 + c4 + c5 * s   [MeV/(g/cm²)]
_NERLING = (3.90883, 1.05301, 9.91717, 2.41715, 0.13180)


def _log10_energy_ev(log10_energy):
    """lg(E/eV) from log10(E/GeV)."""
    return log10_energy + 9.0


def gaisser_hillas(X, xmax, n_max, x0, lam):
    r"""Gaisser–Hillas longitudinal profile N(X) (charged particles).

    .. math::

        N(X) = N_\mathrm{max}\left(\frac{X - X_0}{X_\mathrm{max} - X_0}\right)^{(X_\mathrm{max}-X_0)/\lambda}
               \exp\!\left(\frac{X_\mathrm{max} - X}{\lambda}\right),\qquad X > X_0,

    and N(X) = 0 for X ≤ X₀ (PHYSICS.md §7.4; Gaisser & Hillas, Proc. 15th ICRC 8 (1977) 353).
    Computed in log space; the zero branch is selected with a double ``where`` so the value and
    its gradients are finite everywhere (for the usual shapes, (Xmax − X₀)/λ > 1, N and dN/dX
    go to zero continuously at X₀). The peak is at X = Xmax with value N_max.

    Parameters
    ----------
    X : array_like, shape ()
        Slant depth along the shower axis [g/cm²].
    xmax : array_like, shape ()
        Depth of the shower maximum [g/cm²].
    n_max : array_like, shape ()
        Number of charged particles at the maximum [dimensionless].
    x0 : array_like, shape ()
        GH shape parameter X₀ [g/cm²] (not the first-interaction depth; may be negative).
        Must satisfy x0 < xmax; otherwise the profile is returned as 0.
    lam : array_like, shape ()
        GH shape parameter λ [g/cm²], > 0.

    Returns
    -------
    n : jax.Array, shape ()
        Number of charged particles at depth X [dimensionless].
    """
    width = xmax - x0
    ok_shape = (width > 0) & (lam > 0)
    width_safe = jnp.where(ok_shape, width, 1.0)
    lam_safe = jnp.where(ok_shape, lam, 1.0)
    y = X - x0
    pos = ok_shape & (y > 0)
    y_safe = jnp.where(pos, y, width_safe)  # ratio 1 on the unused branch
    log_n = (width_safe / lam_safe) * jnp.log(y_safe / width_safe) + (xmax - X) / lam_safe
    return jnp.where(pos, n_max * jnp.exp(log_n), 0.0)


def usp_profile(X, xmax, n_max, L, R):
    r"""Universal shower profile (USP): Gaisser–Hillas in the (L, R) parameterisation.

    .. math::

        N(X) = N_\mathrm{max}\left(1 + \frac{R X'}{L}\right)^{1/R^2}
               \exp\!\left(-\frac{X'}{L R}\right),\qquad X' = X - X_\mathrm{max},

    for 1 + R X'/L > 0 and 0 otherwise (PHYSICS.md §7.4; Andringa et al., Astropart. Phys. 34
    (2011) 360; Auger, JCAP 03 (2019) 018). Identical to :func:`gaisser_hillas` with
    λ = L·R and X₀ = Xmax − L/R.

    Parameters
    ----------
    X : array_like, shape ()
        Slant depth [g/cm²].
    xmax : array_like, shape ()
        Depth of maximum [g/cm²].
    n_max : array_like, shape ()
        Particles at maximum [dimensionless].
    L : array_like, shape ()
        USP width parameter [g/cm²], > 0 (σ of the Gaussian the profile tends to as R → 0).
    R : array_like, shape ()
        USP asymmetry parameter [dimensionless], > 0.

    Returns
    -------
    n : jax.Array, shape ()
        Number of charged particles at depth X [dimensionless].
    """
    ok_shape = (L > 0) & (R > 0)
    L_safe = jnp.where(ok_shape, L, 1.0)
    R_safe = jnp.where(ok_shape, R, 1.0)
    xp = X - xmax
    z = 1.0 + R_safe * xp / L_safe
    pos = ok_shape & (z > 0)
    z_safe = jnp.where(pos, z, 1.0)
    log_n = jnp.log(z_safe) / R_safe**2 - xp / (L_safe * R_safe)
    return jnp.where(pos, n_max * jnp.exp(log_n), 0.0)


def usp_shape_params(log10_energy, L_ref=226.2, L_slope=7.1, R_ref=0.26, R_slope=-0.04,
                     lg_ref_ev=17.9, R_min=1e-3):
    r"""USP shape parameters (L, R) for hadron showers as functions of energy.

    .. math::

        L = L_\mathrm{ref} + L_\mathrm{slope}\,(\lg(E/\mathrm{eV}) - 17.9),\qquad
        R = R_\mathrm{ref} + R_\mathrm{slope}\,(\lg(E/\mathrm{eV}) - 17.9)

    with defaults L = 226.2 + 7.1·Δ g/cm², R = 0.26 − 0.04·Δ ("typical values according to
    Auger data", PHYSICS.md §7.4/§8b [C, ShowerModel ``profile.py``]; measurement: Auger, JCAP 03
    (2019) 018, 10^17.8–10^19.5 eV). At LHAASO energies (10^13–10^17 eV) this is an
    *extrapolation* outside the measured range. L and R are floored at ``R_min`` (R) and 1 g/cm²
    (L) to stay in the valid domain far outside it.

    Parameters
    ----------
    log10_energy : array_like, shape ()
        log10(E/GeV) of the primary.
    L_ref, L_slope : float
        L at lg(E/eV) = ``lg_ref_ev`` [g/cm²] and its slope [g/cm² per decade].
    R_ref, R_slope : float
        R at lg(E/eV) = ``lg_ref_ev`` [dimensionless] and its slope [per decade].
    lg_ref_ev : float
        Reference lg(E/eV) (17.9).
    R_min : float
        Lower floor for R [dimensionless].

    Returns
    -------
    L : jax.Array, shape ()
        [g/cm²].
    R : jax.Array, shape ()
        [dimensionless].
    """
    d = _log10_energy_ev(log10_energy) - lg_ref_ev
    L = jnp.maximum(L_ref + L_slope * d, 1.0)
    R = jnp.maximum(R_ref + R_slope * d, R_min)
    return L, R


def gh_shape_params(log10_energy, **usp_kwargs):
    r"""Gaisser–Hillas shape (Xmax − X₀, λ) from the energy-dependent USP (L, R).

    .. math::

        \lambda = L R,\qquad X_\mathrm{max} - X_0 = L / R

    with L(E), R(E) from :func:`usp_shape_params` (PHYSICS.md §7.4 inverse relations [D], §8b:
    at 10^17.9 eV λ = 58.8 g/cm², X₀ = Xmax − 870; at 10^15 eV λ = 77.3, Xmax − 547; at 10^14 eV
    λ = 82.6, Xmax − 477 g/cm²).

    Parameters
    ----------
    log10_energy : array_like, shape ()
        log10(E/GeV) of the primary.
    **usp_kwargs
        Passed to :func:`usp_shape_params` (reference values and slopes).

    Returns
    -------
    x0_offset : jax.Array, shape ()
        Xmax − X₀ [g/cm²]; the GH X₀ of a shower is ``xmax - x0_offset``.
    lam : jax.Array, shape ()
        GH λ [g/cm²].
    """
    L, R = usp_shape_params(log10_energy, **usp_kwargs)
    return L / R, L * R


def energy_per_particle_gev(log10_energy, is_gamma=0.0, hadron_gev_per_particle=1.6,
                            gamma_coeffs=(0.90, 0.105, -0.005)):
    r"""Primary energy per charged particle at the shower maximum, E₀/N_max [GeV].

    Hadrons: a constant, E₀/N_max = ``hadron_gev_per_particle`` = 1.6 GeV — an [M]/[D] value
    (unconfirmed assumption; PHYSICS.md §8b: (E_cal/N_max)/(1 − f_inv) ≈ 1.5–1.7 GeV at knee
    energies with an assumed invisible-energy fraction f_inv ≈ 10–20 %).

    Photons: PHYSICS.md §8b gives E₀/N_max = 0.90, 1.00, 1.09, 1.17 GeV at 1, 10, 100, 1000 TeV
    (calorimetrically normalised Greisen profile [D]). With t = log10(E/TeV) these four values
    lie exactly on the quadratic

    .. math::

        (E_0/N_\mathrm{max})_\gamma = 0.90 + 0.105\,t - 0.005\,t^2\ \mathrm{GeV},

    used here (``gamma_coeffs``); outside 1 TeV–1 PeV it is an extrapolation (it stays close to
    the Greisen-based trend ≈ 0.291·sqrt(ln(E₀/E_c)) GeV between 10 GeV and 10 PeV).

    The two are blended linearly by the float flag ``is_gamma`` (1 = photon, 0 = hadron), so the
    function stays jit/vmap-safe without Python control flow on traced values.

    Parameters
    ----------
    log10_energy : array_like, shape ()
        log10(E/GeV).
    is_gamma : array_like, shape ()
        1.0 for a photon primary, 0.0 for a hadron (values in between interpolate).
    hadron_gev_per_particle : float
        Hadron E₀/N_max [GeV]; default 1.6 is an unconfirmed assumption ([M]).
    gamma_coeffs : tuple of 3 floats
        Quadratic coefficients (c0, c1, c2) in t = log10(E/TeV) [GeV].

    Returns
    -------
    gev_per_particle : jax.Array, shape ()
        E₀/N_max [GeV].
    """
    t = log10_energy - 3.0
    c0, c1, c2 = gamma_coeffs
    gamma_ratio = c0 + c1 * t + c2 * t * t
    return is_gamma * gamma_ratio + (1.0 - is_gamma) * hadron_gev_per_particle


def n_max_from_energy(log10_energy, is_gamma=0.0, hadron_gev_per_particle=1.6,
                      gamma_coeffs=(0.90, 0.105, -0.005)):
    r"""Number of charged particles at the maximum from the primary energy.

    .. math::

        N_\mathrm{max} = E_0 / (E_0/N_\mathrm{max})

    with E₀/N_max from :func:`energy_per_particle_gev` (PHYSICS.md §8b). The hadron ratio
    (1.6 GeV) is an unconfirmed assumption [M]; do not use it for photons (``is_gamma=1``).

    Parameters
    ----------
    log10_energy : array_like, shape ()
        log10(E/GeV).
    is_gamma : array_like, shape ()
        1.0 photon, 0.0 hadron (float flag; differentiable blend).
    hadron_gev_per_particle : float
        Hadron E₀/N_max [GeV], default 1.6 ([M], unconfirmed assumption).
    gamma_coeffs : tuple of 3 floats
        Photon E₀/N_max quadratic in log10(E/TeV) [GeV].

    Returns
    -------
    n_max : jax.Array, shape ()
        Charged particles at the maximum [dimensionless].
    """
    ratio = energy_per_particle_gev(log10_energy, is_gamma, hadron_gev_per_particle, gamma_coeffs)
    return jnp.exp(log10_energy * math.log(10.0)) / ratio


def shower_age(X, xmax):
    r"""Longitudinal shower age.

    .. math::

        s = \frac{3X}{X + 2X_\mathrm{max}}

    (s = 1 at Xmax, → 3 as X → ∞; PHYSICS.md §8b [C, ShowerModel]; Greisen 1956). Where
    X + 2Xmax ≤ 0 (unphysical) the result is guarded to stay finite.

    Parameters
    ----------
    X : array_like, shape ()
        Slant depth [g/cm²].
    xmax : array_like, shape ()
        Depth of maximum [g/cm²].

    Returns
    -------
    s : jax.Array, shape ()
        Age [dimensionless].
    """
    den = X + 2.0 * xmax
    ok = den > 0
    den_safe = jnp.where(ok, den, 1.0)
    return jnp.where(ok, 3.0 * X / den_safe, 0.0)


def mean_energy_deposit_per_particle(s, coeffs=_NERLING):
    r"""Mean ionisation energy deposit per charged particle, α(s) [MeV/(g/cm²)].

    .. math::

        \alpha(s) = \frac{3.90883}{(1.05301 + s)^{9.91717}} + 2.41715 + 0.13180\,s

    for charged particles above 1 MeV (PHYSICS.md §7.4 [C, ShowerModel]; Nerling et al.,
    Astropart. Phys. 24 (2006) 241). The base is guarded (double ``where``) for s ≤ −1.05301.

    Parameters
    ----------
    s : array_like, shape ()
        Shower age [dimensionless].
    coeffs : tuple of 5 floats
        (c1, c2, c3, c4, c5) of α(s) = c1/(c2 + s)^c3 + c4 + c5·s.

    Returns
    -------
    alpha : jax.Array, shape ()
        [MeV/(g/cm²)].
    """
    c1, c2, c3, c4, c5 = coeffs
    base = c2 + s
    ok = base > 0.1
    base_safe = jnp.where(ok, base, 1.0)
    first = jnp.where(ok, c1 * jnp.exp(-c3 * jnp.log(base_safe)), c1 * 0.1 ** (-c3))
    return first + c4 + c5 * s


def energy_deposit(X, xmax, n_max, x0, lam):
    r"""Energy deposit profile dE/dX = α(s(X))·N(X) of a Gaisser–Hillas shower.

    .. math::

        \frac{dE}{dX}(X) = \alpha\!\left(s = \frac{3X}{X + 2X_\mathrm{max}}\right) N_\mathrm{GH}(X)

    (PHYSICS.md §7.4; Nerling et al. 2006). Integrated over X it gives the calorimetric energy
    (PHYSICS §8b: E_cal/N_max ≈ 1.29–1.51 GeV for hadron shapes at 10^14–10^19 eV).

    Parameters
    ----------
    X, xmax, n_max, x0, lam : array_like, shape ()
        As in :func:`gaisser_hillas` ([g/cm²], [g/cm²], [1], [g/cm²], [g/cm²]).

    Returns
    -------
    dedx : jax.Array, shape ()
        Energy deposit [MeV/(g/cm²)].
    """
    return mean_energy_deposit_per_particle(shower_age(X, xmax)) * gaisser_hillas(
        X, xmax, n_max, x0, lam)


def gamma_xmax(log10_energy, x0_rad=RADIATION_LENGTH_AIR, e_c_gev=CRITICAL_ENERGY_GEV):
    r"""Depth of maximum of a photon shower in Greisen's approximation.

    .. math::

        X_\mathrm{max} = X_0 \ln(E_0 / E_c)

    with X₀ = 36.7 g/cm², E_c = 81 MeV (PHYSICS.md §8b [C, ShowerModel]; Greisen 1956):
    346, 430, 515, 599 g/cm² at 1, 10, 100, 1000 TeV. This is the mean of the simple
    cascade model, without first-interaction fluctuations or the LPM effect (negligible
    below ~10 EeV in air).

    Parameters
    ----------
    log10_energy : array_like, shape ()
        log10(E/GeV).
    x0_rad : float
        Radiation length of air [g/cm²] (36.7; PDG 36.62).
    e_c_gev : float
        Critical energy [GeV] (0.081).

    Returns
    -------
    xmax : jax.Array, shape ()
        [g/cm²].
    """
    return x0_rad * (log10_energy * math.log(10.0) - math.log(e_c_gev))


def greisen_profile(X, log10_energy, x0_rad=RADIATION_LENGTH_AIR, e_c_gev=CRITICAL_ENERGY_GEV):
    r"""Greisen longitudinal profile of a photon-initiated shower.

    .. math::

        N(X) = \frac{0.31}{\sqrt{\beta_0}}\exp\!\left[t\left(1 - \tfrac{3}{2}\ln s\right)\right],
        \quad t = X/X_0,\ \beta_0 = \ln(E_0/E_c),\ s = \frac{3t}{t + 2\beta_0}

    (PHYSICS.md §8b [C, ShowerModel ``profile.py``]; Greisen, Prog. Cosmic Ray Phys. 3 (1956) 1).
    The maximum is at X = X₀β₀ (:func:`gamma_xmax`) with N = 0.31/sqrt(β₀)·E₀/E_c. This is the
    raw Greisen normalisation; ShowerModel rescales N so that ∫α(s)N dX = E₀, which is what
    :func:`n_max_from_energy` with ``is_gamma=1`` encodes (multiply by
    ``n_max_from_energy(...)/greisen_profile(gamma_xmax(...), ...)`` to get it).

    For X ≤ 0 the profile is 0 (the X → 0⁺ limit is 0.31/sqrt(β₀) < 0.11 particles); β₀ is
    floored at 1e-3 (E₀ ≲ E_c is outside the model).

    Parameters
    ----------
    X : array_like, shape ()
        Slant depth [g/cm²] from the top of the atmosphere (first interaction at X = 0).
    log10_energy : array_like, shape ()
        log10(E/GeV) of the photon.
    x0_rad : float
        Radiation length [g/cm²] (36.7).
    e_c_gev : float
        Critical energy [GeV] (0.081).

    Returns
    -------
    n : jax.Array, shape ()
        Charged particles at depth X [dimensionless].
    """
    beta0 = jnp.maximum(log10_energy * math.log(10.0) - math.log(e_c_gev), 1e-3)
    t = X / x0_rad
    pos = t > 0
    t_safe = jnp.where(pos, t, 1.0)
    s = 3.0 * t_safe / (t_safe + 2.0 * beta0)
    log_n = math.log(0.31) - 0.5 * jnp.log(beta0) + t_safe * (1.0 - 1.5 * jnp.log(s))
    return jnp.where(pos, jnp.exp(log_n), 0.0)
