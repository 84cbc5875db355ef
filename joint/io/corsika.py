"""CORSIKA showers thrown onto the KM2A layout: an APPROXIMATE particle-level detector response.

``lhaaso-joint simulate --from-corsika FILES... --throws N`` (``joint/cli.py``) and
:func:`simulate_corsika` read CORSIKA 7 particle files (unthinned or thinned), throw every shower
``N`` times onto the KM2A array (random core and rotation about the vertical), let the particles
cross the detectors and write the triggered events in the project's event schema
(:func:`joint.io.schema.write_events`) with the truth. Documentation: ``docs/corsika.md``.

This response is deliberately independent of the fit model (``detectors/km2a.py``'s
``expected``/``simulate`` are not used): it counts the particles that actually cross each
detector. Only the detector NUMBERS are shared with ``detectors.km2a.Response`` (tags as in
PHYSICS.md: [C] confirmed, [U] unofficial LHAASO code, [D] derived from LHAASO's own files,
[M] assumption of this project); :class:`CorsikaResponse` lists each with its source.

Frames and times
----------------
* CORSIKA: x towards magnetic north, y towards west, z up; lengths cm, momenta GeV/c, times ns.
  The particle ``pz`` is the momentum along −z (positive for down-going particles). The event
  header's zenith θ and azimuth φ are those of the primary's MOMENTUM (direction of travel; checked:
  ``atan2(py, px)`` of the header momenta is φ). Particle (x, y) are relative to the point where the
  shower axis meets the (lowest) observation level.
* Array frame (``detectors/layout.py``): x, y as G4KM2A, z up relative to 4400 m a.s.l.; azimuth
  is where the shower COMES FROM, counted from +x towards +y. The CORSIKA frame is used as the
  array frame before the throw's rotation (as ``joint.io.lhevent`` does for G4KM2A), so
  ``true_azimuth = (φ + π + α) mod 2π`` for a rotation α (positions and momenta rotated by α about
  the vertical, counter-clockwise from +x towards +y). Verified by a plane fit of the ED times
  (``tests/test_corsika_io.py``).
* Heights: the CORSIKA observation plane is z = 0 of the array frame. The air above the array is
  therefore that of the file's observation level (``obs_level_m`` in the metadata): a 3000 m file
  thrown onto KM2A (4410 m) has the shower development of 3000 m. A particle on the plane at
  (x, y) moving along the unit vector (u, v, −w) (w > 0 down-going) is at
  ``(x − z u / w, y − z v / w)`` at height z, at time ``t − z / (c w)`` (earlier above the plane;
  speed c for every particle [M]). The height used is that of the detector itself (candidates are
  found at the height of a 10 m map of the nearest detector's height, then each candidate is tested
  at its own height).
* Times: CORSIKA counts from the first interaction (or, with TSTART, from the entry of the
  primary at the top of the atmosphere; the header's first-interaction height is then negative).
  ``t_core`` = (h_start − h_obs) / (c cos θ) is the moment the primary, moving at c, would reach
  the core: the arrival of the plane front at the core (checked: the earliest particles within
  20 m of the core arrive within 0.01 ns of it on both shared files). Hit times are counted from
  it, so ``true_t0 = 0``: the time at which the plane front through the core reaches z = 0.

Everything is numpy (grid hashing of the detector positions); ``corsikaio`` is imported inside
the reading functions only.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from joint.io.errors import EventFileError

__all__ = ["CorsikaShower", "CorsikaResponse", "read_corsika", "iter_corsika_showers",
           "detect_thinning", "throw_shower", "simulate_corsika", "write_corsika_events",
           "read_corsika_extra", "extra_path", "sampling_radius", "expected_thinned_counts",
           "mass_number", "SPEED_OF_LIGHT_M_PER_NS"]

#: [m/ns]
SPEED_OF_LIGHT_M_PER_NS = 0.299792458
_C_CM_PER_NS = 29.9792458

# --------------------------------------------------------------------------------------------
# particle ids (CORSIKA 7 user guide, Table 4): id = particle_description // 1000
# --------------------------------------------------------------------------------------------
GAMMA_ID = 1
ELECTRON_IDS = (2, 3)
MUON_IDS = (5, 6)
#: charged particles a scintillator sees: e±, μ±, π±, K±, p, p̄, Σ±, Ξ−, Ω−, anti-Σ∓, anti-Ξ+,
#: anti-Ω+; nuclei (id = 100 A + Z ≥ 201) are charged as well
CHARGED_IDS = (2, 3, 5, 6, 8, 9, 11, 12, 14, 15, 19, 21, 23, 24, 27, 29, 31, 32)
#: not particles: additional muon information (75/76), EHISTORY mother/grandmother records
#: (85/86, 95/96); neutral hadrons and neutrinos are dropped as well (no ED/MD signal here [M])
INFO_IDS = (75, 76, 85, 86, 95, 96)
#: rest masses [GeV] of the ids used for energies (PDG)
_MASS_GEV = {1: 0.0, 2: 0.000510999, 3: 0.000510999, 5: 0.105658, 6: 0.105658, 8: 0.139570,
             9: 0.139570, 11: 0.493677, 12: 0.493677, 14: 0.938272, 15: 0.938272, 19: 1.18937,
             21: 1.19745, 23: 1.32171, 24: 1.67245, 27: 1.18937, 29: 1.19745, 31: 1.32171,
             32: 1.67245}
_AMU_GEV = 0.931494


def mass_number(primary_id) -> float:
    """CORSIKA primary id -> mass number A: 1 (γ) -> 0, 14 (p) and 13 (n) -> 1, 100 A + Z -> A;
    NaN otherwise (the mapping of ``joint.io.lhevent.mass_number_from_corsika_id``, repeated here
    so that this module does not import jax)."""
    pid = int(primary_id)
    if pid == 1:
        return 0.0
    if pid in (13, 14):
        return 1.0
    if pid >= 100:
        return float(pid // 100)
    return float("nan")


def _is_charged(pid: np.ndarray) -> np.ndarray:
    return np.isin(pid, CHARGED_IDS) | (pid >= 201)


def _mass(pid: np.ndarray) -> np.ndarray:
    m = np.zeros(pid.shape)
    for k, v in _MASS_GEV.items():
        m[pid == k] = v
    nuc = pid >= 201
    m[nuc] = (pid[nuc] // 100) * _AMU_GEV
    return m


# --------------------------------------------------------------------------------------------
# reading
# --------------------------------------------------------------------------------------------
@dataclasses.dataclass(eq=False)
class CorsikaShower:
    """One CORSIKA shower, particles at the observation level (photons and charged particles only).

    Attributes
    ----------
    source : str — the file.  event_number : int — CORSIKA's event number.
    primary_id : int — CORSIKA id of the primary (1 γ, 14 p, 100 A + Z nuclei).
    energy_gev : float — primary energy (header ``total_energy``) [GeV].
    zenith : float [rad] — of the primary momentum.  phi : float [rad] — CORSIKA azimuth of the
        primary MOMENTUM (direction of travel) from x (magnetic north) towards y (west).
    obs_level_m : float [m a.s.l.] — the observation level the particles are on.
    thinned : bool — the file is a thinned one (weights may exceed 1).
    t_core_ns : float — CORSIKA time of the plane-front arrival at the core (module docstring).
    gh_tmax : float [g/cm²] — TMAX of CORSIKA's Gaisser–Hillas fit of the charged-particle profile
        (event end block) when LONGI's fit was on, else NaN. Slant or vertical depth depending on
        LONGI's SLANT option, which the particle file does not record: NOT written as true_xmax.
    pid : (n,) int32 — particle id.  x, y : (n,) [m] — position on the observation plane,
        relative to the core.  u, v, w : (n,) — direction of travel (u, v, −w), w > 0 down-going.
    t : (n,) [ns] — arrival time relative to ``t_core_ns``.
    energy : (n,) [GeV] — total energy sqrt(p² + m²).  weight : (n,) — thinning weight (1 when
        unthinned).
    n_dropped : int — particle records dropped (info records, neutral hadrons, neutrinos, other
        observation levels, up-going).
    """

    source: str
    event_number: int
    primary_id: int
    energy_gev: float
    zenith: float
    phi: float
    obs_level_m: float
    thinned: bool
    t_core_ns: float
    gh_tmax: float
    pid: np.ndarray
    x: np.ndarray
    y: np.ndarray
    u: np.ndarray
    v: np.ndarray
    w: np.ndarray
    t: np.ndarray
    energy: np.ndarray
    weight: np.ndarray
    n_dropped: int = 0

    @property
    def arrival_azimuth(self) -> float:
        """Where the shower comes from (project convention, before any rotation): φ + π."""
        return float(np.mod(self.phi + np.pi, 2 * np.pi))

    @property
    def n(self) -> int:
        return int(self.pid.shape[0])


def detect_thinning(path) -> bool:
    """True for a thinned CORSIKA file (312-word sub-blocks), False for an unthinned one (273).

    Looks where the second sub-block (``EVTH``) starts after ``RUNH``. Gzip/zstd files are read
    through ``corsikaio``'s decompression. Raises EventFileError naming the file when it does not
    exist, cannot be read, or is not a CORSIKA particle file.
    """
    path = Path(path)
    if not path.exists():
        raise EventFileError(path, "<file>", "does not exist", kind="file")
    if path.is_dir():
        raise EventFileError(path, "<file>", "is a directory, not a CORSIKA file", kind="file")
    try:
        from corsikaio.io import open_compressed
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise EventFileError(path, "<file>", f"needs the 'corsikaio' package to be read ({err}); "
                             "pip install corsikaio", kind="file") from None
    try:
        with open_compressed(path) as fh:
            head = fh.read(4 + 2 * 1248)
    except Exception as err:  # noqa: BLE001 - gzip/zstd/OS errors
        raise EventFileError(path, "<file>", f"cannot be read ({err})", kind="file") from None
    if len(head) < 8:
        raise EventFileError(path, "<file>", "is empty or too short to be a CORSIKA file",
                             kind="file")
    off = 0 if head[:4] == b"RUNH" else 4       # Fortran record marker before the first block
    if head[off:off + 4] != b"RUNH":
        raise EventFileError(path, "<file>", "is not a CORSIKA particle file (no 'RUNH' run "
                             "header at the start)", kind="file")
    for thin, size in ((False, 273 * 4), (True, 312 * 4)):
        if head[off + size:off + size + 4] == b"EVTH":
            return thin
    if head[off + 273 * 4:off + 273 * 4 + 4] == b"RUNE" or head[off + 312 * 4:off + 312 * 4 + 4] \
            == b"RUNE":
        raise EventFileError(path, "<file>", "has no showers (run end right after the run "
                             "header)", kind="file")
    raise EventFileError(path, "<file>", "is not a CORSIKA particle file (no event header "
                         "'EVTH' after the run header; truncated or another format)", kind="file")


def iter_corsika_showers(path, thinning: bool | None = None, max_showers: int | None = None
                         ) -> Iterator[CorsikaShower]:
    """Yield the showers of a CORSIKA particle file one at a time (memory: one shower).

    Parameters
    ----------
    path : CORSIKA 7 particle file (``DATnnnnnn``, optionally gzip/zstd compressed).
    thinning : None (default) detects it (:func:`detect_thinning`); True/False force it.
    max_showers : stop after this many showers.

    Raises EventFileError naming the file for a missing, unreadable, non-CORSIKA, truncated file or
    one with no showers.
    """
    path = Path(path)
    detected = detect_thinning(path)
    thin = detected if thinning is None else bool(thinning)
    import corsikaio

    n_yield = 0
    try:
        with corsikaio.CorsikaParticleFile(path, thinning=thin) as f:
            run_header = f.run_header
            for ev in f:
                yield _shower_from_event(path, ev, run_header, thin)
                n_yield += 1
                if max_showers is not None and n_yield >= max_showers:
                    return
    except EventFileError:
        raise
    except (OSError, ValueError, EOFError) as err:
        where = f" after {n_yield} shower(s)" if n_yield else ""
        raise EventFileError(path, "<file>", f"cannot be read as a CORSIKA particle file{where} "
                             f"({err})", kind="file") from None
    if n_yield == 0:
        raise EventFileError(path, "<file>", "has no showers (no event in the file)", kind="file")


def read_corsika(path, thinning: bool | None = None, max_showers: int | None = None
                 ) -> list[CorsikaShower]:
    """All showers of a CORSIKA particle file (see :func:`iter_corsika_showers`)."""
    return list(iter_corsika_showers(path, thinning=thinning, max_showers=max_showers))


def _shower_from_event(path: Path, ev, run_header, thinned: bool) -> CorsikaShower:
    h = ev.header
    n_levels = max(int(h["n_observation_levels"]), 1)
    heights_cm = np.asarray(h["observation_height"], np.float64)[:n_levels]
    level = int(np.argmin(heights_cm))                # the lowest level: the core is defined there
    h_obs_cm = float(heights_cm[level])
    zenith = float(h["zenith"])
    phi = float(h["azimuth"])
    entry = f"shower {int(h['event_number'])}"
    for field, value, ok in (("EVTH zenith", zenith, 0.0 <= zenith < 0.5 * math.pi),
                             ("EVTH azimuth", phi, np.isfinite(phi)),
                             ("EVTH total_energy", float(h["total_energy"]),
                              float(h["total_energy"]) > 0),
                             ("EVTH observation_height", h_obs_cm, np.isfinite(h_obs_cm))):
        if not (np.isfinite(value) and ok):
            raise EventFileError(path, field, f"has the value {value} ({entry}): not a down-going "
                                 "shower with a finite energy and geometry", kind="file")
    if h["first_interaction_height"] < 0:            # TSTART: time counted from the entry at the top
        names = h.dtype.names
        h_start_cm = float(h["starting_height"]) if "starting_height" in names else np.nan
        if not np.isfinite(h_start_cm) or h_start_cm <= 0:
            h_start_cm = abs(float(h["first_interaction_height"]))
    else:
        h_start_cm = float(h["first_interaction_height"])
    t_core = (h_start_cm - h_obs_cm) / (_C_CM_PER_NS * math.cos(zenith))
    if int(h.dtype.names.count("curved_flag")) and float(h["curved_flag"]) != 0:
        t_core = np.nan                                # curved atmosphere: estimated from the data below
    gh_tmax = np.nan
    end = ev.end
    if end is not None and "longitudinal_fit_parameters" in end.dtype.names:
        par = np.asarray(end["longitudinal_fit_parameters"], np.float64)
        if par.size >= 3 and par[0] > 0 and np.isfinite(par[2]) and par[2] > 0:
            gh_tmax = float(par[2])

    pa = ev.particles
    desc = np.asarray(pa["particle_description"], np.float64)
    pid = (np.abs(desc) // 1000).astype(np.int64)
    obs = (np.abs(desc) % 10).astype(np.int64)
    keep = ((pid == GAMMA_ID) | _is_charged(pid)) & ~np.isin(pid, INFO_IDS)
    if n_levels > 1:
        keep &= obs == level + 1
    px = np.asarray(pa["px"], np.float64)
    py = np.asarray(pa["py"], np.float64)
    pz = np.asarray(pa["pz"], np.float64)            # momentum along −z: > 0 down-going
    keep &= pz > 0
    n_dropped = int((~keep).sum())
    pid, px, py, pz = pid[keep], px[keep], py[keep], pz[keep]
    p = np.sqrt(px * px + py * py + pz * pz)
    p = np.where(p > 0, p, 1.0)
    t_raw = np.asarray(pa["t"], np.float64)[keep]
    x = np.asarray(pa["x"], np.float64)[keep] / 100.0
    y = np.asarray(pa["y"], np.float64)[keep] / 100.0
    if not np.isfinite(t_core):
        t_core = _empirical_core_time(x, y, t_raw, zenith, phi)
    if thinned and "thinning_weight" in pa.dtype.names:
        weight = np.asarray(pa["thinning_weight"], np.float64)[keep]
    else:
        weight = np.ones(pid.shape)
    return CorsikaShower(
        source=str(path), event_number=int(h["event_number"]), primary_id=int(h["particle_id"]),
        energy_gev=float(h["total_energy"]), zenith=zenith, phi=phi, obs_level_m=h_obs_cm / 100.0,
        thinned=thinned, t_core_ns=float(t_core), gh_tmax=gh_tmax, pid=pid.astype(np.int32),
        x=x, y=y, u=px / p, v=py / p, w=pz / p, t=t_raw - t_core,
        energy=np.sqrt(p * p + _mass(pid) ** 2), weight=weight, n_dropped=n_dropped)


def _empirical_core_time(x, y, t, zenith, phi) -> float:
    """Leading edge of the front at the core: the earliest plane-corrected time within 20 m."""
    if t.size == 0:
        return 0.0
    d = (x * math.cos(phi) + y * math.sin(phi)) * math.sin(zenith)
    tp = t - d / SPEED_OF_LIGHT_M_PER_NS
    near = np.hypot(x, y) < 20.0
    sel = tp[near] if near.sum() >= 5 else tp
    return float(np.percentile(sel, 1.0))


# --------------------------------------------------------------------------------------------
# response parameters
# --------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class CorsikaResponse:
    """Numbers of the approximate particle-level response (sources in brackets).

    KM2A electromagnetic detectors (ED): 1 m² scintillator under 5 mm of lead
        ed_pe_per_particle : 40 PE per vertical charged particle ([U]; ``km2a.Response.ed_gain``)
        ed_charge_resolution : 0.4, relative width of the single-particle charge ([M], measured
            in docs/km2a.md; ``km2a.Response.ed_charge_resolution``)
        ed_threshold_pe : 8 PE = 0.2 particle ([U]; ``km2a.Response.ed_threshold_pe``)
        ed_saturation_pe : 2e5 PE (ED dynamic range [C]; ``km2a.Response.ed_saturation_pe``)
        ed_time_resolution_ns : 2 ns ([M]; ``km2a.Response.ed_time_resolution_ns``)
        ed_noise_rate_hz : 2.5 kHz ([D] G4KM2A sample; ``km2a.Response.ed_noise_rate_hz``)
        ed_noise_pe : 12 PE, mean of the exponential noise charge ([D]; ``km2a.Response``)
        photon_conversion : 0.5, probability that a photon above ``photon_min_energy_gev``
            converts in the lead and gives one particle's signal [M]: 5 mm of lead is 0.89 X₀
            and the pair-conversion probability in t X₀ is 1 − exp(−7t/9) = 0.50 (high-energy
            limit). Below ~5 MeV Compton scattering dominates in lead and its electrons hardly
            leave the plate: 0 there. Electrons are not absorbed by the lead here [M].
        photon_min_energy_gev : 0.005 GeV [M]
    KM2A muon detectors (MD): 36 m² water tank under 2.5 m of soil
        md_pe_per_muon : 75 PE per muon ([U]; ``km2a.Response.md_gain``)
        md_charge_resolution : 0.3 ([M]; ``km2a.Response.md_charge_resolution``)
        md_threshold_pe : 22.5 PE = 0.3 muon ([M]; ``km2a.Response.md_threshold_pe``)
        md_saturation_pe : 2e5 PE ([M]; ``km2a.Response.md_saturation_pe``)
        md_time_resolution_ns : 3 ns ([M]; ``km2a.Response.md_time_resolution_ns``)
        md_noise_rate_hz : 6.7 kHz ([D]; ``km2a.Response.md_noise_rate_hz``); noise charge: the
            single-muon spectrum 75 (1 + 0.3 N(0, 1)) PE as ``km2a.simulate``
        md_muon_threshold_gev : 1 GeV total muon energy to cross the soil [M] (PHYSICS.md §2:
            "~1 GeV"), the same for every angle
        md_shape : "circle" (equal-area circle of radius 3.385 m, the tank is round [C]) or
            "square" (6 m × 6 m, axis-aligned)
    Common
        window_ns : 10000 ns readout window ±5000 ns around t0 (``km2a.Response.window_ns``);
            signal hits outside it are dropped
        track_length : multiply each particle's charge by 1/cos of its angle to the vertical
            (path length in the scintillator / water) [M], capped at ``max_track_factor`` = 3
        trigger_n, trigger_window_ns : ≥ 20 ED hits within 400 ns ([M] PHYSICS.md §2;
            ``km2a.trigger``); noise hits count, as in ``km2a.simulate``
        thin_radius_min_m, thin_radius_fraction : sampling radius of a thinned particle,
            R = max(2 m, 0.05 r) with r its distance from the core [M] (:func:`sampling_radius`)
    WCDA (``wcda=True``), per cell of 5 m × 5 m, the pond's numbers of ``detectors.wcda``
        muons: the pond's ``pe_per_muon`` (45 PE pond 1 [U], 180 PE ponds 2/3 [M]) × track factor;
        e±/γ: pe_per_muon × E_kin / ``wcda_muon_energy_gev`` (0.86 GeV: a vertical muon deposits
        ≈ 2 MeV/cm over 4.3 m of water [M]), all particles entering the cell's water surface;
        charge Gamma-distributed with variance (1 + 0.35²) × mean (photostatistics with the
        single-PE width 0.35 of ``wcda.Response``); threshold 0.3 PE, time 2 ns, dark noise at the
        pond's rate over ±500 ns with an exponential 1 PE charge (``wcda.Response``). No time
        slewing and no small PMT (the charge saturates at the pond's ``saturation_pe``).
    """

    ed_pe_per_particle: float = 40.0
    ed_charge_resolution: float = 0.4
    ed_threshold_pe: float = 8.0
    ed_saturation_pe: float = 2.0e5
    ed_time_resolution_ns: float = 2.0
    ed_noise_rate_hz: float = 2.5e3
    ed_noise_pe: float = 12.0
    photon_conversion: float = 0.5
    photon_min_energy_gev: float = 0.005
    md_pe_per_muon: float = 75.0
    md_charge_resolution: float = 0.3
    md_threshold_pe: float = 22.5
    md_saturation_pe: float = 2.0e5
    md_time_resolution_ns: float = 3.0
    md_noise_rate_hz: float = 6.7e3
    md_muon_threshold_gev: float = 1.0
    md_shape: str = "circle"
    window_ns: float = 10000.0
    track_length: bool = True
    max_track_factor: float = 3.0
    trigger_n: int = 20
    trigger_window_ns: float = 400.0
    thin_radius_min_m: float = 2.0
    thin_radius_fraction: float = 0.05
    noise: bool = True
    wcda_muon_energy_gev: float = 0.86
    wcda_spe_resolution: float = 0.35
    wcda_threshold_pe: float = 0.3
    wcda_time_resolution_ns: float = 2.0
    wcda_window_ns: float = 1000.0
    wcda_noise_pe: float = 1.0

    def __post_init__(self):
        if not 0.0 <= self.photon_conversion <= 1.0:  # NaN fails too
            raise ValueError(f"photon_conversion must be in [0, 1], got {self.photon_conversion}")
        if self.md_shape not in ("circle", "square"):
            raise ValueError(f"md_shape must be 'circle' or 'square', got {self.md_shape!r}")
        if not self.md_muon_threshold_gev >= 0:  # NaN fails too
            raise ValueError(f"md_muon_threshold_gev must be a number ≥ 0, got "
                             f"{self.md_muon_threshold_gev}")


def sampling_radius(r_core, r_min: float = 2.0, fraction: float = 0.05) -> np.ndarray:
    """Sampling radius [m] of a thinned particle at distance ``r_core`` [m] from the core:
    max(r_min, fraction · r). Its weight is spread uniformly over the disc of this radius."""
    return np.maximum(r_min, fraction * np.asarray(r_core, np.float64))


# --------------------------------------------------------------------------------------------
# geometry helpers
# --------------------------------------------------------------------------------------------
class _Grid:
    """Grid hash of detector centres (x, y): ``pairs`` finds (particle, detector) pairs closer
    than a per-particle radius, vectorised (no Python loop over particles)."""

    def __init__(self, xy: np.ndarray, cell: float):
        xy = np.asarray(xy, np.float64)
        self.xy = xy
        self.cell = float(cell)
        self.x0 = float(xy[:, 0].min()) - cell
        self.y0 = float(xy[:, 1].min()) - cell
        ix = np.floor((xy[:, 0] - self.x0) / cell).astype(np.int64)
        iy = np.floor((xy[:, 1] - self.y0) / cell).astype(np.int64)
        self.nx = int(ix.max()) + 2
        self.ny = int(iy.max()) + 2
        flat = ix * self.ny + iy
        counts = np.bincount(flat, minlength=self.nx * self.ny)
        k = max(int(counts.max()), 1)
        order = np.argsort(flat, kind="stable")
        start = np.cumsum(counts) - counts
        rank = np.arange(order.size) - start[flat[order]]
        self.slots = np.full((self.nx * self.ny, k), -1, np.int64)
        self.slots[flat[order], rank] = order

    def pairs(self, px, py, radius):
        """(particle index, detector index) with |particle − detector centre| ≤ radius."""
        px = np.asarray(px, np.float64)
        py = np.asarray(py, np.float64)
        r = np.broadcast_to(np.asarray(radius, np.float64), px.shape)
        c = self.cell
        ix0 = np.floor((px - r - self.x0) / c).astype(np.int64)
        ix1 = np.floor((px + r - self.x0) / c).astype(np.int64)
        iy0 = np.floor((py - r - self.y0) / c).astype(np.int64)
        iy1 = np.floor((py + r - self.y0) / c).astype(np.int64)
        ok = (ix1 >= 0) & (ix0 < self.nx) & (iy1 >= 0) & (iy0 < self.ny)
        idx = np.flatnonzero(ok)
        if idx.size == 0:
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        ix0 = np.clip(ix0[idx], 0, self.nx - 1)
        ix1 = np.clip(ix1[idx], 0, self.nx - 1)
        iy0 = np.clip(iy0[idx], 0, self.ny - 1)
        iy1 = np.clip(iy1[idx], 0, self.ny - 1)
        nxs = ix1 - ix0 + 1
        ncell = nxs * (iy1 - iy0 + 1)
        q = np.repeat(np.arange(idx.size), ncell)
        local = np.arange(q.size) - np.repeat(np.cumsum(ncell) - ncell, ncell)
        cx = ix0[q] + local % nxs[q]
        cy = iy0[q] + local // nxs[q]
        cand = self.slots[cx * self.ny + cy]                       # (n_pairs, K)
        k = cand.shape[1]
        p = np.repeat(idx[q], k)
        d = cand.ravel()
        m = d >= 0
        p, d = p[m], d[m]
        dx = px[p] - self.xy[d, 0]
        dy = py[p] - self.xy[d, 1]
        m = dx * dx + dy * dy <= r[p] ** 2
        return p[m], d[m]


def _lens_area(big_r, small_r, dist) -> np.ndarray:
    """Area of the intersection of two discs of radii ``big_r``, ``small_r`` at distance ``dist``."""
    R = np.asarray(big_r, np.float64)
    r = np.asarray(small_r, np.float64)
    d = np.asarray(dist, np.float64)
    R, r, d = np.broadcast_arrays(R, r, d)
    out = np.zeros(d.shape)
    inside = d <= np.abs(R - r)
    out[inside] = np.pi * np.minimum(R, r)[inside] ** 2
    part = (d < R + r) & ~inside
    if part.any():
        Rp, rp, dp = R[part], r[part], d[part]
        a1 = np.clip((dp * dp + rp * rp - Rp * Rp) / (2 * dp * rp), -1.0, 1.0)
        a2 = np.clip((dp * dp + Rp * Rp - rp * rp) / (2 * dp * Rp), -1.0, 1.0)
        k = (-dp + rp + Rp) * (dp + rp - Rp) * (dp - rp + Rp) * (dp + rp + Rp)
        out[part] = (rp * rp * np.arccos(a1) + Rp * Rp * np.arccos(a2)
                     - 0.5 * np.sqrt(np.maximum(k, 0.0)))
    return out


def expected_thinned_counts(x, y, weight, det_xy, det_area: float, radius=None,
                            r_core=None, r_min: float = 2.0, fraction: float = 0.05
                            ) -> np.ndarray:
    """Expected particle numbers (n_det,) that thinned particles give detectors (flat, no heights).

    Each particle of weight w at (x, y) [m] stands for w particles spread uniformly over a disc of
    radius R (``radius``, or :func:`sampling_radius` of ``r_core`` (default: hypot(x, y))); a
    detector, taken as the circle of area ``det_area`` around its centre ``det_xy`` (n_det, 2),
    receives w · |disc ∩ detector| / (π R²). Summed over a layout that covers the plane with a
    fraction f of detector area, the expectation is f · Σ w: the weights are conserved.
    """
    x = np.asarray(x, np.float64)
    y = np.asarray(y, np.float64)
    weight = np.broadcast_to(np.asarray(weight, np.float64), x.shape)
    if radius is None:
        rc = np.hypot(x, y) if r_core is None else np.asarray(r_core, np.float64)
        radius = sampling_radius(rc, r_min, fraction)
    radius = np.broadcast_to(np.asarray(radius, np.float64), x.shape)
    det_xy = np.asarray(det_xy, np.float64)
    r_det = math.sqrt(det_area / math.pi)
    grid = _Grid(det_xy, max(4.0 * r_det, 2.0))
    p, d = grid.pairs(x, y, radius + r_det)
    dist = np.hypot(x[p] - det_xy[d, 0], y[p] - det_xy[d, 1])
    mu = weight[p] * _lens_area(radius[p], r_det, dist) / (np.pi * radius[p] ** 2)
    return np.bincount(d, weights=mu, minlength=det_xy.shape[0])


@dataclasses.dataclass(eq=False)
class _DetectorSet:
    """One kind of detector for the crossing tests."""

    name: str
    ids: np.ndarray
    pos: np.ndarray            # (n, 3) [m]
    shape: str                 # "square" | "circle"
    half: float                # half side (square) or radius (circle) [m]
    area: float                # [m²]
    rotation: float = 0.0      # square's local +x axis azimuth in the array frame [rad]
    fixed_height: float | None = None

    def __post_init__(self):
        self.circum = self.half * (math.sqrt(2.0) if self.shape == "square" else 1.0)
        self.r_eq = math.sqrt(self.area / math.pi)
        xy = self.pos[:, :2]
        self.grid = _Grid(xy, max(5.0, 2.5 * self.circum))
        self.coarse = _Grid(xy, 20.0)
        self._height_map()

    def _height_map(self, cell: float = 10.0):
        """z of the nearest detector on a ``cell`` grid (brute force, in chunks, once)."""
        if self.fixed_height is not None:
            return
        xy = self.pos[:, :2]
        lo = xy.min(axis=0) - 50.0
        hi = xy.max(axis=0) + 50.0
        nx = int(np.ceil((hi[0] - lo[0]) / cell)) + 1
        ny = int(np.ceil((hi[1] - lo[1]) / cell)) + 1
        gx, gy = np.meshgrid(lo[0] + (np.arange(nx) + 0.5) * cell,
                             lo[1] + (np.arange(ny) + 0.5) * cell, indexing="ij")
        cx, cy = gx.ravel(), gy.ravel()
        z = np.full(cx.size, np.nan)
        todo = np.arange(cx.size)
        radius = 2.0 * self.coarse.cell
        while todo.size:                  # nearest detector within a growing search radius
            p, d = self.coarse.pairs(cx[todo], cy[todo], radius)
            if p.size:
                d2 = (cx[todo][p] - xy[d, 0]) ** 2 + (cy[todo][p] - xy[d, 1]) ** 2
                order = np.lexsort((d2, p))
                first = order[np.r_[True, p[order][1:] != p[order][:-1]]]
                z[todo[p[first]]] = self.pos[d[first], 2]
            todo = todo[np.isnan(z[todo])]
            radius *= 3.0
        self._hmap = z.reshape(nx, ny)
        self._hlo = lo
        self._hcell = cell

    def height(self, x, y) -> np.ndarray:
        if self.fixed_height is not None:
            return np.full(np.shape(x), self.fixed_height)
        ix = np.clip(((x - self._hlo[0]) / self._hcell).astype(np.int64), 0, self._hmap.shape[0] - 1)
        iy = np.clip(((y - self._hlo[1]) / self._hcell).astype(np.int64), 0, self._hmap.shape[1] - 1)
        return self._hmap[ix, iy]

    def inside(self, dx, dy) -> np.ndarray:
        if self.shape == "circle":
            return dx * dx + dy * dy <= self.half ** 2
        if self.rotation:
            ca, sa = math.cos(self.rotation), math.sin(self.rotation)
            dx, dy = dx * ca + dy * sa, -dx * sa + dy * ca
        return (np.abs(dx) <= self.half) & (np.abs(dy) <= self.half)


_DETECTOR_CACHE: dict = {}


def _km2a_sets(layout, md_shape: str):
    key = ("km2a", id(layout), md_shape)
    if key not in _DETECTOR_CACHE:
        ed = _DetectorSet("ed", np.asarray(layout.ed_id), np.asarray(layout.ed_pos, np.float64),
                          "square", 0.5 * math.sqrt(layout.ed_area), float(layout.ed_area))
        half = (math.sqrt(layout.md_area / math.pi) if md_shape == "circle"
                else 0.5 * math.sqrt(layout.md_area))
        md = _DetectorSet("md", np.asarray(layout.md_id), np.asarray(layout.md_pos, np.float64),
                          md_shape, half, float(layout.md_area))
        _DETECTOR_CACHE[key] = (layout, ed, md)      # the layout is kept so its id stays unique
    return _DETECTOR_CACHE[key][1:]


def _wcda_set(wlayout):
    key = ("wcda", id(wlayout))
    if key not in _DETECTOR_CACHE:
        pos = np.asarray(wlayout.cell_pos, np.float64)
        surface = float(np.median(pos[:, 2])) + float(wlayout.water_depth)
        det = _DetectorSet("wcda", np.asarray(wlayout.cell_id), pos, "square",
                           0.5 * float(wlayout.cell_size), float(wlayout.cell_size) ** 2,
                           rotation=math.radians(wlayout.rotation_deg), fixed_height=surface)
        _DETECTOR_CACHE[key] = (wlayout, det)
    return _DETECTOR_CACHE[key][1]


# --------------------------------------------------------------------------------------------
# the response of one detector kind to one thrown shower
# --------------------------------------------------------------------------------------------
def _crossings(det: _DetectorSet, X, Y, u, v, w, tan):
    """Exact crossings: (particle, detector, z of the detector) for particles on the plane at
    (X, Y) moving along (u, v, −w)."""
    if X.size == 0:
        z = np.zeros(0, np.int64)
        return z, z, np.zeros(0)
    zh = det.height(X, Y)
    for _ in range(2):                                # iterate with the local detector height
        zh = det.height(X - zh * u / w, Y - zh * v / w)
    Xh = X - zh * u / w
    Yh = Y - zh * v / w
    if det.fixed_height is None:
        margin = 0.5 + 4.0 * np.minimum(tan, 5.0)    # the map's height may be off by a few m
    else:
        margin = np.full(X.shape, 0.5)
    p, d = det.grid.pairs(Xh, Yh, det.circum + margin)
    zd = det.pos[d, 2]
    dx = X[p] - zd * u[p] / w[p] - det.pos[d, 0]
    dy = Y[p] - zd * v[p] / w[p] - det.pos[d, 1]
    m = det.inside(dx, dy)
    return p[m], d[m], zd[m]


def _thinned_pairs(det: _DetectorSet, X, Y, u, v, w, tan, weight, radius, n_src):
    """Thinned particles: (particle, detector, expected number, time shift [ns]) pairs.

    Particle weight w spread over the disc of ``radius`` around its impact point at the
    detector's height; the detector as its equal-area circle. The time shift moves the
    particle's time along the shower front (plane of arrival direction ``n_src``) from its impact
    point to the detector centre."""
    if X.size == 0:
        z = np.zeros(0, np.int64)
        return z, z, np.zeros(0), np.zeros(0), np.zeros(0)
    zh = det.height(X, Y)
    zh = det.height(X - zh * u / w, Y - zh * v / w)
    Xh = X - zh * u / w
    Yh = Y - zh * v / w
    margin = 0.5 + (4.0 * np.minimum(tan, 5.0) if det.fixed_height is None else 0.0)
    p, d = det.coarse.pairs(Xh, Yh, radius + det.r_eq + margin)
    zd = det.pos[d, 2]
    xs = X[p] - zd * u[p] / w[p]
    ys = Y[p] - zd * v[p] / w[p]
    ddx = det.pos[d, 0] - xs
    ddy = det.pos[d, 1] - ys
    dist = np.hypot(ddx, ddy)
    mu = weight[p] * _lens_area(radius[p], det.r_eq, dist) / (np.pi * radius[p] ** 2)
    shift = -(ddx * n_src[0] + ddy * n_src[1]) / SPEED_OF_LIGHT_M_PER_NS
    m = mu > 0
    return p[m], d[m], mu[m], zd[m], shift[m]


def _detector_response(det, rng, X, Y, u, v, w, t, weight, r_core, sel_exact, sel_thin,
                       thin_scale, n_src, charge_of, cfg: CorsikaResponse, ed_like: dict):
    """Particles -> per-detector (count, first time, summed mean-charge units, charges).

    ``sel_exact``/``sel_thin``: boolean masks of the particles taken exactly / as thinned;
    ``thin_scale``: factor on the thinned weights (photon conversion probability);
    ``charge_of(idx)``: per-particle charge unit (track factor × PE yield).
    Returns counts (n,), first (n,) [ns, inf when none], mean charge (n,) and the summed
    Gamma-distributed charge (n,).
    """
    n_det = det.ids.shape[0]
    tan = np.sqrt(np.maximum(1.0 - w * w, 0.0)) / np.maximum(w, 1e-6)
    counts = np.zeros(n_det)
    first = np.full(n_det, np.inf)
    q = np.zeros(n_det)
    sigma = ed_like["sigma"]
    # exact crossings
    ie = np.flatnonzero(sel_exact)
    if ie.size:
        p, d, zd = _crossings(det, X[ie], Y[ie], u[ie], v[ie], w[ie], tan[ie])
        gi = ie[p]
        te = t[gi] - zd / (SPEED_OF_LIGHT_M_PER_NS * w[gi])
        counts += np.bincount(d, minlength=n_det)
        np.minimum.at(first, d, te)
        unit = charge_of(gi)
        qs = _gamma_charges(rng, np.ones(gi.size), unit, sigma)
        q += np.bincount(d, weights=qs, minlength=n_det)
    it = np.flatnonzero(sel_thin)
    if it.size:
        radius = sampling_radius(r_core[it], cfg.thin_radius_min_m, cfg.thin_radius_fraction)
        p, d, mu, zd, shift = _thinned_pairs(det, X[it], Y[it], u[it], v[it], w[it], tan[it],
                                             weight[it] * thin_scale[it], radius, n_src)
        k = rng.poisson(mu)
        m = k > 0
        p, d, k, zd, shift = p[m], d[m], k[m], zd[m], shift[m]
        gi = it[p]
        tt = t[gi] - zd / (SPEED_OF_LIGHT_M_PER_NS * w[gi]) + shift
        counts += np.bincount(d, weights=k, minlength=n_det)
        np.minimum.at(first, d, tt)
        unit = charge_of(gi)
        qs = _gamma_charges(rng, k.astype(np.float64), unit, sigma)
        q += np.bincount(d, weights=qs, minlength=n_det)
    return counts, first, q


def _gamma_charges(rng, k, unit, sigma):
    """Sum of k single-particle charges of mean ``unit`` and relative width ``sigma``:
    Gamma(k/σ², σ² unit) (sum of k Gamma(1/σ², σ² unit))."""
    if k.size == 0:
        return np.zeros(0)
    if sigma <= 0:
        return k * unit
    return rng.gamma(k / sigma ** 2, sigma ** 2 * unit)


def _noise_hits(rng, n_det, rate_hz, window_ns, charge_fn):
    """Noise pulses: Poisson(rate · window) per channel, uniform times over ±window/2."""
    n = rng.poisson(rate_hz * window_ns * 1e-9, n_det)
    idx = np.repeat(np.arange(n_det), n)
    times = rng.uniform(-0.5 * window_ns, 0.5 * window_ns, idx.size)
    return idx, times, charge_fn(idx.size)


def _assemble(det_idx_sig, t_sig, q_sig, det_idx_noise, t_noise, q_noise, threshold, half_window,
              ids):
    """Signal and noise hits above threshold within the window -> (ids, times, charges),
    sorted by time."""
    keep_s = (q_sig >= threshold) & (np.abs(t_sig) <= half_window)
    keep_n = q_noise >= threshold
    idx = np.concatenate([det_idx_sig[keep_s], det_idx_noise[keep_n]])
    tm = np.concatenate([t_sig[keep_s], t_noise[keep_n]])
    pe = np.concatenate([q_sig[keep_s], q_noise[keep_n]])
    order = np.argsort(tm, kind="stable")
    return ids[idx[order]].astype(np.int32), tm[order], pe[order].astype(np.float32)


def _triggered(times, n_min, window_ns) -> bool:
    if times.size < n_min:
        return False
    t = np.sort(times)
    upto = np.searchsorted(t, t + window_ns, side="right")
    return bool(np.max(upto - np.arange(t.size)) >= n_min)


# --------------------------------------------------------------------------------------------
# one throw
# --------------------------------------------------------------------------------------------
def throw_shower(shower: CorsikaShower, layout, core_xy, rotation: float, rng,
                 response: CorsikaResponse | None = None, wcda_layout=None) -> dict:
    """Throw one shower onto the array at core ``core_xy`` [m] rotated by ``rotation`` [rad].

    Parameters
    ----------
    shower : CorsikaShower.  layout : ``detectors.layout.KM2ALayout`` (or "full" / "3/4").
    core_xy : (2,) [m] core in the array frame (on z = 0, the observation plane).
    rotation : [rad] rotation about the vertical, counter-clockwise from +x towards +y.
    rng : numpy Generator.  response : CorsikaResponse (defaults).
    wcda_layout : ``detectors.layout.WCDALayout`` to simulate WCDA cells as well (else None).

    Returns
    -------
    dict with ``truth`` (the schema's true_* values), ``triggered`` (bool), the hits
    ``km2a_ed_id/time/pe``, ``km2a_md_id/time/pe`` (and ``wcda_*``), times [ns] relative to the
    plane front at the core (t0 = 0), and the per-detector truth ``ed_particles`` (n_ed,) (charged
    + converted photons crossing), ``ed_charged`` (n_ed,), ``md_muons`` (n_md,) (muons above the
    soil threshold crossing, before any response), ``true_md_muons``, ``true_ed_particles``,
    ``true_ed_charged`` (their sums).
    """
    cfg = response or CorsikaResponse()
    if isinstance(layout, str):
        from detectors.layout import km2a_layout
        layout = km2a_layout(layout)
    ed, md = _km2a_sets(layout, cfg.md_shape)
    ca, sa = math.cos(rotation), math.sin(rotation)
    x = shower.x * ca - shower.y * sa
    y = shower.x * sa + shower.y * ca
    u = shower.u * ca - shower.v * sa
    v = shower.u * sa + shower.v * ca
    w = shower.w
    X = x + float(core_xy[0])
    Y = y + float(core_xy[1])
    t = shower.t
    r_core = np.hypot(shower.x, shower.y)
    az = float(np.mod(shower.phi + np.pi + rotation, 2 * np.pi))
    st = math.sin(shower.zenith)
    n_src = (st * math.cos(az), st * math.sin(az), math.cos(shower.zenith))
    pid = shower.pid
    weight = shower.weight
    thin = weight > 1.0 + 1e-6
    charged = _is_charged(pid)
    gamma = pid == GAMMA_ID
    muon = np.isin(pid, MUON_IDS)
    track = (np.minimum(1.0 / np.maximum(w, 1e-6), cfg.max_track_factor) if cfg.track_length
             else np.ones(w.shape))
    # photons: convert in the lead with probability p (exact: a Bernoulli draw per throw;
    # thinned: the weight times p)
    p_conv = np.where(gamma & (shower.energy >= cfg.photon_min_energy_gev),
                      cfg.photon_conversion, 0.0)
    converted = gamma & (rng.random(pid.shape) < p_conv)
    ed_unit = lambda gi: cfg.ed_pe_per_particle * track[gi]          # noqa: E731
    ed_sigma = {"sigma": cfg.ed_charge_resolution}
    # charged particles and converted photons apart, so that the charged count is known
    ch_counts, ch_first, ch_q = _detector_response(
        ed, rng, X, Y, u, v, w, t, weight, r_core, charged & ~thin, charged & thin,
        np.ones(pid.shape), n_src, ed_unit, cfg, ed_sigma)
    ph_counts, ph_first, ph_q = _detector_response(
        ed, rng, X, Y, u, v, w, t, weight, r_core, converted & ~thin, gamma & thin & (p_conv > 0),
        p_conv, n_src, ed_unit, cfg, ed_sigma)
    ed_counts = ch_counts + ph_counts
    ed_first = np.minimum(ch_first, ph_first)
    ed_q = ch_q + ph_q
    ed_charged = ch_counts
    # muons above the soil threshold in the MDs
    mu_ok = muon & (shower.energy > cfg.md_muon_threshold_gev)
    md_unit = lambda gi: cfg.md_pe_per_muon * track[gi]              # noqa: E731
    md_counts, md_first, md_q = _detector_response(
        md, rng, X, Y, u, v, w, t, weight, r_core, mu_ok & ~thin, mu_ok & thin,
        np.ones(pid.shape), n_src, md_unit, cfg, {"sigma": cfg.md_charge_resolution})
    out = {}
    half = 0.5 * cfg.window_ns
    for name, det, counts, first, q, tres, thr, sat, rate, noise_fn in (
            ("km2a_ed", ed, ed_counts, ed_first, ed_q, cfg.ed_time_resolution_ns,
             cfg.ed_threshold_pe, cfg.ed_saturation_pe, cfg.ed_noise_rate_hz,
             lambda n: rng.exponential(cfg.ed_noise_pe, n)),
            ("km2a_md", md, md_counts, md_first, md_q, cfg.md_time_resolution_ns,
             cfg.md_threshold_pe, cfg.md_saturation_pe, cfg.md_noise_rate_hz,
             lambda n: cfg.md_pe_per_muon * (1.0 + cfg.md_charge_resolution
                                              * rng.standard_normal(n)))):
        hit = np.flatnonzero(counts > 0)
        t_sig = first[hit] + tres * rng.standard_normal(hit.size)
        q_sig = np.minimum(q[hit], sat)
        if cfg.noise:
            ni, nt, nq = _noise_hits(rng, det.ids.shape[0], rate, cfg.window_ns, noise_fn)
            nq = np.minimum(nq, sat)
        else:
            ni, nt, nq = np.zeros(0, np.int64), np.zeros(0), np.zeros(0)
        ids, tm, pe = _assemble(hit, t_sig, q_sig, ni, nt, nq, thr, half, det.ids)
        out[f"{name}_id"], out[f"{name}_time"], out[f"{name}_pe"] = ids, tm, pe
    if wcda_layout is not None:
        out.update(_wcda_response(wcda_layout, rng, cfg, X, Y, u, v, w, t, weight, r_core, pid,
                                  shower.energy, gamma, muon, charged, thin, track, n_src))
    triggered = _triggered(out["km2a_ed_time"], cfg.trigger_n, cfg.trigger_window_ns)
    truth = {
        "true_core_x": float(core_xy[0]), "true_core_y": float(core_xy[1]),
        "true_zenith": float(shower.zenith), "true_azimuth": az,
        "true_log10_energy": float(np.log10(shower.energy_gev)), "true_xmax": np.nan,
        "true_log_muon_scale": np.nan, "true_t0": 0.0,
        "true_mass_number": mass_number(shower.primary_id),
    }
    out.update(truth=truth, triggered=triggered, ed_particles=ed_counts, ed_charged=ed_charged,
               md_muons=md_counts, true_md_muons=float(md_counts.sum()),
               true_ed_particles=float(ed_counts.sum()), true_ed_charged=float(ed_charged.sum()))
    return out


def _wcda_response(wlayout, rng, cfg, X, Y, u, v, w, t, weight, r_core, pid, energy, gamma, muon,
                   charged, thin, track, n_src) -> dict:
    """WCDA cells: particles entering a cell's water surface (approximate, see CorsikaResponse)."""
    from detectors.wcda import POND_DEFAULTS

    det = _wcda_set(wlayout)
    pond = np.asarray(wlayout.pond)
    pe_mu = np.array([POND_DEFAULTS[int(p)]["pe_per_muon"] for p in pond])
    sat = np.array([POND_DEFAULTS[int(p)]["saturation_pe"] for p in pond])
    rate = np.array([POND_DEFAULTS[int(p)]["noise_rate_hz"] for p in pond])
    ekin = energy - _mass(pid.astype(np.int64))
    # light per particle in units of a vertical muon: muons by track length, e±/γ by energy
    light = np.where(muon, track, np.where(charged | gamma, ekin / cfg.wcda_muon_energy_gev, 0.0))
    sel = (charged | gamma) & (light > 0)
    n_det = det.ids.shape[0]
    tan = np.sqrt(np.maximum(1.0 - w * w, 0.0)) / np.maximum(w, 1e-6)
    mean_pe = np.zeros(n_det)
    first = np.full(n_det, np.inf)
    counts = np.zeros(n_det)
    ie = np.flatnonzero(sel & ~thin)
    if ie.size:
        p, d, zd = _crossings(det, X[ie], Y[ie], u[ie], v[ie], w[ie], tan[ie])
        gi = ie[p]
        counts += np.bincount(d, minlength=n_det)
        np.minimum.at(first, d, t[gi] - zd / (SPEED_OF_LIGHT_M_PER_NS * w[gi]))
        mean_pe += np.bincount(d, weights=light[gi], minlength=n_det) * pe_mu
    it = np.flatnonzero(sel & thin)
    if it.size:
        radius = sampling_radius(r_core[it], cfg.thin_radius_min_m, cfg.thin_radius_fraction)
        p, d, mu, zd, shift = _thinned_pairs(det, X[it], Y[it], u[it], v[it], w[it], tan[it],
                                             weight[it], radius, n_src)
        k = rng.poisson(mu)
        m = k > 0
        p, d, k, zd, shift = p[m], d[m], k[m], zd[m], shift[m]
        gi = it[p]
        counts += np.bincount(d, weights=k, minlength=n_det)
        np.minimum.at(first, d, t[gi] - zd / (SPEED_OF_LIGHT_M_PER_NS * w[gi]) + shift)
        mean_pe += np.bincount(d, weights=k * light[gi], minlength=n_det) * pe_mu
    hit = np.flatnonzero(mean_pe > 0)
    fano = 1.0 + cfg.wcda_spe_resolution ** 2
    q_sig = np.minimum(rng.gamma(mean_pe[hit] / fano, fano), sat[hit])
    t_sig = first[hit] + cfg.wcda_time_resolution_ns * rng.standard_normal(hit.size)
    if cfg.noise:
        n = rng.poisson(rate * cfg.wcda_window_ns * 1e-9)
        ni = np.repeat(np.arange(n_det), n)
        nt = rng.uniform(-0.5 * cfg.wcda_window_ns, 0.5 * cfg.wcda_window_ns, ni.size)
        nq = rng.exponential(cfg.wcda_noise_pe, ni.size)
    else:
        ni, nt, nq = np.zeros(0, np.int64), np.zeros(0), np.zeros(0)
    ids, tm, pe = _assemble(hit, t_sig, q_sig, ni, nt, nq, cfg.wcda_threshold_pe,
                            0.5 * cfg.wcda_window_ns, det.ids)
    return {"wcda_id": ids, "wcda_time": tm, "wcda_pe": pe, "wcda_particles": counts}


# --------------------------------------------------------------------------------------------
# many throws -> records
# --------------------------------------------------------------------------------------------
#: per-event extra truth kept beside the records (write_events keeps only the schema's branches)
EXTRA_FIELDS = ("true_md_muons", "true_ed_particles", "true_ed_charged", "source_index",
                "corsika_event", "throw", "rotation", "obs_level_m", "gh_tmax")


def _draw_core(rng, r_min: float, r_max: float, centre=(0.0, 0.0)):
    r = math.sqrt(rng.uniform(r_min ** 2, r_max ** 2))
    a = rng.uniform(0.0, 2 * math.pi)
    return np.array([centre[0] + r * math.cos(a), centre[1] + r * math.sin(a)])


def simulate_corsika(files: Sequence, n_throws: int, layout="full", core_rmax: float = 400.0,
                     core_rmin: float = 0.0, seed: int = 1, response: CorsikaResponse | None = None,
                     run: int = 1, mjd: float = 60000.0, wcda: bool = False, rotate: bool = True,
                     thinning: bool | None = None, progress: bool = False,
                     keep_untriggered: bool = False) -> tuple[dict, dict, dict]:
    """Throw every shower of ``files`` ``n_throws`` times onto KM2A; the triggered events as records.

    Parameters
    ----------
    files : CORSIKA particle files (all are checked before any throw).
    n_throws : throws per shower. Each throw: core uniform in the annulus ``core_rmin`` ≤ r ≤
        ``core_rmax`` [m] around the array centre (0, 0) (a disc including the centre when
        core_rmin = 0), rotation uniform in [0, 2π) (0 when ``rotate`` is False).
    layout : "full", "3/4" or a KM2ALayout.  seed : the throw of shower k (counted over all files),
        number j uses ``default_rng([seed, k, j])`` (reproducible, independent of the order).
    response : CorsikaResponse.  run, mjd : written to every event.  wcda : add WCDA cells
        (``detectors.layout.wcda_layout()``).  thinning : None detects per file.
    progress : tqdm bar over the throws.  keep_untriggered : also return events that did not
        trigger (for studies; never written by the CLI).

    Returns
    -------
    (records, extra, meta): ``records`` the schema's dict (``event_id`` = k · n_throws + j);
    ``extra`` per returned event: ``true_md_muons`` (muons above the soil threshold that crossed
    the MDs), ``true_ed_particles`` (charged + converted photons crossing the EDs),
    ``true_ed_charged`` (charged particles crossing the EDs), ``source_index``, ``corsika_event``,
    ``throw``, ``rotation`` [rad], ``obs_level_m``, ``gh_tmax`` (and ``triggered`` when
    keep_untriggered); ``meta``: ``n_showers``, ``n_thrown``, ``n_triggered``, ``n_not_triggered``,
    ``sources``, ``obs_level_m`` (per file), the settings.
    """
    import awkward as ak

    cfg = response or CorsikaResponse()
    if n_throws < 1:
        raise ValueError(f"n_throws must be ≥ 1, got {n_throws}")
    if not 0.0 <= core_rmin <= core_rmax:
        raise ValueError(f"need 0 ≤ core_rmin ≤ core_rmax, got {core_rmin}, {core_rmax}")
    if isinstance(layout, str):
        from detectors.layout import km2a_layout
        layout = km2a_layout(layout)
    wl = None
    if wcda:
        from detectors.layout import wcda_layout
        wl = wcda_layout()
    files = [Path(f) for f in files]
    thin_flags = [detect_thinning(f) if thinning is None else bool(thinning) for f in files]
    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(unit="throw", desc="corsika")
    groups = ["km2a_ed", "km2a_md"] + (["wcda"] if wl is not None else [])
    hits = {g: {f: [] for f in ("id", "time", "pe")} for g in groups}
    truth_rows, extra_rows, trig = [], [], []
    obs_levels = []
    k = 0
    n_thrown = 0
    for si, (path, thin) in enumerate(zip(files, thin_flags)):
        levels = set()
        for shower in iter_corsika_showers(path, thinning=thin):
            levels.add(shower.obs_level_m)
            for j in range(n_throws):
                rng = np.random.default_rng([seed, k, j])
                core = _draw_core(rng, core_rmin, core_rmax)
                rot = rng.uniform(0.0, 2 * math.pi) if rotate else 0.0
                ev = throw_shower(shower, layout, core, rot, rng, cfg, wcda_layout=wl)
                n_thrown += 1
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(file=path.name, shower=shower.event_number)
                if not (ev["triggered"] or keep_untriggered):
                    continue
                for g in groups:
                    for f in ("id", "time", "pe"):
                        hits[g][f].append(ev[f"{g}_{f}"])
                truth_rows.append(dict(ev["truth"], event_id=k * n_throws + j))
                extra_rows.append({"true_md_muons": ev["true_md_muons"],
                                   "true_ed_particles": ev["true_ed_particles"],
                                   "true_ed_charged": ev["true_ed_charged"], "source_index": si,
                                   "corsika_event": shower.event_number, "throw": j,
                                   "rotation": rot, "obs_level_m": shower.obs_level_m,
                                   "gh_tmax": shower.gh_tmax})
                trig.append(ev["triggered"])
            k += 1
        obs_levels.append(sorted(levels))
    if bar is not None:
        bar.close()
    n = len(truth_rows)
    from joint.io.schema import TRUTH
    records = {"run": np.full(n, run, np.int32),
               "event_id": np.array([r["event_id"] for r in truth_rows], np.int64),
               "time_mjd": np.full(n, mjd, np.float64)}
    for tname in TRUTH:
        records[tname] = np.array([r[tname] for r in truth_rows], np.float64)
    dtypes = {"id": np.int32, "time": np.float64, "pe": np.float32}
    for g in groups:
        for f, dt in dtypes.items():
            parts = hits[g][f]
            counts = np.array([len(a) for a in parts], np.int64)
            flat = np.concatenate(parts).astype(dt) if parts else np.zeros(0, dt)
            records[f"{g}_{f}"] = ak.unflatten(flat, counts)
    if wl is not None:
        records["present_wcda"] = np.ones(n, np.int8)
        records["present_km2a"] = np.ones(n, np.int8)
    extra = {name: np.array([r[name] for r in extra_rows],
                            np.float64 if name not in ("source_index", "corsika_event", "throw")
                            else np.int64) for name in EXTRA_FIELDS}
    extra["event_id"] = records["event_id"].copy()
    if keep_untriggered:
        extra["triggered"] = np.array(trig, bool)
    n_trig = int(np.sum(trig)) if keep_untriggered else n
    meta = {"n_showers": k, "n_thrown": n_thrown, "n_triggered": n_trig,
            "n_not_triggered": n_thrown - n_trig, "sources": [str(f) for f in files],
            "obs_level_m": obs_levels, "thinned": thin_flags, "n_throws": n_throws,
            "core_rmin": core_rmin, "core_rmax": core_rmax, "layout": layout.name, "seed": seed,
            "rotate": rotate, "wcda": bool(wcda), "response": dataclasses.asdict(cfg)}
    return records, extra, meta


def extra_path(output) -> Path:
    """Side file of the per-event extra truth: ``OUT.root`` -> ``OUT.corsika.npz``."""
    output = Path(output)
    return output.with_name(output.stem + ".corsika.npz")


def write_corsika_events(files: Sequence, output, n_throws: int, overwrite: bool = False,
                         **kwargs) -> dict:
    """:func:`simulate_corsika` and write the triggered events to ``output`` (own schema, via
    ``joint.io.schema.write_events``) and the extra truth to :func:`extra_path` (npz: the
    :data:`EXTRA_FIELDS` and ``event_id`` per written event, ``meta_json``).

    ``write_events``/``read_events`` keep only the schema's branches, hence the side file. The
    outputs are written as ``.part`` files and renamed when complete. An existing ``output`` is
    kept (``meta["skipped"] = True``) unless ``overwrite``. Returns the meta dict.
    """
    from joint.io.schema import write_events

    output = Path(output)
    if output.exists() and not overwrite:
        return {"skipped": True, "output": str(output)}
    records, extra, meta = simulate_corsika(files, n_throws, **kwargs)
    if meta["n_triggered"] == 0:
        raise EventFileError(output, "<file>", f"not written: none of the {meta['n_thrown']} "
                             "throws triggered KM2A", kind="file")
    output.parent.mkdir(parents=True, exist_ok=True)
    part = output.with_name(output.name + ".part")
    write_events(part, records)
    side = extra_path(output)
    side_part = side.with_name(side.name + ".part.npz")
    np.savez(side_part, meta_json=np.array(json.dumps(meta)), **extra)
    os.replace(side_part, side)
    os.replace(part, output)
    meta.update(skipped=False, output=str(output), extra=str(side))
    return meta


def read_corsika_extra(path) -> dict:
    """The extra truth written beside ``path`` (the ROOT output or the npz itself): arrays per
    written event (``event_id``, :data:`EXTRA_FIELDS`) and ``meta`` (dict)."""
    path = Path(path)
    side = path if path.suffix == ".npz" else extra_path(path)
    if not side.exists():
        raise EventFileError(side, "<file>", "does not exist (written by simulate "
                             "--from-corsika beside its output)", kind="file")
    with np.load(side, allow_pickle=False) as z:
        out = {k: z[k] for k in z.files if k != "meta_json"}
        out["meta"] = json.loads(str(z["meta_json"]))
    return out

