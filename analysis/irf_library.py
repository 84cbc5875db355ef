"""Libraries of reconstructed simulated events: what the instrument response (``analysis.irf``)
and the simulated sky (``analysis.sky_sim``) are built from.

A library is a dict of numpy arrays, one row per *triggered* event, plus scalar metadata that
the effective area needs (how many primaries were thrown, on which area, into which zenith and
energy ranges, with which spectrum):

=====================  =====================================================================
column                 meaning
=====================  =====================================================================
true_log10_energy      log10(E_true / GeV)
true_zenith/azimuth    true arrival direction [rad], array frame
reco_log10_energy      log10(E_reco / GeV) (photon hypothesis: a γ-ray analysis)
reco_zenith/azimuth    fitted arrival direction [rad]
reco_core_x/y          fitted core [m]
status                 fit status (0 converged)
quality                1 when the event passes the detector's quality cut (below)
size                   the event-type variable: log10(Ne) for KM2A (shower size), the number
                       of WCDA cells hit for WCDA (``wcda_nhit``)
gh_score               γ/hadron variable, higher = more γ-like: −log10(Nμ/Ne^0.86) for KM2A
                       (``analysis.composition.nmu_ne_variable``), log10 C − log10 P for WCDA
                       (``analysis.gamma_hadron.combined_score``)
=====================  =====================================================================

Metadata (0-d arrays): ``detector``, ``primary``, ``seed``, ``n_thrown``, ``area_m2`` (the area
the cores were thrown on, ground plane), ``zenith_max_deg`` (directions isotropic through a
flat detector: cos²θ uniform), ``log10_energy_min/max`` and ``sim_index`` (−1: E⁻¹).

Quality cuts [M]: KM2A — converged fit and the core inside the ED area
(``analysis.observables.core_quality``, LHAASO's "core inside the array"); WCDA — converged fit
and the fitted core on the ponds (within 3.5 m of a cell centre, ≈ inside the 5 m × 5 m cell).

Seeds: the IRF and the simulated sky use libraries of **different seeds**
(:data:`IRF_SEEDS`, :data:`SKY_SEEDS`), so the sky is never analysed with a response built from
its own events.
"""
from __future__ import annotations

import os

import numpy as np

__all__ = ["simulate_library", "save_library", "load_library", "DEFAULTS", "IRF_SEEDS",
           "SKY_SEEDS", "library_path", "META_KEYS", "RAW_OBSERVABLES", "event_variables"]

#: default simulation ranges per detector [M]: log10(E/GeV), zenith [deg], core throw radius [m]
#: (KM2A: a disc around the array centre beyond the 575 m main array; WCDA: cores on the cells)
DEFAULTS = {
    "km2a": dict(log10_energy_range=(4.0, 6.0), zenith_max_deg=50.0, core_radius_m=700.0),
    "wcda": dict(log10_energy_range=(2.8, 4.4), zenith_max_deg=50.0, core_radius_m=None),
}
#: hadrons: the same reconstructed energies need ~2× more primary energy (part of it in muons
#: and hadrons): their range is shifted up by this much [dex]
HADRON_SHIFT_DEX = 0.3
IRF_SEEDS = {("km2a", "gamma"): 1801, ("km2a", "proton"): 1802,
             ("wcda", "gamma"): 1803, ("wcda", "proton"): 1804}
SKY_SEEDS = {k: v + 100 for k, v in IRF_SEEDS.items()}
META_KEYS = ("detector", "primary", "seed", "n_thrown", "area_m2", "zenith_max_deg",
             "log10_energy_min", "log10_energy_max", "sim_index")
#: a WCDA core counts as "on the ponds" within this distance of a cell centre [m] [M]
WCDA_CORE_ON_CELL_M = 3.5


def library_path(directory, detector, primary, purpose, n_events) -> str:
    return os.path.join(str(directory), f"{purpose}_{detector}_{primary}_{n_events}.npz")


def _wcda_on_cells(x, y, layout):
    pos = np.asarray(layout.cell_pos)[:, :2]
    d = np.full(len(x), np.inf)
    for s in range(0, len(x), 2048):
        c = np.stack([x[s:s + 2048], y[s:s + 2048]], -1)
        d[s:s + 2048] = np.min(np.linalg.norm(c[:, None, :] - pos[None], axis=-1), axis=1)
    return d <= WCDA_CORE_ON_CELL_M


#: the reconstruction's columns a library keeps (what :func:`event_variables` needs)
RAW_OBSERVABLES = {"km2a": ("ne", "nmu"), "wcda": ("wcda_nhit", "compactness", "pincness")}


def event_variables(detector, cols, layout=None) -> dict:
    """``quality``, ``size`` and ``gh_score`` (module docstring) of reconstructed events from
    their ``reco`` columns (``status``, ``reco_core_x/y`` and :data:`RAW_OBSERVABLES`): the
    same definitions for the libraries and for the events exported to DL3."""
    from analysis.composition import nmu_ne_variable
    from analysis.gamma_hadron import combined_score

    g = lambda k: np.asarray(cols[k], np.float64)
    ok = np.asarray(cols["status"]) == 0
    out = {}
    if detector == "km2a":
        from analysis.observables import core_quality
        from detectors import km2a
        from detectors.layout import km2a_layout

        geo = km2a.Geometry.from_layout(layout or km2a_layout("full"))
        q = core_quality(g("reco_core_x"), g("reco_core_y"), geo)
        out["quality"] = (ok & (np.asarray(q["core_inside"]) == 1)).astype(np.int8)
        with np.errstate(divide="ignore", invalid="ignore"):
            out["size"] = np.log10(np.maximum(g("ne"), 1e-3))
        out["gh_score"] = -nmu_ne_variable(g("nmu"), g("ne"))
    else:
        from detectors.layout import wcda_layout

        on = _wcda_on_cells(g("reco_core_x"), g("reco_core_y"), layout or wcda_layout())
        out["quality"] = (ok & on).astype(np.int8)
        out["size"] = g("wcda_nhit")
        out["gh_score"] = np.asarray(combined_score(g("compactness"), g("pincness")), np.float64)
    return out


def simulate_library(detector, primary, n_events, seed, log10_energy_range=None,
                     zenith_max_deg=None, core_radius_m=None, batch_size=256,
                     progress=None) -> dict:
    """Simulate ``n_events`` triggered events of ``primary`` ("gamma" or "proton") for
    ``detector`` ("km2a" or "wcda"), E⁻¹, isotropic within ``zenith_max_deg``; reconstruct them
    with the photon hypothesis (``joint.pipeline``) and return the library (module docstring)."""
    from analysis.observables import observables
    from joint.config import ReconstructionConfig
    from joint.io.schema import to_event_batch
    from joint.pipeline import reconstruct_records
    from joint.simulation import simulate_records

    if detector not in DEFAULTS:
        raise ValueError(f"detector must be one of {tuple(DEFAULTS)}, got {detector!r}")
    if primary not in ("gamma", "proton"):
        raise ValueError(f"primary must be 'gamma' or 'proton', got {primary!r}")
    d = dict(DEFAULTS[detector])
    if log10_energy_range is None:
        lo, hi = d["log10_energy_range"]
        shift = HADRON_SHIFT_DEX if primary == "proton" else 0.0
        log10_energy_range = (lo + shift, hi + shift)
    zmax = d["zenith_max_deg"] if zenith_max_deg is None else float(zenith_max_deg)
    radius = d["core_radius_m"] if core_radius_m is None else float(core_radius_m)
    if detector == "km2a":
        from detectors import km2a
        from detectors.layout import km2a_layout

        lay = km2a_layout("full")
        geo = km2a.Geometry.from_layout(lay)
        resp = km2a.Response.nominal(geo)
        rec, thrown = simulate_records(n_events, primary=primary, detectors=("km2a",),
                                       log10_energy_range=log10_energy_range,
                                       zenith_max_deg=zmax, core_radius_m=radius, seed=seed,
                                       km2a_layout=lay, spectral_index=-1.0)
        batch = to_event_batch(rec, km2a=lay, as_jax=False)
        area = np.pi * radius ** 2
    else:
        from detectors import wcda
        from detectors.layout import wcda_layout

        lay = wcda_layout()
        geo = wcda.Geometry.from_layout(lay)
        resp = wcda.Response.nominal(geo)
        rec, thrown = simulate_records(n_events, primary=primary, detectors=("wcda",),
                                       log10_energy_range=log10_energy_range,
                                       zenith_max_deg=zmax, seed=seed, wcda_layout=lay,
                                       cores_on="wcda", spectral_index=-1.0)
        batch = to_event_batch(rec, wcda=lay, as_jax=False)
        area = float(lay.n_cells) * float(lay.cell_size) ** 2
    cfg = ReconstructionConfig(hypothesis="gamma", detectors=(detector,))
    cols = reconstruct_records(batch, {detector: geo}, {detector: resp}, cfg, batch_size,
                               observables, progress=progress)
    g = lambda k: np.asarray(cols[k], np.float64)
    out = {k: np.asarray(rec[k], np.float64) for k in
           ("true_log10_energy", "true_zenith", "true_azimuth", "true_core_x", "true_core_y")}
    for k in ("reco_log10_energy", "reco_zenith", "reco_azimuth", "reco_core_x", "reco_core_y"):
        out[k] = g(k)
    out["status"] = np.asarray(cols["status"], np.int32)
    for k in RAW_OBSERVABLES[detector]:
        out[k] = g(k)
    out.update(event_variables(detector, cols, lay))
    out.update(detector=np.array(detector), primary=np.array(primary), seed=np.array(int(seed)),
               n_thrown=np.array(int(thrown)), area_m2=np.array(float(area)),
               zenith_max_deg=np.array(zmax),
               log10_energy_min=np.array(float(log10_energy_range[0])),
               log10_energy_max=np.array(float(log10_energy_range[1])),
               sim_index=np.array(-1.0))
    return out


def save_library(path, library) -> None:
    """Write a library (.npz); refuses to overwrite; written under a temporary name first."""
    path = str(path)
    if os.path.exists(path):
        raise FileExistsError(f"{path}: exists; not overwritten")
    tmp = path + ".tmp.npz"
    np.savez_compressed(tmp, **library)
    os.replace(tmp, path)


def load_library(path) -> dict:
    """Read a library written by :func:`save_library`; a one-line error names a missing field."""
    from analysis.irf import IRFError

    path = str(path)
    if not os.path.isfile(path):
        raise IRFError(f"{path}: no such file")
    with np.load(path, allow_pickle=False) as z:
        lib = {k: z[k] for k in z.files}
    need = META_KEYS + ("true_log10_energy", "true_zenith", "reco_log10_energy", "reco_zenith",
                        "reco_azimuth", "true_azimuth", "quality", "size", "gh_score")
    for k in need:
        if k not in lib:
            raise IRFError(f"{path}: field {k!r} missing (not an event library of analysis.irf_library)")
    for k in ("detector", "primary"):
        lib[k] = str(lib[k])
    return lib
