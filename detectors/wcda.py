"""WCDA forward model: 5 m × 5 m water Cherenkov cells in three ponds.

One event at a time (batch with ``jax.vmap``); every function is pure and jit/grad-safe. The
geometry comes from ``detectors.layout.wcda_layout`` (pond 1 measured [U], ponds 2 and 3
assumed [M]); every number below that PHYSICS.md tags [M] is a documented parameter.

Model (``expected``)
--------------------
* Sizes as for KM2A (``km2a.sizes``): the electromagnetic size N_e from the Gaisser–Hillas
  profile at each cell's own ground depth, the lateral age from the longitudinal age, the
  Heitler–Matthews muon number × exp(log_muon_scale) × ``muon_fraction``.
* Particles per cell: modified NKG (r_m = 136 m [M]) and Greisen muon densities at
  r_eff = sqrt(r² + r_cell²) (a smooth average over the 25 m² cell) × area × cos θ × the cell's
  relative efficiency.
* Photoelectrons (large PMT): a vertical muon gives ``pe_per_muon`` PE (45 PE in pond 1 [U],
  G4KM2A's "muon = PE/45"; 4× more for the 20-inch PMTs of ponds 2/3 [M]); an electromagnetic
  particle (electrons and the photons that come with them, all absorbed in 4.4 m of water) gives
  y_em(r) = ``em_pe_fraction`` · pe_per_muon · (1 + ``em_yield_core_boost`` · e^{−r/r_y}):
  the PE yield per particle follows the particles' energy, harder near the core [M].
* Charge spread: each particle's light has a relative spread (σ_em = 1.0 for the broad
  electromagnetic spectrum, σ_μ = 0.3 for muon track lengths [M]), then photostatistics with the
  single-PE resolution σ_spe. The variance-to-mean ratio of a cell's charge is therefore

      F = Σ_c n_c (y_c² (1 + σ_c²) + y_c (1 + σ_spe²)) / Σ_c n_c y_c ,

  and above the switch-over (the large PMT saturates at ``switch_pe``) the small PMT, which sees
  a fraction ``small_ratio`` of the light, adds photostatistics: F_small = F + (1+σ_spe²)(1/ratio − 1).
* Model uncertainty: the predicted F also carries κ(E)²·μ (``WCDAPhysics.model_rel_sigma``), a
  relative uncertainty κ of the cell's mean charge — what the smooth model does not describe
  (the hadronic sub-showers above all); switched on above ~100 TeV, growing from the core as
  1 − e^{−r/r_κ}; 0 turns it off.
* Times: the shared front (plane + curvature ``front_slope_ns_per_m`` · r + the cell's time
  offset), the lag of the first of n particles τ(r)/n (τ = τ₀ + τ₁ r) with n from the observed
  charge (n = q / ȳ, ȳ the model's mean PE per particle), and the PMT's charge-dependent time
  slewing t_slew(q) = a q^b + c q^d − e (WCDA-1 code: 20 q^−0.1 + 10 q^−0.08 − 24.2 ns [U]).

Likelihood (``nll``)
--------------------
Every valid cell, hit or not, with ``detectors.channel.counting_channel_nll``: scaled Poisson in
n_eff = q/F (F of the large or, above ``switch_pe``, the small PMT), Gaussian first-hit time
(σ_t² = σ_el² + lag²), a noise-hit mixture (dark noise at ``noise_rate_hz`` in the readout
window, exponential charge spectrum of mean ``noise_pe``), saturation of the small PMT, and the
empty-cell probability of the same scaled Poisson. Constant terms are kept.

Simulation (``simulate``)
-------------------------
Particle level: Poisson numbers of electromagnetic particles and muons, Gamma-distributed light
per particle, Poisson photoelectrons in the large PMT and, above the switch-over, in the small
one, Gaussian single-PE resolution, the first-particle lag (exponential of mean τ/n), electronics
jitter, the time slewing of the sampled charge, dark-noise hits uniformly over the window, dead
cells, saturation, the threshold, a shower-to-shower lateral-age fluctuation, and the trigger
(≥ ``trigger_n`` cells of ≥ ``trigger_pe`` within ``trigger_window_ns``). For hadron primaries it
can add electromagnetic sub-showers from late hadronic interactions (``subshower_*``: compact
lumps of particles scattered at random around the core, shared with KM2A:
``detectors.substructure.subshower_particles``; PHYSICS.md has no numbers [M]) — the
clumpiness that compactness and PINCness measure and that the smooth fit model does not carry.

Units: positions m, times ns, charges PE (large-PMT equivalent), densities per m².
"""
from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from .block import ChannelBlock
from . import lateral
from .channel import MU_FLOOR, counting_channel_nll, delegate_fields, noise_probability
from .channel import information_weights as _information_weights
from .km2a import first_arrival, sizes, trigger
from .shower import Shower, shower_plane_coordinates
from .substructure import subshower_particles

__all__ = ["Geometry", "Response", "WCDAPhysics", "Prediction", "Expectation", "Observed",
           "expected", "predict", "nll", "channel_nll", "simulate", "time_slewing",
           "information_weights", "fisher_stats", "cell_fano", "gof_counts", "DEFAULT_PHYSICS",
           "model_rel_sigma", "model_variance_ratio",
           "POND_DEFAULTS", "HADRON_SUBSHOWERS"]

#: Nominal per-pond PMT response [M] (PHYSICS.md §3: PMT types [M], PE per muon not found).
#: pe_per_muon: vertical-muon charge of the large PMT [PE] (pond 1: 45 [U], G4KM2A getmuW;
#: the 20-inch MCP-PMTs of ponds 2/3: ≈ 4× the photocathode light of an 8-inch PMT [M]);
#: small_ratio: light seen by the small PMT relative to the large one, the photocathode area
#: ratio (1.5/8)² and (3/20)²; switch_pe: large-PMT charge above which the small PMT is read
#: (the large one's linear range); saturation_pe: the small PMT's limit in large-PMT PE;
#: noise_rate_hz: dark-noise rate above threshold.
POND_DEFAULTS = {
    1: dict(pe_per_muon=45.0, small_ratio=(1.5 / 8.0) ** 2, switch_pe=4.0e3, saturation_pe=1.7e5,
            noise_rate_hz=10.0e3),
    2: dict(pe_per_muon=180.0, small_ratio=(3.0 / 20.0) ** 2, switch_pe=1.6e4, saturation_pe=2.7e5,
            noise_rate_hz=20.0e3),
    3: dict(pe_per_muon=180.0, small_ratio=(3.0 / 20.0) ** 2, switch_pe=1.6e4, saturation_pe=2.7e5,
            noise_rate_hz=20.0e3),
}


#: Sub-shower defaults for hadron primaries [M] (no published numbers; a plausible clumpiness:
#: ~3 lumps at 1 TeV, ~16 at 30 TeV, together 10% of the electromagnetic size, 40 m from the
#: core on average, 4 m wide) — see ``simulate``. BENCHMARKS.md reports the gamma/hadron
#: figures with and without them.
HADRON_SUBSHOWERS = dict(subshower_rate=3.0, subshower_fraction=0.1, subshower_radius_m=40.0,
                         subshower_spread_m=4.0)


class Geometry(NamedTuple):
    """WCDA cells of one run period.

    cell_pos : (n, 3) [m] large-PMT positions, array frame, z relative to 4400 m
    pond : (n,) int pond number (1, 2, 3)
    cell_area : [m²] 25 (5 m × 5 m [C])
    cell_live : (n,) bool — cells that exist in this period and are alive
    """

    cell_pos: jnp.ndarray
    pond: jnp.ndarray
    cell_area: float = 25.0
    cell_live: jnp.ndarray | None = None

    @classmethod
    def from_layout(cls, layout, cell_live=None) -> "Geometry":
        """From ``detectors.layout.WCDALayout`` (``wcda_layout()``)."""
        n = layout.cell_pos.shape[0]
        return cls(cell_pos=np.asarray(layout.cell_pos, np.float64),
                   pond=np.asarray(layout.pond, np.int32),
                   cell_area=float(layout.cell_size) ** 2,
                   cell_live=np.ones(n, bool) if cell_live is None else np.asarray(cell_live, bool))


class Response(NamedTuple):
    """Per-cell calibration with nominal defaults (a pytree, learnable by ``calib``).

    efficiency : (n,) relative light collection (nominal 1; the measured pond-1 spread of
        ``water_eff_0110.txt`` via :meth:`measured_efficiency`)
    time_offset : (n,) [ns], nominal 0
    pe_per_muon, small_ratio, switch_pe, saturation_pe, noise_rate_hz : (n,) per pond,
        :data:`POND_DEFAULTS` [M]/[U]
    spe_resolution : relative width of the single-PE charge, 0.35 [M]
    threshold_pe : hit threshold, 0.3 PE [M]
    noise_pe : mean of the exponential dark-noise charge spectrum, 1.0 PE [M]
    time_resolution_ns : electronics and transit-time jitter, 2 ns [M]
    window_ns : readout window around the event, 1000 ns (±500 ns) [M]
    slewing : (a, b, c, d, e) of t_slew(q) = a q^b + c q^d − e [ns], (20, −0.1, 10, −0.08, 24.2)
        (WCDA-1 code [U])
    """

    efficiency: jnp.ndarray
    time_offset: jnp.ndarray
    pe_per_muon: jnp.ndarray
    small_ratio: jnp.ndarray
    switch_pe: jnp.ndarray
    saturation_pe: jnp.ndarray
    noise_rate_hz: jnp.ndarray
    spe_resolution: float = 0.35
    threshold_pe: float = 0.3
    noise_pe: float = 1.0
    time_resolution_ns: float = 2.0
    window_ns: float = 1000.0
    slewing: tuple = (20.0, -0.1, 10.0, -0.08, 24.2)

    @classmethod
    def nominal(cls, geometry: Geometry, **overrides) -> "Response":
        pond = np.asarray(geometry.pond)
        n = pond.shape[0]
        per = {k: np.array([POND_DEFAULTS[int(p)][k] for p in pond], np.float64)
               for k in POND_DEFAULTS[1]}
        base = dict(efficiency=np.ones(n), time_offset=np.zeros(n), **per)
        base.update(overrides)
        return cls(**base)

    @staticmethod
    def measured_efficiency(layout) -> np.ndarray:
        """Relative efficiencies (n,) for ``layout``'s cells: the measured ``water_eff_0110.txt``
        values for pond 1 (cell ids 0–899), 1 for the other ponds."""
        from .layout import wcda_cell_efficiency

        eff = np.ones(layout.n_cells)
        p1 = np.asarray(layout.pond) == 1
        eff[p1] = wcda_cell_efficiency()[np.asarray(layout.cell_id)[p1]]
        return eff


class WCDAPhysics(NamedTuple):
    """Physics parameters of the WCDA model (tags as in PHYSICS.md; [M] = assumption).

    is_gamma : 1 for the photon hypothesis, 0 for hadrons
    r_m, lateral_age_offset, lateral_age_slope, muon_r0, muon_beta, muon_xi_c_gev : as in
        ``km2a.KM2APhysics`` (the same shower seen by another detector)
    muon_fraction : fraction of Heitler–Matthews muons seen (every muon above ~0.2 GeV makes
        light in water: 1.0 [M])
    em_pe_fraction : PE of an electromagnetic particle far from the core relative to a vertical
        muon, 0.06 [M] (≈ 50 MeV of electromagnetic energy per charged particle, photons
        included, against ~880 MeV deposited by a muon crossing 4.4 m of water)
    em_yield_core_boost, em_yield_radius_m : energy dependence of the PE per electromagnetic
        particle, y_em(r) = em_pe_fraction · pe_per_muon · (1 + boost · e^{−r/r_y}): 3.0, 30 m
        [M] — ≈ 200 MeV per particle at the core (11 PE in pond 1), 4.5 PE at 45 m, 3 PE at
        100 m, so that a photon shower's largest charge beyond 45 m is ~10–20 PE as WCDA-1's
        compactness cut (> 10 at N_hit ~ 100–200, PHYSICS.md §5.2) implies
    em_light_spread, muon_light_spread : relative spread of one particle's light, 1.0 / 0.3 [M]
    front_slope_ns_per_m : curvature delay [ns/m], 0.07 (WCDA-1 code: 0.0667 protons [U])
    front_tau0_ns, front_tau1_ns_per_m : front thickness τ(r) = τ₀ + τ₁ r [M]
    cell_core_radius_m : densities at sqrt(r² + r_cell²), 2 m for a 25 m² cell
    model_rel_sigma : κ, relative model uncertainty of a cell's mean charge [M]: the charge
        variance gains (κ·μ)², i.e. the variance-to-mean ratio F → F + κ²μ (0 = off). It stands
        for what the smooth lateral model does not carry — above all the hadronic sub-showers
        that put compact lumps of particles in the ponds (``simulate``'s ``subshower_*``), but
        also the lateral-shape fluctuations — so that cells of thousands of PE are not weighted
        as if their Poisson spread were their only uncertainty (at 1 PeV, without it, WCDA's
        charge deviance was 2.2σ above its expectation in the median KM2A+WCDA fit:
        ``benchmarks/results/joint_pev_before_issue16.txt``). κ is chosen on one simulated sample of 1 PeV protons and judged
        on another (``benchmarks/wcda_model_sigma.py``, docs/joint.md "WCDA model uncertainty"):
        0.25 [M], the smallest κ of the grid 0, 0.2, 0.25, ... at which the median z-score of the
        charge deviance at the true shower is ≤ 0 (48 protons at 1 PeV, seed 11)
    model_sigma_log10e_on, model_sigma_log10e_width : κ is switched on with the shower energy,
        κ(E) = κ · sigmoid((log10(E/GeV) − on)/width): 5.0 (100 TeV), 0.25 dex [M] — κ was
        measured at 1 PeV only, and below ~30 TeV (κ(E) < 0.12 κ) WCDA's photon fits keep the
        model as it was calibrated there (docs/joint.md)
    model_sigma_core_radius_m : r_κ, the term grows from the core as 1 − e^{−r/r_κ}: 20 m [M].
        Near the core many sub-showers overlap a cell and their sum fluctuates relatively less
        (for lumps at an exponential distance of mean 40 m, ~1 lump per cell at 5 m, ~0.07 at
        40 m), and the brightest cells carry the core: with κ flat in r the KM2A+WCDA core 68%
        at 1 PeV went from 0.67 to 0.87 m (32 events, docs/joint.md); 0 = flat
    """

    is_gamma: float = 0.0
    r_m: float = 136.0
    lateral_age_offset: float = 0.0
    lateral_age_slope: float = 1.0
    muon_r0: float = 320.0
    muon_beta: float = 0.92
    muon_xi_c_gev: float = 20.0
    muon_fraction: float = 1.0
    em_pe_fraction: float = 0.06
    em_yield_core_boost: float = 3.0
    em_yield_radius_m: float = 30.0
    em_light_spread: float = 1.0
    muon_light_spread: float = 0.3
    front_slope_ns_per_m: float = 0.07
    front_tau0_ns: float = 1.5
    front_tau1_ns_per_m: float = 0.03
    cell_core_radius_m: float = 2.0
    model_rel_sigma: float = 0.25
    model_sigma_log10e_on: float = 5.0
    model_sigma_log10e_width: float = 0.25
    model_sigma_core_radius_m: float = 20.0


DEFAULT_PHYSICS = WCDAPhysics()


class Prediction(NamedTuple):
    """What the likelihood needs, per cell (n,): cell_pe (mean large-PMT charge [PE]),
    cell_fano (Var/mean of the charge [PE], large PMT), cell_pe_per_particle (mean PE per
    particle, for the first-particle lag), cell_time (front arrival [ns], slewing excluded),
    cell_front_tau (front thickness τ(r) [ns])."""

    cell_pe: jnp.ndarray
    cell_fano: jnp.ndarray
    cell_pe_per_particle: jnp.ndarray
    cell_time: jnp.ndarray
    cell_front_tau: jnp.ndarray


class Expectation(NamedTuple):
    """Mean signals of every cell (:class:`Prediction`) plus the event's summaries:
    cell_em, cell_muons (n,) mean particle numbers; n_e (EM size at the ground), n_mu (muon
    size), age (lateral age). The Prediction's fields are readable directly."""

    prediction: Prediction
    cell_em: jnp.ndarray
    cell_muons: jnp.ndarray
    n_e: jnp.ndarray
    n_mu: jnp.ndarray
    age: jnp.ndarray


delegate_fields(Expectation, Prediction)


class Observed(NamedTuple):
    """WCDA observations of one event: a ChannelBlock (detectors.block) (signal [PE, large-PMT
    equivalent], time [ns], hit, valid, n_pulses) over the cells."""

    cells: object


# ---------------------------------------------------------------------------------------------
# expected signals
# ---------------------------------------------------------------------------------------------
def _yields(r, response: Response, physics: WCDAPhysics):
    """(PE per EM particle, PE per muon) of each cell at shower-plane distance r."""
    y_mu = response.pe_per_muon
    boost = 1.0 + physics.em_yield_core_boost * jnp.exp(-r / physics.em_yield_radius_m)
    return physics.em_pe_fraction * y_mu * boost, y_mu


def cell_fano(n_em, n_mu, y_em, y_mu, spe_resolution, physics: WCDAPhysics = DEFAULT_PHYSICS):
    """Var(q)/E(q) [PE] of a cell's large-PMT charge for mean particle numbers n_em, n_mu with
    PE yields y_em, y_mu (see the module docstring); finite as n → 0 (the EM value)."""
    spe = 1.0 + spe_resolution ** 2
    a_em = y_em * y_em * (1.0 + physics.em_light_spread ** 2) + y_em * spe
    a_mu = y_mu * y_mu * (1.0 + physics.muon_light_spread ** 2) + y_mu * spe
    eps = 1e-6
    return (n_em * a_em + n_mu * a_mu + eps * a_em) / (n_em * y_em + n_mu * y_mu + eps * y_em)


def model_rel_sigma(shower: Shower, physics: WCDAPhysics = DEFAULT_PHYSICS):
    """κ(E): the relative model uncertainty of a cell's mean charge at ``shower``'s energy
    (``WCDAPhysics.model_rel_sigma`` switched on smoothly above ``model_sigma_log10e_on``)."""
    on = jax.nn.sigmoid((shower.log10_energy - physics.model_sigma_log10e_on)
                        / physics.model_sigma_log10e_width)
    return physics.model_rel_sigma * on


def model_variance_ratio(shower: Shower, pe, physics: WCDAPhysics = DEFAULT_PHYSICS, r=None):
    """κ(E, r)² μ: the model-uncertainty part of a cell's variance-to-mean ratio [PE] for mean
    charges ``pe`` at shower-plane distances ``r`` [m] (variance (κμ)², κ(E, r) = κ(E) ·
    (1 − e^{−r/r_κ}); ``r`` None or r_κ = 0: flat); 0 when ``model_rel_sigma`` is 0."""
    k = model_rel_sigma(shower, physics)
    if r is not None:
        rk = physics.model_sigma_core_radius_m
        k = k * jnp.where(rk > 0, -jnp.expm1(-r / jnp.maximum(rk, 1e-6)), 1.0)
    return k * k * pe


def expected(shower: Shower, geometry: Geometry, response: Response,
             physics: WCDAPhysics = DEFAULT_PHYSICS) -> Expectation:
    """Mean photoelectrons and arrival times of every WCDA cell for one shower.

    Returns an :class:`Expectation`; shapes (n,) per cell, scalars for the summaries.
    """
    cos_t = jnp.cos(shower.zenith)
    z = geometry.cell_pos[:, 2]
    n_e_ch, _, n_mu = sizes(shower, physics, z)
    n_e0, s_lat, _ = sizes(shower, physics, jnp.mean(z))
    r, delay = shower_plane_coordinates(shower, geometry.cell_pos)
    r_eff = jnp.sqrt(r ** 2 + physics.cell_core_radius_m ** 2)
    area = geometry.cell_area * cos_t * response.efficiency
    n_em = lateral.modified_nkg_density(r_eff, n_e_ch, s_lat, r_m=physics.r_m) * area
    n_mu_cell = lateral.greisen_muon_density(r_eff, n_mu, r0=physics.muon_r0) * area
    y_em, y_mu = _yields(r, response, physics)
    pe = n_em * y_em + n_mu_cell * y_mu
    fano = (cell_fano(n_em, n_mu_cell, y_em, y_mu, response.spe_resolution, physics)
            + model_variance_ratio(shower, pe, physics, r))
    per_particle = (pe + 1e-6 * y_em) / (n_em + n_mu_cell + 1e-6)
    tau = physics.front_tau0_ns + physics.front_tau1_ns_per_m * r
    t = shower.t0 + delay + physics.front_slope_ns_per_m * r + response.time_offset
    pred = Prediction(cell_pe=pe, cell_fano=fano, cell_pe_per_particle=per_particle,
                      cell_time=t, cell_front_tau=tau)
    return Expectation(prediction=pred, cell_em=n_em, cell_muons=n_mu_cell, n_e=n_e0, n_mu=n_mu,
                       age=s_lat)


def predict(shower: Shower, geometry: Geometry, response: Response,
            physics: WCDAPhysics = DEFAULT_PHYSICS) -> Prediction:
    """The likelihood's inputs only (see :class:`Prediction`)."""
    return expected(shower, geometry, response, physics).prediction


def time_slewing(q, response: Response):
    """Charge-dependent delay of the PMT signal [ns] for charge q [PE] (q floored at the
    threshold): a q^b + c q^d − e (WCDA-1 code [U])."""
    a, b, c, d, e = response.slewing
    qs = jnp.maximum(q, response.threshold_pe)
    return a * qs ** b + c * qs ** d - e


# ---------------------------------------------------------------------------------------------
# likelihood
# ---------------------------------------------------------------------------------------------
def _small_fano(fano, response: Response):
    return fano + (1.0 + response.spe_resolution ** 2) * (1.0 / response.small_ratio - 1.0)


def _mean_count_if_hit(p):
    """Mean particle number of a cell given that it has at least one: n̄ / (1 − e^{−n̄})."""
    n = jnp.maximum(p.cell_pe / p.cell_pe_per_particle, 1e-6)
    return n / -jnp.expm1(-n)


def _hit_time(q, fano, p, response: Response):
    """Expected time [ns] and spread [ns] of a hit of charge q: front + lag + slewing.

    The first of n particles lags by τ/n on average (n = q / ȳ); its spread τ/n is taken with
    the smaller, effective count n_eff = q/F (F the charge's variance-to-mean ratio): with the
    broad light spread of one particle, q/ȳ often counts one particle as two or three, and the
    narrower spread made the far cells' times (r > 100 m, τ ≥ 4.5 ns) over-weighted — their
    pulls had an rms of 1.4–2.0 at the true shower, and the angular resolution on all cells was
    3.4 × the Cramér–Rao bound (docs/wcda.md).
    """
    tau = p.cell_front_tau
    lag = tau / jnp.maximum(q / p.cell_pe_per_particle, 1.0)
    spread = tau / jnp.maximum(jnp.minimum(q / fano, _mean_count_if_hit(p)), 1.0)
    t_exp = p.cell_time + lag + time_slewing(q, response)
    return t_exp, jnp.sqrt(response.time_resolution_ns ** 2 + spread ** 2)


def channel_nll(observed: Observed, expectation, geometry: Geometry, response: Response):
    """Per-cell −ln L (n,) (``expectation``: an Expectation or a Prediction)."""
    c = observed.cells
    q = c.signal
    valid = c.valid & jnp.asarray(geometry.cell_live)
    fano = jnp.where(q >= response.switch_pe, _small_fano(expectation.cell_fano, response),
                     expectation.cell_fano)
    t_exp, sigma_t = _hit_time(q, fano, expectation, response)
    lam = response.noise_pe
    return counting_channel_nll(q, c.time, c.hit, valid, expectation.cell_pe, fano, t_exp,
                                sigma_t, response.threshold_pe, response.saturation_pe,
                                noise_probability(response.noise_rate_hz, response.window_ns),
                                response.window_ns, lambda x: -x / lam - jnp.log(lam))


def gof_counts(observed: Observed, expectation, geometry: Geometry, response: Response):
    """[(n_eff, μ_eff, mask)] of the cells for ``channel.deviance_sums`` (charges above threshold
    and below saturation, in effective counts q/F with the model's F)."""
    c = observed.cells
    mom = _moments(expectation, geometry, response)
    mu, var, _ = mom["cell_pe"]
    f = var / mu
    q = jnp.where(c.hit & (c.signal >= response.threshold_pe), c.signal, 0.0)
    mask = c.valid & jnp.asarray(geometry.cell_live) & (c.signal < response.saturation_pe)
    return [(q / f, mu / f, mask)]


def nll(observed: Observed, expectation, geometry: Geometry, response: Response, physics=None):
    """Negative log-likelihood (scalar) of one event's WCDA cells, every valid cell. ``physics``
    is accepted for the common detector signature (the cell likelihood has no physics option)."""
    return jnp.sum(channel_nll(observed, expectation, geometry, response))


def _moments(p: Prediction, geometry: Geometry, response: Response):
    """(mean, variance, weight) of the predicted charges and first-hit times (the one statement
    of the model's expected information, for Fisher scoring and the Cramér–Rao bound)."""
    live = jnp.asarray(geometry.cell_live, p.cell_pe.dtype)
    mu = jnp.maximum(p.cell_pe, MU_FLOOR)
    fano = jnp.where(mu >= response.switch_pe, _small_fano(p.cell_fano, response), p.cell_fano)
    n_part = mu / p.cell_pe_per_particle
    n_spread = jnp.maximum(jnp.minimum(mu / fano, _mean_count_if_hit(p)), 1.0)
    var_t = response.time_resolution_ns ** 2 + (p.cell_front_tau / n_spread) ** 2
    return {"cell_pe": (mu, fano * mu, live),
            "cell_time": (p.cell_time, var_t, live * -jnp.expm1(-n_part))}


def information_weights(expectation, geometry: Geometry, response: Response, physics=None):
    """Expected information per predicted number (pytree like ``expectation``) for Fisher
    scoring: weight/variance of :func:`_moments` for charges and times, 0 for the nuisances
    (fano, PE per particle, front thickness)."""
    return _information_weights(expectation, lambda p: _moments(p, geometry, response))


def fisher_stats(shower: Shower, geometry: Geometry, response: Response,
                 physics: WCDAPhysics = DEFAULT_PHYSICS):
    """(mean, variance, weight) triples for ``joint.fit.cramer_rao`` (see :func:`_moments`)."""
    return list(_moments(predict(shower, geometry, response, physics), geometry, response).values())


# ---------------------------------------------------------------------------------------------
# simulation
# ---------------------------------------------------------------------------------------------
def simulate(key, shower: Shower, geometry: Geometry, response: Response,
             physics: WCDAPhysics = DEFAULT_PHYSICS, age_sigma=0.05, dead_fraction=0.0,
             trigger_n=30, trigger_pe=1.0, trigger_window_ns=250.0,
             subshower_rate=0.0, subshower_fraction=0.1, subshower_radius_m=40.0,
             subshower_spread_m=4.0):
    """Sample one event's WCDA observations at particle level (see the module docstring).

    Parameters
    ----------
    key : jax PRNG key;  shower : Shower (scalar leaves); ``physics.is_gamma`` should match
    age_sigma : shower-to-shower fluctuation of the lateral age [M]
    dead_fraction : fraction of cells randomly dead in this event (``valid`` False)
    trigger_n, trigger_pe, trigger_window_ns : the trigger, ≥ 30 cells of ≥ 1 PE within 250 ns [M]
    subshower_rate, subshower_fraction, subshower_radius_m, subshower_spread_m : hadronic
        sub-showers, mean number rate · sqrt(E/TeV), together ``fraction`` of N_e (0 = none;
        ``joint.simulation`` enables them for hadrons: :data:`HADRON_SUBSHOWERS`) [M]

    Returns
    -------
    (Observed, triggered)
    """

    keys = jax.random.split(key, 16)
    phys = physics._replace(lateral_age_offset=physics.lateral_age_offset
                            + age_sigma * jax.random.normal(keys[0]))
    e = expected(shower, geometry, response, phys)
    r, delay = shower_plane_coordinates(shower, geometry.cell_pos)
    area = geometry.cell_area * jnp.cos(shower.zenith) * response.efficiency
    sub = subshower_particles(keys[1], shower, geometry.cell_pos, e.n_e, subshower_rate,
                              subshower_fraction, subshower_radius_m, subshower_spread_m, area)
    mu_em = e.cell_em + sub
    y_em, y_mu = _yields(r, response, phys)
    shape = r.shape
    n_em = jax.random.poisson(keys[2], mu_em, shape).astype(r.dtype)
    n_mu = jax.random.poisson(keys[3], e.cell_muons, shape).astype(r.dtype)

    def light(k, n, y, spread):
        a = jnp.maximum(n / spread ** 2, 1e-6)
        return jnp.where(n > 0, jax.random.gamma(k, a) * spread ** 2 * y, 0.0)

    lum = light(keys[4], n_em, y_em, phys.em_light_spread) + light(keys[5], n_mu, y_mu,
                                                                    phys.muon_light_spread)
    spe = response.spe_resolution

    def charge(k, mean_pe):
        k1, k2 = jax.random.split(k)
        npe = jax.random.poisson(k1, mean_pe, shape).astype(r.dtype)
        return jnp.maximum(npe + spe * jnp.sqrt(npe) * jax.random.normal(k2, shape), 0.0)

    q_large = charge(keys[6], lum)
    q_small = charge(keys[7], lum * response.small_ratio) / response.small_ratio
    q_sig = jnp.minimum(jnp.where(q_large >= response.switch_pe, q_small, q_large),
                        response.saturation_pe)
    n_tot = n_em + n_mu
    tau = phys.front_tau0_ns + phys.front_tau1_ns_per_m * r
    t_front = shower.t0 + delay + phys.front_slope_ns_per_m * r + response.time_offset
    t_sig = (t_front + first_arrival(keys[8], n_tot, tau)
             + response.time_resolution_ns * jax.random.normal(keys[9], shape)
             + time_slewing(q_sig, response))
    # dark noise (one hit kept per cell: the larger charge)
    half = 0.5 * response.window_ns
    p_noise = noise_probability(response.noise_rate_hz, response.window_ns)
    has_noise = jax.random.uniform(keys[10], shape) < p_noise
    q_noise = jax.random.exponential(keys[11], shape) * response.noise_pe
    t_noise = shower.t0 + jax.random.uniform(keys[12], shape, minval=-half, maxval=half)
    sig_hit = (n_tot > 0) & (q_sig >= response.threshold_pe)
    noise_hit = has_noise & (q_noise >= response.threshold_pe)
    use_sig = sig_hit & (~noise_hit | (q_sig >= q_noise))
    alive = jnp.asarray(geometry.cell_live) & (jax.random.uniform(keys[13], shape) >= dead_fraction)
    hit = (sig_hit | noise_hit) & alive
    signal = jnp.where(use_sig, q_sig, q_noise)
    time = jnp.where(use_sig, t_sig, t_noise)
    block = ChannelBlock(signal=jnp.where(hit, signal, 0.0), time=jnp.where(hit, time, 0.0),
                         hit=hit, valid=alive,
                         n_pulses=(sig_hit & alive).astype(jnp.int32)
                         + (noise_hit & alive).astype(jnp.int32))
    triggered = trigger(block.time, hit & (block.signal >= trigger_pe), trigger_n,
                        trigger_window_ns)
    return Observed(cells=block), triggered
