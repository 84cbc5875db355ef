"""Instrument response, DL3 export for gammapy and the simulated sky (issue 18), on toy event
libraries whose response is known in closed form (tests/irf_toy.py; the real libraries are
simulated and fitted by benchmarks/irf_libraries.py and checked in make test-slow)."""
import os
import subprocess
import sys
import warnings

import numpy as np
import pytest

from irf_toy import toy_library

from analysis.irf import (IRFError, IRFSet, build_irfs, passes_gh_cut, sensitivity_curve,
                          transit_fractions, transit_response)

CRAB = (83.633, 22.014)


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    """IRFs from one pair of toy libraries; a 2-day sky (a bright point source and cosmic
    rays) from another pair (independent seeds), written and exported to DL3."""
    from analysis.dl3 import export_dl3
    from analysis.sky_sim import Source, power_law, simulate_sky, write_sky

    d = tmp_path_factory.mktemp("irf")
    g, p = toy_library("km2a", "gamma", seed=1), toy_library("km2a", "proton", seed=2,
                                                             n_thrown=120000)
    irfs = build_irfs(g, p, "km2a")
    irf_path = str(d / "irf_km2a.fits")
    irfs.write(irf_path)
    # the sky's photons from another library; its cosmic rays from the IRF's proton library on
    # purpose: a test of the two code paths (thinned Poisson process vs the background model),
    # whose expectations are then equal — the independent-seed check is the benchmark's
    sg = toy_library("km2a", "gamma", seed=11)
    src = Source("bright", *CRAB, power_law(2e-12, 10.0, 2.6))
    sky = simulate_sky([src], {"km2a": (sg, p)}, 61000.0, 2, (*CRAB, 5.0), seed=3)
    paths = write_sky(sky, str(d / "sky"))
    store = str(d / "dl3")
    summary = export_dl3(paths, [irf_path], store, CRAB, object_name="toy")
    return dict(irfs=irfs, irf_path=irf_path, g=g, sky=sky, paths=paths, store=store,
                summary=summary, dir=d)


def test_effective_area_is_the_thrown_area_times_efficiency(toy):
    """Σ over event types of A_eff(E, θ band) = area · ⟨cos θ⟩ · ε(E) · 0.9 (γ/hadron cut) for
    the toy's known trigger efficiency ε = 0.8 above 10^4.5 GeV (within 6%)."""
    irfs = toy["irfs"]
    a = sum(x.data for x in irfs.aeff)                       # (E, θ) m²
    e = irfs.aeff[0].axes["energy_true"].center.to_value("TeV")
    z = irfs.aeff[0].axes["offset"].edges.to_value("deg")
    c = np.cos(np.radians(z))
    mean_cos = (2.0 / 3.0) * (c[:-1] ** 3 - c[1:] ** 3) / (c[:-1] ** 2 - c[1:] ** 2)
    sel = (np.log10(e) + 3 > 4.65) & (np.log10(e) + 3 < 5.85)
    expect = 1.0e6 * 0.8 * 0.9 * mean_cos
    ratio = a[sel] / expect[None, :]
    assert abs(np.mean(ratio) - 1) < 0.03, ratio
    assert np.all(np.abs(ratio - 1) < 0.2), ratio          # ~6% Poisson per cell
    # below the toy's threshold (10^4 GeV) nothing
    assert np.all(a[np.log10(e) + 3 < 3.95] == 0)


def test_psf_and_energy_dispersion_match_the_toy(toy):
    """68% radius 1.515 σ (σ = 0.3° per axis), dispersion centred at μ = 1 with σ(log10) 0.1."""
    import astropy.units as u

    irfs = toy["irfs"]
    tr = transit_response(irfs, 1, CRAB[1])
    r68 = tr.psf.containment_radius(0.68, energy_true=[30, 60] * u.TeV, offset=0 * u.deg)
    assert np.allclose(r68.to_value("deg"), 1.515 * 0.3, rtol=0.08), r68
    ed = tr.edisp.data[:, :, 0]
    mu = tr.edisp.axes["migra"].center.value
    e = tr.edisp.axes["energy_true"].center.to_value("TeV")
    i = np.argmin(np.abs(e - 60))
    w = ed[i] * np.diff(tr.edisp.axes["migra"].edges.value)
    m = np.sum(w * np.log10(mu)) / w.sum()
    s = np.sqrt(np.sum(w * (np.log10(mu) - m) ** 2) / w.sum())
    assert abs(m) < 0.02 and abs(s - 0.1) < 0.02, (m, s)


def test_irf_file_round_trip_and_header(toy):
    back = IRFSet.read(toy["irf_path"])
    assert back.detector == "km2a" and back.n_types == toy["irfs"].n_types
    assert np.allclose(back.aeff[1].data, toy["irfs"].aeff[1].data)
    assert np.allclose(back.gh_thresholds, toy["irfs"].gh_thresholds)
    assert back.meta["OFFSET"] == "zenith angle"


def test_transit_fraction_is_the_geometric_hour_angle():
    """Time within 50° of the zenith = 2 h_max / 2π of a sidereal day, cos h_max from the
    spherical triangle (site latitude 29.358°)."""
    lat, zmax = np.radians(29.35767), np.radians(50.0)
    for dec in (0.0, 22.0, 60.0):
        d = np.radians(dec)
        hmax = np.arccos((np.cos(zmax) - np.sin(lat) * np.sin(d)) / (np.cos(lat) * np.cos(d)))
        assert abs(transit_fractions(dec).sum() - hmax / np.pi) < 2e-3


def test_sky_cosmic_rays_match_the_independent_background_model(toy):
    """The DL3 background model predicts the simulated sky's cosmic rays within 8% after the
    same cuts, away from the bright source (the same proton library: the fixture says why);
    near the source the excess is the source's photons."""
    from astropy.coordinates import SkyCoord
    from gammapy.data import DataStore

    from analysis.sky_analysis import make_datasets, map_geometry

    store = DataStore.from_dir(toy["store"])
    geom, et = map_geometry(CRAB, width_deg=6, binsz_deg=0.1)
    ds = make_datasets(store.get_observations(), geom, et, offset_max_deg=5.0)
    sep = geom.to_image().separation(SkyCoord(*CRAB, unit="deg")).deg
    n_src = int((toy["sky"]["km2a"]["truth_source"] == 0).sum())
    assert n_src > 200
    # types 1 and 2: type 0 keeps ~50 toy protons after the cut, too few to compare estimators
    ring = lambda m: sum(m(d)[d.mask_safe.data & (sep > 2.0)[None]].sum() for d in ds
                         if d.name != "KM2A_T0")
    disc = lambda m: sum(m(d)[d.mask_safe.data & (sep < 0.6)[None]].sum() for d in ds)
    n_ring, b_ring = ring(lambda d: d.counts.data), ring(lambda d: d.background.data)
    # measured: the sky +5% above the model (Poisson ±2.4%), a systematic not yet traced
    # (docs/dl3.md); the gammapy fits free the background normalisation per event type
    assert abs(n_ring / b_ring - 1) < 0.08, (n_ring, b_ring)
    excess = disc(lambda d: d.counts.data) - disc(lambda d: d.background.data)
    assert 0.5 * n_src < excess < 1.1 * n_src, (excess, n_src)


def test_dl3_loads_in_gammapy_without_any_warning(toy):
    """DataStore, observations, MapDataset: every warning is an error (no filter)."""
    from gammapy.data import DataStore
    from gammapy.datasets import MapDataset
    from gammapy.makers import MapDatasetMaker

    from analysis.sky_analysis import map_geometry

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        store = DataStore.from_dir(toy["store"])
        obs = store.get_observations()
        geom, et = map_geometry(CRAB, width_deg=4, binsz_deg=0.2)
        d = MapDatasetMaker().run(MapDataset.create(geom, energy_axis_true=et, name="a"), obs[0])
        assert d.counts.data.sum() > 0 and np.isfinite(d.exposure.data).all()
        ev = obs[0].events
        for col in ("EVENT_ID", "TIME", "RA", "DEC", "ENERGY", "EVENT_TYPE", "CORE_X", "GH_SCORE"):
            assert col in ev.table.colnames
        assert (ev.time >= obs[0].gti.time_start[0]).all() and (ev.time <= obs[0].gti.time_stop[0]).all()
    meta = obs[0].events.table.meta
    for k in ("GEOLON", "GEOLAT", "ALTITUDE", "RA_PNT", "DEC_PNT", "LIVETIME", "OBS_ID"):
        assert k in meta
    t = store.obs_table
    assert set(t["EVENT_TYPE"]) == {"KM2A_T0", "KM2A_T1", "KM2A_T2"}
    assert len(t) == 3 * toy["summary"]["transits"]


def test_transit_window_is_centred_on_the_culmination(toy):
    """The source culminates (smallest zenith angle) at the middle of each observation."""
    from astropy.time import Time
    from gammapy.data import DataStore

    from joint.sky import from_icrs

    store = DataStore.from_dir(toy["store"])
    o = store.obs(store.obs_table["OBS_ID"][0])
    t = np.linspace(o.tstart.mjd, o.tstop.mjd, 401)
    zen, _ = from_icrs(*CRAB, Time(t, format="mjd", scale="tt").utc.mjd)
    assert abs(np.argmin(zen) - 200) <= 2
    # the window is computed for the J2000 declination: precession since 2000 moves it ~0.1°
    assert abs(np.degrees(zen[0]) - 50.0) < 0.6 and abs(np.degrees(zen[-1]) - 50.0) < 0.6


def test_rotated_errors_keep_their_size():
    from analysis.irf import angular_distance_deg
    from analysis.sky_sim import _rotate_errors

    rng = np.random.default_rng(0)
    n = 500
    tz, ta = rng.uniform(0.05, 0.8, n), rng.uniform(0, 6.28, n)
    rz, ra = tz + rng.normal(0, 0.01, n), ta + rng.normal(0, 0.02, n)
    ez, ea = rng.uniform(0.05, 0.8, n), rng.uniform(0, 6.28, n)
    nz, na = _rotate_errors(tz, ta, rz, ra, ez, ea)
    assert np.allclose(angular_distance_deg(tz, ta, rz, ra), angular_distance_deg(ez, ea, nz, na),
                       atol=1e-6)


def test_sensitivity_scales_as_root_time_when_background_dominated(toy):
    from analysis.sky_sim import crab_lhaaso

    rs = [transit_response(toy["irfs"], t, CRAB[1]) for t in range(3)]
    edges = np.geomspace(25, 400, 5)
    kw = dict(min_excess_over_background=0.0, min_signal=0.0)   # else the floors rule
    s1, info = sensitivity_curve(rs, crab_lhaaso(), edges, 10 * 365 * rs[0].livetime_s, **kw)
    s4, _ = sensitivity_curve(rs, crab_lhaaso(), edges, 40 * 365 * rs[0].livetime_s, **kw)
    assert np.all(np.isfinite(s1))
    b, sg = info["background"], info["signal"] * s1[None, :]
    bdom = np.all((b > 10 * sg) | (sg == 0), axis=0) & (sg.sum(0) > 0)
    assert bdom.any()
    assert np.allclose((s1 / s4)[bdom], 2.0, rtol=0.1)


def test_gh_cut_keeps_the_stated_efficiency(toy):
    g, irfs = toy["g"], toy["irfs"]
    t, ok = irfs.classify(g["size"], g["reco_log10_energy"], g["gh_score"])
    sel = (t >= 0) & (g["reco_log10_energy"] > 4.3) & (g["reco_log10_energy"] < 5.7)
    assert abs(ok[sel].mean() - 0.9) < 0.02
    assert not passes_gh_cut(irfs.gh_edges, irfs.gh_thresholds, np.array([-1]), np.array([5.0]),
                             np.array([99.0]))[0]


def test_dl3_errors_name_the_file_field_and_entry(toy, tmp_path):
    import uproot

    from analysis.dl3 import export_dl3

    cols = {k: v.copy() for k, v in toy["sky"]["km2a"].items() if not k.startswith("truth_")}
    cols["time_mjd"][7] = -1.0
    bad = str(tmp_path / "bad.root")
    from joint.io.columns import branch_types

    with uproot.recreate(bad) as f:
        f.mktree("reco", branch_types(cols))
        f["reco"].extend(cols)
    with pytest.raises(IRFError, match=r"bad\.root: field 'time_mjd': entry 7"):
        export_dl3([bad], [toy["irf_path"]], str(tmp_path / "x"), CRAB)
    assert not (tmp_path / "x").exists()
    with pytest.raises(IRFError, match="holds a data store already"):
        export_dl3(toy["paths"], [toy["irf_path"]], toy["store"], CRAB)
    with pytest.raises(IRFError, match="no such file"):
        IRFSet.read(str(tmp_path / "none.fits"))


def test_cli_errors_are_one_line(toy, tmp_path):
    env = dict(os.environ)
    r = subprocess.run([sys.executable, "-m", "lhaaso_joint.cli", "dl3", toy["paths"][0], "--irf",
                        str(tmp_path / "missing.fits"), "--ref", "83.6", "22.0", "-o",
                        str(tmp_path / "o")], capture_output=True, text=True, env=env)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "missing.fits: no such file" in lines[0], r.stderr
