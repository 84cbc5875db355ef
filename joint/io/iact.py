"""Readers for CORSIKA-IACT / sim_telarray reference files, returned as plain numpy dicts.

Used by the physics cross-checks of the WFCTA model (issue 5). The readers import ``eventio``
and ``json`` lazily and raise :class:`joint.io.errors.EventFileError` (naming the file and the
field) for a missing, unreadable or malformed file.

Conventions established on the files in ``../shared/data/iact`` (tests/test_iact_reference.py)
-------------------------------------------------------------------------------------------

CORSIKA-IACT eventio (:func:`read_iact_photons`). ``eventio`` returns CORSIKA's raw numbers
(lengths in **cm**; it already undoes the int16 "compact bunch" scaling); here every length is
converted to **m**.

- Frame: CORSIKA's, x towards (magnetic) north, y towards west, z up. Zenith and azimuth [rad]
  are those of the primary's *momentum* (the direction the shower travels; the source azimuth
  is azimuth + π). Checked: ``atan2(py, px)`` and ``atan(|p_perp| / pz)`` of the header momenta
  reproduce them.
- Telescopes (``TELESCOPE`` cards) are spheres: centre (x, y) relative to the array reference,
  z of the centre above the observation level, radius r. Both files store z = r = 5 m, although
  the input cards give z = 0 (the card comment "500M RADIUS" of gamma_100gev_1216 is wrong:
  5E2 cm = 5 m).
- Photon bunches of a telescope are every bunch whose straight path meets its sphere. Bunch
  ``x, y`` are where the photon crosses the **horizontal plane through the sphere centre**,
  **relative to the telescope centre** (IACT/ATMO ``struct bunch``: "arrival position relative
  to telescope"). Relative to the shower core:
  ``x_core = x + tel_x - core_x`` with ``core_x = -array_offset_x`` (``eventio``'s ``impact_x``).
  Verified: with this sign the two_telescopes.dat bunches lie 26-131 m from the core
  (telescope centres at 31, 57, 80 and 125 m), as its README says ("31-126 m"); the other
  sign would put them at 30, 63, 79 and 50 m.
- ``cx, cy``: direction cosines of the photon direction (downward-going; cz = sqrt(1-cx²-cy²)).
- ``time_ns``: arrival time [ns] at that plane relative to the IACT reference time; the event's
  ``time_offset_ns`` is that reference counted from the start of tracking. In gamma_100gev_1216
  (TSTART T, atmosphere top 120 km) time_offset = 392942 ns = (120 km - 2200 m) / (c cos θ), i.e.
  the reference is the moment the primary, moving at c, would reach the observation level.
  Bunch times are then negative (-13.5 ... +9.7 ns, mean -11.8 ns): the plane is 5 m above the
  observation level. Use time differences; the absolute zero is a convention.
- ``zem_m``: emission height of the bunch [m above sea level] (not above the observation level).
- ``photons``: photons in the bunch (≤ the CERSIZ bunch size; 0.92-1.0 here).
- ``wavelength_raw``: the bunch's stored wavelength [nm]. 0 = unspecified (gamma_100gev_1216:
  the photons span the CWAVLG range 290-900 nm of the header). Negative values: the IACT
  ``sim_telarray`` headers call a negative wavelength "scattered light", but in
  two_telescopes.dat *every* bunch is negative with |λ| in 290-700 nm = its CWAVLG range, so the
  sign cannot mean scattering there; ``wavelength_nm`` = |λ| (NaN where 0). Interpret with care.
- ``first_interaction_height_m``: |header value| / 100. CORSIKA writes it negative when tracking
  starts at the top of the atmosphere (TSTART); ``tracking_started_at_top`` keeps that flag.

sim_telarray MC-shower profiles (:func:`read_simtel_profiles`), from ``io_hess.h``
(``hess_mc_shower_struct``) and checked on all 59 records:

- ``energy_tev`` [TeV]; ``azimuth_rad`` (N→E) and ``altitude_rad`` [rad] of the shower
  direction as sim_telarray stores them; ``primary_id`` in sim_telarray's convention
  (0 gamma, 1 e-, 2 mu-, 100·A+Z for nuclei, so 101 = proton).
- ``h_first_int_m`` [m a.s.l.], ``depth_start_g_cm2`` [g/cm²], ``hmax_m`` [m a.s.l.].
- Profiles: id 1001 charged particles, 1002 e+ + e-, 1010 Cherenkov photons; id = 1000·k + type
  with k = 1, i.e. binned in **vertical** atmospheric depth [g/cm²] (CORSIKA LONGI with SLANT F).
  ``content[i]`` belongs to the depth ``start + i·step`` (a sampling level, not a bin centre):
  ``xmax`` (charged), ``emax`` (e±) and ``cmax`` (Cherenkov) are exactly the vertex of the parabola
  through the three samples around each profile's maximum on that grid (to < 1e-4 g/cm² for all
  59 records), and the first non-zero charged sample lies at the first level deeper than the
  depth of the first interaction. So xmax/emax/cmax are **vertical** depths, taken from these
  histograms, not independent fits; -20 in the file (profile empty) becomes NaN here.
- Charged / e± profiles: numbers of particles crossing the level. Cherenkov profile: photons
  (in the CWAVLG band of the run) emitted per depth step (``step_g_cm2`` = 10 or 20 g/cm²)
  attributed to that level. ``io_hess.h`` writes "[1/m]" for this profile type, but that cannot
  be: per step, the 500 GeV gammas emit Σ ≈ 4.4e7 photons (≈ 9e4 /GeV in 240-900 nm, as
  expected), and the Cherenkov profile has the shape of the charged one (correlation ≥ 0.989 for
  the 17 gamma showers with ≥ 20 particles at maximum, mean depths within 7 g/cm²), as it must
  per unit depth since (n-1)/ρ is constant; per metre it would be skewed by the air density (×3
  over the profile). At the maximum of the 500 GeV gammas: ≈ 400-450 photons per charged
  particle per g/cm² (240-900 nm).

``gamma_test_mc_shower.npy`` (:func:`read_mc_shower_npy`): structured array with fields
``e`` [TeV], ``h`` first-interaction height [m a.s.l.], ``x`` Xmax [g/cm²] (sim_telarray's
``xmax``, so by the above a vertical depth; the source file's zenith is not stored).
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from joint.io.errors import EventFileError

__all__ = ["read_iact_photons", "photon_density_at_core", "read_simtel_profiles",
           "read_mc_shower_npy"]

_CM = 0.01  # cm -> m


def _check_exists(path: Path) -> None:
    if not path.exists():
        raise EventFileError(path, "<file>", "file does not exist", kind="file")
    if not path.is_file():
        raise EventFileError(path, "<file>", "is not a regular file", kind="file")


# --------------------------------------------------------------------------------------------
# CORSIKA-IACT eventio
# --------------------------------------------------------------------------------------------

def _decode(text) -> str:
    if isinstance(text, (bytes, bytearray)):
        return bytes(text).decode("ascii", errors="replace")
    return str(text)


def _bunch_dict(bunches, tel_xyz, core_xy) -> dict:
    b = np.asarray(bunches)
    x = b["x"].astype(np.float64) * _CM
    y = b["y"].astype(np.float64) * _CM
    cx = b["cx"].astype(np.float64)
    cy = b["cy"].astype(np.float64)
    lam = b["wavelength"].astype(np.float64)
    x_core = x + tel_xyz[0] - core_xy[0]
    y_core = y + tel_xyz[1] - core_xy[1]
    return {
        "x_m": x, "y_m": y,
        "x_core_m": x_core, "y_core_m": y_core,
        "core_distance_m": np.hypot(x_core, y_core),
        "cx": cx, "cy": cy,
        "cz": np.sqrt(np.clip(1.0 - cx * cx - cy * cy, 0.0, 1.0)),
        "time_ns": b["time"].astype(np.float64),
        "zem_m": b["zem"].astype(np.float64) * _CM,
        "photons": b["photons"].astype(np.float64),
        "wavelength_raw": lam,
        "wavelength_nm": np.where(lam == 0.0, np.nan, np.abs(lam)),
    }


def read_iact_photons(path) -> dict:
    """Read a CORSIKA-IACT eventio file (``eventio.IACTFile``) into numpy dicts, lengths in m.

    Returns
    -------
    dict with
      ``path``; ``input_card`` (str); ``run``: {run_number, corsika_version, observation_level_m,
      energy_min_gev, energy_max_gev, energy_slope, n_showers};
      ``atmosphere``: the profile embedded in the file ({id, name, altitude_m, rho_g_cm3,
      thickness_g_cm2, n_minus_1, top_m}) or None;
      ``telescopes``: {x_m, y_m, z_m, r_m} arrays (centre relative to the array reference,
      z above the observation level; see the module docstring);
      ``events``: list, one dict per (shower, reuse), with
        event_number, reuse, particle_id (CORSIKA), energy_gev, zenith_rad, azimuth_rad (of the
        momentum), momentum_gev (px, py, pz, z down positive as CORSIKA's -pz),
        observation_level_m, first_interaction_height_m (≥ 0), tracking_started_at_top,
        core_x_m, core_y_m (core relative to the array reference), array_offset_x_m/_y_m,
        time_offset_ns, reuse_weight, bunch_size, cherenkov_wavelength_range_nm (CWAVLG),
        and ``telescopes``: list (one per telescope, in file order) of {telescope, n_photons,
        n_bunches, tel_x_m, tel_y_m, tel_z_m, tel_r_m, tel_core_distance_m} plus the bunch arrays
        x_m, y_m (relative to the telescope centre), x_core_m, y_core_m, core_distance_m, cx,
        cy, cz, time_ns, zem_m, photons, wavelength_raw, wavelength_nm.

    Raises EventFileError for a missing file, a file that is not CORSIKA-IACT eventio, a
    truncated file, or one with no events.
    """
    path = Path(path)
    _check_exists(path)
    try:
        import eventio
    except ImportError as err:  # pragma: no cover - eventio is a test dependency
        raise EventFileError(path, "<file>", f"needs the 'eventio' package ({err})",
                             kind="file") from None

    try:
        with eventio.IACTFile(str(path)) as f:
            run = f.header
            card = _decode(f.input_card)
            atm = f.atmospheric_profile
            tel = np.asarray(f.telescope_positions)
            raw_events = list(f)
    except EventFileError:
        raise
    except Exception as err:  # noqa: BLE001 - eventio raises ValueError/KeyError/struct errors
        raise EventFileError(path, "<file>", f"cannot be read as CORSIKA-IACT eventio "
                             f"({type(err).__name__}: {err})", kind="file") from None
    if not raw_events:
        raise EventFileError(path, "events", "has no events (no EventHeader before RunEnd)",
                             kind="record")

    telescopes = {k: tel[c].astype(np.float64) * _CM
                  for k, c in (("x_m", "x"), ("y_m", "y"), ("z_m", "z"), ("r_m", "r"))}
    out = {
        "path": str(path),
        "input_card": card,
        "run": {
            "run_number": int(run["run_number"]),
            "corsika_version": float(run["version"]),
            "observation_level_m": float(np.asarray(run["observation_height"])[0]) * _CM,
            "energy_min_gev": float(run["energy_min"]),
            "energy_max_gev": float(run["energy_max"]),
            "energy_slope": float(run["energy_spectrum_slope"]),
            "n_showers": int(run["n_showers"]),
        },
        "atmosphere": None,
        "telescopes": telescopes,
        "events": [],
    }
    if atm is not None:
        out["atmosphere"] = {
            "id": int(atm["id"]),
            "name": _decode(atm["name"]),
            "altitude_m": np.asarray(atm["altitude_km"], np.float64) * 1e3,
            "rho_g_cm3": np.asarray(atm["rho"], np.float64),
            "thickness_g_cm2": np.asarray(atm["thickness"], np.float64),
            "n_minus_1": np.asarray(atm["refractive_index_minus_1"], np.float64),
            "top_m": float(atm["htoa"]) * _CM,
        }

    for ev in raw_events:
        h = ev.header
        core = (float(ev.impact_x) * _CM, float(ev.impact_y) * _CM)
        h1 = float(h["first_interaction_height"])
        e = {
            "event_number": int(ev.event_number),
            "reuse": int(ev.reuse),
            "particle_id": int(h["particle_id"]),
            "energy_gev": float(h["total_energy"]),
            "zenith_rad": float(h["zenith"]),
            "azimuth_rad": float(h["azimuth"]),
            "momentum_gev": (float(h["momentum_x"]), float(h["momentum_y"]),
                             float(h["momentum_minus_z"])),
            "observation_level_m": float(np.asarray(h["observation_height"])[0]) * _CM,
            "first_interaction_height_m": abs(h1) * _CM,
            "tracking_started_at_top": bool(h1 < 0),
            "core_x_m": core[0], "core_y_m": core[1],
            "array_offset_x_m": -core[0], "array_offset_y_m": -core[1],
            "time_offset_ns": float(ev.time_offset),
            "reuse_weight": float(ev.reuse_weight),
            "bunch_size": float(h["cherenkov_bunch_size"]),
            "cherenkov_wavelength_range_nm": (float(h["cherenkov_wavelength_min"]),
                                              float(h["cherenkov_wavelength_max"])),
            "telescopes": [],
        }
        for itel in range(len(telescopes["x_m"])):
            txyz = (telescopes["x_m"][itel], telescopes["y_m"][itel], telescopes["z_m"][itel])
            bunches = ev.photon_bunches.get(itel)
            if bunches is None:
                raise EventFileError(path, f"event {e['event_number']}/telescope {itel}",
                                     "has no photon-bunch block", kind="record")
            t = {
                "telescope": itel,
                "n_photons": float(ev.n_photons.get(itel, np.nan)),
                "n_bunches": int(ev.n_bunches.get(itel, len(bunches))),
                "tel_x_m": txyz[0], "tel_y_m": txyz[1], "tel_z_m": txyz[2],
                "tel_r_m": float(telescopes["r_m"][itel]),
                "tel_core_distance_m": float(math.hypot(txyz[0] - core[0], txyz[1] - core[1])),
            }
            t.update(_bunch_dict(bunches, txyz, core))
            if len(t["photons"]) != t["n_bunches"]:
                raise EventFileError(path, f"event {e['event_number']}/telescope {itel}",
                                     f"holds {len(t['photons'])} bunches, header says "
                                     f"{t['n_bunches']}", kind="record")
            e["telescopes"].append(t)
        out["events"].append(e)
    return out


def photon_density_at_core(path, radius_m: float | None = None, event: int = 0,
                           telescope: int | None = None) -> dict:
    """Cherenkov photon density [photons/m²] near the shower core from the IACT photon bunches.

    ``path`` is an eventio file or the dict of :func:`read_iact_photons`. The telescope is the one
    whose centre is nearest the core (or ``telescope``).

    Methods:
      - ``radius_m=None`` (sphere): every bunch meeting the sphere counts; a sphere shows the area
        π r² to any direction, so Σ photons / (π r²) is the density perpendicular to the
        photons; the horizontal density weights each bunch by its cz (≈ 1 for a vertical shower).
        Without ``telescope``, the core must lie inside the sphere's horizontal disc
        (core distance ≤ r), else ValueError.
      - ``radius_m=R`` (disc): bunches whose crossing of the horizontal plane through the sphere
        centre lies within R of the core, Σ photons / (π R²) (a horizontal density). The disc
        must lie inside the sphere's equatorial disc (core distance + R ≤ r), where the sampling
        is complete; else ValueError. The plane is ``tel_z_m`` (5 m) above the observation
        level: the shift of the light pool over 5 m is cx·5 m ≈ 5 cm here.

    Returns a dict: density_m2 (horizontal), density_perp_m2 (sphere method only, else NaN),
    stat_error_m2 (sqrt(Σ photons²)/area), n_photons, n_bunches, area_m2, method, telescope,
    core_distance_m, radius_m, energy_gev, observation_level_m, mean_emission_height_m (photon-
    weighted, a.s.l.), mean_emission_height_above_obs_m, wavelength_range_nm and
    wavelength_source ('bunches' when the bunches carry wavelengths, else 'header CWAVLG').
    """
    data = path if isinstance(path, dict) else read_iact_photons(path)
    src = data.get("path", "<dict>")
    events = data["events"]
    if not -len(events) <= event < len(events):
        raise IndexError(f"{src}: event index {event} out of range ({len(events)} events)")
    ev = events[event]
    tels = ev["telescopes"]
    if telescope is None:
        itel = int(np.argmin([t["tel_core_distance_m"] for t in tels]))
    else:
        itel = int(telescope)
    t = tels[itel]
    r_tel, d_core = t["tel_r_m"], t["tel_core_distance_m"]

    if radius_m is None:
        if telescope is None and d_core > r_tel:
            raise ValueError(f"{src}: event {event}: no telescope sphere covers the core (nearest, "
                             f"#{itel}, is {d_core:.1f} m away, radius {r_tel:.1f} m); pass "
                             "telescope= to get the density at its position")
        sel = np.ones(len(t["photons"]), bool)
        area = math.pi * r_tel ** 2
        method = "sphere"
    else:
        radius_m = float(radius_m)
        if radius_m <= 0:
            raise ValueError(f"radius_m must be > 0, got {radius_m}")
        if d_core + radius_m > r_tel * (1 + 1e-9):
            raise ValueError(f"{src}: event {event}: a {radius_m} m disc around the core is not "
                             f"inside telescope #{itel}'s sphere (radius {r_tel:.2f} m, centre "
                             f"{d_core:.2f} m from the core): bunches outside the sphere were "
                             "not recorded")
        sel = t["core_distance_m"] <= radius_m
        area = math.pi * radius_m ** 2
        method = "disc"

    w = t["photons"][sel]
    n_ph = float(w.sum())
    if method == "sphere":
        dens_perp = n_ph / area
        dens = float((w * t["cz"][sel]).sum()) / area
    else:
        dens_perp = float("nan")
        dens = n_ph / area
    zem = t["zem_m"][sel]
    mean_zem = float((w * zem).sum() / n_ph) if n_ph > 0 else float("nan")
    lam = t["wavelength_nm"][sel]
    if np.any(np.isfinite(lam)):
        wl = (float(np.nanmin(lam)), float(np.nanmax(lam)))
        wl_src = "bunches"
    else:
        wl = ev["cherenkov_wavelength_range_nm"]
        wl_src = "header CWAVLG (bunch wavelengths unspecified)"
    return {
        "density_m2": dens,
        "density_perp_m2": dens_perp,
        "stat_error_m2": float(math.sqrt(float((w ** 2).sum())) / area),
        "n_photons": n_ph,
        "n_bunches": int(sel.sum()),
        "area_m2": area,
        "method": method,
        "telescope": itel,
        "core_distance_m": d_core,
        "radius_m": r_tel if radius_m is None else radius_m,
        "energy_gev": ev["energy_gev"],
        "observation_level_m": ev["observation_level_m"],
        "mean_emission_height_m": mean_zem,
        "mean_emission_height_above_obs_m": mean_zem - ev["observation_level_m"],
        "wavelength_range_nm": wl,
        "wavelength_source": wl_src,
    }


# --------------------------------------------------------------------------------------------
# sim_telarray MC-shower profiles (JSON extract)
# --------------------------------------------------------------------------------------------

_PROFILE_IDS = {"charged": 1001, "electrons": 1002, "cherenkov": 1010}
_SHOWER_KEYS = ("shower", "primary_id_simtel", "energy_TeV", "azimuth_rad", "altitude_rad",
                "depth_start", "h_first_int_m", "xmax", "hmax_m", "emax", "cmax", "profiles")


def _cwavlg(lines) -> tuple[float, float]:
    for line in lines or ():
        parts = str(line).split()
        if len(parts) >= 3 and parts[0].upper() == "CWAVLG":
            try:
                return float(parts[1]), float(parts[2])
            except ValueError:
                break
    return float("nan"), float("nan")


def read_simtel_profiles(path) -> dict:
    """Read ``simtel_mcshower_profiles.json`` (sim_telarray MC-shower blocks) into numpy arrays.

    The JSON is a list of source files, each {source_file, obsheight_m, corsika_atmosphere,
    corsika_low_E_model, corsika_high_E_model, input_card_lines, showers: [...]}. The result has
    one row per shower (59), with the units of the module docstring:

      source_file (str), obs_height_m, corsika_atmosphere, cwavlg_nm (N, 2) from the input card,
      shower, primary_id (sim_telarray: 0 γ, 1 e-, 2 μ-, 100A+Z), energy_tev, energy_gev,
      azimuth_rad, altitude_rad, zenith_rad = π/2 - altitude, depth_start_g_cm2,
      h_first_int_m, xmax_g_cm2, hmax_m, emax_g_cm2, cmax_g_cm2 (vertical depths; NaN for the
      file's -20 "no maximum"), n_steps, step_g_cm2, and NaN-padded (N, max steps) arrays
      depth_g_cm2 (vertical depth of each sample), charged, electrons (particles crossing the
      level), cherenkov (photons emitted per step), cherenkov_per_g_cm2 (= cherenkov / step);
      plus ``files``: the per-file metadata dicts (without the showers).

    Raises EventFileError for a missing file, invalid JSON, or a record lacking a field.
    """
    import json

    path = Path(path)
    _check_exists(path)
    try:
        with open(path, encoding="utf-8") as fh:
            doc = json.load(fh)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise EventFileError(path, "<file>", f"is not readable JSON ({err})", kind="file") from None
    if not isinstance(doc, list) or not doc:
        raise EventFileError(path, "<top level>", "must be a non-empty list of source files",
                             kind="field")

    rows, files = [], []
    for i, fdesc in enumerate(doc):
        if not isinstance(fdesc, dict) or "showers" not in fdesc:
            raise EventFileError(path, f"[{i}].showers", "is missing", kind="field")
        meta = {k: v for k, v in fdesc.items() if k != "showers"}
        files.append(meta)
        wl = _cwavlg(meta.get("input_card_lines"))
        for j, s in enumerate(fdesc["showers"]):
            for k in _SHOWER_KEYS:
                if k not in s:
                    raise EventFileError(path, f"[{i}].showers[{j}].{k}", "is missing",
                                         kind="field")
            prof = {}
            for p in s["profiles"]:
                for k in ("id", "n_steps", "start", "end", "content"):
                    if k not in p:
                        raise EventFileError(path, f"[{i}].showers[{j}].profiles.{k}",
                                             "is missing", kind="field")
                c = np.asarray(p["content"], np.float64)
                if len(c) != int(p["n_steps"]):
                    raise EventFileError(path, f"[{i}].showers[{j}].profiles[id={p['id']}]",
                                         f"has {len(c)} values, n_steps = {p['n_steps']}",
                                         kind="field")
                prof[int(p["id"])] = (float(p["start"]), float(p["end"]), c)
            for name, pid in _PROFILE_IDS.items():
                if pid not in prof:
                    raise EventFileError(path, f"[{i}].showers[{j}].profiles[id={pid}]",
                                         f"({name}) is missing", kind="field")
            grids = {(prof[pid][0], prof[pid][1], len(prof[pid][2]))
                     for pid in _PROFILE_IDS.values()}
            if len(grids) != 1:
                raise EventFileError(path, f"[{i}].showers[{j}].profiles",
                                     f"have different depth grids {sorted(grids)}", kind="field")
            rows.append((meta, wl, s, prof))

    n = len(rows)
    nmax = max(len(r[3][1001][2]) for r in rows)
    out = {k: np.full((n, nmax), np.nan) for k in
           ("depth_g_cm2", "charged", "electrons", "cherenkov", "cherenkov_per_g_cm2")}

    def col(fn, dtype=np.float64):
        return np.array([fn(r) for r in rows], dtype=dtype)

    def depth_or_nan(v):
        v = float(v)
        return np.nan if v < 0 else v  # sim_telarray writes -20 when the profile is empty

    out.update({
        "source_file": col(lambda r: str(r[0].get("source_file", "")), object),
        "obs_height_m": col(lambda r: r[0].get("obsheight_m", np.nan)),
        "corsika_atmosphere": col(lambda r: r[0].get("corsika_atmosphere", -1), np.int64),
        "cwavlg_nm": np.array([r[1] for r in rows], np.float64).reshape(n, 2),
        "shower": col(lambda r: r[2]["shower"], np.int64),
        "primary_id": col(lambda r: r[2]["primary_id_simtel"], np.int64),
        "energy_tev": col(lambda r: r[2]["energy_TeV"]),
        "azimuth_rad": col(lambda r: r[2]["azimuth_rad"]),
        "altitude_rad": col(lambda r: r[2]["altitude_rad"]),
        "depth_start_g_cm2": col(lambda r: r[2]["depth_start"]),
        "h_first_int_m": col(lambda r: r[2]["h_first_int_m"]),
        "xmax_g_cm2": col(lambda r: depth_or_nan(r[2]["xmax"])),
        "hmax_m": col(lambda r: r[2]["hmax_m"]),
        "emax_g_cm2": col(lambda r: depth_or_nan(r[2]["emax"])),
        "cmax_g_cm2": col(lambda r: depth_or_nan(r[2]["cmax"])),
        "n_steps": col(lambda r: len(r[3][1001][2]), np.int64),
        "step_g_cm2": col(lambda r: (r[3][1001][1] - r[3][1001][0]) / len(r[3][1001][2])),
        "files": files,
    })
    out["energy_gev"] = out["energy_tev"] * 1e3
    out["zenith_rad"] = 0.5 * np.pi - out["altitude_rad"]
    for i, (_, _, _, prof) in enumerate(rows):
        start, _, ch = prof[1001]
        m = len(ch)
        step = out["step_g_cm2"][i]
        out["depth_g_cm2"][i, :m] = start + step * np.arange(m)
        out["charged"][i, :m] = ch
        out["electrons"][i, :m] = prof[1002][2]
        out["cherenkov"][i, :m] = prof[1010][2]
        out["cherenkov_per_g_cm2"][i, :m] = prof[1010][2] / step
    return out


# --------------------------------------------------------------------------------------------
# gamma_test_mc_shower.npy
# --------------------------------------------------------------------------------------------

_NPY_FIELDS = {"e": "energy_tev", "h": "h_first_int_m", "x": "xmax_g_cm2"}


def read_mc_shower_npy(path) -> dict:
    """Read ``gamma_test_mc_shower.npy`` (structured array e, h, x) into a dict of float64 arrays:
    energy_tev, energy_gev, h_first_int_m [m a.s.l.], xmax_g_cm2 (sim_telarray xmax, vertical
    depth). Raises EventFileError for a missing/unreadable file or missing fields."""
    path = Path(path)
    _check_exists(path)
    try:
        arr = np.load(path, allow_pickle=False)
    except Exception as err:  # noqa: BLE001 - numpy raises ValueError/OSError/EOFError
        raise EventFileError(path, "<file>", f"is not a readable .npy array ({err})",
                             kind="file") from None
    names = arr.dtype.names or ()
    for k in _NPY_FIELDS:
        if k not in names:
            raise EventFileError(path, k, f"is missing (fields: {list(names)})", kind="field")
    out = {ours: np.asarray(arr[k], np.float64).ravel() for k, ours in _NPY_FIELDS.items()}
    out["energy_gev"] = out["energy_tev"] * 1e3
    return out
