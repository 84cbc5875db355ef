"""Configuration of a reconstruction: which detectors, which hypothesis, which fields, which
fitter settings (:class:`ReconstructionConfig`), and the nominal set-up of the detectors
(:func:`detector_setup`).

Layer: ``joint`` (imports ``detectors`` and ``joint.fit``/``joint.likelihood`` only).
"""
from __future__ import annotations

from dataclasses import dataclass

import jax.numpy as jnp
import numpy as np

from detectors import registry
from detectors.primaries import xmax_moments
from detectors.registry import DEFAULT_N_ED, DEFAULT_N_MD, DEFAULT_N_WCDA
from joint import fit as fitmod
from joint.likelihood import XmaxPrior

__all__ = ["ReconstructionConfig", "KM2A_FREE", "GROUND_GEOMETRY_FIELDS", "config_for", "detector_setup", "default_xmax",
           "GAMMA_LOG_MUON_SCALE", "SEED_ENERGY_SCAN", "SEED_XMAX_SCAN", "CORE_SCAN_OFFSETS_M",
           "CORE_SCAN_ENERGY", "auto_batch_size", "DEFAULT_MAX_MEMORY_GB", "MEMORY_BASE_MB",
           "MEMORY_PER_EVENT_MB", "estimated_peak_mb"]

#: Free fields of a KM2A fit per hypothesis. Xmax is free: the lateral age carries it, and fixing
#: it at a mean value costs energy resolution (measured: 0.16 -> 0.08 in log10 E for 100 TeV
#: photons, docs/km2a.md). For photons the muon content is not fitted (a photon shower has almost
#: no muons, the scale would run to its bound); the muon count ``nmu`` is the discriminator.
KM2A_FREE = {
    "hadron": ("core_x", "core_y", "zenith", "azimuth", "log10_energy", "xmax", "log_muon_scale", "t0"),
    "gamma": ("core_x", "core_y", "zenith", "azimuth", "log10_energy", "xmax", "t0"),
}
#: the Shower fields a staged joint fit takes from the ground arrays' pre-fit
#: (``ReconstructionConfig.ground_geometry``)
GROUND_GEOMETRY_FIELDS = ("core_x", "core_y", "zenith", "azimuth")
#: log_muon_scale of the photon hypothesis when not fitted: ln(0.1) (lateral.muon_number's
#: gamma_muon_fraction [M])
GAMMA_LOG_MUON_SCALE = float(np.log(0.1))




@dataclass(frozen=True)
class ReconstructionConfig:
    """Static configuration of a reconstruction run.

    detectors : tuple of detector names fitted together (registered in ``detectors.registry``;
        sorted into registry order): ("km2a",), ("wcda",), ("km2a", "wcda"), ...
    hypothesis : "gamma" or "hadron": the energy-per-particle relation of the model
    free : Shower fields fitted (None: ``KM2A_FREE[hypothesis]``); fixed fields keep their seed
        (Xmax: ``xmax_fixed`` or the hypothesis' mean at the seed energy)
    n_ed, n_md : active KM2A channels per event (``joint.likelihood``); None = all
    n_wcda : active WCDA cells per event; None = all
    n_iter : fixed iterations of the first pass
    refit_iter : iterations of the second pass, run only on the events the first pass left at
        MAX_ITER, compacted into sub-batches of ``REFIT_BATCH`` (64) events, or of the batch
        size when smaller, so that stragglers do not set the cost of the whole batch
        (PERFORMANCE.md §6, item 3); 0 disables it
    newton_iter : iterations of a third pass on the events still at MAX_ITER, with the exact
        Hessian (damped saddle-free Newton) whatever ``algorithm`` is: the time term's
        exponential tail makes the likelihood far from quadratic for cores on the ED-free area
        around WCDA, where scoring stalls (issue 13, docs/km2a.md); those events' covariance is
        the inverse observed information. On 256 photons at 100 TeV: 12 scoring + 6 Newton
        converged 253 in 1.1 s, 12 Newton 249 in 1.7 s, 24 scoring 246 in 0.4 s; 0 disables it
    algorithm : the first passes' fitter algorithm (``joint.fit.FitConfig.algorithm``):
        "scoring" (Fisher scoring, default) or "newton" (exact Hessian)
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

    ground_geometry : the staged joint fit (with ``ground_seed``; only when WFCTA is fitted
        together with a ground array): the geometry (:data:`GROUND_GEOMETRY_FIELDS`: core and
        direction) is the ground arrays' pre-fit's, held fixed, and the joint fit frees the
        rest (energy, Xmax, muon scale, t₀) — the ground arrays set the geometry, WFCTA the
        profile, and an image the model does not describe can no longer drag the core and the
        direction (issue 6: with the geometry free, the images' unmodelled fluctuations pulled
        geometry and Xmax together). No extra pass: the pre-fit is ``ground_seed``'s. The
        geometry columns' errors and covariance block are the pre-fit's; ``status`` is
        converged only when both stages converged (else the pre-fit's status)
        (docs/joint.md, "Staged joint fit"). Where the pre-fit is not finite the best seed's
        geometry is kept.

    km2a_compound : KM2A charge model: 0 = scaled Poisson (default), > 0 = the exact compound
        Poisson–gamma density below about this many particles
        (``detectors.km2a.KM2APhysics.compound_particles``; the calibration uses 8)
    core_scan : move the KM2A seed to the best of a grid of cores and energies around it by the
        likelihood (:data:`CORE_SCAN_OFFSETS_M`, :data:`CORE_SCAN_ENERGY`): cores on the
        ED-free area around WCDA and outside the array
    core_scan_channels : (n_ed, n_md) active KM2A channels around the seed on which the core
        scan's trials are compared (None: the fit's ``n_ed``, ``n_md``); the fit itself still
        uses ``n_ed``/``n_md``. The scan evaluates 75 trials per event, as much compute as the
        whole first pass: on 256 + 64 channels (default) the seeds cost half (3.14 -> 1.53 s per
        1000 photons) at equal resolution on the own simulation, chosen there, and checked on
        the CORSIKA throws (BENCHMARKS.md, issue 15: 0.286° / 6.2 m / 100% converged against
        0.290° / 5.9 m / 99.6% with the fit's channels)

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
    ground_geometry: bool = True
    km2a_compound: float = 0.0
    core_scan: bool = True
    core_scan_channels: tuple | None = (256, 64)

    def __post_init__(self):
        dets = tuple(self.detectors)
        known = registry.names()
        if not dets or any(d not in known for d in dets):
            raise ValueError(f"detectors must be a non-empty subset of {known}, got {dets}")
        object.__setattr__(self, "detectors", tuple(d for d in known if d in dets))
        if self.algorithm not in fitmod.ALGORITHMS:
            raise ValueError(f"algorithm must be one of {fitmod.ALGORITHMS}, got {self.algorithm!r}")

    @property
    def is_gamma(self) -> float:
        if self.hypothesis not in ("gamma", "hadron"):
            raise ValueError(f"hypothesis must be 'gamma' or 'hadron', got {self.hypothesis!r}")
        return 1.0 if self.hypothesis == "gamma" else 0.0

    @property
    def physics(self):
        """KM2A physics of this hypothesis (see :meth:`physics_of` for any detector)."""
        return self.physics_of("km2a")

    def physics_of(self, detector: str):
        """The physics of ``detector`` for this hypothesis (``DetectorSpec.physics``)."""
        return registry.get(detector).physics(self.is_gamma, self)

    @property
    def prior(self):
        if not self.xmax_prior:
            return None
        return XmaxPrior(mass_number=0.0, sigma_floor=0.0) if self.hypothesis == "gamma" else XmaxPrior()

    @property
    def ground_detectors(self) -> tuple:
        """The ground arrays among the configured detectors (registry order)."""
        return tuple(s.name for s in registry.specs(self.detectors) if s.ground)

    @property
    def staged(self) -> bool:
        """Whether the geometry comes from the ground arrays' pre-fit (``ground_geometry``
        with ``ground_seed``, a ground array and another detector, e.g. WFCTA)."""
        ground = self.ground_detectors
        return bool(self.ground_seed and self.ground_geometry and ground
                    and len(ground) < len(self.detectors))

    @property
    def fit_config(self) -> fitmod.FitConfig:
        """The first pass's FitConfig (the straggler passes replace ``n_iter``/``algorithm``);
        a staged fit (:attr:`staged`) does not free the geometry."""
        free = KM2A_FREE[self.hypothesis] if self.free is None else tuple(self.free)
        if self.staged:
            free = tuple(f for f in free if f not in GROUND_GEOMETRY_FIELDS)
        return fitmod.FitConfig(free=free, n_iter=self.n_iter, algorithm=self.algorithm)


def default_xmax(log10_energy, hypothesis):
    """Xmax used when it is not fitted: the mean of the hypothesis at the seed energy
    (photons: Greisen; hadrons: EPOS-LHC protons), g/cm²."""
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


def config_for(detectors, hypothesis="hadron", fix=(), geometry_from="truth", xmax_prior=None,
               free=None, n_iter=12, ground_geometry=True):
    """The ReconstructionConfig a physicist would choose for ``detectors``: every Shower field
    of the hypothesis free except the ``fix``-ed ones (taken from ``geometry_from``); a
    WFCTA-only fit fits energy and Xmax and needs the geometry fixed; the Xmax prior is on
    except for WFCTA alone (with WFCTA in a joint fit it applies only to the events without
    images: ``joint.likelihood.joint_model``). ``ground_geometry``: WFCTA with a ground array
    is fitted in stages, the geometry from the ground arrays (``ReconstructionConfig``)."""
    detectors = tuple(detectors)
    fix = tuple(fix)
    if free is None:
        free = ("log10_energy", "xmax") if detectors == ("wfcta",) else KM2A_FREE[hypothesis]
    if detectors == ("wfcta",) and not {"core_x", "core_y", "zenith", "azimuth"} <= set(fix):
        raise ValueError("a WFCTA-only fit needs the geometry fixed: fix=('core_x', 'core_y', "
                         "'zenith', 'azimuth') with geometry_from 'truth', 'km2a' or 'wcda'")
    prior = (detectors != ("wfcta",)) if xmax_prior is None else bool(xmax_prior)
    free = tuple(f for f in free if f not in fix)
    if free == KM2A_FREE[hypothesis]:
        # the default (None): equal to the staged fit's ground pre-fit configuration, so a
        # KM2A+WCDA fit and the pre-fit of a KM2A+WCDA+WFCTA fit share one compilation
        free = None
    return ReconstructionConfig(hypothesis=hypothesis, free=free,
                                n_iter=n_iter, truth_fields=fix, geometry_from=geometry_from,
                                xmax_prior=prior, detectors=detectors,
                                ground_geometry=bool(ground_geometry))


def detector_setup(detectors, km2a_config="full"):
    """({name: layout}, {name: Geometry}, {name: Response}) of the named detectors, nominal
    response; ``km2a_config`` is the KM2A layout ("full" or "3/4")."""
    layouts, geometry, response = {}, {}, {}
    for spec in registry.specs(detectors):
        layouts[spec.name], geometry[spec.name], response[spec.name] = spec.setup(km2a_config)
    return layouts, geometry, response


#: memory budget of one reconstruct process when none is given (``--max-memory``) [GB]
DEFAULT_MAX_MEMORY_GB = 3.0
#: peak resident memory of a reconstruct process [MB] ≈ Σ_det MEMORY_BASE_MB[det] +
#: Σ_det MEMORY_PER_EVENT_MB[det] × batch size, measured with ``benchmarks/memory_per_event.py``
#: (BENCHMARKS.md, issue 15; warm compilation cache): KM2A alone 1563 MB + 2.79 MB/event
#: (batches 128 and 512), KM2A+WCDA+WFCTA 2795 MB + 33.0 MB/event (batches 8 and 16). The base
#: is JAX, the compiled programs and the layouts; the WFCTA images make the per-event cost.
#: WCDA's share is not measured on its own: its values here are an estimate [M] (the split of
#: the three-detector figures between WCDA and WFCTA).
MEMORY_BASE_MB = {"km2a": 1563.0, "wcda": 600.0, "wfcta": 632.0}
#: WFCTA: 28.7 MB per event without the nuisances (the pipeline's default); with the profiled
#: width / lateral nuisances (opt-in, docs/nuisances.md) ≈ 95 MB per event (rough, issue 16).
MEMORY_PER_EVENT_MB = {"km2a": 2.79, "wcda": 1.5, "wfcta": 28.7}
#: the estimate is kept this factor below the budget (run-to-run spread of the peak)
MEMORY_MARGIN = 1.1
#: the largest and smallest batch the memory budget picks
MAX_AUTO_BATCH, MIN_AUTO_BATCH = 512, 8


def estimated_peak_mb(detectors, batch_size: int) -> float:
    """Estimated peak resident memory [MB] of a run of ``detectors`` at ``batch_size``."""
    dets = list(detectors)
    return (sum(MEMORY_BASE_MB.get(d, max(MEMORY_BASE_MB.values())) for d in dets)
            + batch_size * sum(MEMORY_PER_EVENT_MB.get(d, max(MEMORY_PER_EVENT_MB.values()))
                               for d in dets))


def auto_batch_size(detectors, max_memory_gb=None) -> int:
    """The batch size of a run of ``detectors`` within ``max_memory_gb`` of resident memory
    (default :data:`DEFAULT_MAX_MEMORY_GB`): the largest power of two from
    :data:`MIN_AUTO_BATCH` to :data:`MAX_AUTO_BATCH` whose estimated peak
    (:data:`MEMORY_BASE_MB` + per-event cost × batch) fits. Powers of two, so runs of different
    budgets share compiled programs (``joint.pipeline.padded_size``)."""
    budget_mb = 1024.0 * (DEFAULT_MAX_MEMORY_GB if max_memory_gb is None else max_memory_gb)
    size = MIN_AUTO_BATCH
    while size * 2 <= MAX_AUTO_BATCH and \
            MEMORY_MARGIN * estimated_peak_mb(detectors, size * 2) <= budget_mb:
        size *= 2
    return size
