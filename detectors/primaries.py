"""The truth generator: primaries, spectra, directions, cores, Xmax and muon-number fluctuations.

This module produces the simulation truth (``true_*`` quantities) that the detector ``simulate``
functions are driven with. It is NOT on the fitted path, so the samplers use a
``numpy.random.Generator``; only :func:`gumbel_parameters` and :func:`xmax_moments` are written in
``jax.numpy`` (jit-, vmap- and grad-safe) because fitters use them as priors.

Units and conventions
---------------------
* ``log10_energy`` of a *shower* / of the sampler ranges: log10(E / GeV) (the :class:`Shower`
  convention). The Xmax parameterisations take ``log10_energy_ev`` = log10(E / eV), as in their
  sources; the sampler converts (``+ 9``).
* depths: g/cm², slant; angles: rad; core positions: m in the array frame (see ``shower.py``);
  ``t0``: ns.
* ``mass_number``: 0 for a photon, 1 proton, 4 helium, 14 nitrogen (the CNO group), 56 iron.

Physics (references in PHYSICS.md)
----------------------------------
* Hadron Xmax: generalised Gumbel distribution of De Domenico et al., JCAP 07 (2013) 050
  (arXiv:1305.2331), PHYSICS §7.2, Table 1 coefficients [C].
* Photon Xmax: Greisen form Xmax = X0_rad ln(E/E_c) (PHYSICS §8b [C]/[D]) plus an [M] fluctuation
  model (see :func:`gamma_xmax_moments`).
* Muon number: Heitler–Matthews scaling via :func:`detectors.lateral.muon_number`
  (PHYSICS §7.3), plus an [M] Gaussian shower-to-shower fluctuation of ln N_mu.
* Spectra: pure power laws dN/dE ∝ E^gamma; directions isotropic on the sky; cores uniform on a disc.
"""
from __future__ import annotations

import math
from typing import Mapping

import jax.numpy as jnp
import numpy as np
from jax.scipy.special import digamma, polygamma

__all__ = [
    "GUMBEL_COEFFICIENTS",
    "GUMBEL_VALID_FROM_LOG10_EV",
    "MASS_NUMBERS",
    "DEFAULT_COMPOSITION",
    "X0_RADIATION_AIR",
    "CRITICAL_ENERGY_GEV",
    "mass_number_of",
    "gumbel_parameters",
    "gamma_xmax_moments",
    "xmax_moments",
    "sample_xmax",
    "sample_power_law",
    "sample_zenith",
    "sample_core",
    "sample_log_muon_scale",
    "sample_primaries",
    "shower_from_truth",
]

# ---------------------------------------------------------------------------------------------
# Constants
# ---------------------------------------------------------------------------------------------

#: Generalised-Gumbel coefficients, De Domenico et al., JCAP 07 (2013) 050, Table 1 [C], copied
#: from ``MRCWirtz/astrotools`` ``astrotools/auger.py`` via PHYSICS.md §7.2. For each model the
#: rows are, in order: mu a, mu b, mu c, sigma a, sigma b, lambda a, lambda b; each row holds the
#: coefficients of D = (1, lnA, ln²A). Fitted for 10^17–10^20 eV; below that it is extrapolation.
GUMBEL_COEFFICIENTS: dict[str, tuple[tuple[float, float, float], ...]] = {
    "EPOS-LHC": (
        (775.589, -7.047, -2.427), (57.589, -0.743, 0.214), (-0.820, -0.169, -0.027),
        (29.403, 13.553, -3.154), (0.096, -0.961, 0.150),
        (0.563, 0.711, 0.058), (0.039, 0.067, -0.004),
    ),
    "QGSJetII-04": (
        (761.383, -11.719, -1.372), (57.344, -1.731, 0.309), (-0.355, 0.273, -0.137),
        (35.221, 12.335, -2.889), (0.307, -1.147, 0.271),
        (0.673, 0.694, -0.007), (0.060, -0.019, 0.017),
    ),
    "Sibyll2.1": (
        (770.104, -15.873, -0.960), (58.668, -0.124, -0.023), (-1.423, 0.977, -0.191),
        (31.717, 1.335, -0.601), (-1.912, 0.007, 0.086),
        (0.683, 0.278, 0.012), (0.008, 0.051, 0.003),
    ),
    "QGSJetII": (
        (758.444, -10.692, -1.253), (48.892, 0.02, 0.179), (-2.346, 0.348, -0.086),
        (39.033, 7.452, -2.176), (4.390, -1.688, 0.170),
        (0.857, 0.686, -0.040), (0.179, 0.076, -0.0130),
    ),
    "EPOS1.99": (
        (780.013, -11.488, -1.906), (61.911, -0.098, 0.038), (-0.405, 0.163, -0.095),
        (28.853, 8.104, -1.924), (-0.083, -0.961, 0.215),
        (0.538, 0.524, 0.047), (0.009, 0.023, 0.010),
    ),
}

#: [D] Lowest log10(E/eV) from which each model's extrapolated Gumbel moments stay physically
#: sensible for A = 1, 4, 14, 56 (mean and rms ordered p > He > N > Fe, mean rising with energy;
#: checked on a 0.5-decade grid up to 10^19 eV by tests/test_primaries.py; 12 = 1 TeV is simply
#: the lowest energy of interest). Below it do not use the model: Sibyll2.1 under 10^14.5 eV
#: (p and He means cross, the Fe mean turns back up), old QGSJetII under 10^15.5 eV (lambda -> 0
#: and then < 0, moments blow up / NaN). The fits were made at >= 10^17 eV: everything below is
#: extrapolation (PHYSICS §7.2).
GUMBEL_VALID_FROM_LOG10_EV: dict[str, float] = {
    "EPOS-LHC": 12.0, "QGSJetII-04": 12.0, "EPOS1.99": 12.0, "Sibyll2.1": 14.5, "QGSJetII": 15.5,
}

#: Particle names -> mass number (0 = photon).
MASS_NUMBERS: dict[str, int] = {
    "gamma": 0, "photon": 0,
    "proton": 1, "p": 1, "h": 1, "hydrogen": 1,
    "helium": 4, "he": 4, "alpha": 4,
    "nitrogen": 14, "n": 14, "cno": 14,
    "iron": 56, "fe": 56,
}

#: Default knee-region mix {mass number: fraction of the flux} for ``primary="mixed"`` [M].
#: Rough reading of Hörandel's poly-gonato model near 1 PeV (H 0.3, He 0.3, CNO 0.15, Fe-group
#: 0.25; the Ne–Si group is folded into N and Fe). <lnA> = 1.68, close to LHAASO's 1.7 at 0.3 PeV
#: (PHYSICS §5.1). An assumption: pass ``composition=`` to override.
DEFAULT_COMPOSITION: dict[int, float] = {1: 0.30, 4: 0.30, 14: 0.15, 56: 0.25}

#: Radiation length of air [g/cm²] as used with the Greisen profile (ShowerModel) [C], PHYSICS §8b.
X0_RADIATION_AIR = 36.7
#: Critical energy of air [GeV] (Rossi/Greisen convention, 81 MeV) [C], PHYSICS §8b.
CRITICAL_ENERGY_GEV = 0.081
#: Photon Xmax fluctuation model defaults [M]: exponential depth of the first pair production with
#: mean free path (9/7) X0 = 47.2 g/cm², convolved with a Gaussian fluctuation of the rest of the
#: cascade of 20 g/cm² (order-of-magnitude choice; total rms 51 g/cm²).
GAMMA_CONVERSION_LENGTH = 9.0 / 7.0 * X0_RADIATION_AIR
GAMMA_SHOWER_SIGMA = 20.0
#: Muon-number fluctuation defaults [M]: rms of ln N_mu for protons, and its scaling with mass
#: sigma_A = sigma_p * A^(-exponent) (superposition of A nucleon showers; exponent 0.25 instead
#: of 0.5 because the first interactions are shared). Gammas: rms of ln N_mu (their mean muon
#: fraction is lateral.muon_number's ``gamma_muon_fraction``, 0.1 [M] there).
SIGMA_LN_MUON_PROTON = 0.17
SIGMA_LN_MUON_MASS_EXPONENT = 0.25
SIGMA_LN_MUON_GAMMA = 0.5


def mass_number_of(primary: str | int) -> int:
    """Mass number of a particle given by name (``"iron"``, ``"Fe"``, ...) or number (0 = photon)."""
    if isinstance(primary, (int, np.integer)) and not isinstance(primary, bool):
        if primary < 0:
            raise ValueError(f"mass number must be >= 0 (0 = photon), got {primary}")
        return int(primary)
    key = str(primary).strip().lower()
    if key not in MASS_NUMBERS:
        raise ValueError(
            f"unknown primary {primary!r}; use a mass number or one of {sorted(MASS_NUMBERS)}"
            " (or 'mixed' in sample_primaries)"
        )
    return MASS_NUMBERS[key]


def _coefficients(model: str) -> jnp.ndarray:
    if model not in GUMBEL_COEFFICIENTS:
        raise ValueError(f"unknown hadronic model {model!r}; choose from {list(GUMBEL_COEFFICIENTS)}")
    return jnp.asarray(GUMBEL_COEFFICIENTS[model])


# ---------------------------------------------------------------------------------------------
# Xmax: pure JAX parameterisations
# ---------------------------------------------------------------------------------------------

def gumbel_parameters(log10_energy_ev, mass_number, model: str = "EPOS-LHC"):
    """Generalised-Gumbel parameters (mu, sigma, lambda) of the hadron Xmax distribution.

    g(X) = (1/sigma) lambda^lambda / Gamma(lambda) exp[-lambda (z + e^-z)], z = (X - mu)/sigma,
    with lE = log10(E / 10^19 eV), D = (1, lnA, ln²A):
    mu = a·D + (b·D) lE + (c·D) lE², sigma = a·D + (b·D) lE, lambda = a·D + (b·D) lE.
    De Domenico et al., JCAP 07 (2013) 050, Table 1 (PHYSICS §7.2).

    Parameters
    ----------
    log10_energy_ev : array, any shape, log10(E / eV)
    mass_number : array broadcastable with it, A >= 1 (photons have no Gumbel parameters; A < 1
        is treated as A = 1 here, see :func:`xmax_moments` for photons)
    model : str (static) — one of ``GUMBEL_COEFFICIENTS``; see ``GUMBEL_VALID_FROM_LOG10_EV``
        for the energies where its extrapolation stays sensible

    Returns
    -------
    mu [g/cm²], sigma [g/cm²], lam [1] : arrays of the broadcast shape. Valid while sigma and
    lambda are positive (true for all tabulated models and masses down to ~10^12 eV).
    """
    lg = jnp.asarray(log10_energy_ev)
    a_num = jnp.asarray(mass_number)
    dtype = jnp.result_type(lg, a_num, 0.0)  # float32 inputs stay float32
    lg, a_num = lg.astype(dtype), a_num.astype(dtype)
    c = _coefficients(model).astype(dtype)
    a_safe = jnp.where(a_num >= 1.0, a_num, 1.0)
    ln_a = jnp.log(a_safe)
    d = jnp.stack([jnp.ones_like(ln_a), ln_a, ln_a * ln_a], axis=-1)  # (..., 3)
    coef = d @ c.T  # (..., 7) = c_k · D for each row k
    le = lg - 19.0
    mu = coef[..., 0] + coef[..., 1] * le + coef[..., 2] * le * le
    sigma = coef[..., 3] + coef[..., 4] * le
    lam = coef[..., 5] + coef[..., 6] * le
    return mu, sigma, lam


def gamma_xmax_moments(
    log10_energy_ev,
    x0_rad: float = X0_RADIATION_AIR,
    critical_energy_gev: float = CRITICAL_ENERGY_GEV,
    conversion_length: float = GAMMA_CONVERSION_LENGTH,
    shower_sigma: float = GAMMA_SHOWER_SIGMA,
):
    """Mean and rms of the photon-shower Xmax [g/cm²].

    mean = X0_rad ln(E / E_c) (Greisen, PHYSICS §8b [C]; 346/430/515/599 g/cm² at 1/10/100/1000 TeV).
    rms  = sqrt(lambda_conv² + sigma_sh²) [M]: the exponential depth of the first conversion
    (mean free path lambda_conv = 9/7 X0_rad = 47.2 g/cm²) convolved with a Gaussian fluctuation of
    the rest of the cascade (sigma_sh = 20 g/cm²); energy independent. No LPM effect (irrelevant
    below 10^18 eV).

    Shapes: ``log10_energy_ev`` any shape, log10(E/eV); returns two arrays of that shape.
    """
    lg = jnp.asarray(log10_energy_ev)
    lg = lg.astype(jnp.result_type(lg, 0.0))
    ln_e = (lg - 9.0) * math.log(10.0) - math.log(critical_energy_gev)
    mean = x0_rad * ln_e
    std = jnp.sqrt(conversion_length**2 + shower_sigma**2) * jnp.ones_like(mean)
    return mean, std


def xmax_moments(log10_energy_ev, mass_number, model: str = "EPOS-LHC", **gamma_kwargs):
    """Mean and standard deviation of Xmax [g/cm²] for a primary of mass A (0 = photon).

    Hadrons (A >= 1), from the generalised Gumbel (PHYSICS §7.2):
    mean = mu + sigma (ln lambda - psi(lambda)), variance = sigma² psi'(lambda).
    Photons (A = 0): :func:`gamma_xmax_moments` (``gamma_kwargs`` are passed to it).
    Pure ``jax.numpy``: jit-, vmap- and grad-safe (``model`` is static; both branches are
    evaluated and selected with ``jnp.where`` on finite values).

    Parameters
    ----------
    log10_energy_ev : array, any shape, log10(E / eV) — NOTE eV, not GeV
    mass_number : array broadcastable with it, 0 or >= 1
    model : str (static), hadronic interaction model

    Returns
    -------
    mean, std : arrays of the broadcast shape, g/cm² (slant depth)
    """
    lg = jnp.asarray(log10_energy_ev)
    a_num = jnp.asarray(mass_number)
    lg, a_num = jnp.broadcast_arrays(lg, a_num)
    mu, sigma, lam = gumbel_parameters(lg, a_num, model)
    mean_h = mu + sigma * (jnp.log(lam) - digamma(lam))
    std_h = sigma * jnp.sqrt(polygamma(1, lam))
    mean_g, std_g = gamma_xmax_moments(lg, **gamma_kwargs)
    is_gamma = a_num < 0.5
    return jnp.where(is_gamma, mean_g, mean_h), jnp.where(is_gamma, std_g, std_h)


# ---------------------------------------------------------------------------------------------
# Samplers (numpy Generator; not on the fitted path)
# ---------------------------------------------------------------------------------------------

def _as_rng(rng) -> np.random.Generator:
    if isinstance(rng, np.random.Generator):
        return rng
    return np.random.default_rng(rng)


def sample_xmax(
    rng,
    log10_energy_ev,
    mass_number,
    model: str = "EPOS-LHC",
    x0_rad: float = X0_RADIATION_AIR,
    critical_energy_gev: float = CRITICAL_ENERGY_GEV,
    conversion_length: float = GAMMA_CONVERSION_LENGTH,
    shower_sigma: float = GAMMA_SHOWER_SIGMA,
) -> np.ndarray:
    """Draw Xmax [g/cm²] for each (energy, mass); arrays broadcast together.

    Hadrons: Xmax = mu - sigma ln(w), w ~ Gamma(shape lambda, scale 1/lambda) (PHYSICS §7.2: e^-z
    of the generalised Gumbel is Gamma distributed).
    Photons (A = 0): Xmax = X_Greisen - lambda_conv + Exp(lambda_conv) + Normal(0, sigma_sh) [M]
    (depth of the first conversion + rest of the cascade, shifted so that the mean is the Greisen
    value), matching :func:`gamma_xmax_moments`.

    Parameters
    ----------
    rng : numpy Generator, seed or None
    log10_energy_ev : array_like, log10(E / eV)
    mass_number : array_like, 0 (photon) or >= 1
    model : hadronic model name

    Returns
    -------
    numpy float64 array of the broadcast shape, g/cm²
    """
    rng = _as_rng(rng)
    lg, a_num = np.broadcast_arrays(
        np.asarray(log10_energy_ev, dtype=np.float64), np.asarray(mass_number, dtype=np.float64)
    )
    mu, sigma, lam = (np.asarray(v, dtype=np.float64) for v in gumbel_parameters(lg, a_num, model))
    is_gamma = a_num < 0.5
    hadron = ~is_gamma
    if np.any(hadron & ((lam <= 0) | (sigma <= 0))):
        raise ValueError(
            f"generalised-Gumbel parameters of {model} are not positive for some requested "
            "(energy, mass): energy outside the parameterisation's range"
        )
    lam_safe = np.where(hadron, lam, 1.0)
    w = rng.gamma(lam_safe, 1.0 / lam_safe)
    x_hadron = mu - sigma * np.log(w)
    x_greisen = x0_rad * ((lg - 9.0) * np.log(10.0) - np.log(critical_energy_gev))
    x_gamma = (
        x_greisen
        - conversion_length
        + rng.exponential(conversion_length, size=lg.shape)
        + rng.normal(0.0, shower_sigma, size=lg.shape)
    )
    return np.where(is_gamma, x_gamma, x_hadron)


def sample_power_law(rng, n: int, log10_range, spectral_index: float) -> np.ndarray:
    """Draw log10 energies from dN/dE ∝ E^gamma between 10^a and 10^b (inverse CDF).

    ln E = ln E1 + ln(1 + u (r^(gamma+1) - 1)) / (gamma + 1), r = E2/E1, u ~ U(0, 1);
    gamma = -1: ln E = ln E1 + u ln r (log-uniform). Computed with log1p/expm1 so that wide
    ranges and indices near -1 stay accurate.

    A range with equal ends (a, a) gives the fixed energy a (mono-energetic samples).

    Returns a numpy array (n,) in the units of ``log10_range`` (log10 of any energy unit).
    """
    rng = _as_rng(rng)
    lo, hi = (float(v) for v in log10_range)
    if hi == lo:
        return np.full(n, lo)
    if not hi > lo:
        raise ValueError(f"log10 energy range must be increasing, got {log10_range}")
    u = rng.uniform(size=n)
    ln_r = (hi - lo) * math.log(10.0)
    g1 = float(spectral_index) + 1.0
    if abs(g1) < 1e-10:
        ln_rel = u * ln_r
    else:
        # For g1 > 0 large ranges overflow expm1; work relative to the upper end then.
        if g1 * ln_r > 700.0:
            ln_rel = ln_r + np.log1p((u - 1.0) * -np.expm1(-g1 * ln_r)) / g1
        else:
            ln_rel = np.log1p(u * np.expm1(g1 * ln_r)) / g1
    return lo + ln_rel / math.log(10.0)


def sample_zenith(rng, n: int, zenith_max_deg: float = 40.0, flat_detector: bool = True) -> np.ndarray:
    """Zenith angles [rad] of an isotropic flux up to ``zenith_max_deg``.

    Isotropic on the sky: dN ∝ dΩ = sin(theta) dtheta dphi, i.e. cos(theta) uniform
    (``flat_detector=False``: the rate through a sphere). A horizontal (flat) detector sees the
    projected area, dN ∝ cos(theta) sin(theta) dtheta, i.e. cos²(theta) uniform
    (``flat_detector=True``, the default for a ground array).
    """
    rng = _as_rng(rng)
    cmin = math.cos(math.radians(zenith_max_deg))
    u = rng.uniform(size=n)
    if flat_detector:
        cos_t = np.sqrt(cmin**2 + u * (1.0 - cmin**2))
    else:
        cos_t = cmin + u * (1.0 - cmin)
    return np.arccos(np.clip(cos_t, -1.0, 1.0))


def sample_core(rng, n: int, radius_m: float = 400.0, centre=(0.0, 0.0)) -> tuple[np.ndarray, np.ndarray]:
    """Core positions [m] uniform over a disc of ``radius_m`` around ``centre`` (r = R sqrt(u))."""
    rng = _as_rng(rng)
    r = radius_m * np.sqrt(rng.uniform(size=n))
    phi = rng.uniform(0.0, 2.0 * np.pi, size=n)
    return centre[0] + r * np.cos(phi), centre[1] + r * np.sin(phi)


def _mean_log_muon_scale(log10_energy_gev, mass_number, beta, xi_c_gev, gamma_muon_fraction):
    """ln(N_mu(A, E) / N_mu(p, E)) from Heitler–Matthews (``detectors.lateral.muon_number``)."""
    from detectors.lateral import muon_number

    extra = {} if gamma_muon_fraction is None else {"gamma_muon_fraction": gamma_muon_fraction}
    lg = np.asarray(log10_energy_gev, dtype=np.float64)
    a_num = np.asarray(mass_number, dtype=np.float64)
    n_a = np.asarray(muon_number(lg, a_num, beta=beta, xi_c_gev=xi_c_gev, **extra), dtype=np.float64)
    n_p = np.asarray(muon_number(lg, np.ones_like(a_num), beta=beta, xi_c_gev=xi_c_gev), dtype=np.float64)
    return np.log(n_a / n_p)


def sample_log_muon_scale(
    rng,
    log10_energy_gev,
    mass_number,
    beta: float = 0.92,
    xi_c_gev: float = 20.0,
    sigma_ln_muon_proton: float = SIGMA_LN_MUON_PROTON,
    sigma_ln_muon_mass_exponent: float = SIGMA_LN_MUON_MASS_EXPONENT,
    gamma_muon_fraction: float | None = None,
    sigma_ln_muon_gamma: float = SIGMA_LN_MUON_GAMMA,
) -> np.ndarray:
    """Draw ``log_muon_scale`` = ln(N_mu / N_mu of a proton of the same energy).

    Mean: ln(N_mu(A, E)/N_mu(p, E)) from ``detectors.lateral.muon_number`` (Heitler–Matthews,
    = (1 - beta) ln A, PHYSICS §7.3); photons: ln of the photon/proton muon ratio of
    ``muon_number(E, 0)``, i.e. ln ``gamma_muon_fraction`` (None -> lateral.py's default, 0.1 [M]).
    Fluctuation [M]: Gaussian in ln N_mu (the mean of ln N_mu is kept, i.e. N_mu is log-normal
    around the Heitler–Matthews value) with rms sigma_p A^(-k) (sigma_p = 0.17, k = 0.25) for
    hadrons and ``sigma_ln_muon_gamma`` = 0.5 for photons.

    Shapes: energies (log10(E/GeV)) and masses broadcast; returns a numpy array of that shape.
    """
    rng = _as_rng(rng)
    lg, a_num = np.broadcast_arrays(
        np.asarray(log10_energy_gev, dtype=np.float64), np.asarray(mass_number, dtype=np.float64)
    )
    mean = _mean_log_muon_scale(lg, a_num, beta, xi_c_gev, gamma_muon_fraction)
    is_gamma = a_num < 0.5
    sigma = np.where(
        is_gamma,
        sigma_ln_muon_gamma,
        sigma_ln_muon_proton * np.where(is_gamma, 1.0, a_num) ** (-sigma_ln_muon_mass_exponent),
    )
    return mean + sigma * rng.standard_normal(size=lg.shape)


def sample_primaries(
    rng,
    n: int,
    primary: str | int = "proton",
    log10_energy_range=(4.0, 6.0),
    spectral_index: float | None = None,
    zenith_max_deg: float = 40.0,
    core_radius_m: float = 400.0,
    core_centre=(0.0, 0.0),
    composition: Mapping[str | int, float] | None = None,
    model: str = "EPOS-LHC",
    flat_detector: bool = True,
    beta: float = 0.92,
    xi_c_gev: float = 20.0,
    sigma_ln_muon_proton: float = SIGMA_LN_MUON_PROTON,
    sigma_ln_muon_mass_exponent: float = SIGMA_LN_MUON_MASS_EXPONENT,
    gamma_muon_fraction: float | None = None,
    sigma_ln_muon_gamma: float = SIGMA_LN_MUON_GAMMA,
    seed: int | None = None,
) -> dict[str, np.ndarray]:
    """Draw ``n`` primaries: energy, direction, core, Xmax, muon content and mass.

    Parameters
    ----------
    rng : numpy Generator, int seed or None (then ``seed`` is used)
    n : number of primaries
    primary : particle name (``"gamma"``, ``"proton"``, ``"helium"``, ``"nitrogen"``/``"CNO"``,
        ``"iron"``, ...), mass number (0 = photon), or ``"mixed"`` (mass drawn per event from
        ``composition``)
    log10_energy_range : (a, b), log10(E / GeV)
    spectral_index : gamma of dN/dE ∝ E^gamma; default -2.6 for photons (Crab-like, PHYSICS §8),
        -2.7 otherwise (all-particle index below the knee, §5.1). One index for all masses.
    zenith_max_deg : maximum zenith angle [deg]; directions isotropic, see :func:`sample_zenith`
    core_radius_m, core_centre : cores uniform on this disc [m]
    composition : {mass number or name: flux fraction} for ``"mixed"`` (normalised here);
        default :data:`DEFAULT_COMPOSITION` [M]
    model : hadronic model for the Xmax distribution (``GUMBEL_COEFFICIENTS``)
    flat_detector : True -> rate ∝ sin cos (cos² uniform); False -> ∝ sin (cos uniform)
    beta, xi_c_gev : Heitler–Matthews parameters passed to ``lateral.muon_number``
    sigma_ln_muon_*, gamma_muon_fraction : muon fluctuation model, see :func:`sample_log_muon_scale`

    Returns
    -------
    dict of numpy float64 arrays, each (n,): ``true_core_x``, ``true_core_y`` [m],
    ``true_zenith``, ``true_azimuth`` [rad; azimuth uniform in [0, 2 pi), from +x towards +y],
    ``true_log10_energy`` [log10(E/GeV)], ``true_xmax`` [g/cm², slant],
    ``true_log_muon_scale`` [1], ``true_t0`` [ns, = 0], ``true_mass_number`` [1, 0 = photon].
    """
    if rng is None:
        rng = seed
    rng = _as_rng(rng)
    n = int(n)
    if isinstance(primary, str) and primary.strip().lower() == "mixed":
        comp = DEFAULT_COMPOSITION if composition is None else composition
        masses = np.array([mass_number_of(k) for k in comp], dtype=np.float64)
        fractions = np.array([float(v) for v in comp.values()], dtype=np.float64)
        if np.any(fractions < 0) or fractions.sum() <= 0:
            raise ValueError(f"composition fractions must be >= 0 with a positive sum, got {comp}")
        mass = rng.choice(masses, size=n, p=fractions / fractions.sum())
        default_index = -2.7
    else:
        a0 = mass_number_of(primary)
        mass = np.full(n, float(a0))
        default_index = -2.6 if a0 == 0 else -2.7
    index = default_index if spectral_index is None else float(spectral_index)

    lg_gev = sample_power_law(rng, n, log10_energy_range, index)
    zenith = sample_zenith(rng, n, zenith_max_deg, flat_detector)
    azimuth = rng.uniform(0.0, 2.0 * np.pi, size=n)
    core_x, core_y = sample_core(rng, n, core_radius_m, core_centre)
    xmax = sample_xmax(rng, lg_gev + 9.0, mass, model)
    log_mu = sample_log_muon_scale(
        rng, lg_gev, mass, beta=beta, xi_c_gev=xi_c_gev,
        sigma_ln_muon_proton=sigma_ln_muon_proton,
        sigma_ln_muon_mass_exponent=sigma_ln_muon_mass_exponent,
        gamma_muon_fraction=gamma_muon_fraction, sigma_ln_muon_gamma=sigma_ln_muon_gamma,
    )
    return {
        "true_core_x": core_x,
        "true_core_y": core_y,
        "true_zenith": zenith,
        "true_azimuth": azimuth,
        "true_log10_energy": lg_gev,
        "true_xmax": xmax,
        "true_log_muon_scale": log_mu,
        "true_t0": np.zeros(n),
        "true_mass_number": mass,
    }


def shower_from_truth(records: Mapping[str, np.ndarray], dtype=None):
    """Batched :class:`detectors.shower.Shower` (jnp arrays, leading axis = event) from ``true_*``.

    ``records`` is a mapping like the output of :func:`sample_primaries`; ``true_t0`` defaults to 0
    when absent. ``dtype`` (e.g. ``jnp.float32`` for the production path) defaults to JAX's
    default float type.
    """
    from detectors.shower import Shower

    def get(name):
        key = "true_" + name
        if key not in records:
            if name == "t0":
                return jnp.zeros_like(jnp.asarray(records["true_core_x"], dtype=dtype))
            raise KeyError(f"records lack the field {key!r} needed for a Shower")
        return jnp.asarray(records[key], dtype=dtype)

    fields = ("core_x", "core_y", "zenith", "azimuth", "log10_energy", "xmax", "log_muon_scale", "t0")
    return Shower(**{f: get(f) for f in fields})
