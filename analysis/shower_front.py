"""Arrival-time structure of air-shower particles at the ground (CORSIKA particle files):
the delay behind a plane front by distance to the axis, for e± and μ±, and the mean delay of the
first of n particles — what a counting detector hit by n particles records. Used by
``benchmarks/corsika_front.py`` and the time-model tests to check ``detectors.km2a``'s front
(spherical leading edge + Linsley thickness) against showers the project did not simulate.

Pure numpy; the CORSIKA header/particle arrays as ``corsikaio`` gives them (lengths cm, times ns).
"""
from __future__ import annotations

import numpy as np

__all__ = ["R_BINS", "N_FIRST", "first_of_n", "shower_rows"]

C_CM_PER_NS = 29.9792458
R_BINS = [(0, 10), (10, 30), (30, 60), (60, 100), (100, 150), (150, 200), (200, 300), (300, 400)]
N_FIRST = (1, 3, 10, 30)
CHARGED = (2, 3, 5, 6, 8, 9, 11, 12, 14, 15)


def _wquantile(x, w, q):
    o = np.argsort(x)
    cw = np.cumsum(w[o])
    return x[o][min(np.searchsorted(cw, q * cw[-1]), len(x) - 1)]


def first_of_n(delays, weights, n, rng, draws=4000):
    """Mean of the earliest of n delays drawn (with the weights) from ``delays``."""
    p = weights / weights.sum()
    idx = rng.choice(len(delays), size=(draws, n), p=p)
    return float(np.mean(delays[idx].min(axis=1)))


def shower_rows(header, particles, thinned, rng):
    """Per distance bin (:data:`R_BINS`): quantiles and mean of the e± and μ± delays [ns] behind
    the plane front through the core (zero: the 5% quantile of the e± within 10 m of the axis,
    or of all e±/μ± within 30 m in a heavily thinned file), the mean first-of-n delays
    (:data:`N_FIRST`), the leading edge L and thickness T of first-of-n ≈ L + T/n, and the
    model's values (``detectors.km2a`` default physics)."""
    from detectors.km2a import DEFAULT_PHYSICS, front_delay, front_thickness

    pid = particles["particle_description"] // 1000
    th, ph = float(header["zenith"]), float(header["azimuth"])
    u = np.array([np.sin(th) * np.cos(ph), np.sin(th) * np.sin(ph)])
    x, y, t = particles["x"], particles["y"], particles["t"]
    w = particles["thinning_weight"] if thinned else np.ones(len(particles))
    along = x * u[0] + y * u[1]  # cm, the z = 0 plane: along the axis = (x·u_h)
    # distance to the axis in the shower plane: |p|² − (p·û)², û the 3-D axis, p = (x, y, 0)
    r = np.sqrt(np.maximum(x * x + y * y - along ** 2, 0.0)) / 100.0
    d = t - along / C_CM_PER_NS
    em = np.isin(pid, (2, 3))
    mu = np.isin(pid, (5, 6))
    near = em & (r < 10)
    if w[near].sum() < 5:  # heavily thinned e.m. part: the muons near the axis set the zero
        near = (em | mu) & (r < 30)
    if not near.any():
        return []
    d = d - _wquantile(d[near], w[near], 0.05)
    phys = DEFAULT_PHYSICS
    rows = []
    for lo, hi in R_BINS:
        rc = 0.5 * (lo + hi)
        row = {"r_lo": lo, "r_hi": hi, "model_edge_ns": float(front_delay(rc, phys)),
               "model_T_ns": float(front_thickness(rc, phys))}
        for sel, name in ((em, "em"), (mu, "mu")):
            m = sel & (r >= lo) & (r < hi)
            if m.sum() < 10:
                continue
            dm, wm = d[m], w[m]
            row[f"{name}_n"] = float(wm.sum())
            row[f"{name}_q10"] = float(_wquantile(dm, wm, 0.10))
            row[f"{name}_median"] = float(_wquantile(dm, wm, 0.50))
            row[f"{name}_mean"] = float(np.average(dm, weights=wm))
            for n in N_FIRST:
                row[f"{name}_first{n}"] = first_of_n(dm, wm, n, rng)
            # leading edge L and thickness T of  first-of-n ≈ L + T/n  (from n = 1 and 30)
            t_fit = (row[f"{name}_first1"] - row[f"{name}_first30"]) / (1.0 - 1.0 / 30.0)
            row[f"{name}_T"] = t_fit
            row[f"{name}_L"] = row[f"{name}_first1"] - t_fit
        for n in N_FIRST:
            row[f"model_first{n}"] = row["model_edge_ns"] + row["model_T_ns"] / n
        rows.append(row)
    return rows




#: distance bins [m] of :func:`lateral_rows`
LATERAL_BINS = ((10, 20), (20, 40), (40, 70), (70, 100), (100, 150), (150, 200), (200, 300),
                (300, 400))


def lateral_rows(header, particles, thinned):
    """Lateral shapes of a CORSIKA shower against the KM2A model's: the (weighted) e± and μ±
    densities in the shower plane per :data:`LATERAL_BINS`, the modified NKG of
    ``detectors.lateral`` (r_m of the model, 136 m) fitted for size and age to the e±, and the
    Greisen muon density (r₀ = 320 m) fitted for its normalisation to the μ± (least squares in
    log density, 10–400 m). Returns (rows, fit) with data/model ratios per bin."""
    import jax.numpy as jnp

    from detectors import lateral
    from detectors.km2a import DEFAULT_PHYSICS

    pid = particles["particle_description"] // 1000
    th, ph = float(header["zenith"]), float(header["azimuth"])
    u = np.array([np.sin(th) * np.cos(ph), np.sin(th) * np.sin(ph)])
    x, y = particles["x"], particles["y"]
    w = particles["thinning_weight"] if thinned else np.ones(len(particles))
    along = x * u[0] + y * u[1]
    r = np.sqrt(np.maximum(x * x + y * y - along ** 2, 0.0)) / 100.0
    em, mu = np.isin(pid, (2, 3)), np.isin(pid, (5, 6))
    rc = np.array([np.sqrt(lo * hi) for lo, hi in LATERAL_BINS])
    area = np.array([np.pi * (hi ** 2 - lo ** 2) for lo, hi in LATERAL_BINS])
    # the ground plane's annulus is an ellipse in the shower plane: counts per shower-plane area
    dens = {}
    for sel, name in ((em, "em"), (mu, "mu")):
        dens[name] = np.array([w[sel & (r >= lo) & (r < hi)].sum() for lo, hi in LATERAL_BINS]) / area
    r_m = DEFAULT_PHYSICS.r_m
    good = dens["em"] > 0
    best = None
    for s in np.arange(0.6, 2.2, 0.02):
        shape = np.asarray(lateral.modified_nkg_density(jnp.asarray(rc), 1.0, s, r_m=r_m))
        lg = np.log(dens["em"][good]) - np.log(shape[good])
        ln_n = lg.mean()
        chi = float(np.sum((lg - ln_n) ** 2))
        if best is None or chi < best[0]:
            best = (chi, s, float(np.exp(ln_n)), shape)
    _, age, n_e, shape_em = best
    shape_mu = np.asarray(lateral.greisen_muon_density(jnp.asarray(rc), 1.0, r0=DEFAULT_PHYSICS.muon_r0))
    gm = dens["mu"] > 0
    n_mu = float(np.exp(np.mean(np.log(dens["mu"][gm]) - np.log(shape_mu[gm])))) if gm.any() else np.nan
    rows = []
    for k, (lo, hi) in enumerate(LATERAL_BINS):
        rows.append({"r_lo": lo, "r_hi": hi, "em_density": float(dens["em"][k]),
                     "mu_density": float(dens["mu"][k]),
                     "em_ratio": float(dens["em"][k] / (n_e * shape_em[k])),
                     "mu_ratio": float(dens["mu"][k] / (n_mu * shape_mu[k])) if gm.any() else np.nan})
    return rows, {"nkg_age": float(age), "nkg_size": n_e, "r_m": r_m, "greisen_n_mu": n_mu,
                  "muon_r0": DEFAULT_PHYSICS.muon_r0}
