"""Hadronic structure of the KM2A simulation measured on CORSIKA protons, and the classic
gamma/hadron variables of the simulation next to CORSIKA throws (issue 17 part 0).

    LHAASO_SHARED_DATA=/work/shared/data .venv/bin/python benchmarks/hadron_structure.py \\
        [--throws 60] [--skip-reco]

writes benchmarks/results/hadron_structure.txt (and .json, and hadron_structure.png).

Part A — cell statistics of CORSIKA ground particles (shower-plane coordinates, particles
within square cells of side a; the smooth expectation μ of each cell is the azimuthally averaged
density at the cell's radius, from the same shower):

    relative excess variance  V(a) = Σ[(n − μ)² − Σw²] / Σ μ²   (0 for Poisson about μ)

for e± of the unthinned 100 TeV proton (3000 m) in radial ranges, separately on the two halves of
its shower plane (e2 > 0: FIT half, e2 < 0: CHECK half), for the muons of the five thinned
0.1–1 PeV protons (sea level; Σw² subtracts the Poisson part of the weighted counts) and of the
100 TeV proton; plus a lump search (10 m cells 20–300 m from the axis with n > μ + 5√μ + 3 and
n > 2μ) on the proton and the five 10 TeV photons. Fit (FIT half only): in each radial range
V(a) = k/μ̄(a) + (e^{σ²} − 1) · I(a/L)², k the small-scale clustering of particles (pairs;
below one ED), I the cell-averaged Gaussian correlation exp(−d²/2L²), L common; then
σ(r) = σ₁₀₀ (r/100 m)^γ. These give ``detectors.km2a.HADRON_STRUCTURE``'s patch_* values; the
CHECK half's V is compared with the fitted model.

Part B — 100 TeV protons at zenith 20°, cores 150–400 m from the array centre, reconstructed by
the KM2A fit (hadron hypothesis, default configuration): CORSIKA throws of the 100 TeV proton
(``joint.io.corsika.simulate_corsika``), the project's simulation with the structure off (OLD,
``km2a_structure=None``) and on (NEW, :data:`detectors.km2a.HADRON_STRUCTURE`). Variables:
log10(Nμ/Ne^0.86) (``analysis.composition.nmu_ne_variable`` on the reco ``nmu``, ``ne``
columns), the fit's goodness of fit (``gof_km2a``), the residual patchiness resid_V (the
relative excess variance V of part A, of the ED counts about the fitted shower: EDs with 1–1000
fitted particles, counts n_eff = q/G/(1 + σ_q²)), compactness
N_hit/CxPE_45 and PINCness of the ED charges about the reconstructed core
(``analysis.gamma_hadron``; KM2A settings: 10 m annuli out to 300 m, EDs ≥ 40 PE = 1 particle,
F = G(1 + σ_q²)), and the fit's log10 E − true and log10 N_e; median and 16–84% of each. The CORSIKA shower ends at 3000 m a.s.l.
(718 g/cm² vertical; the array is at 4410 m, 598 g/cm²): thrown onto KM2A it is a 100 TeV proton
≈ 127 g/cm² of slant depth older than one at LHAASO (fewer EM particles, a flatter lateral
distribution), whose energy the fit underestimates; the shapes of the distributions and the
change OLD → NEW are what compare, not the EM medians.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import time
from pathlib import Path

import numpy as np

from common import ROOT, machine

RESULTS = ROOT / "benchmarks" / "results"
PROTON = "proton_100TeV_3000m_DAT000002-32.gz"
THIN = "corsika76900_thin"
GAMMA = "corsika_77500_particle"
RANGES_EM = ((10.0, 30.0), (30.0, 60.0), (60.0, 120.0), (120.0, 250.0))
CELLS_EM = (1.0, 2.0, 3.0, 6.0, 10.0, 20.0)
RANGES_MU = ((0.0, 100.0), (100.0, 300.0))
CELLS_MU = (6.0, 12.0)


def shared_data() -> Path:
    return Path(os.environ.get("LHAASO_SHARED_DATA", ROOT.parent / "shared" / "data"))


def plane(s):
    """Shower-plane coordinates of the particles (e1 along the azimuth, e2 across)."""
    c, sn = math.cos(s.phi), math.sin(s.phi)
    return (s.x * c + s.y * sn) * math.cos(s.zenith), -s.x * sn + s.y * c


def cell_counts(x, y, w, a, extent):
    n = int(2 * extent / a)
    e = np.linspace(-n * a / 2, n * a / 2, n + 1)
    h, _, _ = np.histogram2d(x, y, [e, e], weights=w)
    h2, _, _ = np.histogram2d(x, y, [e, e], weights=w * w)
    c = 0.5 * (e[1:] + e[:-1])
    cx, cy = np.meshgrid(c, c, indexing="ij")
    return h, h2, cx, cy


def smooth_density(x, y, w):
    r = np.hypot(x, y)
    edges = np.geomspace(0.5, 3000.0, 120)
    h, _ = np.histogram(r, edges, weights=w)
    return np.sqrt(edges[:-1] * edges[1:]), h / (np.pi * np.diff(edges ** 2))


def excess_variance(x, y, w, a, r1, r2, half=None, extent=400.0):
    """(V, mean μ per cell, number of cells) in r1 ≤ r < r2 (cell centres)."""
    rc, dens = smooth_density(x, y, w)
    h, h2, cx, cy = cell_counts(x, y, w, a, extent)
    rcell = np.hypot(cx, cy)
    mu = np.interp(np.log(np.maximum(rcell, 0.5)), np.log(rc), dens) * a * a
    m = (rcell >= r1) & (rcell < r2)
    if half == "fit":
        m &= cy > 0
    elif half == "check":
        m &= cy < 0
    v = float(np.sum((h[m] - mu[m]) ** 2 - h2[m]) / np.sum(mu[m] ** 2))
    return v, float(mu[m].mean()), int(m.sum())


def lumps(x, y, w, a=10.0, r1=20.0, r2=300.0, nsig=5.0):
    rc, dens = smooth_density(x, y, w)
    h, _, cx, cy = cell_counts(x, y, w, a, r2)
    rcell = np.hypot(cx, cy)
    mu = np.interp(np.log(np.maximum(rcell, 0.5)), np.log(rc), dens) * a * a
    m = (rcell >= r1) & (rcell < r2) & (h > mu + nsig * np.sqrt(mu) + 3) & (h > 2 * mu)
    return int(m.sum()), float((h[m] - mu[m]).sum() / w.sum())


def cell_corr(a, length):
    """Cell-averaged Gaussian correlation over a square cell of side a, per axis, squared."""
    s = a / length
    i1 = (2.0 / s ** 2) * (s * math.sqrt(math.pi / 2) * math.erf(s / math.sqrt(2))
                           - (1.0 - math.exp(-s * s / 2)))
    return i1 ** 2


def fit_patchiness(table):
    """table: {range: [(a, V, mu)]} -> (L, {range: (k, S)}, sigma100, gamma, chi2)."""
    best = None
    for length in np.geomspace(0.5, 50.0, 60):
        chi2, pars = 0.0, {}
        for rng_, rows in table.items():
            a = np.array([r[0] for r in rows])
            v = np.array([r[1] for r in rows])
            mu = np.array([r[2] for r in rows])
            n = np.array([r[3] for r in rows])
            # error of V: ≈ sqrt(2/n_cells) (1/μ + V) (Gaussian approximation)
            err = np.sqrt(2.0 / n) * (1.0 / mu + np.abs(v)) + 1e-3
            X = np.stack([1.0 / mu, np.array([cell_corr(x, length) for x in a])], -1)
            coef, *_ = np.linalg.lstsq(X / err[:, None], v / err, rcond=None)
            coef = np.maximum(coef, 0.0)
            chi2 += float(np.sum(((X @ coef - v) / err) ** 2))
            pars[rng_] = (float(coef[0]), float(coef[1]))
        if best is None or chi2 < best[3]:
            best = (float(length), pars, None, chi2)
    length, pars, _, chi2 = best
    r = np.array([math.sqrt(lo * hi) for lo, hi in pars])
    sig = np.array([math.sqrt(math.log1p(s)) for _, s in pars.values()])
    ok = sig > 0
    g, lnsig = np.polyfit(np.log(r[ok] / 100.0), np.log(sig[ok]), 1)
    return length, pars, float(math.exp(lnsig)), float(g), chi2


def part_a(lines, result):
    from joint.io.corsika import read_corsika

    d = shared_data() / "corsika"
    p = read_corsika(d / PROTON)[0]
    xp, yp = plane(p)
    em = np.isin(p.pid, (2, 3))
    mu = np.isin(p.pid, (5, 6))
    lines.append(f"## Part A: CORSIKA cell statistics; {PROTON}: {int(em.sum())} e±, "
                 f"{int(mu.sum())} μ± (one unthinned 100 TeV proton, 20°, 3000 m)")
    lines.append("# e±: relative excess variance V(a) over Poisson about the azimuthal mean; "
                 "FIT half (e2>0) / CHECK half (e2<0); μ̄ = mean particles per cell")
    lines.append("# r[m]        a[m]   V_fit    V_check   mu_bar")
    table_fit, table_check = {}, {}
    for lo, hi in RANGES_EM:
        for a in CELLS_EM:
            vf, mf, nf = excess_variance(xp[em], yp[em], p.weight[em], a, lo, hi, "fit")
            vc, mc, nc = excess_variance(xp[em], yp[em], p.weight[em], a, lo, hi, "check")
            table_fit.setdefault((lo, hi), []).append((a, vf, mf, nf))
            table_check.setdefault((lo, hi), []).append((a, vc, mc, nc))
            lines.append(f"{lo:5.0f}-{hi:<5.0f} {a:6.0f} {vf:8.4f} {vc:8.4f} {mf:9.2f}")
    length, pars, s100, gam, chi2 = fit_patchiness(table_fit)
    lines.append(f"# fit (FIT half): L = {length:.1f} m, chi2 = {chi2:.1f} for "
                 f"{sum(len(v) for v in table_fit.values())} points; per range k (pair "
                 "clustering), S = e^σ²−1, σ:")
    for (lo, hi), (k, s) in pars.items():
        lines.append(f"#   {lo:5.0f}-{hi:<5.0f} k = {k:.3f}  S = {s:.4f}  σ = {math.sqrt(math.log1p(s)):.3f}")
    lines.append(f"# σ(r) = {s100:.3f} (r/100 m)^{gam:.2f}")
    # the CHECK half against the FIT half's model
    lines.append("# CHECK half vs the FIT half's model  k/μ̄ + S·I(a/L)²:")
    dev = []
    for rng_, rows in table_check.items():
        k, s = pars[rng_]
        for a, v, m, n in rows:
            pred = k / m + s * cell_corr(a, length)
            err = math.sqrt(2.0 / n) * (1.0 / m + abs(v)) + 1e-3
            dev.append((v - pred) / err)
            lines.append(f"#   {rng_[0]:5.0f}-{rng_[1]:<5.0f} a={a:4.0f}  V_check {v:8.4f}  model {pred:8.4f}")
    lines.append(f"# CHECK half: mean (V−model)/err = {np.mean(dev):+.2f}, rms {np.sqrt(np.mean(np.square(dev))):.2f}")
    result["patch"] = {"length_m": length, "sigma100": s100, "slope": gam, "chi2": chi2,
                       "per_range": {f"{lo:g}-{hi:g}": v for (lo, hi), v in pars.items()},
                       "table_fit": {f"{lo:g}-{hi:g}": v for (lo, hi), v in table_fit.items()},
                       "table_check": {f"{lo:g}-{hi:g}": v for (lo, hi), v in table_check.items()},
                       "check_dev_mean": float(np.mean(dev)),
                       "check_dev_rms": float(np.sqrt(np.mean(np.square(dev))))}
    # lumps
    nl, fl = lumps(xp[em], yp[em], p.weight[em])
    lines.append(f"# lumps (10 m cells, 20–300 m, n > μ + 5√μ + 3 and > 2μ): proton {nl} cells, "
                 f"excess fraction {fl:.4f}")
    gl = []
    for s in read_corsika(d / GAMMA):
        x2, y2 = plane(s)
        e2 = np.isin(s.pid, (2, 3))
        gl.append(lumps(x2[e2], y2[e2], s.weight[e2]))
    lines.append(f"# lumps, five 10 TeV photons at sea level: {[g[0] for g in gl]} cells")
    result["lumps"] = {"proton_cells": nl, "proton_fraction": fl, "gamma_cells": [g[0] for g in gl]}
    # muons
    lines.append("# muons: V(a) in MD-sized (6 m) and 12 m cells; thinned protons (sea level, "
                 "weights) = FIT sample of the muon clumps; the 100 TeV proton = check")
    lines.append("# shower              r[m]      a=6      a=12   (μ̄ per 6 m cell)")
    mu_fit = {}
    for s in read_corsika(d / THIN):
        x2, y2 = plane(s)
        m2 = np.isin(s.pid, (5, 6))
        row = []
        for lo, hi in RANGES_MU:
            vs = [excess_variance(x2[m2], y2[m2], s.weight[m2], a, lo, hi) for a in CELLS_MU]
            row.append(vs)
            mu_fit.setdefault((lo, hi), []).append([v[0] for v in vs])
            lines.append(f"thin {s.energy_gev / 1e3:6.0f} TeV {np.degrees(s.zenith):4.1f}°  "
                         f"{lo:3.0f}-{hi:<4.0f} {vs[0][0]:8.3f} {vs[1][0]:8.3f}   ({vs[0][1]:.3f})")
    for lo, hi in RANGES_MU:
        vs = [excess_variance(xp[mu], yp[mu], p.weight[mu], a, lo, hi) for a in CELLS_MU]
        lines.append(f"proton 100 TeV 20.0°  {lo:3.0f}-{hi:<4.0f} {vs[0][0]:8.3f} {vs[1][0]:8.3f}   "
                     f"({vs[0][1]:.3f})")
        result.setdefault("muon_check", {})[f"{lo:g}-{hi:g}"] = [v[0] for v in vs]
    mean_fit = {f"{lo:g}-{hi:g}": np.mean(v, axis=0).tolist() for (lo, hi), v in mu_fit.items()}
    sem_fit = {f"{lo:g}-{hi:g}": (np.std(v, axis=0) / math.sqrt(len(v))).tolist()
               for (lo, hi), v in mu_fit.items()}
    lines.append(f"# thinned protons, mean ± s.e.m. of V (a = 6, 12 m): "
                 + "; ".join(f"{k} m: {m[0]:.3f}±{sem_fit[k][0]:.3f}, {m[1]:.3f}±{sem_fit[k][1]:.3f}"
                             for k, m in mean_fit.items()))
    result["muon_fit"] = {"mean": mean_fit, "sem": sem_fit}
    return result


def simulated_cell_variance(lines, result, n_draws=200):
    """V of the NEW simulation's mean numbers (1 m² EDs, 36 m² MDs) at fixed radius: what the
    structure adds to Poisson, to set next to CORSIKA's V at a = 1 m (e±) and 6 m (μ)."""
    import jax
    import jax.numpy as jnp

    from detectors import km2a
    from detectors.layout import km2a_layout
    from detectors.shower import Shower
    from detectors.substructure import shower_plane_xy

    lay = km2a_layout("full")
    geo = km2a.Geometry.from_layout(lay)
    resp = km2a.Response.nominal(geo)
    phys = km2a.KM2APhysics(is_gamma=0.0)
    sh = Shower.make(log10_energy=5.0, zenith=math.radians(20.0), core_x=250.0, core_y=0.0,
                     dtype=jnp.float32)
    e = km2a.expected(sh, geo, resp, phys)

    def one(k):
        em, emu, mmu = km2a._hadron_structure(k, sh, e, geo, resp, phys, **km2a.HADRON_STRUCTURE)
        return em, mmu

    em, mmu = jax.jit(jax.vmap(one))(jax.random.split(jax.random.PRNGKey(5), n_draws))
    em, mmu = np.asarray(em, np.float64), np.asarray(mmu, np.float64)
    xy_ed = np.asarray(shower_plane_xy(sh, geo.ed_pos))
    xy_md = np.asarray(shower_plane_xy(sh, geo.md_pos))
    r_ed, r_md = np.hypot(*xy_ed.T), np.hypot(*xy_md.T)
    m_em, m_mu = np.asarray(e.ed_em, np.float64), np.asarray(e.md_muons, np.float64)
    lines.append(f"## The NEW simulation's mean numbers, {n_draws} draws of one 100 TeV proton "
                 "(20°, core at (250, 0) m): V = Var/mean² per channel, averaged in the range")
    sim = {}
    for lo, hi in RANGES_EM:
        s = (r_ed >= lo) & (r_ed < hi)
        if s.sum():
            v = float(np.mean(em[:, s].var(0) / m_em[s] ** 2))
            bias = float(np.sum(em[:, s].mean(0)) / np.sum(m_em[s]) - 1)
            sim[f"em {lo:g}-{hi:g}"] = (v, bias, int(s.sum()))
            lines.append(f"  e.m. {lo:5.0f}-{hi:<5.0f} EDs {int(s.sum()):4d}  V(1 m²) = {v:.4f}  "
                         f"mean/smooth − 1 = {bias:+.4f}")
    for lo, hi in RANGES_MU:
        s = (r_md >= lo) & (r_md < hi)
        if s.sum():
            v = float(np.mean(mmu[:, s].var(0) / m_mu[s] ** 2))
            bias = float(np.sum(mmu[:, s].mean(0)) / np.sum(m_mu[s]) - 1)
            sim[f"mu {lo:g}-{hi:g}"] = (v, bias, int(s.sum()))
            lines.append(f"  muons {lo:4.0f}-{hi:<5.0f} MDs {int(s.sum()):4d}  V(36 m²) = {v:.4f}  "
                         f"mean/smooth − 1 = {bias:+.4f}")
    result["simulated_V"] = sim


def classic_variables(records, out, layout):
    """nmn, gof per hit, compactness, PINCness per event (numpy)."""
    import jax
    import jax.numpy as jnp

    from analysis.composition import nmu_ne_variable
    from analysis.gamma_hadron import compactness, pincness
    from joint.io.schema import to_event_batch

    batch = to_event_batch(records, km2a=layout, as_jax=False)
    ed = batch.blocks["km2a_ed"] if hasattr(batch, "blocks") else batch["km2a_ed"]
    pos = jnp.asarray(layout.ed_pos, jnp.float32)
    fano = 40.0 * (1.0 + 0.4 ** 2)
    core = np.stack([np.nan_to_num(np.asarray(out["reco_core_x"], np.float64)),
                     np.nan_to_num(np.asarray(out["reco_core_y"], np.float64))], -1)

    def one(q, h, v, c):
        return (compactness(q, h, v, pos, c, radius=45.0, min_charge=40.0),
                pincness(q, h, v, pos, c, fano, annulus_width=10.0, n_annuli=30, min_charge=40.0))

    from detectors import km2a
    from detectors.shower import FIELDS, Shower

    geo = km2a.Geometry.from_layout(layout)
    resp = km2a.Response.nominal(geo)
    phys = km2a.KM2APhysics(is_gamma=0.0)
    showers = Shower(**{f: jnp.asarray(np.nan_to_num(np.asarray(out[f"reco_{f}"], np.float64)),
                                       jnp.float32) for f in FIELDS})
    k_sc = 1.0 / (1.0 + 0.4 ** 2)

    def resid(sh, q, h, v):
        """Residual patchiness: V = Σ[(n_eff − μ_eff)² − μ_eff] / Σ μ_eff² over the live EDs the
        fitted shower gives 1–1000 particles (n_eff = k q/G, μ_eff = k μ, k = 1/(1 + σ_q²): the
        likelihood's scaled Poisson, variance μ_eff); 0 for a shower exactly like the model."""
        mu = km2a.expected(sh, geo, resp, phys).ed_particles
        n_eff = jnp.where(h, q, 0.0) / 40.0 * k_sc
        mu_eff = mu * k_sc
        use = v & (mu >= 1.0) & (mu < 1000.0)
        num = jnp.sum(jnp.where(use, (n_eff - mu_eff) ** 2 - mu_eff, 0.0))
        return num / jnp.maximum(jnp.sum(jnp.where(use, mu_eff ** 2, 0.0)), 1e-9)

    rv = jax.jit(jax.vmap(resid))(showers, jnp.asarray(ed.signal, jnp.float32), jnp.asarray(ed.hit),
                                  jnp.asarray(ed.valid))
    comp, pinc = jax.jit(jax.vmap(one))(jnp.asarray(ed.signal, jnp.float32), jnp.asarray(ed.hit),
                                        jnp.asarray(ed.valid), jnp.asarray(core, jnp.float32))
    res = {"nmn": nmu_ne_variable(out["nmu"], out["ne"]),
           "log10_compactness": np.log10(np.maximum(np.asarray(comp, np.float64), 1e-6)),
           "log10_pincness": np.log10(np.maximum(np.asarray(pinc, np.float64), 1e-6))}
    res["resid_V"] = np.asarray(rv, np.float64)
    if "gof_km2a" in out:
        res["gof_km2a"] = np.asarray(out["gof_km2a"], np.float64)
    # the fit's energy and N_e (the structure must not bias them: OLD vs NEW)
    res["dlog10E"] = (np.asarray(out["reco_log10_energy"], np.float64)
                      - np.asarray(records["true_log10_energy"], np.float64))
    res["log10_ne"] = np.log10(np.maximum(np.asarray(out["ne"], np.float64), 1.0))
    return res


def part_b(lines, result, n_throws, seed, layout_name="full"):
    from detectors import km2a
    from detectors.layout import km2a_layout
    from joint.config import ReconstructionConfig, detector_setup
    from joint.io.corsika import simulate_corsika
    from joint.io.schema import to_event_batch
    from joint.simulation import simulate_records
    from lhaaso_joint.api import reconstruct_records

    layout = km2a_layout(layout_name)
    _, geos, resps = detector_setup(("km2a",))
    cfg = ReconstructionConfig(hypothesis="hadron")
    lo, hi = 150.0, 400.0

    def reco(rec):
        return reconstruct_records(to_event_batch(rec, km2a=layout, as_jax=False), geos, resps,
                                   cfg, batch_size=64)

    def hook(truth, rng):
        k = len(truth["true_core_x"])
        r = np.sqrt(rng.uniform(lo ** 2, hi ** 2, k))
        phi = rng.uniform(0, 2 * np.pi, k)
        truth["true_core_x"], truth["true_core_y"] = r * np.cos(phi), r * np.sin(phi)
        truth["true_zenith"] = np.full(k, np.radians(20.0))
        return truth

    samples = {}
    t0 = time.time()
    rec, _, meta = simulate_corsika([shared_data() / "corsika" / PROTON], n_throws, layout=layout,
                                    core_rmin=lo, core_rmax=hi, seed=seed)
    samples["CORSIKA"] = rec
    for name, structure in (("OLD", None), ("NEW", km2a.HADRON_STRUCTURE)):
        samples[name], _ = simulate_records(n_throws, primary="proton",
                                            log10_energy_range=(5.0, 5.0), zenith_max_deg=20.0,
                                            core_radius_m=hi, seed=seed + 1, km2a_layout=layout,
                                            truth_hook=hook, km2a_structure=structure)
    variables = {}
    for name, rec in samples.items():
        out = reco(rec)
        conv = np.asarray(out["status"]) == 0
        v = classic_variables(rec, out, layout)
        variables[name] = {k: np.asarray(x)[conv] for k, x in v.items()}
        variables[name]["n"] = (int(conv.sum()), len(conv))
    lines.append(f"## Part B: 100 TeV protons, 20°, cores {lo:.0f}–{hi:.0f} m, KM2A fit (hadron "
                 f"hypothesis), converged fits; CORSIKA: {PROTON} ({meta['n_triggered']}/"
                 f"{meta['n_thrown']} throws triggered); {time.time() - t0:.0f} s")
    lines.append("# variable              sample    n      median   [16%, 84%]")
    result["part_b"] = {}
    names = [k for k in variables["CORSIKA"] if k != "n"]
    for var in names:
        for name in ("CORSIKA", "OLD", "NEW"):
            x = variables[name].get(var)
            if x is None:
                continue
            x = x[np.isfinite(x)]
            q = np.percentile(x, [16, 50, 84]) if len(x) else [np.nan] * 3
            n = variables[name]["n"]
            lines.append(f"{var:22s} {name:8s} {n[0]:3d}/{n[1]:<3d} {q[1]:8.3f}  [{q[0]:.3f}, {q[2]:.3f}]")
            result["part_b"].setdefault(var, {})[name] = {"n": n, "q16": q[0], "median": q[1],
                                                         "q84": q[2], "values": x.tolist()}
    result["part_b"]["elapsed_s"] = time.time() - t0
    plot(variables, names)


def plot(variables, names):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(names), figsize=(4 * len(names), 3.4))
    for ax, var in zip(np.atleast_1d(axes), names):
        allx = np.concatenate([variables[n][var][np.isfinite(variables[n][var])]
                               for n in variables if var in variables[n]])
        if not len(allx):
            continue
        bins = np.linspace(*np.percentile(allx, [1, 99]), 25)
        for name, color, ls in (("CORSIKA", "k", "-"), ("OLD", "C0", "--"), ("NEW", "C3", "-")):
            x = variables[name].get(var)
            if x is None:
                continue
            ax.hist(x[np.isfinite(x)], bins=bins, histtype="step", density=True, color=color,
                    linestyle=ls, label=name)
        ax.set_xlabel(var)
    np.atleast_1d(axes)[0].legend()
    fig.suptitle("100 TeV protons, 20°: CORSIKA throws vs project simulation (OLD smooth, NEW structure)")
    fig.tight_layout()
    fig.savefig(RESULTS / "hadron_structure.png", dpi=90)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--throws", type=int, default=60, help="events per sample in part B")
    ap.add_argument("--seed", type=int, default=17)
    ap.add_argument("--skip-reco", action="store_true", help="part A only")
    args = ap.parse_args(argv)
    RESULTS.mkdir(parents=True, exist_ok=True)
    lines = [f"# Issue 17 part 0 — hadron structure, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
             f"{machine()}", "# command: benchmarks/hadron_structure.py " + " ".join(argv or [])]
    result = {}
    part_a(lines, result)
    simulated_cell_variance(lines, result)
    print("\n".join(lines), flush=True)
    if not args.skip_reco:
        n0 = len(lines)
        part_b(lines, result, args.throws, args.seed)
        print("\n".join(lines[n0:]))
    (RESULTS / "hadron_structure.txt").write_text("\n".join(lines) + "\n")
    (RESULTS / "hadron_structure.json").write_text(json.dumps(result, indent=1, default=float))


if __name__ == "__main__":
    import sys
    main(sys.argv[1:])
