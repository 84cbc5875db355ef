"""The WFCTA Cherenkov light model against CORSIKA-IACT photon bunches: photon density per m² at
the ground, model and CORSIKA, in the same band (290–430 nm), atmosphere and geometry.

Used by ``tests/test_wfcta_physics.py`` (the cross-checks in ``make test``),
``benchmarks/cherenkov_fit.py`` (the fit of the light model's CORSIKA-fitted parameters) and
``benchmarks/cherenkov_vs_corsika.py`` (any CORSIKA-IACT file, e.g. showers kept outside the
repository). Conventions (docs/cherenkov_light.md):

* **CORSIKA side**: each telescope is a sphere of radius r; the bunches crossing it give the
  horizontal density Σ photons · cos(zenith of the photon) / (π r²). Bunches that carry a
  wavelength are cut to 290–430 nm; bunches without one (λ = 0 in iact.c: "undetermined") carry
  the header's CWAVLG band, scaled to 290–430 nm with the 1/λ² Cherenkov spectrum
  (:func:`band_factor`). CORSIKA-IACT applies no atmospheric extinction unless the input card
  sets CERQEF (checked: :func:`extinction_applied`), so the model is compared before absorption.
* **Model side**: ``detectors.wfcta.photon_density`` of a photon shower with the mean Greisen
  profile at the primary's energy (``profile.gamma_xmax``), the axis through the CORSIKA core at
  the observation level (the model's reference plane is 4400 m, so the model core is shifted
  along the axis), averaged over the sphere's equatorial disc (6 radii × 8 azimuths).

Pure numpy/jax; the readers are ``joint.io.iact``.
"""
from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np

from detectors import cherenkov, profile, wfcta
from detectors.shower import REFERENCE_HEIGHT_M, Shower

__all__ = ["LAMBDA_CUT_NM", "band_factor", "source_direction", "model_shower", "disc_points",
           "model_disc_density", "corsika_density", "extinction_applied", "compare_telescopes",
           "radial_table", "RADIAL_BINS_M", "reference_points"]

LAMBDA_CUT_NM = cherenkov.LAMBDA_MAX_NM
#: core-distance bins of the radial table [m]
RADIAL_BINS_M = (0.0, 30.0, 100.0, 160.0, 300.0)


def band_factor(lo_nm, hi_nm):
    """Photons in [lo, hi] per photon in the model's 290–430 nm (1/λ² spectrum)."""
    ref = 1.0 / cherenkov.LAMBDA_MIN_NM - 1.0 / cherenkov.LAMBDA_MAX_NM
    return (1.0 / lo_nm - 1.0 / hi_nm) / ref


def source_direction(ev):
    """(zenith, azimuth, unit vector towards the source) in CORSIKA's frame."""
    px, py, pz = ev["momentum_gev"]          # pz: downward component (CORSIKA's -pz)
    p = math.sqrt(px * px + py * py + pz * pz)
    zenith = math.acos(pz / p)
    azimuth = math.atan2(-py, -px)
    n = np.array([-px, -py, pz]) / p
    return zenith, azimuth, n


def model_shower(ev, xmax):
    """Model shower whose axis crosses the observation level at the CORSIKA core (the origin):
    the model's axis goes through (core_x, core_y) at z = 0 (4400 m a.s.l.)."""
    zenith, azimuth, n = source_direction(ev)
    core = (REFERENCE_HEIGHT_M - ev["observation_level_m"]) * n[:2] / n[2]
    return Shower.make(dtype=jnp.float64, core_x=core[0], core_y=core[1], zenith=zenith,
                       azimuth=azimuth, log10_energy=math.log10(ev["energy_gev"]), xmax=xmax,
                       log_muon_scale=0.0, t0=0.0)


def disc_points(centre_xy, z, radius, n_r=6, n_phi=8):
    """Midpoint rule on a disc: points (n_r, n_phi, 3) and area weights summing to 1."""
    r = (np.arange(n_r) + 0.5) / n_r * radius
    phi = np.arange(n_phi) / n_phi * 2.0 * np.pi
    rr, pp = np.meshgrid(r, phi, indexing="ij")
    pts = np.stack([centre_xy[0] + rr * np.cos(pp), centre_xy[1] + rr * np.sin(pp),
                    np.full_like(rr, z)], -1)
    return pts, rr / rr.sum()


def model_disc_density(ev, tel, atm, physics):
    """Model photons/m² (290–430 nm) averaged over the telescope sphere's equatorial disc, for
    the photon shower of ``ev`` with the Greisen profile (Xmax = gamma_xmax(E))."""
    lg_e = math.log10(ev["energy_gev"])
    shower = model_shower(ev, float(profile.gamma_xmax(lg_e)))
    obs = ev["observation_level_m"]
    centre = (tel["tel_x_m"] - ev["core_x_m"], tel["tel_y_m"] - ev["core_y_m"])
    pts, w = disc_points(centre, obs + tel["tel_z_m"] - REFERENCE_HEIGHT_M, tel["tel_r_m"])
    dens = wfcta.photon_density(shower, jnp.asarray(pts), physics, atm=atm, ground_m=obs,
                                profile_fn=lambda x: profile.greisen_profile(x, lg_e))
    return float(np.sum(np.asarray(dens) * w))


def corsika_density(ev, tel):
    """CORSIKA's horizontal photons/m² in 290–430 nm through the telescope sphere and its
    statistical error: (density, error, how the band was treated)."""
    area = math.pi * tel["tel_r_m"] ** 2
    lam = tel["wavelength_nm"]
    if len(lam) and np.all(np.isfinite(lam)):
        w = tel["photons"] * tel["cz"] * ((lam >= cherenkov.LAMBDA_MIN_NM) & (lam <= LAMBDA_CUT_NM))
        how = "bunch wavelengths"
    else:
        lo, hi = ev["cherenkov_wavelength_range_nm"]
        w = tel["photons"] * tel["cz"] / band_factor(lo, hi)
        how = f"header CWAVLG {lo:g}-{hi:g} nm / {band_factor(lo, hi):.3f}"
    return float(w.sum() / area), float(math.sqrt(float((w ** 2).sum())) / area), how


def extinction_applied(data) -> bool:
    """Whether the file's input card asks CORSIKA for atmospheric absorption (CERQEF with its
    second flag true); then the bunches are attenuated and a comparison before absorption is
    wrong."""
    card = data.get("input_card") or ""
    for line in card.splitlines():
        words = line.split()
        if words and words[0].upper() == "CERQEF" and len(words) >= 3:
            return words[2].upper().startswith("T")
    return False


def compare_telescopes(data, atm, physics, max_distance_m=RADIAL_BINS_M[-1]):
    """One row per (event, telescope) of a read CORSIKA-IACT file (``joint.io.iact``) whose
    sphere centre lies within ``max_distance_m`` of the core: dicts with event, reuse, energy,
    distance, CORSIKA and model densities [/m², 290–430 nm]."""
    if extinction_applied(data):
        raise ValueError("the file's CERQEF card applies atmospheric absorption; the model is "
                         "compared before absorption")
    rows = []
    for i, ev in enumerate(data["events"]):
        for j, tel in enumerate(ev["telescopes"]):
            d = float(tel["tel_core_distance_m"])
            if d > max_distance_m:
                continue
            ref, err, how = corsika_density(ev, tel)
            rows.append(dict(event=i, telescope=j, reuse=ev.get("reuse", 0),
                             energy_gev=float(ev["energy_gev"]), distance_m=d, corsika=ref,
                             corsika_err=err, model=model_disc_density(ev, tel, atm, physics),
                             band=how))
    return rows


def radial_table(rows, bins=RADIAL_BINS_M):
    """Σ model / Σ CORSIKA per core-distance bin (every telescope counted, dark ones too):
    list of (lo, hi, n_telescopes, corsika_sum, model_sum, ratio, ratio_error)."""
    out = []
    for lo, hi in zip(bins[:-1], bins[1:]):
        sel = [r for r in rows if lo <= r["distance_m"] < hi]
        if not sel:
            continue
        c = sum(r["corsika"] for r in sel)
        m = sum(r["model"] for r in sel)
        e = math.sqrt(sum(r["corsika_err"] ** 2 for r in sel))
        ratio = m / c if c > 0 else math.inf
        out.append((lo, hi, len(sel), c, m, ratio, ratio * e / c if c > 0 else math.inf))
    return out


def reference_points(iact_dir):
    """The five shared CORSIKA-IACT reference densities: [(shower label, event, telescope,
    CORSIKA photons/m² in 290–430 nm)] — the core of the 100 GeV photon (sphere method,
    header band) and the four telescopes of the two 200 GeV photons (bunch wavelengths)."""
    from pathlib import Path

    from joint.io.iact import photon_density_at_core, read_iact_photons

    iact_dir = Path(iact_dir)
    g = read_iact_photons(iact_dir / "gamma_100gev_1216.eventio")
    tt = read_iact_photons(iact_dir / "two_telescopes.dat")
    ev = g["events"][0]
    lo, hi = ev["cherenkov_wavelength_range_nm"]
    pts = [("100 GeV #1", ev, ev["telescopes"][0],
            photon_density_at_core(g)["density_m2"] / band_factor(lo, hi))]
    for e, t in [(0, 0), (0, 1), (1, 0), (1, 1)]:
        evv = tt["events"][e]
        tel = evv["telescopes"][t]
        pts.append((f"200 GeV #{e + 1}", evv, tel, corsika_density(evv, tel)[0]))
    return pts
