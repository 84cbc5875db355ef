"""DL3 export: GADF event lists, GTIs, responses and the obs/hdu index tables of drift-scan
observations, for gammapy's ``DataStore`` (``lhaaso-joint dl3``). docs/dl3.md.

Layout (as HAWC's public Crab DL3 for gammapy, A&A 667, A36 (2022): one event type per size
bin, a map-based response per transit):

* one **observation per transit and event type** of the sky region around a reference
  direction (``ref_radec``, the "pointing" of the observation, RA_PNT/DEC_PNT): the events of
  one transit are those within ``max_offset_deg`` of the reference while it is within the
  zenith range of the response (its transit window: culmination ± the hour angle where the
  zenith angle reaches the last zenith band edge);
* the response of every observation of one event type is the **transit-averaged** response at
  the reference's declination (``analysis.irf.transit_response``: zenith bands weighted by the
  time the reference spends in them), flat over the field up to ``max_offset_deg`` — the
  declination dependence inside the field is neglected (docs/dl3.md quantifies it);
* OBS_ID = 100 × transit number + type code (KM2A types 0–9, WCDA types 10–19); the obs-index
  has the extra columns EVENT_TYPE (the name, e.g. KM2A_T1) and DETECTOR;
* LIVETIME = the transit window (no dead time [M]); TIME in s since MJDREF = 51544.5 (TT
  written as the GADF default; event times are converted from UTC).

Events pass the IRF file's quality and γ/hadron cuts (the same function of the reco columns as
the libraries, ``analysis.irf_library.event_variables``). Extras: CORE_X, CORE_Y [m],
GH_SCORE, SIZE, and XMAX [g/cm²] and GAMMANESS where the reco tree has them.
"""
from __future__ import annotations

import os

import numpy as np

from analysis.irf import IRFError, SIDEREAL_DAY_S, transit_response

__all__ = ["export_dl3", "transit_windows", "MJDREF", "TYPE_CODE", "read_reco_columns",
           "detector_of"]

MJDREF = 51544.5          # 2000-01-01 12:00 TT, the GADF/Fermi reference
TYPE_CODE = {"km2a": 0, "wcda": 10}


def detector_of(cols, path):
    has_k, has_w = "ne" in cols, "wcda_nhit" in cols
    if has_k == has_w:
        raise IRFError(f"{path}: cannot tell the detector (columns 'ne' and 'wcda_nhit' "
                       f"{'both present' if has_k else 'both missing'}); pass --detector")
    return "km2a" if has_k else "wcda"


def read_reco_columns(path, detector=None):
    """{column: array} of the ``reco`` tree of a file, checked for what the export needs."""
    from analysis.irf_library import RAW_OBSERVABLES
    from joint.io.errors import open_tree

    path = str(path)
    if not os.path.isfile(path):
        raise IRFError(f"{path}: no such file")
    fin, tree = open_tree(path, "reco")
    with fin:
        cols = {k: np.asarray(v) for k, v in tree.arrays(library="np").items()}
    det = detector or detector_of(cols, path)
    for k in ("event_id", "time_mjd", "ra", "dec", "reco_log10_energy", "status", "reco_core_x",
              "reco_core_y") + RAW_OBSERVABLES[det]:
        if k not in cols:
            raise IRFError(f"{path}: tree 'reco' has no column {k!r}")
    t = np.asarray(cols["time_mjd"], np.float64)
    bad = np.nonzero(~np.isfinite(t) | (t < 0))[0]
    if bad.size:
        raise IRFError(f"{path}: field 'time_mjd': entry {int(bad[0])} is {t[bad[0]]} (no event "
                       "time: a DL3 event list needs real times)")
    return cols, det


def _lst_deg(mjd_utc):
    from astropy.time import Time

    from joint.sky import LHAASO_SITE

    return Time(mjd_utc, format="mjd", scale="utc").sidereal_time(
        "mean", longitude=LHAASO_SITE.lon_deg).deg


def transit_windows(ref_ra, ref_dec, mjd_min, mjd_max, zenith_max_deg):
    """(start, stop, culmination) MJD (UTC) of the transits of (ref_ra, ref_dec) within the
    zenith range that overlap [mjd_min, mjd_max]."""
    from joint.sky import LHAASO_SITE

    lat, d = np.radians(LHAASO_SITE.lat_deg), np.radians(ref_dec)
    c = (np.cos(np.radians(zenith_max_deg)) - np.sin(lat) * np.sin(d)) / (np.cos(lat) * np.cos(d))
    if c >= 1:
        raise IRFError(f"declination {ref_dec}: never within {zenith_max_deg}° of the zenith")
    h_max = np.pi if c <= -1 else np.arccos(c)              # rad of hour angle
    sid = SIDEREAL_DAY_S / 86400.0                          # days
    # culmination: hour angle 0 = LST == RA
    h0 = ((_lst_deg(np.array([mjd_min]))[0] - ref_ra + 180.0) % 360.0) - 180.0
    t_c = mjd_min - h0 / 360.0 * sid
    k0 = int(np.floor((mjd_min - t_c) / sid)) - 1
    k1 = int(np.ceil((mjd_max - t_c) / sid)) + 1
    half = h_max / (2 * np.pi) * sid
    out = []
    for k in range(k0, k1 + 1):
        cul = t_c + k * sid
        lo, hi = cul - half, cul + half
        if hi > mjd_min and lo < mjd_max:
            out.append((lo, hi, cul))
    return out


def _gadf_header(h, hduclas1, **kw):
    h["HDUCLASS"] = "GADF"
    h["HDUDOC"] = "https://github.com/open-gamma-ray-astro/gamma-astro-data-formats"
    h["HDUVERS"] = "0.3"
    h["HDUCLAS1"] = hduclas1
    for k, v in kw.items():
        h[k] = v


def _site_keywords(h):
    from joint.sky import LHAASO_SITE

    h["TELESCOP"] = "LHAASO"
    h["GEOLON"] = (LHAASO_SITE.lon_deg, "deg, site longitude")
    h["GEOLAT"] = (LHAASO_SITE.lat_deg, "deg, site latitude")
    h["ALTITUDE"] = (LHAASO_SITE.height_m, "m, site altitude")


def _time_s(mjd_utc):
    """Seconds since MJDREF (TT) of UTC MJDs."""
    from astropy.time import Time

    return (Time(mjd_utc, format="mjd", scale="utc").tt.mjd - MJDREF) * 86400.0


def export_dl3(reco_files, irf_files, outdir, ref_radec, max_offset_deg=5.0, detector=None,
               object_name="", overwrite=False, log=None) -> dict:
    """Write the DL3 data store of ``reco_files`` (reco trees with sky coordinates and times)
    with the responses of ``irf_files`` (``lhaaso-joint irf``) into ``outdir``.

    Everything is checked before anything is written; ``outdir`` must not hold a data store
    already (unless ``overwrite``); files are written under temporary names and the index
    tables last. Returns a summary dict (observations, events per type)."""
    import astropy.units as u
    from astropy.io import fits
    from astropy.table import Table

    from analysis.irf import IRFSet, angular_distance_deg
    from analysis.irf_library import event_variables

    outdir = str(outdir)
    irfs = {}
    for p in irf_files:
        s = IRFSet.read(p)
        if s.detector in irfs:
            raise IRFError(f"{p}: a second IRF file for {s.detector}")
        irfs[s.detector] = s
    inputs = []
    for p in reco_files:
        cols, det = read_reco_columns(p, detector)
        if det not in irfs:
            raise IRFError(f"{p}: {det} events but no {det} IRF file among {list(irf_files)}")
        inputs.append((p, cols, det))
    index = os.path.join(outdir, "hdu-index.fits.gz")
    if os.path.exists(index) and not overwrite:
        raise IRFError(f"{outdir}: holds a data store already (use --overwrite)")
    ra0, dec0 = float(ref_radec[0]), float(ref_radec[1])
    if not (-90.0 <= dec0 <= 90.0):
        raise IRFError(f"reference declination {dec0}: outside [−90, 90]")
    os.makedirs(outdir, exist_ok=True)

    # events per detector, selected
    sel = {}
    for p, cols, det in inputs:
        v = event_variables(det, cols)
        etype, ok = irfs[det].classify(v["size"], cols["reco_log10_energy"], v["gh_score"])
        ra, dec = np.asarray(cols["ra"], np.float64), np.asarray(cols["dec"], np.float64)
        near = angular_distance_deg(np.radians(90 - dec0), np.radians(ra0),
                                    np.radians(90 - dec), np.radians(ra)) <= max_offset_deg
        m = ok & (v["quality"] == 1) & near
        part = {"time_mjd": np.asarray(cols["time_mjd"], np.float64)[m], "ra": ra[m],
                "dec": dec[m], "energy": 10.0 ** (np.asarray(cols["reco_log10_energy"])[m] - 3.0),
                "type": etype[m], "event_id": np.asarray(cols["event_id"])[m],
                "run": np.asarray(cols.get("run", np.zeros(len(ra))))[m],
                "core_x": np.asarray(cols["reco_core_x"])[m],
                "core_y": np.asarray(cols["reco_core_y"])[m],
                "gh_score": v["gh_score"][m], "size": v["size"][m]}
        for k, name in (("reco_xmax", "xmax"), ("gammaness", "gammaness")):
            if k in cols:
                part[name] = np.asarray(cols[k], np.float64)[m]
        prev = sel.get(det)
        sel[det] = part if prev is None else {k: np.concatenate([prev[k], part[k]])
                                              for k in part if k in prev}
    t_all = np.concatenate([s["time_mjd"] for s in sel.values()]) if sel else np.array([])
    if t_all.size == 0:
        raise IRFError("no event passes the cuts within the field: nothing to export")
    zmax = max(float(s.aeff[0].axes["offset"].edges[-1].to_value("deg")) for s in irfs.values())
    windows = transit_windows(ra0, dec0, t_all.min(), t_all.max(), zmax)

    obs_rows, hdu_rows, written = [], [], {}
    # the transit-averaged response per (detector, type), one file each
    for det, s in irfs.items():
        for t in range(s.n_types):
            r = transit_response(s, t, dec0, max_offset_deg=max_offset_deg + 1.0)
            name = s.type_names()[t]
            fn = f"irf_{name}.fits.gz"
            hdus = [fits.PrimaryHDU()]
            for obj, hname in ((r.aeff, "EFFECTIVE AREA"), (r.edisp, "ENERGY DISPERSION"),
                               (r.psf, "PSF"), (r.bkg, "BACKGROUND")):
                h = obj.to_table_hdu()
                h.name = hname
                hdus.append(h)
            hdus[0].header["DEC_REF"] = (dec0, "deg, declination of the transit average")
            fits.HDUList(hdus).writeto(os.path.join(outdir, fn + ".tmp"), overwrite=True)
            os.replace(os.path.join(outdir, fn + ".tmp"), os.path.join(outdir, fn))
            written[(det, t)] = (fn, r.livetime_s)
    from astropy.coordinates import AltAz, SkyCoord
    from astropy.time import Time

    from joint.sky import site_location

    n_events = {}
    for k, (lo, hi, cul) in enumerate(windows):
        for det, s in sel.items():
            for t in range(irfs[det].n_types):
                m = (s["type"] == t) & (s["time_mjd"] >= lo) & (s["time_mjd"] < hi)
                obs_id = 100 * (k + 1) + TYPE_CODE[det] + t
                name = irfs[det].type_names()[t]
                fn = f"obs_{obs_id:07d}.fits.gz"
                tstart, tstop = _time_s(np.array([lo, hi]))
                tt = _time_s(s["time_mjd"][m]) if m.any() else np.zeros(0)
                order = np.argsort(tt)
                ev = Table()
                ev["EVENT_ID"] = (s["run"][m].astype(np.int64) * 10**9 + s["event_id"][m])[order]
                ev["TIME"] = tt[order] * u.s
                ev["RA"] = s["ra"][m][order] * u.deg
                ev["DEC"] = s["dec"][m][order] * u.deg
                ev["ENERGY"] = s["energy"][m][order] * u.TeV
                ev["EVENT_TYPE"] = np.full(m.sum(), TYPE_CODE[det] + t, np.int16)
                ev["CORE_X"] = s["core_x"][m][order] * u.m
                ev["CORE_Y"] = s["core_y"][m][order] * u.m
                ev["GH_SCORE"] = s["gh_score"][m][order]
                ev["SIZE"] = s["size"][m][order]
                if "xmax" in s:
                    ev["XMAX"] = s["xmax"][m][order] * u.g / u.cm**2
                if "gammaness" in s:
                    ev["GAMMANESS"] = s["gammaness"][m][order]
                eh = fits.table_to_hdu(ev)
                eh.name = "EVENTS"
                livetime = (hi - lo) * 86400.0
                alt_az = SkyCoord(ra0 * u.deg, dec0 * u.deg).transform_to(
                    AltAz(obstime=Time(cul, format="mjd", scale="utc"), location=site_location()))
                kw = dict(OBS_ID=obs_id, TSTART=tstart, TSTOP=tstop, ONTIME=livetime,
                          LIVETIME=livetime, DEADC=1.0, MJDREFI=int(MJDREF),
                          MJDREFF=MJDREF - int(MJDREF), TIMEUNIT="s", TIMESYS="TT",
                          TIMEREF="LOCAL", INSTRUME=det.upper(), OBS_MODE="POINTING",
                          RA_PNT=ra0, DEC_PNT=dec0, EVTTYPE=name, OBJECT=object_name,
                          EQUINOX=2000.0, RADECSYS="ICRS")
                _gadf_header(eh.header, "EVENTS", **kw)
                _site_keywords(eh.header)
                gti = Table({"START": [tstart] * u.s, "STOP": [tstop] * u.s})
                gh = fits.table_to_hdu(gti)
                gh.name = "GTI"
                _gadf_header(gh.header, "GTI", MJDREFI=int(MJDREF), MJDREFF=MJDREF - int(MJDREF),
                             TIMEUNIT="s", TIMESYS="TT", TIMEREF="LOCAL", OBS_ID=obs_id)
                path = os.path.join(outdir, fn)
                fits.HDUList([fits.PrimaryHDU(), eh, gh]).writeto(path + ".tmp", overwrite=True)
                os.replace(path + ".tmp", path)
                obs_rows.append(dict(OBS_ID=obs_id, RA_PNT=ra0, DEC_PNT=dec0,
                                     ZEN_PNT=90.0 - alt_az.alt.deg, ALT_PNT=alt_az.alt.deg,
                                     AZ_PNT=alt_az.az.deg, ONTIME=livetime, LIVETIME=livetime,
                                     DEADC=1.0, TSTART=tstart, TSTOP=tstop,
                                     N_EVENTS=int(m.sum()), EVENT_TYPE=name, DETECTOR=det.upper(),
                                     OBJECT=object_name, TRANSIT=k + 1))
                n_events[name] = n_events.get(name, 0) + int(m.sum())
                irf_fn = written[(det, t)][0]
                for hdu_type, hdu_class, f, hname in (
                        ("events", "events", fn, "EVENTS"), ("gti", "gti", fn, "GTI"),
                        ("aeff", "aeff_2d", irf_fn, "EFFECTIVE AREA"),
                        ("edisp", "edisp_2d", irf_fn, "ENERGY DISPERSION"),
                        ("psf", "psf_table", irf_fn, "PSF"),
                        ("bkg", "bkg_2d", irf_fn, "BACKGROUND")):
                    hdu_rows.append(dict(OBS_ID=obs_id, HDU_TYPE=hdu_type, HDU_CLASS=hdu_class,
                                         FILE_DIR=".", FILE_NAME=f, HDU_NAME=hname))
    obs = Table(rows=obs_rows)
    for c, unit in (("RA_PNT", "deg"), ("DEC_PNT", "deg"), ("ZEN_PNT", "deg"), ("ALT_PNT", "deg"),
                    ("AZ_PNT", "deg"), ("ONTIME", "s"), ("LIVETIME", "s"), ("TSTART", "s"),
                    ("TSTOP", "s")):
        obs[c].unit = unit
    oh = fits.table_to_hdu(obs)
    oh.name = "OBS_INDEX"
    _gadf_header(oh.header, "INDEX", HDUCLAS2="OBS", MJDREFI=int(MJDREF),
                 MJDREFF=MJDREF - int(MJDREF), TIMEUNIT="s", TIMESYS="TT", TIMEREF="LOCAL")
    _site_keywords(oh.header)
    hh = fits.table_to_hdu(Table(rows=hdu_rows))
    hh.name = "HDU_INDEX"
    _gadf_header(hh.header, "INDEX", HDUCLAS2="HDU")
    for h, fn in ((oh, "obs-index.fits.gz"), (hh, "hdu-index.fits.gz")):
        p = os.path.join(outdir, fn)
        fits.HDUList([fits.PrimaryHDU(), h]).writeto(p + ".tmp", overwrite=True)
        os.replace(p + ".tmp", p)
    summary = {"observations": len(obs_rows), "transits": len(windows), "events": n_events,
               "livetime_per_transit_s": float(np.mean([w[1] - w[0] for w in windows]) * 86400.0)}
    if log:
        log(f"DL3: {len(obs_rows)} observations ({len(windows)} transits × event types), "
            f"{sum(n_events.values())} events -> {outdir}")
    return summary
