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
    # batch size 64 as the README example and the notebook: one compilation serves all
    assert main(["reconstruct", str(src), "-o", str(out), "--batch-size", "64", "--quiet"]) == 0
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
