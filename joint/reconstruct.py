"""Reconstruction pipeline: dense events -> seeds -> batched fit -> output columns, for any
combination of the built detectors (``ReconstructionConfig.detectors``: KM2A, WCDA, WFCTA).

``reconstruct_batch`` works on one dense Event batch (in memory); ``reconstruct_files`` streams
input files (the project's schema or G4KM2A LHEvent) in chunks of ``batch_size`` events through
it and writes the ``reco`` tree, one row per input event in input order (failed fits included,
with their status). Every chunk is padded to ``batch_size`` so that one compilation serves the
whole run.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from functools import lru_cache, partial
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from detectors import km2a, wcda, wfcta
from detectors.shower import FIELDS, SPEED_OF_LIGHT_M_PER_NS, Shower
from joint import fit as fitmod
from joint.likelihood import (DEFAULT_N_ED, DEFAULT_N_MD, DEFAULT_N_WCDA, detector_model,
                              joint_model, select_km2a, select_wcda, select_wfcta)
from joint.seeds import km2a_seed, wcda_seed

__all__ = ["ReconstructionConfig", "reconstruct_batch", "reconstruct_files", "km2a_observables",
           "detector_setup", "core_quality"]

#: Free fields of a KM2A fit per hypothesis. Xmax is free: the lateral age carries it, and fixing
#: it at a mean value costs energy resolution (measured: 0.16 -> 0.08 in log10 E for 100 TeV
#: photons, docs/km2a.md). For photons the muon content is not fitted (a photon shower has almost
#: no muons, the scale would run to its bound); the muon count ``nmu`` is the discriminator.
KM2A_FREE = {
    "hadron": ("core_x", "core_y", "zenith", "azimuth", "log10_energy", "xmax", "log_muon_scale", "t0"),
    "gamma": ("core_x", "core_y", "zenith", "azimuth", "log10_energy", "xmax", "t0"),
}
#: log_muon_scale of the photon hypothesis when not fitted: ln(0.1) (lateral.muon_number's
#: gamma_muon_fraction [M])
GAMMA_LOG_MUON_SCALE = float(np.log(0.1))


#: Detectors the pipeline can fit (``ReconstructionConfig.detectors``)
BUILT_DETECTORS = ("km2a", "wcda", "wfcta")


@dataclass(frozen=True)
class ReconstructionConfig:
    """Static configuration of a reconstruction run.

    detectors : tuple of detector names fitted together (a subset of :data:`BUILT_DETECTORS`,
        in that order): ("km2a",), ("wcda",) or ("km2a", "wcda")
    hypothesis : "gamma" or "hadron": the energy-per-particle relation of the model
    free : Shower fields fitted (None: ``KM2A_FREE[hypothesis]``); fixed fields keep their seed
        (Xmax: ``xmax_fixed`` or the hypothesis' mean at the seed energy)
    n_ed, n_md : active KM2A channels per event (``joint.likelihood``); None = all
    n_wcda : active WCDA cells per event; None = all
    n_iter : fixed iterations of the first pass
    refit_iter : iterations of the second pass, run only on the events the first pass left at
        MAX_ITER, compacted into sub-batches of ``REFIT_BATCH`` (64) events so that stragglers do
        not set the cost of the whole batch (PERFORMANCE.md §6, item 3); 0 disables it
    newton_iter : iterations of a third pass on the events still at MAX_ITER, with the exact
        Hessian (damped saddle-free Newton) whatever ``algorithm`` is: the time term's
        exponential tail makes the likelihood far from quadratic for cores on the ED-free area
        around WCDA, where scoring stalls (issue 13, docs/km2a.md); those events' covariance is
        the inverse observed information. On 256 photons at 100 TeV: 12 scoring + 6 Newton
        converged 253 in 1.1 s, 12 Newton 249 in 1.7 s, 24 scoring 246 in 0.4 s; 0 disables it
    algorithm : "scoring" (Fisher scoring, default) or "newton" (exact Hessian)
    xmax_prior : add the Gaussian Xmax prior of the hypothesis (``joint.likelihood.XmaxPrior``)
    truth_fields : Shower fields seeded from ``geometry_from`` (e.g. a WFCTA fit with the
        geometry fixed: ``truth_fields=("core_x", "core_y", "zenith", "azimuth")`` with those
        fields left out of ``free``)
    geometry_from : where ``truth_fields`` come from: "truth" (the simulation truth; needs
        events with truth), or "km2a" / "wcda" (a first fit of that detector alone, same
        hypothesis — the hybrid reconstruction of LHAASO's WFCTA analyses)

    ground_seed : when WFCTA is fitted together with a ground array, first fit the ground
        arrays of the configuration alone (with the Xmax prior) and add their fitted shower as a
        seed candidate (geometry from the ground arrays, Xmax from the images' scan): the joint
        fits started from the raw seeds stopped at the iteration limit for a third of the
        events at 0.3–3 PeV (BENCHMARKS.md, issue 6)

    km2a_compound : KM2A charge model: 0 = scaled Poisson (default), > 0 = the exact compound
        Poisson–gamma density below about this many particles
        (``detectors.km2a.KM2APhysics.compound_particles``; the calibration uses 8)
    core_scan : move the KM2A seed to the best of a grid of cores and energies around it by the
        likelihood (:data:`CORE_SCAN_OFFSETS_M`, :data:`CORE_SCAN_ENERGY`): cores on the
        ED-free area around WCDA and outside the array

    Seeds: each detector's own seed is a candidate; its energy (and the Xmax that goes with it)
    is moved to the best of ``SEED_ENERGY_SCAN`` by the nll (not for KM2A alone), and with
    several detectors the
    candidate with the lowest joint nll starts the fit, so a shower landing on the ponds
    starts from the WCDA core.
    """

    hypothesis: str = "hadron"
    free: tuple | None = None
    xmax_fixed: float | None = None
    n_ed: int | None = DEFAULT_N_ED
    n_md: int | None = DEFAULT_N_MD
    n_iter: int = 12
    refit_iter: int = 12
    newton_iter: int = 6
    dtype: str = "float32"
    algorithm: str = "scoring"
    xmax_prior: bool = True
    detectors: tuple = ("km2a",)
    n_wcda: int | None = DEFAULT_N_WCDA
    truth_fields: tuple = ()
    geometry_from: str = "truth"
    ground_seed: bool = True
    km2a_compound: float = 0.0
    core_scan: bool = True

    def __post_init__(self):
        dets = tuple(self.detectors)
        if not dets or any(d not in BUILT_DETECTORS for d in dets):
            raise ValueError(f"detectors must be a non-empty subset of {BUILT_DETECTORS}, got {dets}")
        object.__setattr__(self, "detectors", tuple(d for d in BUILT_DETECTORS if d in dets))

    @property
    def is_gamma(self) -> float:
        if self.hypothesis not in ("gamma", "hadron"):
            raise ValueError(f"hypothesis must be 'gamma' or 'hadron', got {self.hypothesis!r}")
        return 1.0 if self.hypothesis == "gamma" else 0.0

    @property
    def physics(self) -> km2a.KM2APhysics:
        """KM2A physics of this hypothesis (see :meth:`physics_of` for any detector)."""
        return self.physics_of("km2a")

    def physics_of(self, detector: str):
        cls = {"km2a": km2a.KM2APhysics, "wcda": wcda.WCDAPhysics,
               "wfcta": wfcta.WFCTAPhysics}[detector]
        if detector == "km2a":
            return cls(is_gamma=self.is_gamma, compound_particles=float(self.km2a_compound))
        return cls(is_gamma=self.is_gamma)

    @property
    def prior(self):
        from joint.likelihood import XmaxPrior

        if not self.xmax_prior:
            return None
        return XmaxPrior(mass_number=0.0, sigma_floor=0.0) if self.hypothesis == "gamma" else XmaxPrior()

    @property
    def fit_config(self) -> fitmod.FitConfig:
        free = KM2A_FREE[self.hypothesis] if self.free is None else tuple(self.free)
        return fitmod.FitConfig(free=free, n_iter=self.n_iter)


def default_xmax(log10_energy, hypothesis):
    """Xmax used when it is not fitted: the mean of the hypothesis at the seed energy
    (photons: Greisen; hadrons: EPOS-LHC protons), g/cm²."""
    from detectors.primaries import xmax_moments

    a = 0.0 if hypothesis == "gamma" else 1.0
    return xmax_moments(jnp.asarray(log10_energy) + 9.0, a)[0]


#: log10-energy offsets [dex] tried around each seed (``_pipeline``'s energy scan) when WCDA or
#: WFCTA take part. Not for KM2A alone: on the same 256 photons at 20 TeV it lowered the
#: converged fraction from 86% to 77% (±0.6 dex) or 79% (±0.2 dex) — the KM2A seed's size →
#: energy relation is already calibrated (docs/wcda.md).
SEED_ENERGY_SCAN = (-0.6, -0.3, 0.0, 0.3, 0.6)
#: Xmax offsets [g/cm²] tried as well when WFCTA takes part (its images constrain Xmax sharply)
SEED_XMAX_SCAN = (-150.0, -75.0, 0.0, 75.0, 150.0)
#: KM2A core scan (``ReconstructionConfig.core_scan``): core offsets [m] tried around the
#: centroid seed (a 5 × 5 grid, 60 m apart) and log10-energy offsets [dex] tried with each.
#: The charge centroid cannot lie on the ED-free area around WCDA (~300 m across), nor outside
#: the array: a shower landing there is seeded at the bright EDs on the hole's or the array's
#: edge, with too few particles within 100 m for its energy (hence the upward energy offsets);
#: the likelihood of the candidates, on the channels around the seed, picks the start
#: (CORSIKA throws with cores within 150 m of the centre all failed without it, issue 13).
CORE_SCAN_STEP_M = 60.0
CORE_SCAN_OFFSETS_M = tuple((CORE_SCAN_STEP_M * i, CORE_SCAN_STEP_M * j)
                            for i in (-2, -1, 0, 1, 2) for j in (-2, -1, 0, 1, 2))
CORE_SCAN_ENERGY = (0.0, 0.4, 0.8)


def all_finite_shower(s):
    return jnp.all(jnp.stack([jnp.isfinite(getattr(s, f)) for f in FIELDS]))


def _select(tree_a, tree_b, use_b):
    return jax.tree_util.tree_map(lambda a, b: jnp.where(use_b, b, a), tree_a, tree_b)


def select_channels(cfg: ReconstructionConfig, blocks, geos, resps, shower):
    """The active channels of one event around ``shower``'s core, {detector: data}, for the
    detectors of ``cfg`` (what the fit and the calibration use)."""
    core = jnp.stack([shower.core_x, shower.core_y])
    data = {}
    if "km2a" in cfg.detectors:
        data["km2a"] = select_km2a(blocks["km2a_ed"], blocks["km2a_md"], core, geos["km2a"],
                                   resps["km2a"], cfg.n_ed, cfg.n_md)
    if "wcda" in cfg.detectors:
        data["wcda"] = select_wcda(blocks["wcda"], core, geos["wcda"], resps["wcda"], cfg.n_wcda)
    if "wfcta" in cfg.detectors:
        data["wfcta"] = select_wfcta(blocks["wfcta"], geos["wfcta"], resps["wfcta"])
    return data


@lru_cache(maxsize=16)
def _pipeline(cfg: ReconstructionConfig):
    phys = tuple((d, cfg.physics_of(d)) for d in cfg.detectors)
    model = joint_model(phys, cfg.prior)
    if cfg.algorithm == "scoring":
        nll_fn = model
    elif cfg.algorithm == "newton":
        def nll_fn(shower, data):  # the same likelihood, minimised with the exact Hessian
            return model(shower, data)
    else:
        raise ValueError(f"algorithm must be 'scoring' or 'newton', got {cfg.algorithm!r}")
    term_models = {d: detector_model(d, p) for d, p in phys}

    def refit_fn(shower, data):  # the same likelihood, for the exact-Hessian straggler pass
        return model(shower, data)

    def terms(s, data):
        return {d: m(s, data[d]) for d, m in term_models.items()}

    def finish_seed(seed):
        seed = seed._replace(xmax=jnp.asarray(default_xmax(seed.log10_energy, cfg.hypothesis)
                                              if cfg.xmax_fixed is None else cfg.xmax_fixed,
                                              seed.log10_energy.dtype))
        if cfg.hypothesis == "gamma":
            seed = seed._replace(log_muon_scale=jnp.full_like(seed.log_muon_scale, GAMMA_LOG_MUON_SCALE))
        return seed

    def select(blocks, geos, resps, seed):
        return select_channels(cfg, blocks, geos, resps, seed)

    def energy_scan(seed, datas):
        """The seed's energy (and the Xmax that goes with it) moved to the best of
        ``SEED_ENERGY_SCAN`` offsets [dex] by the model's nll summed over ``datas`` (the channel
        selections around every candidate, so that candidates compare on the same channels):
        size → energy relations are rough (hypothesis, zenith, core position), and a start far
        off in energy can run away (measured: 12–17% of KM2A+WCDA photons at 100 TeV on the
        ponds ended on the Xmax bound)."""
        offsets = SEED_ENERGY_SCAN if cfg.detectors != ("km2a",) else (0.0,)
        trials = [finish_seed(seed._replace(log10_energy=seed.log10_energy + d))
                  for d in offsets]
        if "wfcta" in cfg.detectors and cfg.xmax_fixed is None:  # images pin Xmax: scan it too
            trials = [t._replace(xmax=t.xmax + dx) for t in trials for dx in SEED_XMAX_SCAN]
        # one trace of the model per channel selection, vmapped over the trials (a Python loop
        # inlined 25 trials x candidates x selections: 13 min of XLA compilation for three
        # detectors)
        stacked = jax.tree_util.tree_map(lambda *xs: jnp.stack(xs), *trials)
        values = sum(jax.vmap(lambda t, d=d: model(t, d))(stacked) for d in datas)
        values = jnp.where(jnp.isfinite(values), values, jnp.inf)
        best = jnp.argmin(values)
        pick = jax.tree_util.tree_map(lambda x: x[best], stacked)
        return pick, values[best]

    def core_scan(seed, blocks, geos, resps):
        """The seed moved to the best core × energy of the scan grid by the nll on the channels
        around the seed (t₀ moved with the core along the seed's plane front)."""
        data = select(blocks, geos, resps, seed)
        nx = jnp.sin(seed.zenith) * jnp.cos(seed.azimuth)
        ny = jnp.sin(seed.zenith) * jnp.sin(seed.azimuth)
        trials = [finish_seed(seed._replace(
            core_x=seed.core_x + dx, core_y=seed.core_y + dy,
            t0=seed.t0 - (dx * nx + dy * ny) / SPEED_OF_LIGHT_M_PER_NS,
            log10_energy=seed.log10_energy + de))
            for dx, dy in CORE_SCAN_OFFSETS_M for de in CORE_SCAN_ENERGY]
        stacked = jax.tree_util.tree_map(lambda *xs: jnp.stack(xs), *trials)
        values = jax.vmap(lambda t: model(t, data))(stacked)
        values = jnp.where(jnp.isfinite(values), values, jnp.inf)
        return jax.tree_util.tree_map(lambda x: x[jnp.argmin(values)], stacked)

    def prepare_one(blocks, geos, resps):
        candidates = []
        if "km2a" in cfg.detectors:
            g = geos["km2a"]
            s0 = km2a_seed(blocks["km2a_ed"], blocks["km2a_md"], g.ed_pos, g.md_pos)
            candidates.append(core_scan(s0, blocks, geos, resps) if cfg.core_scan else s0)
        if "wcda" in cfg.detectors:
            candidates.append(wcda_seed(blocks["wcda"], geos["wcda"].cell_pos, resps["wcda"]))
        if not candidates:  # WFCTA alone: geometry from the truth (truth_fields), energy scanned
            z = jnp.zeros((), blocks["wfcta"].signal.dtype)
            candidates.append(Shower(core_x=z, core_y=z, zenith=z, azimuth=z,
                                     log10_energy=z + 6.0, xmax=z + 600.0, log_muon_scale=z,
                                     t0=z))
        if "ground_seed" in blocks:  # the ground arrays' fit (NaN where it failed: raw seed)
            g = Shower(**{f: blocks["ground_seed"][f].astype(candidates[0].core_x.dtype)
                          for f in FIELDS})
            ok = all_finite_shower(g)
            candidates.insert(0, _select(candidates[0], g, ok))
        candidates = [finish_seed(c._replace(**{f: blocks["truth"][f"true_{f}"].astype(c.core_x.dtype)
                                                for f in cfg.truth_fields})) for c in candidates]
        # the active channels around each candidate's core; every candidate is scored on all
        # of them (a candidate far from the shower would otherwise select empty channels and
        # win with a small nll: measured on KM2A+WCDA protons at 1 PeV, 6 of 16 started 330-450
        # m off)
        datas = [select(blocks, geos, resps, c) for c in candidates]
        seed, value = energy_scan(candidates[0], datas)
        data = datas[0]
        for cand, cand_data in zip(candidates[1:], datas[1:]):
            cand, cand_value = energy_scan(cand, datas)
            better = cand_value < value
            seed, data = _select(seed, cand, better), _select(data, cand_data, better)
            value = jnp.minimum(value, cand_value)
        return seed, data

    prepare = jax.jit(jax.vmap(prepare_one, in_axes=(0, None, None)))
    return prepare, nll_fn, terms, refit_fn


def nll_function(cfg: ReconstructionConfig):
    """The per-event nll ``f(shower, {detector: data})`` used by the fitter for this
    configuration (the same function object for equal configurations, so compilations are
    reused)."""
    return _pipeline(cfg)[1]


def _normalise(batch, geometry, response, cfg):
    """(blocks, geometries, responses) as dicts for the configured detectors. ``geometry`` and
    ``response`` are dicts {detector: ...} or, for a KM2A-only configuration, KM2A objects."""
    if not isinstance(geometry, dict):
        geometry, response = {"km2a": geometry}, {"km2a": response}
    missing = [d for d in cfg.detectors if d not in geometry or d not in response]
    if missing:
        raise ValueError(f"no geometry/response given for {missing} (configured detectors "
                         f"{cfg.detectors})")
    names = {"km2a": ("km2a_ed", "km2a_md"), "wcda": ("wcda",), "wfcta": ("wfcta",)}
    blocks = {}
    for d in cfg.detectors:
        for b in names[d]:
            block = getattr(batch, b, None)
            if block is None:
                raise ValueError(f"the events have no '{b}' block but the configuration fits "
                                 f"{d} (detectors={cfg.detectors})")
            blocks[b] = block
    geos = {d: geometry[d] for d in cfg.detectors}
    resps = {d: response[d] for d in cfg.detectors}
    if cfg.truth_fields:
        if cfg.geometry_from == "truth":
            truth = getattr(batch, "truth", None)
            if truth is None:
                raise ValueError(f"truth_fields={cfg.truth_fields} with geometry_from='truth' "
                                 "needs events with simulation truth")
        else:
            import dataclasses

            if cfg.geometry_from not in ("km2a", "wcda"):
                raise ValueError(f"geometry_from must be 'truth', 'km2a' or 'wcda', got "
                                 f"{cfg.geometry_from!r}")
            # the ground array's own fit (with its Xmax prior: the same configuration as a
            # fit of that detector alone, so the compilation is shared)
            first = dataclasses.replace(cfg, detectors=(cfg.geometry_from,), free=None,
                                        truth_fields=(), geometry_from="truth", xmax_prior=True,
                                        ground_seed=True)
            pre = reconstruct_batch(batch, geometry, response, first)
            truth = {f"true_{f}": pre[f"reco_{f}"] for f in cfg.truth_fields}
        blocks["truth"] = {f"true_{f}": truth[f"true_{f}"] for f in cfg.truth_fields}
    ground = _ground_config(cfg)
    if ground is not None:
        pre = reconstruct_batch(batch, geometry, response, ground)
        blocks["ground_seed"] = {f: pre[f"reco_{f}"] for f in FIELDS}
    return _cast((blocks, geos, resps), cfg)


def _ground_config(cfg):
    """The configuration of the ground-array pre-fit of ``cfg`` (``ground_seed``), or None."""
    import dataclasses

    ground = tuple(d for d in cfg.detectors if d in ("km2a", "wcda"))
    if not (cfg.ground_seed and ground and "wfcta" in cfg.detectors):
        return None
    # ground_seed stays True (no effect without WFCTA): the configuration equals a fit of the
    # ground arrays alone, so their compilation is shared
    return dataclasses.replace(cfg, detectors=ground, free=None, xmax_prior=True)


def prepare(batch, geometry, response, cfg: ReconstructionConfig):
    """Seeds and active-channel data of a dense batch: (seeds Shower (B,), {detector: data})."""
    return _pipeline(cfg)[0](*_normalise(batch, geometry, response, cfg))


def _cast(tree, cfg):
    dt = jnp.float32 if cfg.dtype == "float32" else jnp.float64
    return jax.tree_util.tree_map(
        lambda a: jnp.asarray(a, dt) if np.issubdtype(np.asarray(a).dtype, np.floating)
        else jnp.asarray(a), tree)


def km2a_observables(shower, ed, md, geometry, response, physics, window=(-50.0, 100.0)):
    """KM2A observables of one event at the reconstructed shower (pure JAX):

    ne : ED particles (PE / gain) within [−30, +50] ns of the fitted front and 0–200 m
    nmu : muons (PE / gain) in MDs 40–200 m from the core within ``window`` ns of the front
          (PHYSICS.md §2.1: NuM3 [U])
    age : lateral age of the fitted model.
    """
    from detectors.shower import shower_plane_coordinates

    e = km2a.expected(shower, geometry, response, physics)
    r_ed, _ = shower_plane_coordinates(shower, geometry.ed_pos)
    r_md, _ = shower_plane_coordinates(shower, geometry.md_pos)
    dt_ed = ed.time - e.ed_time
    dt_md = md.time - e.md_time
    in_ed = ed.hit & ed.valid & (dt_ed > -30.0) & (dt_ed < 50.0) & (r_ed < 200.0)
    in_md = (md.hit & md.valid & (dt_md > window[0]) & (dt_md < window[1])
             & (r_md > 40.0) & (r_md < 200.0))
    ne = jnp.sum(jnp.where(in_ed, ed.signal / response.ed_gain, 0.0))
    nmu = jnp.sum(jnp.where(in_md, md.signal / response.md_gain, 0.0))
    return ne, nmu, e.age


#: WCDA hits counted in ``wcda_nhit``/``wcda_npe`` lie within this window of the fitted front
#: (slewing included) [ns]
WCDA_TIME_WINDOW = (-30.0, 50.0)
#: compactness/PINCness charges are expressed in PE of a pond-1 (8-inch) PMT: q · 45 / pe_per_muon
REFERENCE_PE_PER_MUON = 45.0


def wcda_observables(shower, cells, geometry, response, physics, window=WCDA_TIME_WINDOW,
                     compactness_radius=45.0):
    """WCDA observables of one event at the reconstructed shower (pure JAX, every cell):

    wcda_nhit, wcda_npe : hit cells (and their summed charge [PE]) within ``window`` ns of the
        fitted front, time slewing included — the shower's hits, noise hits outside removed
    compactness : N_hit / CxPE_R (R = ``compactness_radius``, 45 m [M]) on those hits
    cxpe : CxPE_R [PE of a pond-1 8-inch PMT];  pincness : HAWC PINCness with the model's charge
    spread (fano) (``analysis.gamma_hadron``). Both use charges scaled to pond-1 PE
    (q · 45 / pe_per_muon), so that the 20-inch cells of ponds 2/3 compare.
    """
    from analysis.gamma_hadron import compactness, cxpe, pincness

    e = wcda.expected(shower, geometry, response, physics)
    lag = e.cell_front_tau / jnp.maximum(cells.signal / e.cell_pe_per_particle, 1.0)
    dt = cells.time - (e.cell_time + lag + wcda.time_slewing(cells.signal, response))
    valid = cells.valid & jnp.asarray(geometry.cell_live)
    in_time = (cells.hit & valid & (dt > window[0]) & (dt < window[1])
               & (cells.signal >= response.threshold_pe))
    core = jnp.stack([shower.core_x, shower.core_y])
    nhit = jnp.sum(in_time)
    npe = jnp.sum(jnp.where(in_time, cells.signal, 0.0))
    # compactness and PINCness on charges in pond-1 (8-inch) PE, so that cells with the larger
    # PMTs of ponds 2/3 (4× the PE per particle, [M]) compare
    scale = REFERENCE_PE_PER_MUON / response.pe_per_muon
    q = cells.signal * scale
    comp = compactness(q, in_time, valid, geometry.cell_pos, core, compactness_radius)
    cx = cxpe(q, in_time, valid, geometry.cell_pos, core, compactness_radius)
    fano = jnp.where(cells.signal >= response.switch_pe,
                     e.cell_fano + (1.0 + response.spe_resolution ** 2)
                     * (1.0 / response.small_ratio - 1.0), e.cell_fano)
    pinc = pincness(q, in_time, valid, geometry.cell_pos, core, fano * scale)
    return {"wcda_nhit": nhit, "wcda_npe": npe, "compactness": comp, "cxpe": cx,
            "pincness": pinc}


#: tailcut thresholds [PE above the night-sky background] of the WFCTA image cleaning: ≈ 6σ and
#: 3σ of the background fluctuation of a pixel (sqrt(F · 15 PE) ≈ 4.2 PE) [M]
WFCTA_PICTURE_PE = 25.0
WFCTA_BOUNDARY_PE = 12.0


def wfcta_observables(shower, pixels, geometry, response, neighbors, atm=None):
    """WFCTA image parameters of one event at the (fitted or fixed) shower geometry:
    per telescope (n_tel,) the Hillas parameters of the tailcut-cleaned, background-subtracted
    image (``analysis.hillas``; angles in rad in the camera's tangent plane), Dist and alpha
    with respect to the arrival direction, and the depth on the axis the centroid points at
    (``analysis.dist_xmax.centroid_depth``); ``x_dist`` of the brightest telescope."""
    from analysis.dist_xmax import centroid_depth
    from analysis.hillas import dist_alpha, hillas_parameters, tailcuts_clean
    from analysis.dist_xmax import source_in_camera

    n_tel = geometry.tel_pos.shape[0]
    img = (jnp.where(pixels.valid, pixels.signal, 0.0).reshape(n_tel, -1)
           - response.nsb_pe)
    px = jnp.tile(geometry.col_x, geometry.row_y.shape[0])
    py = jnp.repeat(geometry.row_y, geometry.col_x.shape[0])

    def one(im):
        mask = tailcuts_clean(im, neighbors, WFCTA_PICTURE_PE, WFCTA_BOUNDARY_PE)
        return hillas_parameters(px, py, im, mask)

    hp = jax.vmap(one)(img)
    src = source_in_camera(shower.zenith, shower.azimuth, geometry)
    dist, alpha = jax.vmap(dist_alpha)(hp, src)
    xd = centroid_depth(jnp.stack([hp.x, hp.y], -1), shower, geometry, atm)
    best = jnp.argmax(hp.intensity)
    return {"hillas_size": hp.intensity, "hillas_x": hp.x, "hillas_y": hp.y,
            "hillas_length": hp.length, "hillas_width": hp.width, "hillas_psi": hp.psi,
            "hillas_dist": dist, "hillas_alpha": alpha, "hillas_x_dist": xd,
            "x_dist": xd[best], "wfcta_size": jnp.sum(hp.intensity)}


def reconstruct_batch(batch, geometry, response,
                      cfg: ReconstructionConfig = ReconstructionConfig()) -> dict:
    """Reconstruct one dense Event batch with the detectors of ``cfg``. Returns a dict of numpy
    output columns (``reco_*``, ``reco_*_err``, ``reco_covariance``, ``nll`` and ``nll_<det>``,
    ``status``, ``n_iter``, ``seed_*``, the goodness of fit of each detector ``gof_<det>``
    (z-score of its charge deviance: ≈ N(0, 1) when the model describes it, large when the
    detector disagrees with the others; NaN when the event has no data from it),
    ``gof_<det>_dev`` (deviance per channel) and ``gof_<det>_n`` (channels used), and the
    detector observables: KM2A ``ne``, ``nmu``, ``age``; WCDA ``wcda_nhit``, ``wcda_npe``,
    ``compactness``, ``cxpe``, ``pincness``; WFCTA ``hillas_*``, ``x_dist``).

    geometry, response : {detector: Geometry / Response} (or KM2A objects for a KM2A-only run).
    """
    blocks, geos, resps = _normalise(batch, geometry, response, cfg)
    prep, nll_fn, terms, refit_fn = _pipeline(cfg)
    seeds, data = prep(blocks, geos, resps)
    result, info = fitmod.fit_events(nll_fn, data, seeds, cfg.fit_config, terms_fn=terms)
    result, info = straggler_passes(nll_fn, refit_fn, terms, data, result, info, cfg)
    out = {f"reco_{f}": np.asarray(getattr(result.shower, f), np.float64) for f in FIELDS}
    err = np.asarray(result.errors, np.float64)
    for j, f in enumerate(FIELDS):
        out[f"reco_{f}_err"] = err[:, j]
    out["reco_covariance"] = np.asarray(result.covariance, np.float64).reshape(len(err), -1)
    out["nll"] = np.asarray(result.nll, np.float64)
    for d in cfg.detectors:
        out[f"nll_{d}"] = np.asarray(result.nll_terms[d], np.float64)
    out["status"] = np.asarray(info.status, np.int32)
    out["n_iter"] = np.asarray(info.n_iter, np.int32)
    for d, (dev, e_dev, v_dev, n_ch) in _gof_fn(cfg)(result.shower, data).items():
        n_ch = np.asarray(n_ch, np.float64)
        with np.errstate(invalid="ignore", divide="ignore"):
            out[f"gof_{d}"] = np.where(n_ch > 0, (np.asarray(dev, np.float64) - np.asarray(e_dev))
                                       / np.sqrt(np.asarray(v_dev, np.float64)), np.nan)
            out[f"gof_{d}_dev"] = np.where(n_ch > 0, np.asarray(dev, np.float64) / n_ch, np.nan)
        out[f"gof_{d}_n"] = n_ch.astype(np.int32)
    if "km2a" in cfg.detectors:
        ne, nmu, age = _observables_fn(cfg)(result.shower, blocks["km2a_ed"], blocks["km2a_md"],
                                            geos["km2a"], resps["km2a"])
        out["ne"] = np.asarray(ne, np.float64)
        out["nmu"] = np.asarray(nmu, np.float64)
        out["age"] = np.asarray(age, np.float64)
        out.update(core_quality(out["reco_core_x"], out["reco_core_y"], geometry["km2a"]
                                if isinstance(geometry, dict) else geometry))
    if "wcda" in cfg.detectors:
        obs = _wcda_observables_fn(cfg)(result.shower, blocks["wcda"], geos["wcda"], resps["wcda"])
        for k, v in obs.items():
            out[k] = np.asarray(v, np.int32 if k == "wcda_nhit" else np.float64)
    if "wfcta" in cfg.detectors:
        obs = _wfcta_observables_fn(geos["wfcta"].col_x.shape[0])(
            result.shower, blocks["wfcta"], geos["wfcta"], resps["wfcta"])
        for k, v in obs.items():
            out[k] = np.asarray(v, np.float64)
    for f in FIELDS:
        out[f"seed_{f}"] = np.asarray(getattr(seeds, f), np.float64)
    return out


#: EDs farther than this from the array centre form the outer guard ring (~30 m spacing) and
#: do not bound the ED area of :func:`core_quality` (LHAASO's selections use the 575 m radius
#: of the main array, PHYSICS.md §2 / G4KM2A_Reconstruction's trigger "without guard ring" [U])
MAIN_ARRAY_RADIUS_M = 575.0
#: an ED farther than this from the core means the core is on an ED-free area (the regular
#: 15 m grid leaves at most ~11 m to the nearest ED; the area around WCDA is ~300 m across)
CORE_GAP_INSIDE_M = 25.0


def _cross2(a, b):
    """z component of the cross product of 2-D vectors (last axis)."""
    return a[..., 0] * b[..., 1] - a[..., 1] * b[..., 0]


def _convex_hull(xy):
    """Counter-clockwise convex hull (monotone chain) of (n, 2) points."""
    pts = np.unique(np.asarray(xy, np.float64), axis=0)
    if len(pts) < 3:
        return pts

    def half(points):
        h = []
        for p in points:
            while len(h) >= 2 and _cross2(h[-1] - h[-2], p - h[-2]) <= 0:
                h.pop()
            h.append(p)
        return h[:-1]

    return np.array(half(pts) + half(pts[::-1]))


def core_quality(core_x, core_y, geometry) -> dict:
    """Per-event containment flags of a KM2A core (numpy, any number of events):

    core_edge_distance [m] : signed distance from the core to the edge of the ED area (the
        convex hull of the live EDs within :data:`MAIN_ARRAY_RADIUS_M`); > 0 inside, < 0
        outside the array
    core_ed_gap [m] : distance from the core to the nearest live ED (large on the ED-free area
        around WCDA)
    core_inside : 1 when the core is inside the ED area and within :data:`CORE_GAP_INSIDE_M`
        of an ED, else 0 — the selection users apply as LHAASO does (cores on the ponds are
        reconstructed, but by the EDs around them; the joint fit with WCDA is the answer there)
    """
    pos = np.asarray(geometry.ed_pos)[:, :2]
    live = (np.ones(len(pos), bool) if geometry.ed_live is None
            else np.asarray(geometry.ed_live, bool))
    main = pos[live & (np.hypot(pos[:, 0], pos[:, 1]) <= MAIN_ARRAY_RADIUS_M)]
    hull = _convex_hull(main)
    c = np.stack([np.asarray(core_x, np.float64), np.asarray(core_y, np.float64)], -1)
    a, b = hull, np.roll(hull, -1, axis=0)
    ab = b - a
    t = np.clip(np.einsum("nkd,kd->nk", c[:, None, :] - a[None], ab) / np.sum(ab * ab, -1), 0, 1)
    d_edge = np.min(np.linalg.norm(c[:, None, :] - (a[None] + t[..., None] * ab[None]), axis=-1),
                    axis=1)
    inside = np.all(_cross2(ab[None], c[:, None, :] - a[None]) >= 0, axis=1)
    gap = np.empty(len(c))
    for i0 in range(0, len(c), 256):  # (256, n_ed) distances at a time
        blk = c[i0:i0 + 256]
        gap[i0:i0 + 256] = np.sqrt(np.min(np.sum((blk[:, None, :] - pos[live][None]) ** 2, -1), 1))
    finite = np.all(np.isfinite(c), axis=1)
    edge = np.where(finite, np.where(inside, d_edge, -d_edge), np.nan)
    gap = np.where(finite, gap, np.nan)
    return {"core_edge_distance": edge, "core_ed_gap": gap,
            "core_inside": (finite & inside & (gap <= CORE_GAP_INSIDE_M)).astype(np.int8)}


#: size of the straggler pass's sub-batches (events left at MAX_ITER are refitted in batches of
#: this fixed size, so the pass compiles once)
REFIT_BATCH = 64


def straggler_passes(nll_fn, refit_fn, terms, data, result, info, cfg):
    """The passes after the first one, for the events it left at MAX_ITER: ``refit_iter``
    iterations of the first pass's algorithm, then ``newton_iter`` exact-Hessian iterations for
    the events still at MAX_ITER (cheap: only they pay for the Hessian)."""
    result, info = _refit_stragglers(nll_fn, terms, data, result, info, cfg, cfg.refit_iter,
                                     cfg.n_iter)
    return _refit_stragglers(refit_fn, terms, data, result, info, cfg, cfg.newton_iter,
                             cfg.n_iter + cfg.refit_iter)


def _refit_stragglers(nll_fn, terms, data, result, info, cfg, n_iter, done_iter):
    """One more pass for the events left at MAX_ITER, started from where the last pass stopped
    (``n_iter`` iterations; ``done_iter`` already spent)."""
    status = np.asarray(info.status)
    idx = np.nonzero(status == fitmod.MAX_ITER)[0]
    if n_iter <= 0 or idx.size == 0:
        return result, info
    config = cfg.fit_config._replace(n_iter=n_iter)
    # fixed sub-batches of REFIT_BATCH events: one compilation for any number of stragglers
    parts = []
    for start in range(0, idx.size, REFIT_BATCH):
        chunk = idx[start:start + REFIT_BATCH]
        take = np.concatenate([chunk, np.full(REFIT_BATCH - chunk.size, chunk[0])])
        sub = lambda t: jax.tree_util.tree_map(lambda a: jnp.take(jnp.asarray(a), take, axis=0), t)
        r2, i2 = fitmod.fit_events(nll_fn, sub(data), sub(result.shower), config, terms_fn=terms)
        parts.append((chunk, r2, i2._replace(n_iter=i2.n_iter + done_iter)))

    # merge on the host (a device scatter with a varying number of indices would compile a new
    # kernel for every straggler count)
    def merge(full, which):
        def leaf(a, *bs):
            a = np.array(a)
            for (chunk, *_), b in zip(parts, bs):
                a[chunk] = np.asarray(b)[:chunk.size]
            return a
        return jax.tree_util.tree_map(leaf, full, *[p[which] for p in parts])

    return merge(result, 1), merge(info, 2)


@lru_cache(maxsize=4)
def _wfcta_observables_fn(n_side):
    from analysis.hillas import neighbor_matrix
    from detectors.layout import camera_pixel_xy

    neighbors = jnp.asarray(neighbor_matrix(camera_pixel_xy()))
    return jax.jit(jax.vmap(lambda s, p, g, r: wfcta_observables(s, p, g, r, neighbors),
                            in_axes=(0, 0, None, None)))


@lru_cache(maxsize=16)
def _gof_fn(cfg):
    """Per detector (D, E[D], Var[D], N): the charge deviance of its channels at the fitted
    shower (``detectors.channel.deviance_sums`` over the detector's ``gof_counts``)."""
    from detectors.channel import deviance_sums

    modules = {"km2a": km2a, "wcda": wcda, "wfcta": wfcta}
    phys = {d: cfg.physics_of(d) for d in cfg.detectors}

    def one(shower, data):
        out = {}
        for d in cfg.detectors:
            dd, mod = data[d], modules[d]
            pred = mod.predict(shower, dd.geometry, dd.response, phys[d])
            sums = [deviance_sums(*c) for c in mod.gof_counts(dd.observed, pred, dd.geometry,
                                                              dd.response)]
            out[d] = tuple(sum(s[i] for s in sums) for i in range(4))
        return out
    return jax.jit(jax.vmap(one))


@lru_cache(maxsize=16)
def _wcda_observables_fn(cfg):
    physics = cfg.physics_of("wcda")
    return jax.jit(jax.vmap(lambda s, c, g, r: wcda_observables(s, c, g, r, physics),
                            in_axes=(0, 0, None, None)))


@lru_cache(maxsize=16)
def _observables_fn(cfg):
    physics = cfg.physics
    return jax.jit(jax.vmap(lambda s, ed, md, g, r: km2a_observables(s, ed, md, g, r, physics),
                            in_axes=(0, 0, 0, None, None)))


# ------------------------------------------------------------------------------------------------
# files
# ------------------------------------------------------------------------------------------------
def _iter_chunks(path, layouts, batch_size):
    """Yield (records_chunk) of at most batch_size events from an input file (streamed)."""
    from joint.io import file_kind, read_file
    from joint.io.schema import TREE

    kind = file_kind(path)
    kw = {"km2a": layouts.get("km2a"), "wcda": layouts.get("wcda"), "wfcta": layouts.get("wfcta")}
    if kind == "own":
        import uproot

        from joint.io.schema import read_events
        with uproot.open(path) as f:
            n = f[TREE].num_entries
        if n == 0:
            read_events(path, **kw)  # raises the empty-file error
        for start in range(0, n, batch_size):
            yield read_events(path, entry_start=start, entry_stop=min(n, start + batch_size), **kw)
    else:
        rec = read_file(path, **kw)
        n = len(rec["event_id"])
        for start in range(0, n, batch_size):
            yield {k: v[start:start + batch_size] for k, v in rec.items()}


_GROUP_DETECTOR = {"km2a_ed": "km2a", "km2a_md": "km2a", "wcda": "wcda", "wfcta": "wfcta"}
_GROUP_KEY = {"km2a_ed": "id", "km2a_md": "id", "wcda": "id", "wfcta": "tel"}


def detectors_in_file(path) -> tuple:
    """The built detectors with hit branches in an input file (own schema or G4KM2A)."""
    from joint.io import file_kind

    if file_kind(path) == "own":
        from joint.io.errors import open_tree
        from joint.io.schema import TREE

        fin, tree = open_tree(path, TREE)
        with fin:
            keys = set(tree.keys())
        found = {d for g, d in _GROUP_DETECTOR.items() if f"{g}_{_GROUP_KEY[g]}" in keys}
    else:
        from joint.io.lhevent import read_lhevent

        rec = read_lhevent(path)
        found = {d for g, d in _GROUP_DETECTOR.items() if f"{g}_{_GROUP_KEY[g]}" in rec}
    return tuple(d for d in BUILT_DETECTORS if d in found)


def detector_setup(detectors, km2a_config="full"):
    """({name: layout}, {name: Geometry}, {name: Response}) of the named detectors, nominal
    response; ``km2a_config`` is the KM2A layout ("full" or "3/4")."""
    from detectors.layout import km2a_layout, wcda_layout, wfcta_layout

    loaders = {"km2a": (lambda: km2a_layout(km2a_config), km2a),
               "wcda": (wcda_layout, wcda), "wfcta": (wfcta_layout, wfcta)}
    layouts, geometry, response = {}, {}, {}
    for name in BUILT_DETECTORS:
        if name in detectors:
            load, module = loaders[name]
            layouts[name] = load()
            geometry[name] = module.Geometry.from_layout(layouts[name])
            response[name] = module.Response.nominal(geometry[name])
    return layouts, geometry, response


def _check_inputs(inputs, detectors, cfg):
    """Before any fitting: every input file has hits of every detector to fit (and truth when
    the geometry comes from it) — an EventFileError naming the file and the missing branch."""
    from joint.io import file_kind
    from joint.io.errors import EventFileError

    for path in inputs:
        present = detectors_in_file(path)
        for d in detectors:
            if d not in present:
                group = {"km2a": "km2a_ed_id", "wcda": "wcda_id", "wfcta": "wfcta_tel"}[d]
                raise EventFileError(path, group, f"is missing: the run fits {d.upper()} "
                                     f"(detectors {', '.join(sorted(detectors))})")
        if cfg.truth_fields and cfg.geometry_from == "truth" and file_kind(path) == "own":
            from joint.io.errors import open_tree
            from joint.io.schema import TREE

            fin, tree = open_tree(path, TREE)
            with fin:
                keys = set(tree.keys())
            for f in cfg.truth_fields:
                if f"true_{f}" not in keys:
                    raise EventFileError(path, f"true_{f}", "is missing: the geometry is fixed "
                                         "from the truth (use --geometry-from km2a or wcda)")


def reconstruct_files(inputs, output, cfg: ReconstructionConfig = ReconstructionConfig(),
                      batch_size=512, layout_config="full", progress=True, log=print,
                      detectors="config", frame_rotation_deg=0.0, calib_db=None,
                      calib_missing="raise"):
    """Reconstruct input files into ``output`` (tree ``reco``), streaming in chunks.

    detectors : "config" (``cfg.detectors``), "auto" (every built detector with hits in the first
        input file, fitted jointly) or a tuple of names.
    frame_rotation_deg : angle of the array's +x axis from true East (``joint.sky``) for the sky
        columns ``ra``, ``dec``, ``ra_dec_err``, ``glon``, ``glat`` [deg] at each event's time.
    calib_db : a ``calib.db.CalibrationDB`` (or its path): each event is fitted with the
        calibration whose validity interval contains its ``time_mjd``, per detector, and with
        that period's layout and dead channels (``calib.db.setups_for_events``). The output has
        a column ``calib_<det>`` per fitted detector (index of the entry in the database, −1 =
        nominal) and a string ``calibration`` (JSON: the database path and, per index, the
        entry's name and validity); the log names the entries used. None: nominal Responses.
    calib_missing : "raise" (events outside every entry stop the run before anything is written
        for them, naming the detector and the times) or "nominal"
    Returns a summary dict (events, seconds, events/s, status counts, detectors, and
    ``calibration`` {detector: {entry name or "nominal": events}}).
    """
    import dataclasses

    import uproot
    from tqdm import tqdm

    from joint.event import pad_batch
    from joint.io.schema import PRESENCE, TRUTH, to_event_batch
    from joint.sky import sky_columns

    if isinstance(detectors, str) and detectors == "auto":
        dets = detectors_in_file(inputs[0])
        if not dets:
            from joint.io.errors import EventFileError

            raise EventFileError(inputs[0], "km2a_ed_id/wcda_id", "has no hits of a built "
                                 f"detector ({', '.join(BUILT_DETECTORS)})")
        cfg = dataclasses.replace(cfg, detectors=dets)
    elif not isinstance(detectors, str):
        cfg = dataclasses.replace(cfg, detectors=tuple(detectors))
    needed = set(cfg.detectors)
    if cfg.truth_fields and cfg.geometry_from in ("km2a", "wcda"):
        needed.add(cfg.geometry_from)
    layouts, geometry, response = detector_setup(needed, layout_config)
    _check_inputs(inputs, needed, cfg)
    db, setup_cache, used = None, {}, {}
    if calib_db is not None:
        from calib.db import CalibrationDB

        db = calib_db if isinstance(calib_db, CalibrationDB) else CalibrationDB(calib_db)
        _check_calibration_covers(db, inputs, needed, calib_missing)
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_suffix(output.suffix + ".part")
    n_done, t_start = 0, time.perf_counter()
    status_counts = np.zeros(4, int)
    bar = tqdm(unit="ev", disable=not progress, desc="reconstruct " + "+".join(cfg.detectors))
    with uproot.recreate(tmp) as fout:
        tree = None
        for path in inputs:
            for rec in _iter_chunks(path, layouts, batch_size):
                n = len(rec["event_id"])
                if db is None:
                    batch = to_event_batch(rec, km2a=layouts.get("km2a"), wcda=layouts.get("wcda"),
                                           wfcta=layouts.get("wfcta"), source=path, as_jax=False)
                    padded, mask = pad_batch(batch, batch_size)
                    cols = reconstruct_batch(padded, geometry, response, cfg)
                    cols = {k: v[:n] for k, v in cols.items()}
                else:
                    cols = _reconstruct_calibrated(rec, path, db, needed, layouts, cfg, batch_size,
                                                   calib_missing, setup_cache, used, log)
                cols["run"] = np.asarray(rec["run"], np.int32)
                cols["event_id"] = np.asarray(rec["event_id"], np.int64)
                cols["time_mjd"] = np.asarray(rec["time_mjd"], np.float64)
                cols.update(sky_columns(cols, cols["time_mjd"], frame_rotation_deg))
                for t in (*TRUTH, *PRESENCE):
                    if t in rec:
                        cols[t] = np.asarray(rec[t], np.int8 if t in PRESENCE else np.float64)
                if tree is None:
                    tree = fout.mktree("reco", {k: v.dtype if v.ndim == 1 else (v.dtype, v.shape[1:])
                                                for k, v in cols.items()})
                tree.extend(cols)
                status_counts += np.bincount(cols["status"], minlength=4)[:4]
                n_done += n
                bar.update(n)
                bar.set_postfix(ev_s=f"{n_done / (time.perf_counter() - t_start):.1f}")
        if db is not None:
            fout["calibration"] = _calibration_json(db)
    bar.close()
    tmp.replace(output)
    seconds = time.perf_counter() - t_start
    summary = {"events": n_done, "seconds": seconds, "events_per_s": n_done / max(seconds, 1e-9),
               "status_counts": status_counts.tolist(), "detectors": list(cfg.detectors)}
    if db is not None:
        summary["calibration"] = used
        if log:
            for d, counts in used.items():
                log(f"{d.upper()} calibration: " + ", ".join(
                    f"{name!r} for {k} events" for name, k in counts.items()) + f" ({db.index_path})")
    return summary


def _check_calibration_covers(db, inputs, detectors, missing):
    """Before any fit: the database exists, and (``missing="raise"``) every event of the
    own-schema inputs has an entry for each detector — so a run does not stop half-way
    (G4KM2A files are checked chunk by chunk)."""
    import uproot

    from calib.db import CalibrationDBError, _group_events
    from joint.io import file_kind
    from joint.io.schema import TREE

    if not db.index_path.exists():
        raise CalibrationDBError(db.index_path, "entries", "does not exist: no calibration "
                                 "database at this path (create one with lhaaso-joint calibrate)")
    if missing != "raise":
        return
    for path in inputs:
        if file_kind(path) != "own":
            continue
        with uproot.open(path) as f:
            t = f[TREE]["time_mjd"].array(library="np")
        try:
            _group_events(db, t, sorted(detectors), "raise")
        except ValueError as err:
            raise ValueError(f"{path}: {err}") from None


def _calibration_json(db) -> str:
    """The ``calibration`` string of an output file: which database entry each ``calib_<det>``
    index is."""
    import json

    return json.dumps({"database": str(db.index_path),
                       "entries": {str(i): {"name": e.name, "valid_from": e.valid_from.utc.isot,
                                            "valid_to": e.valid_to.utc.isot,
                                            "detectors": sorted(e.detectors)}
                                   for i, e in enumerate(db.entries())},
                       "nominal": -1})


def _reconstruct_calibrated(rec, path, db, detectors, layouts, cfg, batch_size, missing, cache,
                            used, log):
    """Output columns of one chunk of records, each group of events (same calibration entries)
    converted with its period's layout and fitted with its geometry and Response."""
    from calib.db import setups_for_events
    from joint.event import pad_batch
    from joint.io.schema import to_event_batch

    n = len(rec["event_id"])
    names = [e.name for e in db.entries()]
    cols = None
    for setup in setups_for_events(db, rec["time_mjd"], sorted(detectors), layouts,
                                   missing=missing, cache=cache):
        sub = {k: v[setup.index] for k, v in rec.items()}
        lay = setup.layouts
        batch = to_event_batch(sub, km2a=lay.get("km2a"), wcda=lay.get("wcda"),
                               wfcta=lay.get("wfcta"), source=path, as_jax=False)
        padded, _ = pad_batch(batch, batch_size)
        out = reconstruct_batch(padded, setup.geometries, setup.responses, cfg)
        m = setup.index.size
        if cols is None:
            cols = {k: np.zeros((n,) + np.shape(v)[1:], np.asarray(v).dtype) for k, v in out.items()}
            for d in cfg.detectors:
                cols[f"calib_{d}"] = np.full(n, -1, np.int32)
        for k, v in out.items():
            cols[k][setup.index] = np.asarray(v)[:m]
        for d in cfg.detectors:
            name = setup.entries.get(d)
            cols[f"calib_{d}"][setup.index] = -1 if name is None else names.index(name)
            key = "nominal" if name is None else name
            used.setdefault(d, {})
            used[d][key] = used[d].get(key, 0) + m
    return cols
