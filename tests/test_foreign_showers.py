"""KM2A on a shower the project did not simulate (issue 13, small version of
``benchmarks/foreign_showers.py``): the shared CORSIKA 100 TeV proton thrown onto the array with
cores on the ED-free area around WCDA (where landed main failed every throw) and inside the array,
reconstructed by the default pipeline (core scan, time model, straggler pass)."""
from __future__ import annotations

import numpy as np
import pytest

from tests.conftest import SHARED_DATA

pytest.importorskip("corsikaio", reason="corsikaio (test extra) is not installed")
#: heavy end-to-end checks: make test-slow
pytestmark = pytest.mark.slow


PROTON = SHARED_DATA / "corsika" / "proton_100TeV_3000m_DAT000002-32.gz"


@pytest.fixture(scope="module")
def fitted():
    if not PROTON.exists():
        pytest.skip(f"reference CORSIKA file {PROTON} not present (../shared/data or $LHAASO_SHARED_DATA)")
    from detectors.layout import km2a_layout
    from joint.event import pad_batch
    from joint.io.corsika import simulate_corsika
    from joint.io.schema import to_event_batch
    from joint.config import ReconstructionConfig, detector_setup
    from lhaaso_joint.api import reconstruct_batch

    lay = km2a_layout("full")
    parts = [simulate_corsika([PROTON], 8, layout=lay, core_rmin=lo, core_rmax=hi, seed=s)
             for lo, hi, s in ((0.0, 80.0, 3), (250.0, 350.0, 4))]
    import awkward as ak

    rec = {k: (ak.concatenate([p[0][k] for p in parts]) if isinstance(parts[0][0][k], ak.Array)
               else np.concatenate([p[0][k] for p in parts])) for k in parts[0][0]}
    extra = np.concatenate([p[1]["true_md_muons"] for p in parts])
    _, geos, resps = detector_setup(("km2a",))
    batch, _ = pad_batch(to_event_batch(rec, km2a=lay, as_jax=False), 64)
    out = reconstruct_batch(batch, geos, resps, ReconstructionConfig(hypothesis="hadron"))
    return rec, {k: v[:16] for k, v in out.items()}, extra


def test_cores_anywhere_converge_near_the_truth(fitted):
    from detectors.shower import direction

    rec, out, _ = fitted
    n1 = np.asarray(direction(rec["true_zenith"], rec["true_azimuth"]))
    n2 = np.asarray(direction(out["reco_zenith"], out["reco_azimuth"]))
    ang = np.degrees(np.arccos(np.clip((n1 * n2).sum(-1), -1, 1)))
    dcore = np.hypot(out["reco_core_x"] - rec["true_core_x"], out["reco_core_y"] - rec["true_core_y"])
    hole, outer = slice(0, 8), slice(8, 16)
    assert np.sum(out["status"] == 0) >= 14, out["status"]
    assert not np.any(out["status"] == 3)
    # on the ED-free area: found, with the coarse core the missing EDs allow
    assert np.median(dcore[hole]) < 40.0 and np.median(ang[hole]) < 1.0, (dcore[hole], ang[hole])
    # inside the array: LHAASO-class figures for a 100 TeV proton
    assert np.median(dcore[outer]) < 5.0 and np.median(ang[outer]) < 0.4, (dcore[outer], ang[outer])
    # the containment flag tells them apart
    assert np.sum(out["core_inside"][hole]) <= 2 and np.all(out["core_inside"][outer] == 1)
    assert np.all(out["core_ed_gap"][hole][out["core_inside"][hole] == 0] > 25.0)


def test_fitted_muons_follow_the_muons_that_crossed_the_mds(fitted):
    import jax

    from detectors import km2a
    from detectors.layout import km2a_layout
    from detectors.shower import FIELDS, Shower

    rec, out, true_mu = fitted
    geo = km2a.Geometry.from_layout(km2a_layout("full"))
    resp = km2a.Response.nominal(geo)
    s = Shower(**{f: np.asarray(out[f"reco_{f}"]) for f in FIELDS})
    fit_mu = np.asarray(jax.vmap(lambda x: km2a.expected(x, geo, resp).md_muons.sum())(s))
    ok = out["status"] == 0
    ratio = fit_mu[ok] / np.maximum(true_mu[ok], 1.0)
    assert 0.7 < np.median(ratio) < 1.5, ratio
