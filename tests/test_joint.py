"""Issue 6: the joint fit over whichever detectors an event has, the per-detector goodness of fit,
the sky columns and the table API."""
from __future__ import annotations

import numpy as np
import pytest

from lhaaso_joint.cli import main


def test_deviance_moments_match_a_poisson_sample():
    """E and Var of the per-channel Poisson deviance used by gof_<det> against sampling."""
    import jax.numpy as jnp

    from detectors.channel import deviance_sums

    rng = np.random.default_rng(3)
    for mu in (1.5, 4.0, 25.0, 300.0):
        n = rng.poisson(mu, size=200_000).astype(float)
        d, e, v, k = deviance_sums(jnp.asarray(n), jnp.full(n.shape, mu), jnp.ones(n.shape, bool))
        assert int(k) == n.size
        per = 2 * (mu - n + np.where(n > 0, n * np.log(np.maximum(n, 1e-30) / mu), 0.0))
        assert float(d) == pytest.approx(per.sum(), rel=1e-6)
        assert float(e) / n.size == pytest.approx(per.mean(), rel=0.01)
        assert float(v) / n.size == pytest.approx(per.var(), rel=0.03)


@pytest.mark.slow
def test_gof_flags_a_miscalibrated_detector():
    """KM2A fits of showers simulated with the nominal response have gof_km2a ~ N(0, 1); with
    the ED gains spread by a factor e^{0.7 N(0,1)} (unknown to the fit) the deviance is far above its expectation."""
    from helpers import simulate_and_reconstruct

    from detectors import km2a
    from joint.config import detector_setup

    _, geos, _ = detector_setup(("km2a",))
    nominal = km2a.Response.nominal(geos["km2a"])
    gains = np.asarray(nominal.ed_gain) * np.exp(0.7 * np.random.default_rng(1).normal(
        size=np.shape(nominal.ed_gain)))
    res = {}
    for name, resp in (("nominal", nominal), ("spread", nominal._replace(ed_gain=gains))):
        _, out = simulate_and_reconstruct("proton", 5.5, 24, 11, "hadron", batch_size=24,
                                             response=resp)
        ok = (out["status"] == 0) & np.isfinite(out["gof_km2a"])
        assert ok.sum() >= 18
        assert np.all(out["gof_km2a_n"][ok] > 10)
        res[name] = out["gof_km2a"][ok]
    # the bulk is N(0, 1); since issue 13's core scan, one of ~22 nominal events (a core found
    # on the ED-free area around WCDA, off by tens of metres) may keep a large deviance: allow
    # one such outlier, judge the width robustly
    nom = res["nominal"]
    robust = 1.4826 * np.median(np.abs(nom - np.median(nom)))
    assert abs(np.median(nom)) < 1.5 and robust < 2.0 and np.sum(np.abs(nom) > 5) <= 1, nom
    assert np.median(res["spread"]) > 5.0, res["spread"]


@pytest.mark.slow
def test_joint_km2a_wfcta_from_the_command_line_with_nights_without_wfcta(tmp_path, capsys):
    """`simulate --detectors km2a,wfcta` (WFCTA on half the events) then `reconstruct` (joint by
    default): every event is fitted; events without WFCTA have nll_wfcta = 0 and gof_wfcta NaN;
    the output has the sky columns; the table API gives units."""
    import astropy.units as u
    import uproot

    from lhaaso_joint.api import read_reco

    src = tmp_path / "joint.root"
    assert main(["simulate", "--detectors", "km2a,wfcta", "--cores-on", "wfcta", "--primary",
                 "proton", "--n-events", "16", "--log10-energy-range", "6.0", "6.0", "--seed", "8",
                 "--wfcta-clear-fraction", "0.5", "--mjd", "60310.6", "-o", str(src)]) == 0
    out = tmp_path / "reco.root"
    # batch size 16: one compilation serves all (64 would need ~12 GB with the WFCTA nuisances)
    assert main(["reconstruct", str(src), "-o", str(out), "--batch-size", "16", "--quiet"]) == 0
    assert "detectors fitted: km2a,wfcta" in capsys.readouterr().out
    with uproot.open(out) as f:
        t = f["reco"].arrays(library="np")
    assert {"nll_km2a", "nll_wfcta", "gof_km2a", "gof_wfcta", "ra", "dec", "ra_dec_err",
            "glon", "glat", "x_dist"} <= set(t)
    absent = t["present_wfcta"] == 0
    assert 3 <= absent.sum() <= 13
    assert np.all(t["nll_wfcta"][absent] == 0) and np.all(np.isnan(t["gof_wfcta"][absent]))
    ok = t["status"] == 0
    # with images the fit converges; KM2A alone at 1 PeV often ends at MAX_ITER (edm above
    # tolerance, also in float64) with finite results: measured 5 of 5 here, see BENCHMARKS.md
    assert ok[~absent].mean() >= 0.75
    fin = np.isfinite(t["reco_xmax"]) & np.isfinite(t["ra"])
    assert fin.all() and np.all((t["dec"] > -90) & (t["dec"] < 90))
    # WFCTA pins Xmax
    dx = np.abs(t["reco_xmax"] - t["true_xmax"])
    assert np.median(dx[ok & ~absent]) < 40.0, dx[ok & ~absent]
    table = read_reco(out)
    assert table["reco_zenith"].unit == u.deg and table["energy"].unit == u.TeV
    assert table["ra"].unit == u.deg and len(table) == 16


# ---------------------------------------------------------------------------------------------
# the staged joint fit: the ground arrays set the geometry (issue 16)
# ---------------------------------------------------------------------------------------------
def test_staged_config_fixes_the_geometry_only_with_images_and_a_ground_array():
    """WFCTA with a ground array: the final fit frees energy, Xmax, muon scale and t0, not the
    geometry; the ground pre-fit's configuration is the ground arrays' own fit (one compilation
    shared with a KM2A+WCDA fit) and is not staged; without images or with ground_geometry off
    the geometry is free."""
    from joint.config import GROUND_GEOMETRY_FIELDS, config_for
    from joint.pipeline import _ground_config

    three = config_for(("km2a", "wcda", "wfcta"))
    assert three.staged
    free = set(three.fit_config.free)
    assert not free & set(GROUND_GEOMETRY_FIELDS)
    assert {"log10_energy", "xmax", "log_muon_scale", "t0"} <= free
    assert config_for(("km2a", "wfcta")).staged
    ground = _ground_config(three)
    assert ground == config_for(("km2a", "wcda")) and not ground.staged
    assert set(GROUND_GEOMETRY_FIELDS) <= set(ground.fit_config.free)
    off = config_for(("km2a", "wcda", "wfcta"), ground_geometry=False)
    assert not off.staged and set(GROUND_GEOMETRY_FIELDS) <= set(off.fit_config.free)
    assert not config_for(("km2a",)).staged


def test_staged_columns_take_the_ground_fits_geometry_errors_and_status():
    """The staged fit's output: status converged only when both stages converged, the geometry
    errors and covariance block from the ground pre-fit, NaN where the pre-fit failed."""
    from detectors.shower import FIELDS
    from joint.config import GROUND_GEOMETRY_FIELDS
    from joint.pipeline import _staged_columns

    n, k = 4, len(FIELDS)
    rng = np.random.default_rng(2)
    a = rng.normal(size=(n, k, k))
    g_cov = a @ a.transpose(0, 2, 1)
    joint_cov = np.zeros((n, k, k))
    joint_cov[:, 4:, 4:] = np.eye(k - 4)
    out = {"status": np.array([0, 0, 1, 0], np.int32),
           "reco_covariance": joint_cov.reshape(n, -1)}
    pre = {"status": np.array([0, 1, 0, 0], np.int32), "reco_covariance": g_cov.reshape(n, -1)}
    for j, f in enumerate(FIELDS):
        out[f"reco_{f}_err"] = np.zeros(n)
        pre[f"reco_{f}"] = rng.normal(size=n)
        pre[f"reco_{f}_err"] = np.sqrt(g_cov[:, j, j])
    pre["reco_core_x"][3] = np.nan
    _staged_columns(out, pre)
    assert "ground_status" not in out  # not a declared output column (joint.io.columns)
    np.testing.assert_array_equal(out["status"], [0, 1, 1, 0])
    cov = out["reco_covariance"].reshape(n, k, k)
    idx = [FIELDS.index(f) for f in GROUND_GEOMETRY_FIELDS]
    np.testing.assert_array_equal(cov[:3][:, idx][:, :, idx], g_cov[:3][:, idx][:, :, idx])
    assert np.all(np.isnan(cov[3][np.ix_(idx, idx)]))
    np.testing.assert_array_equal(cov[:, 4:, 4:], joint_cov[:, 4:, 4:])
    for f in GROUND_GEOMETRY_FIELDS:
        np.testing.assert_array_equal(out[f"reco_{f}_err"][:3], pre[f"reco_{f}_err"][:3])
        assert np.isnan(out[f"reco_{f}_err"][3])


@pytest.mark.slow
def test_staged_joint_fit_keeps_the_ground_fits_geometry():
    """KM2A+WFCTA protons at 1 PeV (8 events): the staged joint fit's core and direction are
    the KM2A fit's (same events, same configuration as the pre-fit), while its Xmax is the
    images' (closer to the truth than KM2A's)."""
    from joint.config import config_for, detector_setup
    from joint.event import pad_batch
    from joint.io.schema import to_event_batch
    from joint.pipeline import reconstruct_batch
    from joint.simulation import simulate_records

    dets = ("km2a", "wfcta")
    lays, geos, resps = detector_setup(dets)
    rec, _ = simulate_records(8, primary="proton", detectors=dets, cores_on="wfcta", seed=5,
                              log10_energy_range=(6.0, 6.0), km2a_layout=lays["km2a"],
                              wfcta_layout=lays["wfcta"])
    batch, _ = pad_batch(to_event_batch(rec, km2a=lays["km2a"], wfcta=lays["wfcta"],
                                        as_jax=False), 8)
    joint = reconstruct_batch(batch, geos, resps, config_for(dets))
    ground = reconstruct_batch(batch, geos, resps, config_for(("km2a",)))
    assert np.all((joint["status"] != 0) | (ground["status"] == 0))
    for f in ("core_x", "core_y", "zenith", "azimuth"):
        np.testing.assert_allclose(joint[f"reco_{f}"], ground[f"reco_{f}"], rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(joint[f"reco_{f}_err"], ground[f"reco_{f}_err"], rtol=1e-6)
    ok = (joint["status"] == 0)
    assert ok.sum() >= 6
    dx_joint = np.abs(joint["reco_xmax"] - rec["true_xmax"])[ok]
    dx_km2a = np.abs(ground["reco_xmax"] - rec["true_xmax"])[ok]
    assert np.median(dx_joint) < np.median(dx_km2a)
