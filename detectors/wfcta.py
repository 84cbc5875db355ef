"""WFCTA forward model: Cherenkov (and fluorescence) images of the longitudinal profile.

One event at a time (batch with ``jax.vmap``); every function is pure and jit/grad-safe. The
telescopes and cameras come from ``detectors.layout.wfcta_layout`` (6 public telescopes [U], or
a user list of up to 18); every number PHYSICS.md tags [M] is a documented parameter.

Model (``expected``)
--------------------
* The shower axis is cut into ``n_slices`` slices of equal slant depth from ``x_top`` to the
  ground (4400 m); slice k has depth X_k, height h_k and position P_k on the axis.
* Charged particles N(X_k) from the Gaisser–Hillas profile (Xmax, N_max(E), USP shape:
  ``profile.gh_shape_params``), age s_k; Cherenkov photons emitted in the slice
  N_k · dN/dl(h_k, s_k) · Δl_k (Nerling yield with the local threshold, ``detectors.cherenkov``,
  times ``cherenkov_scale`` = 0.894 fitted to CORSIKA's emission);
  fluorescence photons Y_fl · dE/dX(X_k) · ΔX_k (isotropic, ``fluorescence_yield_per_mev``
  = 20 photons/MeV in 300–430 nm [M]).
* Photons reaching a telescope at distance D_k under angle β_k to the axis:
  cherenkov · (dN/dΩ)(β_k) · A/D_k² + fluorescence · A/(4π D_k²), with dN/dΩ the small-angle
  distribution of Arbeletche & de Souza (2021; Cherenkov ring at θ_em = arccos 1/n; its level
  inside the cone scaled by ``cone_inside_level``, fitted to CORSIKA) convolved
  with the NKG lateral spread of the emitting electrons (``_seen_pdf``; ``angular_model``
  "nerling" restores the earlier Nerling form), times the wavelength-averaged
  Rayleigh + aerosol transmission along the line of sight and the photon → PE efficiency
  (mirror reflectivity × filter transmission (``WFCTA`` tables) × window 0.87 [U] × SiPM PDE
  0.25 [M]) and the telescope's and pixel's relative efficiencies.
* Image: the direction of P_k from the telescope in the camera's tangent plane (gnomonic, as
  ``layout.pixel_directions``), spread by a Gaussian of σ_k² = σ_spot² + (f_lat · r_M(h_k)/D_k)²
  (optical spot 0.2° [C, star-light calibration], the lateral spread of the emitting
  electrons, f_lat = 0.10 of the local Molière radius (fitted to CORSIKA, docs/cherenkov_light.md),
  the same radius as in the convolution of dN/dΩ) and integrated over each square pixel
  (the camera grid is separable: columns × rows, so the integral is a product of two 1-D ones).
* Night-sky background: ``nsb_pe`` per pixel per event window (15 PE [M]).

Likelihood (``nll``)
--------------------
Every valid pixel of every telescope: a scaled Poisson in n_eff = q/F, μ_eff = μ/F with the
SiPM excess-noise factor F (1.2 [M]; crosstalk and afterpulses), μ = signal + background, the
Jacobian −ln F kept (constants kept, values compare between events).

Simulation (``simulate``)
-------------------------
Poisson photoelectrons of the signal and the background, excess noise (Gamma, variance
(F − 1)·n), dead pixels, and shower-to-shower fluctuations of the profile's width (L scaled by
1 + σ_w·N(0, 1), σ_w = :data:`WIDTH_SIGMA` = 0.035 from CORSIKA profiles, carried to PeV [M])
and of the lateral spread (f_lat × (1 + σ_l·N(0, 1)), σ_l = :data:`LATERAL_SIGMA` = 0.1 [M]).

Nuisances (``predict_event``)
-----------------------------
The two fluctuating scales are the fit's nuisances ν = (width scale, lateral scale) under
Gaussian priors N(1, σ²) with the SAME σ (``WFCTAPhysics.nuisance_sigmas``; the registry's
physics sets :data:`NUISANCE_SIGMAS`): for each trial shower a few Fisher-scoring steps on ν
against the event's pixels give ν̂(shower); the prediction is μ(shower, ν̂) and the priors'
residuals (ν̂ − 1)/σ enter the loss as ½ r², with the derivative of ν̂ in the shower parameters
(implicit function theorem), so Fisher scoring's Jᵀ W J is the profiled information and
``fisher_stats`` gives the bound of the same model (docs/nuisances.md). A relative model
uncertainty κ (``model_rel_sigma``, 0 = off [M]) adds (κ μ_signal)² to each pixel's variance.

Units: positions m (array frame, z relative to 4400 m), angles rad, depths g/cm², charges PE.
"""
from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import gammaln, ndtr

from .block import ChannelBlock
from .channel import model_fano, scaled_poisson_nll
from . import atmosphere, cherenkov, profile
from .shower import REFERENCE_HEIGHT_M, Shower, direction, ground_slant_depth

__all__ = ["Geometry", "Response", "WFCTAPhysics", "Expectation", "Observed", "expected",
           "predict", "nll", "channel_nll", "simulate", "information_weights", "fisher_stats",
           "photon_efficiency", "camera_coordinates", "gof_counts", "DEFAULT_PHYSICS",
           "Profiled", "predict_event", "profile_nuisances", "check_physics", "NUISANCE_SIGMAS",
           "WIDTH_SIGMA", "LATERAL_SIGMA"]

N_SIDE = 32


class Geometry(NamedTuple):
    """WFCTA telescopes of one run period.

    tel_pos : (n_tel, 3) [m];  tel_axis, tel_e_az, tel_e_el : (n_tel, 3) optical axis and the
        camera's unit vectors towards increasing azimuth (ξ) and elevation (η)
    col_x : (32,) [rad] tangent-plane ξ of the pixel columns; row_y : (32,) [rad] η of the rows
        (pixel k = row·32 + column, as ``layout.camera_pixel_xy``)
    pixel_size : [rad] angular side of a pixel (25.8 mm / 2870 mm)
    mirror_area : [m²] 5.0 [M] (4.7–5 m², PHYSICS.md §4)
    spot_sigma : [rad] optical spot, 0.2° [C]
    pixel_live : (n_tel, 1024) bool
    """

    tel_pos: jnp.ndarray
    tel_axis: jnp.ndarray
    tel_e_az: jnp.ndarray
    tel_e_el: jnp.ndarray
    col_x: jnp.ndarray
    row_y: jnp.ndarray
    pixel_size: float
    mirror_area: float = 5.0
    spot_sigma: float = float(np.radians(0.2))
    pixel_live: jnp.ndarray | None = None

    @classmethod
    def from_layout(cls, layout, pixel_live=None, mirror_area=5.0, spot_deg=0.2) -> "Geometry":
        az, ze = np.asarray(layout.azimuth), np.asarray(layout.zenith)
        axis = np.stack([np.sin(ze) * np.cos(az), np.sin(ze) * np.sin(az), np.cos(ze)], -1)
        e_az = np.stack([-np.sin(az), np.cos(az), np.zeros_like(az)], -1)
        e_el = np.stack([-np.cos(ze) * np.cos(az), -np.cos(ze) * np.sin(az), np.sin(ze)], -1)
        ang = np.asarray(layout.pixel_angle).reshape(N_SIDE, N_SIDE, 2)
        live = np.ones((layout.n_tel, layout.n_pix), bool) if pixel_live is None else \
            np.asarray(pixel_live, bool).reshape(layout.n_tel, layout.n_pix)
        return cls(tel_pos=np.asarray(layout.tel_pos, np.float64), tel_axis=axis, tel_e_az=e_az,
                   tel_e_el=e_el, col_x=ang[0, :, 0].copy(), row_y=ang[:, 0, 1].copy(),
                   pixel_size=float(layout.pixel_angular_size), mirror_area=float(mirror_area),
                   spot_sigma=float(np.radians(spot_deg)), pixel_live=live)


def photon_efficiency(pde=0.25, window=0.87):
    """(mean photon → PE efficiency over the Cherenkov 1/λ² spectrum in 290–430 nm, weights (8,)
    of the photons that become PE on ``cherenkov.WAVELENGTH_GRID_NM``): mirror reflectivity ×
    filter transmission at normal incidence × window [U] × SiPM PDE [M]."""
    from .layout import wfcta_optics_table

    lam = cherenkov.WAVELENGTH_GRID_NM
    mirror = wfcta_optics_table("mirror")
    filt = wfcta_optics_table("filter")
    m = np.interp(lam, mirror[:, 0], mirror[:, 1])
    order = np.argsort(filt[:, 0])
    f = np.interp(lam, filt[order, 0], filt[order, 1])
    eff = m * f * window * pde
    spec = 1.0 / lam ** 2
    w = spec * eff
    return float(np.sum(w) / np.sum(spec)), w / np.sum(w)


class Response(NamedTuple):
    """Per-pixel and per-telescope calibration (a pytree, learnable by ``calib``).

    pixel_gain : (n_tel, 1024) relative gain, nominal 1
    tel_efficiency : (n_tel,) relative efficiency (mirror, dust), nominal 1
    nsb_pe : (n_tel, 1024) mean night-sky background per pixel per event [PE], 15 [M]
    efficiency : mean photon → PE efficiency (:func:`photon_efficiency`)
    wavelength_weights : (8,) photon weights for the transmission average
    excess_noise : SiPM excess-noise factor F, 1.2 [M]
    """

    pixel_gain: jnp.ndarray
    tel_efficiency: jnp.ndarray
    nsb_pe: jnp.ndarray
    efficiency: float
    wavelength_weights: jnp.ndarray
    excess_noise: float = 1.2

    @classmethod
    def nominal(cls, geometry: Geometry, nsb_pe=15.0, pde=0.25, **overrides) -> "Response":
        n_tel = np.asarray(geometry.tel_pos).shape[0]
        eff, w = photon_efficiency(pde=pde)
        base = dict(pixel_gain=np.ones((n_tel, N_SIDE * N_SIDE)), tel_efficiency=np.ones(n_tel),
                    nsb_pe=np.full((n_tel, N_SIDE * N_SIDE), float(nsb_pe)), efficiency=eff,
                    wavelength_weights=w)
        base.update(overrides)
        return cls(**base)


class WFCTAPhysics(NamedTuple):
    """Model parameters ([M] = assumption, PHYSICS.md tags).

    is_gamma : photon hypothesis (energy per particle of ``profile.n_max_from_energy``)
    n_slices : slices along the axis, 64;  x_top : [g/cm²] slant depth where the profile starts, 30
    lateral_fraction : radius of the emitting electrons' lateral (NKG) spread / local Molière
        radius: 0.10, fitted to CORSIKA-IACT photon densities together with
        ``cone_inside_level`` (``benchmarks/cherenkov_fit.py``, docs/cherenkov_light.md; the
        CORSIKA bunches' emission points lie at a median 0.03–0.15 r_M from the axis). It
        spreads the angular distribution on the ground and widens the images. (Before issue
        16: 0.4 [M].)
    angular_model : "ads" (Arbeletche–de Souza ⊗ lateral spread, default) or "nerling"
    fluorescence_yield_per_mev : 20 photons/MeV in 300–430 nm [M] (0 disables fluorescence)
    profile_width_scale, lateral_scale : multiply the USP width L and lateral_fraction (the
        simulation fluctuates them by :data:`NUISANCE_SIGMAS`; 1 in the fit, where they are the
        nuisances ν below)
    transmission : ``cherenkov.Transmission`` (Rayleigh [C], aerosols [M])
    cone_inside_level : level of the Cherenkov angular distribution inside the cone (θ < θ_em)
        relative to Arbeletche & de Souza's, c in π·(c + (1 − c)(θ/θ_em)²): 0.35, fitted to
        the CORSIKA-IACT photon densities (``benchmarks/cherenkov_fit.py``: model / CORSIKA
        1.06, 0.85, 0.93, 0.88, 0.82 at the core of a 100 GeV photon and 31, 57, 80, 125 m
        from 200 GeV ones; with ADS's form (c = 1) and lateral_fraction 0.4: 1.86, 1.35, 1.23,
        0.97, 0.80). 1 restores ADS.
    cherenkov_scale : emitted Cherenkov photons relative to Nerling's yield × the profile:
        0.894, the median model/CORSIKA emission of 9 photon showers (40 GeV–1.4 TeV,
        ``simtel_mcshower_profiles.json``; the other 8 agree to 1.005 median with it)
    nuisance_sigmas : (σ_width, σ_lateral) relative σ of the Gaussian priors N(1, σ²) on the two
        scales when the fit profiles them (:func:`predict_event`); 0 = that nuisance off (fixed
        at 1). Default here (0, 0): the bare model; the registry sets :data:`NUISANCE_SIGMAS` when the
        settings ask for them (opt-in, ``registry._wfcta_physics``). Negative values raise ValueError.
    nuisance_steps : Gauss–Newton (Fisher-scoring) steps of the inner profile fit of ν, 3
        (fixed count, ``lax.scan``: one copy of the image model in the compiled program)
    model_rel_sigma : κ of the pixel variance F·μ + (κ·μ_signal)² (a relative model
        uncertainty of the predicted shower light, e.g. the light model against CORSIKA), 0 [M]
        = off (bit for bit the scaled Poisson); see :func:`channel.scaled_poisson_nll`
    """

    is_gamma: float = 0.0
    n_slices: int = 64
    x_top: float = 30.0
    lateral_fraction: float = 0.10
    fluorescence_yield_per_mev: float = 20.0
    profile_width_scale: float = 1.0
    lateral_scale: float = 1.0
    transmission: cherenkov.Transmission = cherenkov.Transmission()
    angular_model: str = "ads"
    cone_inside_level: float = 0.35
    cherenkov_scale: float = 0.894
    nuisance_sigmas: tuple = (0.0, 0.0)
    nuisance_steps: int = 3
    model_rel_sigma: float = 0.0


DEFAULT_PHYSICS = WFCTAPhysics()

#: Relative shower-to-shower spread of the Gaisser–Hillas profile width (X_max − X_0 and λ
#: scaled together) [M, carried to PeV] and of the emitting electrons' lateral spread
#: (``lateral_fraction``) [M]: the ONE place for both the simulation's fluctuations
#: (:func:`simulate`'s defaults) and the fit's Gaussian priors (``nuisance_sigmas`` of the
#: registry's physics). Width: measured from CORSIKA profiles (``benchmarks/profile_width_prior.py``,
#: docs/nuisances.md); lateral: no CORSIKA lateral data of the emitting electrons here, kept at
#: 0.10 [M].
#: Width: 0.035 ± 0.012, the intrinsic spread of the 10 TeV photon profiles of
#: ``corsika_77500_particle_slant.long`` (5 showers; the 0.5 TeV sim_telarray photons give
#: 0.115 ± 0.027: the spread falls with energy as the cascade averages), carried unchanged to
#: PeV hadrons [M] (their width fluctuations come from the first interactions, which do not
#: average away; the one 100 TeV hadron profile has w = 0.99 of the model's USP width).
WIDTH_SIGMA = 0.035
LATERAL_SIGMA = 0.10
NUISANCE_SIGMAS = (WIDTH_SIGMA, LATERAL_SIGMA)


def check_physics(physics: WFCTAPhysics) -> None:
    """Raise ValueError for an invalid nuisance / model-uncertainty configuration (static
    Python values: checked at trace time)."""
    sig = tuple(physics.nuisance_sigmas)
    if len(sig) != 2:
        raise ValueError(f"WFCTAPhysics.nuisance_sigmas must be (σ_width, σ_lateral), got {sig!r}")
    for name, v in zip(("σ_width", "σ_lateral"), sig):
        if not np.isfinite(float(v)) or float(v) < 0:
            raise ValueError(f"WFCTAPhysics.nuisance_sigmas: {name} must be ≥ 0 (0 = off), got {v!r}")
    if int(physics.nuisance_steps) < 1:
        raise ValueError(f"WFCTAPhysics.nuisance_steps must be ≥ 1, got {physics.nuisance_steps!r}")
    k = float(physics.model_rel_sigma)
    if not np.isfinite(k) or k < 0:
        raise ValueError(f"WFCTAPhysics.model_rel_sigma must be ≥ 0 (0 = off), got {physics.model_rel_sigma!r}")


def _active_nuisances(physics) -> tuple:
    """Indices (static) of the nuisances with a prior σ > 0."""
    check_physics(physics)
    return tuple(i for i, v in enumerate(physics.nuisance_sigmas) if float(v) > 0)


class Expectation(NamedTuple):
    """pixel_pe : (n_tel, 1024) mean PE (signal + background); signal_pe : the shower's part;
    depth, n_ch, cherenkov_photons : (n_slices,) slant depth [g/cm²], charged particles and
    emitted Cherenkov photons of the slices (the model's longitudinal profile)."""

    pixel_pe: jnp.ndarray
    signal_pe: jnp.ndarray
    depth: jnp.ndarray
    n_ch: jnp.ndarray
    cherenkov_photons: jnp.ndarray


class Observed(NamedTuple):
    """WFCTA observations of one event: a ChannelBlock over n_tel · 1024 pixels (signal [PE])."""

    pixels: object


def camera_coordinates(points, geometry: Geometry):
    """Tangent-plane (ξ, η) [rad] of 3-D points (…, 3) seen by each telescope: (n_tel, …, 2),
    and whether they are in front of the telescope (n_tel, …)."""
    d = points[None] - geometry.tel_pos.reshape((-1,) + (1,) * (points.ndim - 1) + (3,))
    ax = geometry.tel_axis.reshape((-1,) + (1,) * (points.ndim - 1) + (3,))
    ea = geometry.tel_e_az.reshape(ax.shape)
    ee = geometry.tel_e_el.reshape(ax.shape)
    along = jnp.sum(d * ax, -1)
    front = along > 0
    safe = jnp.where(front, along, 1.0)
    return jnp.stack([jnp.sum(d * ea, -1) / safe, jnp.sum(d * ee, -1) / safe], -1), front


def _slices(shower: Shower, physics: WFCTAPhysics, atm=None, ground_m=REFERENCE_HEIGHT_M):
    """Depths, heights, positions and emitted light of the slices along the axis, from
    ``x_top`` down to the height ``ground_m`` [m a.s.l.] (positions relative to 4400 m)."""
    n = direction(shower.zenith, shower.azimuth)
    cos_t = n[2]
    x_g = ground_slant_depth(shower, ground_m - REFERENCE_HEIGHT_M, atm)
    edges = jnp.linspace(physics.x_top / cos_t, x_g, physics.n_slices + 1)
    xc = 0.5 * (edges[1:] + edges[:-1])
    dx = edges[1:] - edges[:-1]
    h = atmosphere.height(xc * cos_t, atm)
    along = (h - REFERENCE_HEIGHT_M) / cos_t
    core = jnp.stack([shower.core_x, shower.core_y, jnp.zeros_like(shower.core_x)])
    pos = core + along[:, None] * n
    n_max = profile.n_max_from_energy(shower.log10_energy, is_gamma=physics.is_gamma)
    x0_off, lam = profile.gh_shape_params(shower.log10_energy)
    x0_off, lam = x0_off * physics.profile_width_scale, lam * physics.profile_width_scale
    n_ch = profile.gaisser_hillas(xc, shower.xmax, n_max, shower.xmax - x0_off, lam)
    s = profile.shower_age(xc, shower.xmax)
    rho = atmosphere.density(h, atm)
    dl = dx / rho / 100.0  # slant depth step [g/cm²] / density [g/cm³] -> cm -> m
    s_c = jnp.clip(s, 0.3, 2.0)
    per_particle = cherenkov.yield_per_metre(h, s_c, atm) * dl * physics.cherenkov_scale
    cher = n_ch * per_particle
    dedx = profile.energy_deposit(xc, shower.xmax, n_max, shower.xmax - x0_off, lam)
    fluo = physics.fluorescence_yield_per_mev * dedx * dx
    return dict(depth=xc, height=h, pos=pos, n_ch=n_ch, age=s_c, cher=cher, fluo=fluo, axis=n,
                per_particle=per_particle, log10_energy=shower.log10_energy)


def expected(shower: Shower, geometry: Geometry, response: Response,
             physics: WFCTAPhysics = DEFAULT_PHYSICS, atm=None) -> Expectation:
    """Mean PE of every pixel of every telescope (n_tel, 1024) for one shower."""
    sl = _slices(shower, physics, atm)
    pos, h = sl["pos"], sl["height"]
    tel = geometry.tel_pos
    d = tel[:, None, :] - pos[None]                                  # (T, K, 3) emission -> tel
    dist = jnp.sqrt(jnp.sum(d * d, -1))
    dhat = d / dist[..., None]
    cos_beta = jnp.clip(-jnp.sum(dhat * sl["axis"], -1), -1.0, 1.0)
    beta = jnp.arccos(jnp.clip(cos_beta, -1.0 + 1e-7, 1.0 - 1e-7))
    pdf = _seen_pdf(sl, d, dist, beta, physics, atm)
    area = geometry.mirror_area
    photons = (sl["cher"][None] * pdf + sl["fluo"][None] / (4.0 * np.pi)) * area / dist ** 2
    h_tel = REFERENCE_HEIGHT_M + tel[:, 2]
    trans = cherenkov.transmission(h[None], h_tel[:, None], jnp.abs(d[..., 2]) / dist,
                                   response.wavelength_weights, physics.transmission, atm)
    pe_slice = photons * trans * response.efficiency * response.tel_efficiency[:, None]
    # image position and width
    xy, front = camera_coordinates(pos, geometry)                    # (T, K, 2), (T, K)
    r_m = atmosphere.moliere_radius(h, atm)
    sig = jnp.sqrt(geometry.spot_sigma ** 2
                   + (physics.lateral_fraction * physics.lateral_scale * r_m[None] / dist) ** 2)
    half = 0.5 * geometry.pixel_size

    def band(centres, x):  # (T, K, 32): fraction of a Gaussian in each pixel column/row
        c = centres[None, None, :]
        return (ndtr((c + half - x[..., None]) / sig[..., None])
                - ndtr((c - half - x[..., None]) / sig[..., None]))

    fx = band(geometry.col_x, xy[..., 0])
    fy = band(geometry.row_y, xy[..., 1])
    w = jnp.where(front, pe_slice, 0.0)
    image = jnp.einsum("tk,tki,tkj->tij", w, fy, fx).reshape(tel.shape[0], N_SIDE * N_SIDE)
    signal = image * response.pixel_gain
    return Expectation(pixel_pe=signal + response.nsb_pe, signal_pe=signal, depth=sl["depth"],
                       n_ch=sl["n_ch"], cherenkov_photons=sl["cher"])


def photon_density(shower: Shower, points, physics: WFCTAPhysics = DEFAULT_PHYSICS, atm=None,
                   ground_m=REFERENCE_HEIGHT_M, profile_fn=None):
    """Cherenkov photons per m² (290–430 nm, before atmospheric absorption, on a plane
    perpendicular to each photon's direction) at ground points (…, 3) [m, array frame, z
    relative to 4400 m], from the part of the axis above ``ground_m`` [m a.s.l.].

    ``profile_fn(depth) -> charged particles`` replaces the Gaisser–Hillas profile (e.g. the
    Greisen profile of a photon: ``lambda X: profile.greisen_profile(X, lgE)``). Used for the
    CORSIKA cross-check (``tests/test_wfcta_physics.py``).
    """
    sl = _slices(shower, physics, atm, ground_m)
    cher = sl["cher"]
    if profile_fn is not None:
        cher = profile_fn(sl["depth"]) * sl["per_particle"]
    pts = jnp.asarray(points)
    d = pts[..., None, :] - sl["pos"]
    dist = jnp.sqrt(jnp.sum(d * d, -1))
    cos_beta = jnp.clip(-jnp.sum(d / dist[..., None] * sl["axis"], -1), -1 + 1e-7, 1 - 1e-7)
    pdf = _seen_pdf(sl, d, dist, jnp.arccos(cos_beta), physics, atm)
    return jnp.sum(cher * pdf / dist ** 2, -1)


_V_NODES, _V_WEIGHTS = np.polynomial.legendre.leggauss(8)


def _seen_pdf(sl, d, dist, beta, physics, atm=None):
    """dN/dΩ [1/sr] of each slice's Cherenkov light towards points at offsets ``d`` (…, K, 3)
    [m] from the slice centres (distance ``dist``, angle ``beta`` to the axis).

    ``angular_model`` "ads": Arbeletche–de Souza's distribution convolved with the lateral
    spread of the emitting electrons (NKG of age s and radius f_lat · r_M(h); 8 Gauss–Legendre
    radii in x = r/r = v/(1 − v) × 8 azimuths); photons from an electron at r⃗ reach the point
    at angle |R⃗ − r⃗|/H, R⃗ the point's offset from the axis and H its distance along it.
    "nerling": Nerling's distribution with 1/sin β smoothed by the lateral angle (earlier
    model, kept for comparison)."""
    if physics.angular_model == "nerling":
        return cherenkov.angular_pdf_per_sr(beta, sl["height"], sl["age"], atm,
                                            smoothing=_lateral_angle(sl, dist, physics, atm))
    n = sl["axis"]
    along = -jnp.sum(d * n, -1)                                     # H (…, K)
    perp = jnp.sqrt(jnp.maximum(dist ** 2 - along ** 2, 0.0))      # R (…, K)
    v = 0.5 * (_V_NODES + 1.0)
    x = v / (1.0 - v)
    s = jnp.clip(sl["age"], 0.5, 2.0)[:, None]
    w = 0.5 * _V_WEIGHTS / (1.0 - v) ** 2 * x ** (s - 1.0) * (1.0 + x) ** (s - 4.5)
    w = w / jnp.sum(w, -1, keepdims=True)                          # (K, 8)
    r = (physics.lateral_fraction * physics.lateral_scale
         * atmosphere.moliere_radius(sl["height"], atm))[:, None] * x  # (K, 8)
    phi = (np.arange(8) + 0.5) / 8 * np.pi
    sep = jnp.sqrt(jnp.maximum(perp[..., None, None] ** 2 + r[..., None] ** 2
                               - 2.0 * perp[..., None, None] * r[..., None] * np.cos(phi), 0.0))
    theta = jnp.arctan2(sep, along[..., None, None])                # (…, K, 8, 8)
    shape = (-1, 1, 1)
    e_tev = 10.0 ** (sl["log10_energy"] - 3.0)
    pdf = cherenkov.angular_pdf_ads_per_sr(theta, sl["height"].reshape(shape),
                                           sl["age"].reshape(shape), atm, physics.is_gamma,
                                           e_tev, inside_level=physics.cone_inside_level)
    return jnp.sum(jnp.mean(pdf, -1) * w, -1)


def _lateral_angle(sl, dist, physics, atm=None):
    """Angular size [rad] of the emitting electrons' lateral spread seen from ``dist``:
    f_lat · r_M(h) / D."""
    r_m = atmosphere.moliere_radius(sl["height"], atm)
    return physics.lateral_fraction * physics.lateral_scale * r_m / dist


def predict(shower, geometry, response, physics=DEFAULT_PHYSICS):
    """The mean PE per pixel (n_tel, 1024) of the model with its nuisances at their nominal
    value (ν = 1). The fit's prediction, which profiles the nuisances against the data, is
    :func:`predict_event`."""
    return expected(shower, geometry, response, physics).pixel_pe


class Profiled(NamedTuple):
    """WFCTA's prediction with profiled nuisances (:func:`predict_event`).

    pixel_pe : (n_tel, 1024) mean PE at (shower, ν̂(shower))
    nuisance_residual : (k,) (ν̂ − 1)/σ of the k active nuisances: enters the loss as ½ r²
    nuisance : (2,) ν̂ = (profile-width scale, lateral scale) (1 where off); not in the loss
    """

    pixel_pe: jnp.ndarray
    nuisance_residual: jnp.ndarray
    nuisance: jnp.ndarray


def _pixels(mu):
    return mu.pixel_pe if isinstance(mu, (Profiled, Expectation)) else mu


def _mu_at(shower, nu, active, geometry, response, physics):
    """Raveled mean PE with the active nuisances set to ``nu`` (k,)."""
    full = [1.0, 1.0]
    for a, i in enumerate(active):
        full[i] = nu[a]
    ph = physics._replace(profile_width_scale=physics.profile_width_scale * full[0],
                          lateral_scale=physics.lateral_scale * full[1])
    return jnp.ravel(expected(shower, geometry, response, ph).pixel_pe)


#: bounds of a profiled nuisance scale and the largest inner step in units of its prior σ
NUISANCE_BOUNDS = (0.3, 3.0)
NUISANCE_MAX_STEP_SIGMA = 3.0


def profile_nuisances(shower, observed: Observed, geometry: Geometry, response: Response,
                      physics: WFCTAPhysics):
    """The inner fit of the active nuisances ν (k,) for a fixed ``shower`` (no derivative
    through it): ``nuisance_steps`` Fisher-scoring steps from ν = 1 on the pixel nll + the
    Gaussian priors ½((ν − 1)/σ)², each step bounded to ±3σ and ν to [0.3, 3].

    Returns (ν*, J_ν (n_pix, k) and C (k, k) = J_νᵀ W J_ν + diag(1/σ²) and W (n_pix,) of the
    last step's linearisation)."""
    active = _active_nuisances(physics)
    sig = jnp.asarray([float(physics.nuisance_sigmas[i]) for i in active])
    s = jax.tree_util.tree_map(jax.lax.stop_gradient, shower)
    dtype = jnp.result_type(*jax.tree_util.tree_leaves(s))
    sig = sig.astype(dtype)
    prec = 1.0 / sig ** 2
    k = len(active)

    def lin(nu):
        f = lambda v: _mu_at(s, v, active, geometry, response, physics)
        jv = jax.jacfwd(f)(nu)                       # (n_pix, k)
        mu = f(nu)
        dl = jax.grad(lambda m: jnp.sum(channel_nll(observed, m, geometry, response, physics)))(mu)
        w = jnp.ravel(information_weights(mu, geometry, response, physics))
        g = jv.T @ dl + (nu - 1.0) * prec
        c = (jv * w[:, None]).T @ jv + jnp.diag(prec)
        return g, c, jv, w

    def body(nu, _):
        g, c, jv, w = lin(nu)
        ok = jnp.all(jnp.isfinite(g)) & jnp.all(jnp.isfinite(c))
        step = -jnp.linalg.solve(jnp.where(ok, c, jnp.eye(k, dtype=dtype)), jnp.where(ok, g, 0.0))
        step = jnp.clip(step, -NUISANCE_MAX_STEP_SIGMA * sig, NUISANCE_MAX_STEP_SIGMA * sig)
        new = jnp.clip(nu + jnp.where(jnp.isfinite(step), step, 0.0), *NUISANCE_BOUNDS)
        return new.astype(dtype), (jv, c, w)

    nu, (jv, c, w) = jax.lax.scan(body, jnp.ones(k, dtype), None, length=int(physics.nuisance_steps))
    return nu, jv[-1], c[-1], w[-1]


def _profiled_prediction(m_fn, nu_star, jv, c, w, sig, active, dtype):
    """The prediction at ν* whose derivative in the shower parameters carries dν̂/dθ of the
    profile (implicit function theorem, Gauss–Newton form): with G = C⁻¹ J_νᵀ W,
    ν̂(θ) = ν* − G (μ(θ, ν*) − μ(θ₀, ν*)), μ̂(θ) = μ(θ, ν*) + J_ν (ν̂(θ) − ν*). Values at θ₀
    are μ(θ₀, ν*) and ν*; Jᵀ W J over (μ̂, (ν̂ − 1)/σ) is then the Schur complement of the
    information (the profiled information, the same matrix as the bound with the nuisances
    free under their priors)."""
    m = m_fn(nu_star)
    gmat = jax.lax.stop_gradient(jnp.linalg.solve(c, (jv * w[:, None]).T))   # (k, n_pix)
    jv = jax.lax.stop_gradient(jv)
    dm = m - jax.lax.stop_gradient(m)
    nu_hat = nu_star - gmat @ dm
    mu_hat = m + jv @ (nu_hat - nu_star)
    full = jnp.ones(2, dtype)
    for a, i in enumerate(active):
        full = full.at[i].set(nu_hat[a].astype(dtype))
    return mu_hat, (nu_hat - 1.0) / sig, full


def predict_event(shower, observed: Observed, geometry: Geometry, response: Response,
                  physics: WFCTAPhysics = DEFAULT_PHYSICS):
    """The fit's prediction for one event. Without active nuisances (``nuisance_sigmas`` all 0):
    :func:`predict` (the same array, bit for bit). With them: a :class:`Profiled` — the pixel
    means at the nuisances profiled against this event's pixels (:func:`profile_nuisances`),
    and the priors' residuals, with the derivative of ν̂ in the shower parameters
    (:func:`_profiled_prediction`), so that Fisher scoring's Jᵀ W J is the profiled information
    (docs/nuisances.md)."""
    active = _active_nuisances(physics)
    if not active:
        return predict(shower, geometry, response, physics)
    n_tel = jnp.shape(geometry.tel_pos)[0]
    nu, jv, c, w = profile_nuisances(shower, observed, geometry, response, physics)
    dtype = nu.dtype
    sig = jnp.asarray([float(physics.nuisance_sigmas[i]) for i in active], dtype)
    mu, r, full = _profiled_prediction(
        lambda v: _mu_at(shower, jax.lax.stop_gradient(v), active, geometry, response, physics),
        nu, jv, c, w, sig, active, dtype)
    return Profiled(pixel_pe=mu.reshape(n_tel, N_SIDE * N_SIDE), nuisance_residual=r, nuisance=full)


def _fano(mu, response: Response, physics):
    """Per-pixel variance-to-mean ratio F_eff = F + κ² μ_signal²/μ (F itself when κ = 0)."""
    kappa = 0.0 if physics is None else float(physics.model_rel_sigma)
    if kappa == 0.0:
        return response.excess_noise
    signal = jnp.maximum(mu - jnp.ravel(jnp.broadcast_to(response.nsb_pe, jnp.shape(response.pixel_gain))), 0.0)
    return model_fano(response.excess_noise, mu, signal, kappa)


def channel_nll(observed: Observed, mu, geometry: Geometry, response: Response, physics=None):
    """−ln L per pixel (n_tel · 1024,) for mean PE ``mu`` ((n_tel, 1024), an Expectation or a
    Profiled): the scaled Poisson in q/F_eff (``channel.scaled_poisson_nll``), F_eff the excess
    noise F, plus κ² μ_signal²/μ with ``physics.model_rel_sigma`` κ > 0."""
    p = observed.pixels
    mu = jnp.maximum(jnp.ravel(_pixels(mu)), 1e-6)
    q = jnp.maximum(jnp.where(p.valid, p.signal, 0.0), 0.0)
    out = scaled_poisson_nll(q, mu, _fano(mu, response, physics))
    return jnp.where(p.valid & jnp.ravel(geometry.pixel_live), out, 0.0)


def nll(observed: Observed, mu, geometry: Geometry, response: Response, physics=None):
    """Negative log-likelihood (scalar) of every valid pixel of every telescope, plus ½ r² of
    the nuisance priors when ``mu`` is a :class:`Profiled`. ``physics`` gives κ
    (``model_rel_sigma``; None: 0)."""
    total = jnp.sum(channel_nll(observed, mu, geometry, response, physics))
    if isinstance(mu, Profiled):
        total = total + 0.5 * jnp.sum(mu.nuisance_residual ** 2)
    return total


def gof_counts(observed: Observed, mu, geometry: Geometry, response: Response):
    """[(n_eff, μ_eff, mask)] of the pixels for ``channel.deviance_sums`` (q/F, μ/F)."""
    px = observed.pixels
    f = response.excess_noise
    return [(jnp.maximum(px.signal, 0.0) / f, jnp.ravel(_pixels(mu)) / f,
             px.valid & jnp.ravel(jnp.asarray(geometry.pixel_live)))]


def information_weights(mu, geometry: Geometry, response: Response, physics=None):
    """Expected information per predicted mean PE: live / Var = live / (F_eff μ); for a
    :class:`Profiled`, 1 for the prior residuals and 0 for the nuisance values."""
    if isinstance(mu, Profiled):
        return Profiled(pixel_pe=information_weights(mu.pixel_pe, geometry, response, physics),
                        nuisance_residual=jnp.ones_like(mu.nuisance_residual),
                        nuisance=jnp.zeros_like(mu.nuisance))
    shape = jnp.shape(mu)
    m = jnp.maximum(jnp.ravel(mu), 1e-6)
    w = jnp.ravel(jnp.asarray(geometry.pixel_live, m.dtype)) / (_fano(m, response, physics) * m)
    return w.reshape(shape)


def fisher_stats(shower, geometry, response, physics=DEFAULT_PHYSICS):
    """(mean, variance, weight) for ``joint.fit.cramer_rao``: pixel PE with variance F_eff μ;
    with active nuisances, the means of the model profiled on its own expectation (ν̂ = 1, the
    Asimov data) with the derivative of ν̂ (:func:`_profiled_prediction`) and the priors'
    residuals (variance 1): the bound of the model with its nuisances free under their priors."""
    active = _active_nuisances(physics)
    mu0 = jnp.ravel(predict(shower, geometry, response, physics))
    live = jnp.ravel(jnp.asarray(geometry.pixel_live, mu0.dtype))
    if not active:
        return [(mu0, _fano(jnp.maximum(mu0, 1e-6), response, physics) * mu0, live)]
    dtype = mu0.dtype
    s0 = jax.tree_util.tree_map(jax.lax.stop_gradient, shower)
    ones = jnp.ones(len(active), dtype)
    jv = jax.jacfwd(lambda v: _mu_at(s0, v, active, geometry, response, physics))(ones)
    m0 = jax.lax.stop_gradient(mu0)
    w = live / (_fano(jnp.maximum(m0, 1e-6), response, physics) * jnp.maximum(m0, 1e-6))
    sig = jnp.asarray([float(physics.nuisance_sigmas[i]) for i in active], dtype)
    c = (jv * w[:, None]).T @ jv + jnp.diag(1.0 / sig ** 2)
    mu, r, _ = _profiled_prediction(lambda v: _mu_at(shower, v, active, geometry, response, physics),
                                    ones, jv, c, w, sig, active, dtype)
    var = _fano(jnp.maximum(m0, 1e-6), response, physics) * m0
    return [(mu, var, live), (r, jnp.ones_like(r), jnp.ones_like(r))]


def simulate(key, shower: Shower, geometry: Geometry, response: Response,
             physics: WFCTAPhysics = DEFAULT_PHYSICS, width_sigma=WIDTH_SIGMA,
             lateral_sigma=LATERAL_SIGMA, dead_fraction=0.0):
    """Sample one event's WFCTA images (see the module docstring). Returns (Observed, triggered)
    with ``triggered`` = at least one pixel with ≥ 5 × its background above it (a simple image
    trigger [M])."""

    k = jax.random.split(key, 6)
    phys = physics._replace(
        profile_width_scale=physics.profile_width_scale * (1.0 + width_sigma * jax.random.normal(k[0])),
        lateral_scale=physics.lateral_scale * jnp.maximum(1.0 + lateral_sigma * jax.random.normal(k[1]), 0.3))
    e = expected(shower, geometry, response, phys)
    sig = jax.random.poisson(k[2], e.signal_pe).astype(e.signal_pe.dtype)
    bkg = jax.random.poisson(k[3], jnp.broadcast_to(response.nsb_pe, sig.shape)).astype(sig.dtype)
    n = sig + bkg
    f = response.excess_noise
    q = jnp.where(n > 0, jax.random.gamma(k[4], jnp.maximum(n / (f - 1.0), 1e-6)) * (f - 1.0), 0.0)
    q = jnp.ravel(q)
    alive = jnp.ravel(geometry.pixel_live) & (jax.random.uniform(k[5], q.shape) >= dead_fraction)
    hit = alive & (q > 0)
    block = ChannelBlock(signal=jnp.where(alive, q, 0.0), time=jnp.zeros_like(q), hit=hit,
                         valid=alive, n_pulses=hit.astype(jnp.int32))
    excess = jnp.ravel(e.signal_pe) > 5.0 * jnp.sqrt(jnp.ravel(jnp.broadcast_to(response.nsb_pe, e.signal_pe.shape)) + 1.0)
    return Observed(pixels=block), jnp.any(excess & alive)
