"""A toy event library for the IRF / DL3 / sky tests (no fit: the make-test budget): a library of
``analysis.irf_library``'s layout whose response is known in closed form, so that the IRF code
can be checked against it.

* thrown: E⁻¹ in [lo, hi] (log10 GeV), cos²θ uniform up to ``zmax``, cores on ``area``;
* kept (triggered and passing quality): with probability ``eff(E) = clip((lg − lo)/0.5, 0, 1) ×
  q`` — so A_eff(E, θ) = area · cos θ · eff(E) exactly;
* reconstructed direction: a 2-D Gaussian error of ``sigma_deg`` per axis (PSF 68% radius
  1.515 σ); reco energy: log-normal, σ(log10) = ``sigma_lg``, no bias;
* size: log10 Ne = lg − 2.2 (KM2A) or nhit = 30·10^(lg − 3) (WCDA) with 0.1 dex scatter;
* gh_score: N(2, 0.3) for photons, N(0.5, 0.5) for protons, carried by Nμ (KM2A) or the
  compactness (WCDA) so that ``analysis.irf_library.event_variables`` gives it back (quality,
  size and gh_score are computed by that function, as for real libraries).
"""
import numpy as np


def toy_library(detector="km2a", primary="gamma", n_thrown=40000, seed=0, lo=4.0, hi=6.0,
                zmax=50.0, area=1.0e6, q=0.8, sigma_deg=0.3, sigma_lg=0.1):
    rng = np.random.default_rng(seed)
    lg = rng.uniform(lo, hi, n_thrown)
    c2max = np.cos(np.radians(zmax)) ** 2
    zen = np.arccos(np.sqrt(rng.uniform(c2max, 1.0, n_thrown)))
    azi = rng.uniform(0, 2 * np.pi, n_thrown)
    eff = np.clip((lg - lo) / 0.5, 0, 1) * q
    keep = rng.uniform(size=n_thrown) < eff
    lg, zen, azi = lg[keep], zen[keep], azi[keep]
    n = keep.sum()
    s = np.radians(sigma_deg)
    dx, dy = rng.normal(0, s, (2, n))
    # small-angle error in the local (θ, φ sinθ) basis
    rz = np.abs(zen + dx)
    ra = azi + dy / np.maximum(np.sin(zen), 1e-3)
    lib = {"true_log10_energy": lg, "true_zenith": zen, "true_azimuth": azi,
           "true_core_x": rng.uniform(-500, 500, n), "true_core_y": rng.uniform(-500, 500, n),
           "reco_zenith": rz, "reco_azimuth": np.mod(ra, 2 * np.pi),
           "reco_log10_energy": lg + rng.normal(0, sigma_lg, n),
           "reco_core_x": rng.uniform(-400, 400, n), "reco_core_y": rng.uniform(-400, 400, n),
           "status": np.zeros(n, np.int32), "quality": np.ones(n, np.int8)}
    gh = rng.normal(2.0, 0.3, n) if primary == "gamma" else rng.normal(0.5, 0.5, n)
    if detector == "km2a":
        lib["ne"] = 10.0 ** (lg - 2.2 + rng.normal(0, 0.1, n))
        lib["nmu"] = lib["ne"] ** 0.86 * 10.0 ** (-gh)
        from detectors.layout import km2a_layout

        ed = np.asarray(km2a_layout("full").ed_pos)[:, :2]
        ed = ed[np.hypot(ed[:, 0], ed[:, 1]) < 450.0]
        i = rng.integers(0, len(ed), n)                # cores on EDs: all inside the array
        lib["reco_core_x"], lib["reco_core_y"] = ed[i, 0], ed[i, 1]
    else:
        from detectors.layout import wcda_layout

        lay = wcda_layout()
        i = rng.integers(0, lay.n_cells, n)
        lib["reco_core_x"], lib["reco_core_y"] = lay.cell_pos[i, 0], lay.cell_pos[i, 1]
        lib["wcda_nhit"] = np.round(30.0 * 10 ** (lg - 3.0 + rng.normal(0, 0.1, n)))
        lib["compactness"] = 10.0 ** gh
        lib["pincness"] = np.ones(n)
    from analysis.irf_library import event_variables

    lib.update(event_variables(detector, lib))
    lib.update(detector=np.array(detector), primary=np.array(primary), seed=np.array(seed),
               n_thrown=np.array(n_thrown), area_m2=np.array(area), zenith_max_deg=np.array(zmax),
               log10_energy_min=np.array(lo), log10_energy_max=np.array(hi),
               sim_index=np.array(-1.0))
    return lib
