"""KM2A forward model: electromagnetic detectors (EDs) and muon detectors (MDs).

One event at a time (batch with ``jax.vmap``); every function is pure and jit/grad-safe.

Model (``expected``)
--------------------
* Ground slant depth of each channel X_g = X_vert(4400 m + z) / cos θ (3-D positions).
* Electromagnetic size at the ground N_e = Gaisser–Hillas(X_g; Xmax, N_max(E), X₀, λ) with the
  USP shape of ``profile.gh_shape_params`` and N_max = E / (energy per particle) — so the energy,
  Xmax and the depth of the ground set the size.
* Lateral age from the longitudinal age at the ground, s_lat = offset + slope · s_long(X_g)
  (``KM2APhysics.lateral_age_offset``/``slope``, [M] defaults 0 and 1), clipped to the range of
  the modified NKG; electromagnetic density from the KM2A modified NKG with r_m = 136 m [M]
  (PHYSICS.md §6.1) — so Xmax is felt by the lateral shape.
* Muons: N_μ = muon_fraction · N_μ^HM(E, A = 1) · exp(log_muon_scale), Greisen lateral density
  with r₀ = 320 m [M] (PHYSICS.md §6.2, §7.3); muons also cross the EDs.
* Mean numbers per channel: density × area × cos θ (projected area of a horizontal detector)
  × efficiency.
* Arrival time of the first particle: the leading edge of the front t₀ + delay(x) + the
  curvature delay of a sphere of radius R, (sqrt(R² + r²) − R)/c, + the channel's time offset, plus the lag of the first of n particles behind it,
  an exponential of mean T(r)/n with Linsley's front thickness T(r) = σ₀ (1 + r/r_t)^b;
  n is taken from the observed charge (n = max(q/G, 1)), so the timing term carries direction
  and t₀ information but no (mis-modelled) energy information. The hit time is scored with
  the exponentially modified Gaussian of that lag (electronics jitter and a model uncertainty
  frac · T(r) in the Gaussian), so that a late first particle costs linearly, and a front
  shape the formulas miss widens the errors instead of biasing the direction (docs/km2a.md).

Likelihood (``nll``)
--------------------
Every valid channel, hit or not. Charges are converted to particles with the channel gain; the
compound-Poisson charge (Poisson particle number × single-particle charge with relative
resolution σ_q) is approximated by a scaled Poisson in n_eff = k q/G, μ_eff = k μ with
k = 1/(1 + σ_q²) (matches mean and variance). Hit channels (charge ≥ threshold) have the mixture

    L = Pois_c(n_eff; μ_eff) (k/G) · N(t; t_exp, σ_t)  +  e^{−μ_eff} p_noise f_noise(q) / W,

where p_noise = 1 − exp(−rate · W) is the chance of a noise hit in the readout window W, and
f_noise(q) an exponential charge spectrum (EDs) or the single-muon spectrum (MDs): a random noise
hit anywhere in the ±5000 ns window is explained by the second term and cannot pull the fit.
Saturated channels (q ≥ q_sat) contribute P(N ≥ n_sat) (normal approximation of the tail).
Empty channels contribute μ_eff − ln(1 − p_noise): the empty probability of the same scaled
Poisson (e^{−kμ} rather than the exact e^{−μ}), which keeps the score unbiased
(E[∂ ln L/∂μ] = E[n_eff]/μ − k = 0); with the exact e^{−μ} the energy came out 13% low for
σ_q = 0.4 (measured, see docs/km2a.md). Constant terms are kept (the nll is a proper
−ln L up to the scaled-Poisson approximation), so nll values of different events compare.

Simulation (``simulate``)
-------------------------
Poisson particle numbers (EM and muons separately), single-particle charges from a Gamma law with
relative width σ_q, arrival time of the first of n particles (each lagging the leading edge by an
exponential of mean T(r)) plus electronics jitter and the leading edge's irregularity
(front_model_frac · T(r), Gaussian, independent per channel: what the likelihood allows for), lateral-age fluctuations shower to shower,
noise hits at the singles rate uniformly over the readout window with the noise charge spectrum,
dead channels (``valid`` False), saturation, the threshold and the trigger (≥ 20 EDs within
400 ns). For hadrons it can add the hadronic structure measured on CORSIKA protons
(:data:`HADRON_STRUCTURE`, ``detectors.substructure``, docs/hadron_structure.md): a patchy,
log-normal EM footprint, small EM sub-showers and muon clumps near the core, all mean-preserving.
The fit model carries none of these fluctuations explicitly.

Units: positions m, times ns, charges PE, densities per m².
"""
from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from .block import ChannelBlock
from . import lateral, profile
from .channel import (LOG_SQRT_2PI, MU_FLOOR, counting_channel_log_terms, counting_channel_nll,
                      delegate_fields, emg_time_variance, noise_probability)
from .channel import information_weights as _information_weights
from .shower import SPEED_OF_LIGHT_M_PER_NS, Shower, ground_slant_depth, shower_plane_coordinates
from .substructure import lognormal_multiplier, radial_table, shower_plane_xy, subshower_particles

__all__ = ["Geometry", "Response", "KM2APhysics", "Expectation", "Observed", "expected", "nll",
           "channel_nll", "simulate", "predict", "Prediction", "trigger", "fisher_stats", "information_weights",
           "gof_counts", "DEFAULT_PHYSICS", "HADRON_STRUCTURE"]


# ---------------------------------------------------------------------------------------------
# static description
# ---------------------------------------------------------------------------------------------
class Geometry(NamedTuple):
    """KM2A channels of one run period.

    ed_pos : (n_ed, 3) [m] array frame, z relative to 4400 m;  md_pos : (n_md, 3) [m]
    ed_area : [m²] 1;  md_area : [m²] 36 (PHYSICS.md §2 [C])
    ed_live, md_live : (n,) bool — channels that exist in this period and are alive.
    """

    ed_pos: jnp.ndarray
    md_pos: jnp.ndarray
    ed_area: float = 1.0
    md_area: float = 36.0
    ed_live: jnp.ndarray | None = None
    md_live: jnp.ndarray | None = None

    @classmethod
    def from_layout(cls, layout, ed_live=None, md_live=None) -> "Geometry":
        """From ``detectors.layout.KM2ALayout`` (``km2a_layout("full")`` or ``("3/4")``)."""
        n_ed, n_md = layout.ed_pos.shape[0], layout.md_pos.shape[0]
        return cls(ed_pos=np.asarray(layout.ed_pos, np.float64), md_pos=np.asarray(layout.md_pos, np.float64),
                   ed_area=float(layout.ed_area), md_area=float(layout.md_area),
                   ed_live=np.ones(n_ed, bool) if ed_live is None else np.asarray(ed_live, bool),
                   md_live=np.ones(n_md, bool) if md_live is None else np.asarray(md_live, bool))


class Response(NamedTuple):
    """Per-channel calibration with nominal defaults (a pytree, learnable by ``calib``).

    ed_gain : (n_ed,) [PE per particle], nominal 40 [U];  md_gain : (n_md,) [PE per muon], 75 [U]
    ed_time_offset, md_time_offset : (n,) [ns], nominal 0
    ed_efficiency, md_efficiency : (n,) relative efficiency, nominal 1
    ed_charge_resolution, md_charge_resolution : relative width of the single-particle charge
        (0.4, 0.3) [M]
    ed_threshold_pe, md_threshold_pe : hit threshold [PE]: 0.2 particle (8 PE, [U]) / 0.3 muon [M]
    ed_saturation_pe, md_saturation_pe : [PE] 2e5 (ED dynamic range [C]) / 2e5 [M]
    ed_noise_rate_hz, md_noise_rate_hz : singles rate [Hz]: 2.5 kHz and 6.7 kHz [D] (the noise
        hits of LHAASO's G4KM2A sample: median 131 ED and ~80 MD hits per 10 µs window)
    ed_noise_pe : [PE] mean of the exponential ED noise-charge spectrum, 12 PE [D] (same sample)
    ed_time_resolution_ns, md_time_resolution_ns : electronics jitter, 2 ns [M] / 3 ns [M]
    window_ns : readout window, 10000 ns (±5000 ns)
    """

    ed_gain: jnp.ndarray
    md_gain: jnp.ndarray
    ed_time_offset: jnp.ndarray
    md_time_offset: jnp.ndarray
    ed_efficiency: jnp.ndarray
    md_efficiency: jnp.ndarray
    ed_charge_resolution: float = 0.4
    md_charge_resolution: float = 0.3
    ed_threshold_pe: float = 8.0
    md_threshold_pe: float = 22.5
    ed_saturation_pe: float = 2.0e5
    md_saturation_pe: float = 2.0e5
    ed_noise_rate_hz: float = 2.5e3
    md_noise_rate_hz: float = 6.7e3
    ed_noise_pe: float = 12.0
    ed_time_resolution_ns: float = 2.0
    md_time_resolution_ns: float = 3.0
    window_ns: float = 10000.0

    @classmethod
    def nominal(cls, geometry: Geometry, **overrides) -> "Response":
        n_ed, n_md = geometry.ed_pos.shape[0], geometry.md_pos.shape[0]
        base = dict(ed_gain=np.full(n_ed, 40.0), md_gain=np.full(n_md, 75.0),
                    ed_time_offset=np.zeros(n_ed), md_time_offset=np.zeros(n_md),
                    ed_efficiency=np.ones(n_ed), md_efficiency=np.ones(n_md))
        base.update(overrides)
        return cls(**base)


class KM2APhysics(NamedTuple):
    """Physics parameters of the model (defaults tagged as in PHYSICS.md; [M] = assumption).

    is_gamma : 1 for the photon hypothesis (energy per particle, Nmax), 0 for hadrons
    r_m : NKG Moliere radius [m], 136 [M] (§6.1)
    lateral_age_offset, lateral_age_slope : s_lat = offset + slope · s_long(X_g) [M]
    muon_r0 : Greisen muon scale radius [m], 320 [M] (§6.2)
    muon_beta, muon_xi_c_gev : Heitler–Matthews (0.92 [C], 20 GeV [M]) (§7.3)
    muon_fraction : fraction of Heitler–Matthews muons above the MD threshold (~1 GeV) [M]
    front_radius_m : radius of curvature of the leading edge of the front [m]: the first
        particles at distance r from the axis lag the plane by (sqrt(R² + r²) − R)/c. 5000 m [D]:
        the leading edge (first-of-n fit L + T/n) of CORSIKA's five 10 TeV photons at sea level
        (corsika_77500_particle; R = r²/2cL = 4.0–6.7 km at 80–250 m,
        benchmarks/corsika_front.py); the unthinned 100 TeV proton at 3000 m agrees within
        1–5 ns to 250 m (not fitted on it). LHAASO's conical fit uses 0.1 ns/m (0.03 m/m [U]),
        but that cone is fitted to hit times that include the particles' lag, which this model
        carries separately (T/n): as a leading edge it is 2–3× too late (12.5 ns at 125 m where
        CORSIKA's edge is 4–7 ns)
    md_front_radius_m : the same for the muons the MDs count, 20000 m [D]: muons come from
        higher up, their leading edge is flatter — CORSIKA's muons (first-of-n fit, the thinned
        0.1–1 PeV protons at sea level, corsika76900_thin) lead by L = 1–4 ns at 100–250 m where
        the e.m. edge is 5–15 ns (R = r²/2cL ≈ 15–40 km)
    front_slope_ns_per_m : an extra conical delay [ns/m] of the leading edge, 0 (LHAASO's cone
        would be 0.1 with front_radius_m = inf)
    front_sigma0_ns, front_rt_m, front_b : front thickness (mean lag of a particle behind the
        leading edge) T(r) = σ₀ (1 + r/r_t)^b, Linsley's shower-front thickness, σ₀ = 1.6 ns,
        r_t = 30 m, b = 1.65 [C: J. Linsley, J. Phys. G 12 (1986) 51]; the first of n particles
        lags by an exponential of mean T/n. Checked, not fitted, against CORSIKA ground
        particles (benchmarks/corsika_front.py, docs/km2a.md)
    front_model_frac : model uncertainty of the leading edge, σ_model = frac · T(r), added in
        quadrature to the electronics jitter, 0.05 [D]: the rms deviation of CORSIKA's mean
        first-of-n delays (n = 3, 10, 30; 30–300 m) from this model, in units of T, on the
        10 TeV photons the sphere was read from (0.048; benchmarks/corsika_front.py). A front
        shape no formula captures widens the time errors instead of biasing the direction
    time_emg : 1 (default): the hit time is scored with the exponentially modified Gaussian
        of the first-particle lag (``detectors.channel.time_log_density``; an exponential late
        tail); 0: the Gaussian of mean lag T/n and spread sqrt(σ_el² + (T/n)²) used before
        (static Python number)
    ed_em_factor : ED signal (in single-particle units) per NKG electron, 1.6 [D]: photons
        converting in the ED's lead and the charged-particle definition of N_e make an ED count
        more than the NKG electrons; fitted on LHAASO's G4KM2A photons (the modified-NKG size of
        the in-time ED signals at the true cores, PE/40, is 1.3–1.7× this model's N_e for the
        same showers, median 1.6, with the same lateral age; tests/test_km2a_model.py)
    ed_core_radius_m, md_core_radius_m : the lateral densities are evaluated at
        sqrt(r² + r_det²), a smooth average over the detector's size (1 m² ED, 36 m² MD) that
        keeps them finite when the core falls on a detector
    compound_particles : 0 (default): every charge scored with the scaled Poisson; > 0: charges
        below about this many particles scored with the exact compound Poisson–gamma density
        (``detectors.channel.compound_log_density``; unbiased gains at single-particle counts,
        used by the calibration, ``calib.learn.LearnConfig.compound_particles`` = 8). A static
        Python number (it switches code, not values)
    """

    is_gamma: float = 0.0
    r_m: float = 136.0
    lateral_age_offset: float = 0.0
    lateral_age_slope: float = 1.0
    muon_r0: float = 320.0
    muon_beta: float = 0.92
    muon_xi_c_gev: float = 20.0
    muon_fraction: float = 0.5
    front_radius_m: float = 5000.0
    md_front_radius_m: float = 20000.0
    front_slope_ns_per_m: float = 0.0
    front_sigma0_ns: float = 1.6
    front_rt_m: float = 30.0
    front_b: float = 1.65
    front_model_frac: float = 0.05
    time_emg: float = 1.0
    ed_core_radius_m: float = 0.5
    md_core_radius_m: float = 3.4
    ed_em_factor: float = 1.6
    compound_particles: float = 0.0


DEFAULT_PHYSICS = KM2APhysics()

#: Hadronic structure of the KM2A simulation for hadron primaries (keyword arguments of
#: :func:`simulate`; ``joint.simulation`` passes them for every event, ``simulate`` ignores them
#: for photons). Sources (benchmarks/hadron_structure.py, docs/hadron_structure.md; one unthinned
#: 100 TeV proton at 3000 m and five thinned 0.1–1 PeV protons at sea level — thin statistics):
#: patch_* [D] fitted on the e± cell counts of one half of the 100 TeV proton's shower plane;
#: muon_clump_* [D] the size of the muons' excess variance in MD-sized cells of the thinned
#: protons, its split into number, fraction and width [M]; subshower_* [M] bounded by CORSIKA
#: (no lump above 5σ in 10 m cells of the 100 TeV proton: each lump must carry ≲ 40 particles).
HADRON_STRUCTURE = dict(subshower_rate=1.0, subshower_fraction=0.002, subshower_spread_m=3.0,
                        subshower_r_max_m=1000.0, muon_clump_rate=1.0, muon_clump_fraction=0.065,
                        muon_clump_radius_m=100.0, muon_clump_spread_m=5.0, patch_sigma=0.28,
                        patch_slope=0.61, patch_length_m=3.5, patch_sigma_max=1.0)


class Prediction(NamedTuple):
    """The part of an Expectation that the likelihood needs (what the fitter differentiates):
    ed_particles, ed_time, ed_front_tau (n_ed,), md_muons, md_time, md_front_tau (n_md,)."""

    ed_particles: jnp.ndarray
    ed_time: jnp.ndarray
    ed_front_tau: jnp.ndarray
    md_muons: jnp.ndarray
    md_time: jnp.ndarray
    md_front_tau: jnp.ndarray


class Expectation(NamedTuple):
    """Mean signals of every channel: the likelihood's :class:`Prediction` plus event summaries.

    prediction : Prediction — ed_particles (mean particles, EM + muons, per ED), ed_time (front
        arrival [ns]), ed_front_tau (front thickness τ(r) [ns]; the first of n particles lags by
        ≈ τ/n, n from the observed charge in ``nll``), and the same for the MDs (md_muons, ...)
    ed_em : (n_ed,) EM part of ed_particles;  n_e : EM size at the ground;  n_mu : muon size;
    age : lateral age (scalars for the event)

    The Prediction's fields are also readable directly (``e.ed_particles``), so ``nll`` takes an
    Expectation or a Prediction.
    """

    prediction: "Prediction"
    ed_em: jnp.ndarray
    n_e: jnp.ndarray
    n_mu: jnp.ndarray
    age: jnp.ndarray


delegate_fields(Expectation, Prediction)


class Observed(NamedTuple):
    """KM2A observations of one event: ChannelBlocks (detectors.block) (signal [PE], time [ns], hit,
    valid, n_pulses) for the EDs and the MDs."""

    ed: object
    md: object


# ---------------------------------------------------------------------------------------------
# expected signals
# ---------------------------------------------------------------------------------------------
def front_delay(r, physics: KM2APhysics = DEFAULT_PHYSICS, muons: bool = False):
    """Delay [ns] of the leading edge of the front behind the plane at distance r [m] from the
    axis: a sphere of radius R (``front_radius_m``; ``md_front_radius_m`` for the muon front the
    MDs see, ``muons=True``) plus an optional cone (:class:`KM2APhysics`)."""
    radius = physics.md_front_radius_m if muons else physics.front_radius_m
    sphere = (r * r) / (jnp.sqrt(radius * radius + r * r) + radius) / SPEED_OF_LIGHT_M_PER_NS
    return sphere + physics.front_slope_ns_per_m * r


def front_thickness(r, physics: KM2APhysics = DEFAULT_PHYSICS):
    """Front thickness T(r) [ns] at distance r [m] from the axis: the mean lag of a particle
    behind the leading edge (Linsley's σ₀ (1 + r/r_t)^b, :class:`KM2APhysics`)."""
    return physics.front_sigma0_ns * (1.0 + jnp.maximum(r, 0.0) / physics.front_rt_m) ** physics.front_b


def sizes(shower: Shower, physics: KM2APhysics = DEFAULT_PHYSICS, z=0.0):
    """(N_e at the ground, lateral age, N_μ in MDs) for a channel height z [m]."""
    x_g = ground_slant_depth(shower, z)
    n_max = profile.n_max_from_energy(shower.log10_energy, is_gamma=physics.is_gamma)
    x0_off, lam = profile.gh_shape_params(shower.log10_energy)
    n_e = profile.gaisser_hillas(x_g, shower.xmax, n_max, shower.xmax - x0_off, lam)
    s_long = profile.shower_age(x_g, shower.xmax)
    s_lat = jnp.clip(physics.lateral_age_offset + physics.lateral_age_slope * s_long, 0.55, 2.4)
    n_mu = (physics.muon_fraction * jnp.exp(shower.log_muon_scale)
            * lateral.muon_number(shower.log10_energy, 1.0, beta=physics.muon_beta,
                                  xi_c_gev=physics.muon_xi_c_gev))
    return n_e, s_lat, n_mu


def predict(shower: Shower, geometry: Geometry, response: Response,
            physics: KM2APhysics = DEFAULT_PHYSICS) -> Prediction:
    """The likelihood's inputs only (see :class:`Prediction`); cheaper to differentiate than
    :func:`expected`. ``nll`` accepts either."""
    return expected(shower, geometry, response, physics).prediction


def expected(shower: Shower, geometry: Geometry, response: Response,
             physics: KM2APhysics = DEFAULT_PHYSICS) -> Expectation:
    """Mean particle numbers and arrival times of every KM2A channel for one shower.

    Parameters
    ----------
    shower : Shower with scalar leaves
    geometry, response : this module's Geometry / Response
    physics : KM2APhysics (static model parameters)

    Returns
    -------
    Expectation (see its docstring for shapes and units)
    """
    cos_t = jnp.cos(shower.zenith)
    # EM size at each ED's own ground depth (heights span ~35 m: a few g/cm², a few % in N_e);
    # the lateral age at the reference height (it changes by < 0.005 over 35 m), so that the
    # NKG normalisation C(s) is computed once per event, not per channel
    z_ed = geometry.ed_pos[:, 2]
    n_e_ch, _, n_mu = sizes(shower, physics, z_ed)
    n_e0, s_ch, _ = sizes(shower, physics, 0.0)
    r_ed, d_ed = shower_plane_coordinates(shower, geometry.ed_pos)
    # the densities are singular at r = 0: average over the detector by flooring r smoothly at
    # about its half size (r_eff² = r² + r_det²)
    r_ed_eff = jnp.sqrt(r_ed ** 2 + physics.ed_core_radius_m ** 2)
    rho_em = lateral.modified_nkg_density(r_ed_eff, n_e_ch, s_ch, r_m=physics.r_m)
    rho_mu_ed = lateral.greisen_muon_density(r_ed_eff, n_mu, r0=physics.muon_r0)
    area_ed = geometry.ed_area * cos_t * response.ed_efficiency
    rho_em = physics.ed_em_factor * rho_em
    ed_em = rho_em * area_ed
    ed_particles = (rho_em + rho_mu_ed) * area_ed

    r_md, d_md = shower_plane_coordinates(shower, geometry.md_pos)
    r_md_eff = jnp.sqrt(r_md ** 2 + physics.md_core_radius_m ** 2)
    md_muons = lateral.greisen_muon_density(r_md_eff, n_mu, r0=physics.muon_r0) * (
        geometry.md_area * cos_t * response.md_efficiency)

    def timing(r, delay, offset):
        return shower.t0 + delay + offset, front_thickness(r, physics)

    ed_t, ed_tau = timing(r_ed, d_ed, response.ed_time_offset)
    md_t, md_tau = timing(r_md, d_md, response.md_time_offset)
    ed_t = ed_t + front_delay(r_ed, physics)
    md_t = md_t + front_delay(r_md, physics, muons=True)
    prediction = Prediction(ed_particles=ed_particles, ed_time=ed_t, ed_front_tau=ed_tau,
                            md_muons=md_muons, md_time=md_t, md_front_tau=md_tau)
    return Expectation(prediction=prediction, ed_em=ed_em,
                       n_e=n_e0, n_mu=n_mu, age=s_ch)


# ---------------------------------------------------------------------------------------------
# likelihood
# ---------------------------------------------------------------------------------------------
_MU_FLOOR = MU_FLOOR
_LOG_SQRT_2PI = LOG_SQRT_2PI


def _channel_nll(q, t, hit, valid, mu, t_front, tau, sigma_el, gain, sigma_q, threshold,
                 saturation, rate_hz, window_ns, noise_logpdf, compound_particles=0.0,
                 model_frac=0.0, emg=1.0, log_terms=False):
    """−ln L per channel (shape of q): ``detectors.channel.counting_channel_nll`` in PE with the
    mean G·μ and Var/mean F = G(1 + σ_q²), and the first-particle lag T/n, n = max(q/G, 1):
    exponentially modified Gaussian around the leading edge with σ² = σ_el² + (frac·T)²
    (``emg``), or the Gaussian of mean T/n; with ``compound_particles`` > 0 small charges use
    the compound Poisson–gamma density. ``log_terms``: its terms instead
    (``channel.counting_channel_log_terms``; ``valid`` not applied)."""
    mu = jnp.maximum(mu, _MU_FLOOR)
    lag = tau / jnp.maximum(q / gain, 1.0)
    compound = (gain, sigma_q, compound_particles) if compound_particles > 0 else None
    sigma2 = sigma_el ** 2 + (model_frac * tau) ** 2
    if emg > 0:
        t_exp, sigma_t, t_lag = t_front, jnp.sqrt(sigma2), lag
    else:
        t_exp, sigma_t, t_lag = t_front + lag, jnp.sqrt(sigma2 + lag ** 2), None
    if log_terms:
        return counting_channel_log_terms(q, t, hit, gain * mu, gain * (1.0 + sigma_q ** 2),
                                          t_exp, sigma_t, threshold, saturation,
                                          noise_probability(rate_hz, window_ns), window_ns,
                                          noise_logpdf, compound=compound, t_lag=t_lag)
    return counting_channel_nll(q, t, hit, valid, gain * mu, gain * (1.0 + sigma_q ** 2),
                                t_exp, sigma_t, threshold,
                                saturation, noise_probability(rate_hz, window_ns), window_ns,
                                noise_logpdf, compound=compound, t_lag=t_lag)


def _ed_noise_logpdf(response):
    lam = response.ed_noise_pe
    return lambda q: -q / lam - jnp.log(lam)


def _md_noise_logpdf(response):
    # a background muon: the single-muon charge spectrum (Gaussian of relative width σ_q)
    g = jnp.mean(response.md_gain)
    s = response.md_charge_resolution * g
    return lambda q: -0.5 * ((q - g) / s) ** 2 - jnp.log(s) - _LOG_SQRT_2PI


def channel_nll(observed: Observed, expectation: Expectation, geometry: Geometry,
                response: Response, physics: KM2APhysics = DEFAULT_PHYSICS, log_terms=False):
    """Per-channel −ln L: (ed (n_ed,), md (n_md,)). ``physics`` matters through
    ``compound_particles`` (the charge model), ``front_model_frac`` and ``time_emg`` (the time
    model). ``log_terms=True``: per detector the tuple (is_hit, log_signal, log_noise,
    log_empty) of ``channel.counting_channel_log_terms`` instead (validity not applied; the
    noise-hit posterior of ``analysis.noise``)."""
    cp = float(physics.compound_particles)
    ed, md = observed.ed, observed.md
    ed_valid = ed.valid & jnp.asarray(geometry.ed_live)
    md_valid = md.valid & jnp.asarray(geometry.md_live)
    ed_nll = _channel_nll(ed.signal, ed.time, ed.hit, ed_valid, expectation.ed_particles,
                          expectation.ed_time, expectation.ed_front_tau,
                          response.ed_time_resolution_ns, response.ed_gain,
                          response.ed_charge_resolution, response.ed_threshold_pe,
                          response.ed_saturation_pe, response.ed_noise_rate_hz, response.window_ns,
                          _ed_noise_logpdf(response), cp, physics.front_model_frac,
                          float(physics.time_emg), log_terms)
    md_nll = _channel_nll(md.signal, md.time, md.hit, md_valid, expectation.md_muons,
                          expectation.md_time, expectation.md_front_tau,
                          response.md_time_resolution_ns, response.md_gain,
                          response.md_charge_resolution, response.md_threshold_pe,
                          response.md_saturation_pe, response.md_noise_rate_hz, response.window_ns,
                          _md_noise_logpdf(response), cp, physics.front_model_frac,
                          float(physics.time_emg), log_terms)
    return ed_nll, md_nll


def gof_counts(observed: Observed, expectation, geometry: Geometry, response: Response):
    """[(n_eff, μ_eff, mask)] of the EDs and MDs for ``channel.deviance_sums``: charges of hits
    above threshold and below saturation in effective counts q/F, F = G(1 + σ_q²)."""
    out = []
    for blk, mu, live, gain, res, thr, sat in (
            (observed.ed, expectation.ed_particles, geometry.ed_live, response.ed_gain,
             response.ed_charge_resolution, response.ed_threshold_pe, response.ed_saturation_pe),
            (observed.md, expectation.md_muons, geometry.md_live, response.md_gain,
             response.md_charge_resolution, response.md_threshold_pe, response.md_saturation_pe)):
        f = gain * (1.0 + res ** 2)
        q = jnp.where(blk.hit & (blk.signal >= thr), blk.signal, 0.0)
        out.append((q / f, gain * mu / f, blk.valid & jnp.asarray(live) & (blk.signal < sat)))
    return out


def nll(observed: Observed, expectation: Expectation, geometry: Geometry, response: Response,
        physics: KM2APhysics = DEFAULT_PHYSICS):
    """Negative log-likelihood (scalar) of one event's KM2A observations, every valid channel."""
    ed_nll, md_nll = channel_nll(observed, expectation, geometry, response, physics)
    return jnp.sum(ed_nll) + jnp.sum(md_nll)


def _moments(p, geometry: Geometry, response: Response, physics: KM2APhysics = DEFAULT_PHYSICS):
    """(mean, variance, weight) of the four predicted quantities of a Prediction ``p``: particle
    counts (Poisson, variance inflated by the charge resolution; weight = channel alive) and
    first-particle times (Gaussian; weight = probability that the channel is hit). The one
    statement of the model's expected information, used by Fisher scoring and the CRB."""
    ed_live = jnp.asarray(geometry.ed_live, p.ed_particles.dtype)
    md_live = jnp.asarray(geometry.md_live, p.md_muons.dtype)
    ed_mu = jnp.maximum(p.ed_particles, _MU_FLOOR)
    md_mu = jnp.maximum(p.md_muons, _MU_FLOOR)
    phys = physics  # its time model (front_model_frac, time_emg)

    def time_var(sigma_el, tau, mu):
        sigma2 = sigma_el ** 2 + (phys.front_model_frac * tau) ** 2
        lag = tau / jnp.maximum(mu, 1.0)
        if phys.time_emg > 0:
            return emg_time_variance(jnp.sqrt(sigma2), lag)
        return sigma2 + lag ** 2

    return {
        "ed_particles": (ed_mu, ed_mu * (1.0 + response.ed_charge_resolution ** 2), ed_live),
        "md_muons": (md_mu, md_mu * (1.0 + response.md_charge_resolution ** 2), md_live),
        "ed_time": (p.ed_time, time_var(response.ed_time_resolution_ns, p.ed_front_tau, ed_mu),
                    ed_live * -jnp.expm1(-ed_mu)),
        "md_time": (p.md_time, time_var(response.md_time_resolution_ns, p.md_front_tau, md_mu),
                    md_live * -jnp.expm1(-md_mu)),
    }


def information_weights(expectation, geometry: Geometry, response: Response,
                        physics: KM2APhysics = DEFAULT_PHYSICS):
    """Expected information of each predicted number (a pytree shaped like ``expectation``, an
    Expectation or a Prediction), for Fisher scoring (``joint.fit.ScoringModel``): weight/variance
    of :func:`_moments` for counts and times, 0 for the other fields."""
    return _information_weights(expectation, lambda p: _moments(p, geometry, response, physics))


def fisher_stats(shower: Shower, geometry: Geometry, response: Response,
                 physics: KM2APhysics = DEFAULT_PHYSICS):
    """(mean, variance, weight) triples for the Cramér–Rao bound of ``joint.fit.cramer_rao``:
    the same expected information as :func:`information_weights` (see :func:`_moments`)."""
    p = predict(shower, geometry, response, physics)
    return list(_moments(p, geometry, response, physics).values())


# ---------------------------------------------------------------------------------------------
# simulation
# ---------------------------------------------------------------------------------------------
def first_arrival(key, n, tau):
    """Lag of the first of n particles, each lagging by Exponential(τ): Exponential(τ/n)."""
    e = jax.random.exponential(key, n.shape)
    return e * tau / jnp.maximum(n, 1.0)


def trigger(times, hit, n_min=20, window_ns=400.0):
    """True when at least ``n_min`` hit channels fall within a sliding ``window_ns`` window
    (PHYSICS.md §2: ≥ 20 EDs within 400 ns [M]). times, hit: (n,)."""
    t = jnp.sort(jnp.where(hit, times, jnp.inf))
    upto = jnp.searchsorted(t, t + window_ns, side="right")
    count = upto - jnp.arange(t.shape[0])
    count = jnp.where(jnp.isfinite(t), count, 0)
    return jnp.max(count) >= n_min


def _hadron_structure(key, shower, e, geometry, response, phys, subshower_rate,
                      subshower_fraction, subshower_spread_m, subshower_r_max_m, muon_clump_rate,
                      muon_clump_fraction, muon_clump_radius_m, muon_clump_spread_m, patch_sigma,
                      patch_slope, patch_length_m, patch_sigma_max):
    """Mean particles per channel with the hadronic structure of ``simulate`` (docs/hadron_structure.md):
    (ed_em, ed_muons, md_muons), each (n,). Every term redistributes or multiplies the smooth
    means with mean one, so that the expected numbers stay those of ``expected``; nothing
    changes for photons (``phys.is_gamma`` > 0.5)."""
    k_sub, k_mu, k_patch = jax.random.split(key, 3)
    hadron = jnp.where(phys.is_gamma > 0.5, 0.0, 1.0)
    cos_t = jnp.cos(shower.zenith)
    xy_ed = shower_plane_xy(shower, geometry.ed_pos)
    xy_md = shower_plane_xy(shower, geometry.md_pos)
    r_ed = jnp.hypot(xy_ed[:, 0], xy_ed[:, 1])
    r_md = jnp.hypot(xy_md[:, 0], xy_md[:, 1])
    area_ed = geometry.ed_area * cos_t * response.ed_efficiency
    area_md = geometry.md_area * cos_t * response.md_efficiency
    ed_em = e.ed_em
    ed_mu = e.ed_particles - e.ed_em
    md_mu = e.md_muons
    # electromagnetic sub-showers: a fraction of the EM particles moved into lumps placed
    # along the smooth model's own radial distribution (so the mean density at every radius
    # stays; the smooth part within r_max loses that fraction when there is at least one lump)
    em_table = radial_table(
        lambda r: phys.ed_em_factor * lateral.modified_nkg_density(
            jnp.sqrt(r ** 2 + phys.ed_core_radius_m ** 2), e.n_e, e.age, r_m=phys.r_m),
        subshower_r_max_m)
    f_sub = hadron * subshower_fraction
    lumps, n_lumps = subshower_particles(k_sub, shower, xy_ed, em_table[2], hadron * subshower_rate,
                                         f_sub, 0.0, subshower_spread_m, area_ed, table=em_table,
                                         return_count=True)
    keep = 1.0 - jnp.where(n_lumps > 0, f_sub, 0.0) * (r_ed < subshower_r_max_m)
    ed_em = ed_em * keep + lumps
    # muon clumps near the core: the same for the muons within muon_clump_radius_m, seen by the
    # MDs and the EDs alike (one set of clumps)
    mu_table = radial_table(
        lambda r: lateral.greisen_muon_density(jnp.sqrt(r ** 2 + phys.ed_core_radius_m ** 2),
                                               e.n_mu, r0=phys.muon_r0), muon_clump_radius_m)
    f_mu = hadron * muon_clump_fraction
    clumps_ed, n_clumps = subshower_particles(k_mu, shower, xy_ed, mu_table[2],
                                              hadron * muon_clump_rate, f_mu, 0.0,
                                              muon_clump_spread_m, area_ed, table=mu_table,
                                              return_count=True)
    clumps_md, _ = subshower_particles(k_mu, shower, xy_md, mu_table[2], hadron * muon_clump_rate,
                                       f_mu, 0.0, muon_clump_spread_m, area_md, table=mu_table,
                                       return_count=True)
    f_mu_eff = jnp.where(n_clumps > 0, f_mu, 0.0)
    ed_mu = ed_mu * (1.0 - f_mu_eff * (r_ed < muon_clump_radius_m)) + clumps_ed
    md_mu = md_mu * (1.0 - f_mu_eff * (r_md < muon_clump_radius_m)) + clumps_md
    # patchy footprint: a mean-one log-normal multiplier of the EM density, correlated over
    # patch_length_m, its width growing with the distance from the axis
    sigma = hadron * jnp.minimum(patch_sigma * (jnp.maximum(r_ed, 1.0) / 100.0) ** patch_slope,
                                 patch_sigma_max)
    ed_em = ed_em * lognormal_multiplier(k_patch, xy_ed, sigma, patch_length_m)
    return ed_em, ed_mu, md_mu


def simulate(key, shower: Shower, geometry: Geometry, response: Response,
             physics: KM2APhysics = DEFAULT_PHYSICS, age_sigma=0.05, dead_fraction=0.0,
             trigger_n=20, trigger_window_ns=400.0, subshower_rate=0.0, subshower_fraction=0.0,
             subshower_spread_m=3.0, subshower_r_max_m=1000.0, muon_clump_rate=0.0,
             muon_clump_fraction=0.0, muon_clump_radius_m=100.0, muon_clump_spread_m=5.0,
             patch_sigma=0.0, patch_slope=0.0, patch_length_m=5.0, patch_sigma_max=1.0,
             return_labels=False):
    """Sample one event's KM2A observations with fluctuations the fit model does not carry.

    Parameters
    ----------
    key : jax PRNG key
    shower : Shower (scalar leaves); ``physics.is_gamma`` should match the primary
    age_sigma : shower-to-shower fluctuation of the lateral age (added to the offset) [M]
    dead_fraction : fraction of channels randomly dead in this event (``valid`` False)
    Hadronic structure (hadrons only: ignored when ``physics.is_gamma`` > 0.5; all 0 = the
    smooth shower of the fit model, the default here; ``joint.simulation`` turns it on with
    :data:`HADRON_STRUCTURE`; docs/hadron_structure.md gives every number's source):
    subshower_rate, subshower_fraction, subshower_spread_m, subshower_r_max_m : EM sub-showers
        of energetic secondary hadrons: Poisson(rate · sqrt(E/TeV)) lumps (≤ 16), together
        ``subshower_fraction`` of the EM particles within ``subshower_r_max_m`` [m], Gaussian
        lumps of width ``spread_m`` [m] at distances drawn from the smooth EM radial
        distribution (mean density unchanged at every radius) [M]
    muon_clump_rate, muon_clump_fraction, muon_clump_radius_m, muon_clump_spread_m : muon clumps
        near the core: the same construction for the muons within ``muon_clump_radius_m``,
        one set of clumps seen by the MDs and the EDs [D/M]
    patch_sigma, patch_slope, patch_length_m, patch_sigma_max : patchy EM footprint, a mean-one
        log-normal multiplier of the EM density, σ(r) = min(patch_sigma · (r/100 m)^patch_slope,
        patch_sigma_max), correlated as exp(−d²/2L²) with L = ``patch_length_m`` [D]
    return_labels : static Python bool; True adds per-channel truth labels (see Returns)

    Returns
    -------
    (Observed, triggered) — dense ChannelBlocks (the largest-charge hit kept per channel) and the
    trigger decision (bool scalar); with ``return_labels`` (Observed, triggered, (ed_label,
    md_label)): bool (n_ed,), (n_md,), True where the channel's kept hit (charge and time) comes
    from the shower, False for noise hits and channels without a hit.
    """

    keys = jax.random.split(key, 16)
    phys = physics._replace(lateral_age_offset=physics.lateral_age_offset
                            + age_sigma * jax.random.normal(keys[0]))
    e = expected(shower, geometry, response, phys)
    ed_em, ed_mu, md_mu = _hadron_structure(
        keys[15], shower, e, geometry, response, phys, subshower_rate, subshower_fraction,
        subshower_spread_m, subshower_r_max_m, muon_clump_rate, muon_clump_fraction,
        muon_clump_radius_m, muon_clump_spread_m, patch_sigma, patch_slope, patch_length_m,
        patch_sigma_max)
    # written as corrections to the smooth means: bit for bit the smooth means for photons
    ed_mean = e.ed_particles + (ed_em - e.ed_em) + (ed_mu - (e.ed_particles - e.ed_em))
    md_mean = e.md_muons + (md_mu - e.md_muons)
    half = 0.5 * response.window_ns

    def channels(k0, k1, k2, k3, k4, k5, mu_sig, t_front, tau, gain, sigma_q,
                 sigma_el, rate, noise_charge, threshold, saturation, live, k_dead):
        n = jax.random.poisson(k0, mu_sig).astype(mu_sig.dtype)
        # charge: sum of n Gamma(1/σ², σ²) single-particle charges = Gamma(n/σ², σ²)
        shape = jnp.maximum(n / sigma_q ** 2, 1e-6)
        q_sig = jnp.where(n > 0, jax.random.gamma(k1, shape) * sigma_q ** 2 * gain, 0.0)
        q_sig = jnp.minimum(q_sig, saturation)
        # the leading edge's irregularity the likelihood allows for (front_model_frac · T)
        # and the electronics jitter
        sigma_t = jnp.sqrt(sigma_el ** 2 + (phys.front_model_frac * tau) ** 2)
        t_sig = (t_front + first_arrival(k2, n, tau)
                 + sigma_t * jax.random.normal(k3, n.shape))
        # noise hits (at most one kept per channel in the window)
        p_noise = noise_probability(rate, response.window_ns)
        has_noise = jax.random.uniform(k4, n.shape) < p_noise
        t_noise = jax.random.uniform(k5, n.shape, minval=-half, maxval=half) + shower.t0
        q_noise = noise_charge(jax.random.fold_in(k5, 1), n.shape)
        sig_hit = (n > 0) & (q_sig >= threshold)
        noise_hit = has_noise & (q_noise >= threshold)
        use_sig = sig_hit & (~noise_hit | (q_sig >= q_noise))
        hit = sig_hit | noise_hit
        signal = jnp.where(use_sig, q_sig, jnp.where(noise_hit, q_noise, 0.0))
        time = jnp.where(use_sig, t_sig, jnp.where(noise_hit, t_noise, 0.0))
        alive = jnp.asarray(live) & (jax.random.uniform(k_dead, n.shape) >= dead_fraction)
        hit = hit & alive
        return ChannelBlock(signal=jnp.where(hit, signal, 0.0), time=jnp.where(hit, time, 0.0),
                            hit=hit, valid=alive,
                            n_pulses=(sig_hit & alive).astype(jnp.int32)
                            + (noise_hit & alive).astype(jnp.int32)), use_sig & hit

    r_ed, d_ed = shower_plane_coordinates(shower, geometry.ed_pos)
    r_md, d_md = shower_plane_coordinates(shower, geometry.md_pos)
    tau_ed = front_thickness(r_ed, phys)
    tau_md = front_thickness(r_md, phys)
    tf_ed = shower.t0 + d_ed + front_delay(r_ed, phys) + response.ed_time_offset
    tf_md = shower.t0 + d_md + front_delay(r_md, phys, muons=True) + response.md_time_offset
    lam = response.ed_noise_pe
    ed_noise = lambda k, shp: jax.random.exponential(k, shp) * lam
    g_md = jnp.mean(response.md_gain)
    md_noise = lambda k, shp: g_md * (1.0 + response.md_charge_resolution * jax.random.normal(k, shp))
    ed, ed_label = channels(*keys[1:7], ed_mean, tf_ed, tau_ed, response.ed_gain,
                  response.ed_charge_resolution, response.ed_time_resolution_ns,
                  response.ed_noise_rate_hz, ed_noise, response.ed_threshold_pe,
                  response.ed_saturation_pe, geometry.ed_live, keys[13])
    md, md_label = channels(*keys[7:13], md_mean, tf_md, tau_md, response.md_gain,
                  response.md_charge_resolution, response.md_time_resolution_ns,
                  response.md_noise_rate_hz, md_noise, response.md_threshold_pe,
                  response.md_saturation_pe, geometry.md_live, keys[14])
    triggered = trigger(ed.time, ed.hit, trigger_n, trigger_window_ns)
    if return_labels:
        return Observed(ed=ed, md=md), triggered, (ed_label, md_label)
    return Observed(ed=ed, md=md), triggered
