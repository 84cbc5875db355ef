"""A simulated sky through the project's own chain: γ-ray sources (positions, Gaussian
extensions, spectra, light curves) and isotropic cosmic rays, observed in drift scan from the
LHAASO site over a span of days (``lhaaso-joint simulate-sky``). docs/sky_simulation.md.

Shortcut (stated, and checked against a direct run by ``benchmarks/sky_shortcut_check.py``):
events are **not** simulated and fitted anew. A library of reconstructed simulated events
(``analysis.irf_library``, :data:`~analysis.irf_library.SKY_SEEDS`, independent of the IRF
libraries) is reused at new sky positions and times:

* **photons** of a source, per time step of ``step_s`` seconds: the source's zenith angle θ_s
  at that time (astropy, ``joint.sky.from_icrs``) selects the library photons whose true zenith
  lies in a window around θ_s (±:data:`ZENITH_WINDOW_COS2`/2 in cos²θ); each carries the Monte
  Carlo weight w_k = F(E_k, t) / p(E_k) · A cos θ_k / N_thrown(window) (F the source's flux,
  p the E⁻¹ density of the simulation, A the thrown area), so the expected number of photons
  is μ = Σ_k w_k · Δt. The number is drawn as a **Poisson count** N ~ P(μ), and N library
  events are drawn ∝ w_k (with replacement). Each keeps its own reconstruction: its
  reconstructed direction is rotated from its simulated true direction onto the photon's true
  direction in the local frame (the error keeps its size and its orientation relative to the
  local zenith/azimuth axes), its reconstructed energy, size and γ/hadron variables are its
  own. Extended sources: the true direction is drawn from a circular 2-D Gaussian first.
* **cosmic rays** (protons, flux ``analysis.irf.CR_FLUX``): isotropic, so their reconstructed
  direction is drawn uniformly on the sky region and their rate per steradian at the local
  zenith angle θ is the library's, per zenith band (``analysis.irf.ZENITH_EDGES_DEG``):
  ρ_b = Σ_{k∈b} w_k / Ω_b with w_k = F_CR(E_k)/p(E_k) · A π(1 − cos²θ_max) / N_thrown. The
  Poisson process is drawn by thinning: N_cand ~ P(ρ_max Ω_ROI Δt) uniform positions, each
  kept with probability ρ_b(θ)/ρ_max. **Reduced rate**: only events passing the library's
  quality cut and a loose γ preselection (the threshold keeping :data:`PRESELECTION_EFFICIENCY`
  of the photons per reco-energy bin) are drawn — the DL3 cut is tighter, so nothing it would
  keep is missing — and only in the sky region (``roi``). Counts, not weights.

The output is one ``reco``-tree file per detector (the columns the DL3 export reads, declared
in ``joint.io.columns``) and a ``sky_truth`` tree (source index, −1 for cosmic rays; true
energy and direction).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Callable

import numpy as np

from analysis.irf import (CR_FLUX, IRFError, ZENITH_EDGES_DEG, angular_distance_deg,
                          gh_thresholds, passes_gh_cut)

__all__ = ["Source", "simulate_sky", "write_sky", "log_parabola", "power_law",
           "ZENITH_WINDOW_COS2", "PRESELECTION_EFFICIENCY", "crab_lhaaso", "flare"]

ZENITH_WINDOW_COS2 = 0.06
PRESELECTION_EFFICIENCY = 0.99


def log_parabola(amplitude_cm2_s_tev, reference_tev, alpha, beta):
    """dN/dE = A (E/E0)^(−α − β log10(E/E0)) [cm⁻² s⁻¹ TeV⁻¹], E in TeV."""
    def f(e_tev):
        x = np.asarray(e_tev, np.float64) / reference_tev
        return amplitude_cm2_s_tev * x ** (-alpha - beta * np.log10(x))
    return f


def power_law(amplitude_cm2_s_tev, reference_tev, index):
    def f(e_tev):
        return amplitude_cm2_s_tev * (np.asarray(e_tev, np.float64) / reference_tev) ** (-index)
    return f


#: LHAASO's Crab log-parabola (KM2A + WCDA, Science 373 (2021) 425 / CPC 45 (2021) 025002):
#: φ0 = 8.2e-14 cm⁻² s⁻¹ TeV⁻¹ at 10 TeV, α = 2.90, β = 0.19 [M: the values are quoted from
#: those papers' abstracts, not re-read in the full text here; PHYSICS.md lists the KM2A
#: power law of arXiv:2010.06205 as [C]]
CRAB_LHAASO = dict(amplitude_cm2_s_tev=8.2e-14, reference_tev=10.0, alpha=2.90, beta=0.19)


def crab_lhaaso():
    return log_parabola(**CRAB_LHAASO)


def flare(mjd_start, mjd_stop, factor):
    """Light curve: ``factor`` × the quiescent flux between the two times, 1 elsewhere."""
    def lc(mjd):
        m = np.asarray(mjd, np.float64)
        return np.where((m >= mjd_start) & (m < mjd_stop), factor, 1.0)
    return lc


@dataclass
class Source:
    """A γ-ray source: ICRS position [deg], Gaussian σ [deg] (0 = point-like), spectrum
    dN/dE(E/TeV) [cm⁻² s⁻¹ TeV⁻¹] and an optional light curve (a factor vs MJD)."""
    name: str
    ra: float
    dec: float
    spectrum: Callable
    sigma_deg: float = 0.0
    light_curve: Callable | None = None


def _rotate_errors(tz_k, ta_k, rz_k, ra_k, tz_e, ta_e):
    """Reconstructed directions: the error (rz, ra) − (tz, ta) of library events k carried over
    to true directions (tz_e, ta_e), in the local basis of each true direction."""
    def vec(z, a):
        return np.stack([np.sin(z) * np.cos(a), np.sin(z) * np.sin(a), np.cos(z)], -1)

    def basis(z, a):
        e_r = vec(z, a)
        e_z = np.stack([np.cos(z) * np.cos(a), np.cos(z) * np.sin(a), -np.sin(z)], -1)
        e_a = np.stack([-np.sin(a), np.cos(a), np.zeros_like(a)], -1)
        return e_r, e_z, e_a

    r = vec(rz_k, ra_k)
    b_k = basis(tz_k, ta_k)
    comps = [np.sum(r * e, -1) for e in b_k]
    b_e = basis(tz_e, ta_e)
    v = sum(c[:, None] * e for c, e in zip(comps, b_e))
    v /= np.linalg.norm(v, axis=-1, keepdims=True)
    return np.arccos(np.clip(v[:, 2], -1, 1)), np.mod(np.arctan2(v[:, 1], v[:, 0]), 2 * np.pi)


def _preselected(lib, lib_gamma):
    """Quality and the loose γ preselection (thresholds from the sky's own photon library)."""
    q = lib_gamma["quality"] == 1
    zeros = np.zeros(len(q), int)
    edges, thr = gh_thresholds(lib_gamma["reco_log10_energy"], lib_gamma["gh_score"], zeros, q,
                               1, PRESELECTION_EFFICIENCY)
    return (lib["quality"] == 1) & passes_gh_cut(edges, thr, np.zeros(len(lib["quality"]), int),
                                                 lib["reco_log10_energy"], lib["gh_score"])


def _sim_density(lib):
    a, b = float(lib["log10_energy_min"]), float(lib["log10_energy_max"])
    e = 10.0 ** lib["true_log10_energy"]
    return 1.0 / (e * np.log(10.0) * (b - a)), e


def _lst_rad(mjd):
    from astropy.time import Time

    from joint.sky import LHAASO_SITE

    return Time(mjd, format="mjd", scale="utc").sidereal_time(
        "mean", longitude=LHAASO_SITE.lon_deg).rad


def _cap_sample(rng, n, ra0, dec0, radius_deg):
    """n points uniform on the spherical cap of ``radius_deg`` around (ra0, dec0) [deg]."""
    cr = np.cos(np.radians(radius_deg))
    c = rng.uniform(cr, 1.0, n)
    phi = rng.uniform(0, 2 * np.pi, n)
    s = np.sqrt(1 - c * c)
    v = np.stack([s * np.cos(phi), s * np.sin(phi), c], -1)       # around +z
    d, r = np.radians(dec0), np.radians(ra0)
    # rotate +z onto (ra0, dec0)
    ry = np.array([[np.sin(d), 0, np.cos(d)], [0, 1, 0], [-np.cos(d), 0, np.sin(d)]])
    rz = np.array([[np.cos(r), -np.sin(r), 0], [np.sin(r), np.cos(r), 0], [0, 0, 1]])
    w = v @ (rz @ ry).T
    return (np.degrees(np.arctan2(w[:, 1], w[:, 0])) % 360.0,
            np.degrees(np.arcsin(np.clip(w[:, 2], -1, 1))))


def simulate_sky(sources, libraries, mjd_start, n_days, roi, step_s=120.0, seed=0,
                 cosmic_rays=True, progress=None) -> dict:
    """Simulate the sky: ``sources`` (list of :class:`Source`), ``libraries`` =
    {detector: (photon library, proton library)} (``analysis.irf_library``, sky seeds),
    ``n_days`` sidereal days from ``mjd_start`` (UTC), events within ``roi`` = (ra, dec,
    radius) [deg]. Returns {detector: {column: array}} (reco columns + ``truth_*``)."""
    from joint.sky import LHAASO_SITE, from_icrs, to_icrs

    rng = np.random.default_rng(seed)
    ra0, dec0, rad0 = (float(x) for x in roi)
    sid = 86164.0905
    times = mjd_start + np.arange(0.0, n_days * sid, step_s) / 86400.0    # step starts
    lat = np.radians(LHAASO_SITE.lat_deg)
    out = {}
    for det, (lib_g, lib_p) in libraries.items():
        for lib, prim in ((lib_g, "gamma"), (lib_p, "proton")):
            if str(lib["detector"]) != det or str(lib["primary"]) != prim:
                raise IRFError(f"{det} {prim} library: field 'detector'/'primary' is "
                               f"{lib['detector']}/{lib['primary']}")
        zmax = float(lib_g["zenith_max_deg"])
        parts = []
        # -- photons -------------------------------------------------------------------------
        pre_g = _preselected(lib_g, lib_g)
        p_g, e_g = _sim_density(lib_g)
        c2_g = np.cos(lib_g["true_zenith"]) ** 2
        c2max = np.cos(np.radians(zmax)) ** 2
        for si, src in enumerate(sources):
            zs, azs = from_icrs(src.ra, src.dec, times + 0.5 * step_s / 86400.0)
            vis = np.nonzero(np.degrees(zs) < zmax)[0]
            picks, tpick = [], []
            for i in vis:
                c2s = np.cos(zs[i]) ** 2
                lo, hi = max(c2s - ZENITH_WINDOW_COS2 / 2, c2max), min(c2s + ZENITH_WINDOW_COS2 / 2, 1.0)
                win = pre_g & (c2_g >= lo) & (c2_g <= hi)
                n_win = float(lib_g["n_thrown"]) * (hi - lo) / (1.0 - c2max)
                t_mid = times[i] + 0.5 * step_s / 86400.0
                lc = 1.0 if src.light_curve is None else float(src.light_curve(t_mid))
                w = (src.spectrum(e_g[win] / 1e3) * 1e4 / 1e3 / p_g[win] * float(lib_g["area_m2"])
                     * np.cos(lib_g["true_zenith"][win]) / n_win * lc)   # s⁻¹ (cm⁻²→m⁻², TeV⁻¹→GeV⁻¹)
                mu = w.sum() * step_s
                n = rng.poisson(mu)
                if n:
                    idx = np.nonzero(win)[0]
                    picks.append(rng.choice(idx, n, p=w / w.sum()))
                    tpick.append(times[i] + rng.uniform(0, step_s, n) / 86400.0)
            if not picks:
                continue
            k = np.concatenate(picks)
            t = np.concatenate(tpick)
            tra = np.full(len(k), src.ra)
            tdec = np.full(len(k), src.dec)
            if src.sigma_deg > 0:
                dx, dy = rng.normal(0, src.sigma_deg, (2, len(k)))
                tdec = src.dec + dy
                tra = src.ra + dx / np.cos(np.radians(tdec))
            tz, ta = from_icrs(tra, tdec, t)
            rz, razi = _rotate_errors(lib_g["true_zenith"][k], lib_g["true_azimuth"][k],
                                      lib_g["reco_zenith"][k], lib_g["reco_azimuth"][k], tz, ta)
            parts.append(_event_columns(lib_g, k, t, rz, razi, si, tra, tdec))
            if progress:
                progress(f"{det}: {src.name}: {len(k)} photons")
        # -- cosmic rays ---------------------------------------------------------------------
        if cosmic_rays:
            pre_p = _preselected(lib_p, lib_g)
            p_p, e_p = _sim_density(lib_p)
            flux = CR_FLUX["norm_per_m2_s_sr_gev"] * e_p ** (-CR_FLUX["index"])
            w_p = (flux / p_p * float(lib_p["area_m2"]) * np.pi * (1 - c2max)
                   / float(lib_p["n_thrown"]))
            z_edges = np.asarray([z for z in ZENITH_EDGES_DEG if z <= zmax])
            zb = np.digitize(np.degrees(lib_p["true_zenith"]), z_edges) - 1
            omega = 2 * np.pi * (np.cos(np.radians(z_edges[:-1])) - np.cos(np.radians(z_edges[1:])))
            rho = np.array([w_p[pre_p & (zb == b)].sum() for b in range(len(omega))]) / omega
            members = [np.nonzero(pre_p & (zb == b))[0] for b in range(len(omega))]
            rho_max = rho.max()
            omega_roi = 2 * np.pi * (1 - np.cos(np.radians(rad0)))
            lst = _lst_rad(times + 0.5 * step_s / 86400.0)
            n_cand = rng.poisson(rho_max * omega_roi * step_s, len(times))
            tot = n_cand.sum()
            step = np.repeat(np.arange(len(times)), n_cand)
            cra, cdec = _cap_sample(rng, tot, ra0, dec0, rad0)
            h = lst[step] - np.radians(cra)
            cz = np.sin(lat) * np.sin(np.radians(cdec)) + np.cos(lat) * np.cos(np.radians(cdec)) * np.cos(h)
            zen = np.degrees(np.arccos(np.clip(cz, -1, 1)))
            b = np.digitize(zen, z_edges) - 1
            inside = (b >= 0) & (b < len(omega))
            keep = inside & (rng.uniform(size=tot) < np.where(inside, rho[np.clip(b, 0, len(rho) - 1)], 0) / rho_max)
            kk = np.empty(keep.sum(), int)
            bb = b[keep]
            for j in range(len(omega)):
                m = bb == j
                if m.any():
                    ww = w_p[members[j]]
                    kk[m] = rng.choice(members[j], m.sum(), p=ww / ww.sum())
            t = times[step[keep]] + rng.uniform(0, step_s, keep.sum()) / 86400.0
            # local direction columns of the cosmic rays from the hour angle (J2000 RA/Dec, no
            # precession: ~0.3° off; the analysis uses their RA/Dec, drawn exactly, not these)
            hk, dk = h[keep], np.radians(cdec[keep])
            rz = np.arccos(np.clip(cz[keep], -1, 1))
            az_n = np.arctan2(-np.cos(dk) * np.sin(hk),
                              np.sin(dk) * np.cos(lat) - np.cos(dk) * np.sin(lat) * np.cos(hk))
            razi = np.mod(np.pi / 2 - az_n, 2 * np.pi)     # array frame, rotation 0 (joint.sky)
            cols = _event_columns(lib_p, kk, t, rz, razi, -1, cra[keep], cdec[keep])
            cols["ra"], cols["dec"] = cra[keep], cdec[keep]
            parts.append(cols)
            if progress:
                progress(f"{det}: cosmic rays: {keep.sum()} events")
        if not parts:
            raise IRFError(f"{det}: no event in the simulated sky")
        cols = {k2: np.concatenate([p[k2] for p in parts]) for k2 in parts[0]}
        order = np.argsort(cols["time_mjd"])
        cols = {k2: v[order] for k2, v in cols.items()}
        # reconstructed sky coordinates of the photons (the cosmic rays have theirs)
        need = cols["truth_source"] >= 0
        if need.any():
            r_, d_ = to_icrs(cols["reco_zenith"][need], cols["reco_azimuth"][need],
                             cols["time_mjd"][need])
            cols["ra"][need], cols["dec"][need] = r_, d_
        near = angular_distance_deg(np.radians(90 - dec0), np.radians(ra0),
                                    np.radians(90 - cols["dec"]), np.radians(cols["ra"])) <= rad0
        cols = {k2: v[near] for k2, v in cols.items()}
        cols["event_id"] = np.arange(len(cols["time_mjd"]), dtype=np.int64)
        out[det] = cols
    return out


def _event_columns(lib, k, t, rz, razi, source, tra, tdec):
    from analysis.irf_library import RAW_OBSERVABLES

    det = str(lib["detector"])
    c = {"run": np.ones(len(k), np.int32), "event_id": np.zeros(len(k), np.int64),
         "time_mjd": np.asarray(t, np.float64),
         "reco_core_x": lib["reco_core_x"][k], "reco_core_y": lib["reco_core_y"][k],
         "reco_zenith": np.asarray(rz, np.float64), "reco_azimuth": np.asarray(razi, np.float64),
         "reco_log10_energy": lib["reco_log10_energy"][k],
         "status": lib["status"][k].astype(np.int32),
         "ra": np.full(len(k), np.nan), "dec": np.full(len(k), np.nan),
         "true_mass_number": np.full(len(k), 0.0 if source >= 0 else 1.0),
         "truth_source": np.full(len(k), source, np.int32),
         "truth_log10_energy": lib["true_log10_energy"][k],
         "truth_ra": np.asarray(tra, np.float64), "truth_dec": np.asarray(tdec, np.float64)}
    for name in RAW_OBSERVABLES[det]:
        c[name] = lib[name][k]
    if "wcda_nhit" in c:
        c["wcda_nhit"] = c["wcda_nhit"].astype(np.int32)
    return c


def write_sky(sky, outdir, overwrite=False) -> list:
    """One ROOT file per detector, ``sky_<detector>.root``: tree ``reco`` (declared columns)
    and tree ``sky_truth``. Refuses to overwrite; written under a temporary name."""
    import uproot

    from joint.io.columns import branch_types

    os.makedirs(outdir, exist_ok=True)
    paths = []
    for det, cols in sky.items():
        path = os.path.join(str(outdir), f"sky_{det}.root")
        if os.path.exists(path) and not overwrite:
            raise FileExistsError(f"{path}: exists (use --overwrite)")
        reco = {k: v for k, v in cols.items() if not k.startswith("truth_")}
        truth = {k: v for k, v in cols.items() if k.startswith("truth_") or k in ("run", "event_id")}
        tmp = path + ".tmp"
        with uproot.recreate(tmp) as f:
            f.mktree("reco", branch_types(reco, path))
            f["reco"].extend(reco)
            f["sky_truth"] = truth
        os.replace(tmp, path)
        paths.append(path)
    return paths
