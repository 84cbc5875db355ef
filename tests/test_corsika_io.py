"""CORSIKA showers thrown onto KM2A (joint/io/corsika.py, simulate --from-corsika).

Reads ``../shared/data/corsika`` (skipped, saying so, when absent or without ``corsikaio``):
the unthinned 100 TeV proton (zenith 20°, observation level 3000 m) and the thinned file of five
protons at sea level.
"""
from __future__ import annotations

import math

import numpy as np
import pytest

from tests.conftest import SHARED_DATA

corsikaio = pytest.importorskip("corsikaio", reason="corsikaio (test extra) is not installed")

from joint.io import corsika as C  # noqa: E402
from joint.io.errors import EventFileError  # noqa: E402

UNTHINNED = SHARED_DATA / "corsika" / "proton_100TeV_3000m_DAT000002-32.gz"
THINNED = SHARED_DATA / "corsika" / "corsika76900_thin"
C_LIGHT = C.SPEED_OF_LIGHT_M_PER_NS


def _need(path):
    if not path.exists():
        pytest.skip(f"reference CORSIKA file {path} not present (../shared/data or "
                    "$LHAASO_SHARED_DATA)")
    return path


@pytest.fixture(scope="module")
def proton():
    return C.read_corsika(_need(UNTHINNED))[0]


@pytest.fixture(scope="module")
def thinned():
    return C.read_corsika(_need(THINNED))


@pytest.fixture(scope="module")
def layout():
    from detectors.layout import km2a_layout
    return km2a_layout("full")


def _arrival(zenith, azimuth):
    st = math.sin(zenith)
    return np.array([st * math.cos(azimuth), st * math.sin(azimuth), math.cos(zenith)])


# --------------------------------------------------------------------------------------------
# reading
# --------------------------------------------------------------------------------------------
def test_read_unthinned(proton):
    assert not C.detect_thinning(UNTHINNED)
    sh = proton
    assert sh.primary_id == 14 and C.mass_number(sh.primary_id) == 1.0
    assert sh.energy_gev == pytest.approx(1e5)
    assert math.degrees(sh.zenith) == pytest.approx(20.0, abs=1e-4)
    assert sh.obs_level_m == pytest.approx(3000.0)
    assert not sh.thinned and np.all(sh.weight == 1.0)
    # the README's numbers: 29k e±, 1335 μ± (the 75/76 muon-info records are dropped)
    assert np.isin(sh.pid, (2, 3)).sum() == 29218
    assert np.isin(sh.pid, (5, 6)).sum() == 1335
    assert not np.isin(sh.pid, C.INFO_IDS).any()
    # arrival azimuth = CORSIKA phi (direction of travel) + pi: the particles' mean momentum
    # points away from the source
    mean_dir = np.array([np.mean(sh.u), np.mean(sh.v)])
    away = math.atan2(mean_dir[1], mean_dir[0])
    assert abs(np.angle(np.exp(1j * (away + math.pi - sh.arrival_azimuth)))) < math.radians(2)
    # t = 0 is the plane front at the core: the earliest particles within 20 m arrive at ~0
    # (the plane front moving along the travel direction d reaches (x, y) at (x, y)·d / c)
    front = sh.t - (sh.x * math.cos(sh.phi) + sh.y * math.sin(sh.phi)) * math.sin(sh.zenith) \
        / C_LIGHT
    near = np.hypot(sh.x, sh.y) < 20
    assert abs(np.min(front[near])) < 0.5
    assert 0 < np.median(front[near]) < 5


def test_read_thinned(thinned):
    assert C.detect_thinning(THINNED)
    assert len(thinned) == 5
    assert all(s.thinned and s.obs_level_m == pytest.approx(4.0) for s in thinned)
    # the weighted e± and μ± at ground quoted in ../shared/data/README.md
    ne = [s.weight[np.isin(s.pid, (2, 3))].sum() for s in thinned]
    nmu = [s.weight[np.isin(s.pid, (5, 6))].sum() for s in thinned]
    assert ne == pytest.approx([5.75e4, 697, 1150, 725, 1.15e4], rel=0.01)
    assert nmu == pytest.approx([1.418e4, 1105, 809, 640, 2034], rel=0.01)
    assert max(s.weight.max() for s in thinned) > 1000


# --------------------------------------------------------------------------------------------
# geometry: direction convention, crossings
# --------------------------------------------------------------------------------------------
def _plane_fit(pos, t):
    """Least-squares front t = t0 − (x·n)/c + a·r (r from the core in the shower plane),
    iterated with a 3σ outlier cut; pos relative to the core (z included)."""
    n = np.array([0.0, 0.0, 1.0])
    sel = np.ones(t.size, bool)
    for _ in range(8):
        along = pos @ n
        r = np.sqrt(np.maximum((pos ** 2).sum(1) - along ** 2, 0.0))
        a = np.stack([np.ones(t.size), -pos[:, 0] / C_LIGHT, -pos[:, 1] / C_LIGHT, r], 1)
        b = t + pos[:, 2] * n[2] / C_LIGHT
        sol = np.linalg.lstsq(a[sel], b[sel], rcond=None)[0]
        res = b - a @ sol
        sel &= np.abs(res) < max(15.0, 3 * res[sel].std())
        n = np.array([sol[1], sol[2], math.sqrt(max(1 - sol[1] ** 2 - sol[2] ** 2, 0.0))])
    return n


def test_direction_convention_plane_fit(proton, layout):
    """The first-particle times of the hit EDs (real heights, noise, jitter) fit a plane whose
    direction is the truth: mean offsets < 0.35° in zenith and sin θ · azimuth over random
    rotations (measured −0.17°, −0.10°; a 1.43° azimuth convention error would be 0.49°).
    Cores where EDs surround the core within 200 m (the WCDA hole and the array edge make the
    sampling one-sided, which biases this simple fit, not the convention)."""
    cores = [(-350.0, 250.0), (250.0, 350.0), (-300.0, -300.0), (350.0, -250.0)]
    offsets = []
    for i in range(8):
        rng = np.random.default_rng(100 + i)
        core = np.array(cores[i % 4])
        ev = C.throw_shower(proton, layout, core, rng.uniform(0, 2 * np.pi), rng)
        pos = layout.ed_pos[layout.ed_index_of(ev["km2a_ed_id"])] - np.array([*core, 0.0])
        t = ev["km2a_ed_time"]
        sel = (np.abs(t) < 300) & (np.hypot(pos[:, 0], pos[:, 1]) < 200)
        assert sel.sum() > 100
        n = _plane_fit(pos[sel], t[sel])
        tr = ev["truth"]
        zen = math.asin(math.hypot(n[0], n[1]))
        az = math.atan2(n[1], n[0])
        d_az = np.angle(np.exp(1j * (az - tr["true_azimuth"])))
        offsets.append([math.degrees(zen - tr["true_zenith"]),
                        math.degrees(d_az) * math.sin(tr["true_zenith"])])
        sep = math.degrees(math.acos(min(1.0, n @ _arrival(tr["true_zenith"], tr["true_azimuth"]))))
        assert sep < 1.5, (i, sep)
    mean = np.mean(offsets, axis=0)
    assert np.all(np.abs(mean) < 0.35), mean


def test_rotation_adds_to_azimuth(proton, layout):
    a = C.throw_shower(proton, layout, (0.0, 0.0), 0.0, np.random.default_rng(1))
    b = C.throw_shower(proton, layout, (0.0, 0.0), 1.0, np.random.default_rng(1))
    assert a["truth"]["true_azimuth"] == pytest.approx(proton.arrival_azimuth)
    assert np.angle(np.exp(1j * (b["truth"]["true_azimuth"] - a["truth"]["true_azimuth"] - 1.0))) \
        == pytest.approx(0.0, abs=1e-12)
    assert a["truth"]["true_t0"] == 0.0 and np.isnan(a["truth"]["true_xmax"])


def _brute_crossings(x, y, u, v, w, centres, inside):
    """Per-detector number of particles crossing, each particle propagated to each detector's
    own height (plain loops over detectors: independent of the grid hashing)."""
    out = np.zeros(len(centres), np.int64)
    for k, (cx, cy, cz) in enumerate(centres):
        dx = x - cz * u / w - cx
        dy = y - cz * v / w - cy
        out[k] = int(inside(dx, dy).sum())
    return out


def test_md_muons_equal_crossings(proton, layout):
    """true_md_muons and the per-MD counts equal the muons (> 1 GeV) that cross the MDs'
    circles at their heights; every MD with a muon has a signal hit."""
    sh = proton
    cfg = C.CorsikaResponse(noise=False)
    r_md = math.sqrt(layout.md_area / math.pi)
    for i, (core, rot) in enumerate((((10.0, -20.0), 0.3), ((-120.0, 60.0), 2.0))):
        rng = np.random.default_rng(i)
        ev = C.throw_shower(sh, layout, core, rot, rng, cfg)
        ca, sa = math.cos(rot), math.sin(rot)
        mu = np.isin(sh.pid, (5, 6)) & (sh.energy > 1.0)
        x = sh.x[mu] * ca - sh.y[mu] * sa + core[0]
        y = sh.x[mu] * sa + sh.y[mu] * ca + core[1]
        u = sh.u[mu] * ca - sh.v[mu] * sa
        v = sh.u[mu] * sa + sh.v[mu] * ca
        brute = _brute_crossings(x, y, u, v, sh.w[mu], layout.md_pos,
                                 lambda dx, dy: dx * dx + dy * dy <= r_md ** 2)
        assert brute.sum() > 5
        np.testing.assert_array_equal(ev["md_muons"], brute)
        assert ev["true_md_muons"] == brute.sum()
        hit_ids = set(ev["km2a_md_id"].tolist())
        assert set(layout.md_id[brute > 0].tolist()) <= hit_ids
        # 75 PE per muon (track factor ≥ 1), relative width 0.3
        q = ev["km2a_md_pe"].sum()
        assert 0.7 * 75 * brute.sum() < q < 2.0 * 75 * brute.sum()


def test_ed_charged_equal_crossings(proton, layout):
    """The charged particles crossing the 1 m² EDs near the core, counted by brute force at
    each ED's height, equal the per-ED truth of the throw."""
    sh = proton
    core, rot = (-300.0, 250.0), 0.7
    ev = C.throw_shower(sh, layout, core, rot, np.random.default_rng(5),
                        C.CorsikaResponse(noise=False))
    ch = C._is_charged(sh.pid)
    ca, sa = math.cos(rot), math.sin(rot)
    x = sh.x[ch] * ca - sh.y[ch] * sa + core[0]
    y = sh.x[ch] * sa + sh.y[ch] * ca + core[1]
    u = sh.u[ch] * ca - sh.v[ch] * sa
    v = sh.u[ch] * sa + sh.v[ch] * ca
    near = np.flatnonzero(np.hypot(layout.ed_pos[:, 0] - core[0],
                                   layout.ed_pos[:, 1] - core[1]) < 120)
    brute = _brute_crossings(x, y, u, v, sh.w[ch], layout.ed_pos[near],
                             lambda dx, dy: (np.abs(dx) <= 0.5) & (np.abs(dy) <= 0.5))
    assert brute.sum() > 30
    np.testing.assert_array_equal(ev["ed_charged"][near], brute)
    assert ev["true_ed_particles"] >= ev["true_ed_charged"] >= brute.sum()


# --------------------------------------------------------------------------------------------
# thinning
# --------------------------------------------------------------------------------------------
def test_thinned_weights_conserved_on_dense_grid(thinned):
    """Summed expected counts over a dense grid of 1 m² detectors (1 m apart) = Σ weights."""
    sh = thinned[0]
    sel = (np.hypot(sh.x, sh.y) < 60) & (sh.weight > 1)
    assert sel.sum() > 100
    g = np.arange(-80.0, 80.5, 1.0)
    gx, gy = np.meshgrid(g, g, indexing="ij")
    det = np.stack([gx.ravel(), gy.ravel()], 1)
    mu = C.expected_thinned_counts(sh.x[sel], sh.y[sel], sh.weight[sel], det, 1.0)
    assert mu.sum() == pytest.approx(sh.weight[sel].sum(), rel=0.01)
    # one particle, any radius and position: its weight is conserved
    for radius, xy in ((2.0, (0.3, -0.2)), (5.0, (10.1, 3.7)), (17.5, (-20.0, 5.5))):
        mu = C.expected_thinned_counts([xy[0]], [xy[1]], [1000.0], det, 1.0, radius=radius)
        assert mu.sum() == pytest.approx(1000.0, rel=0.01)
        assert np.count_nonzero(mu) >= math.pi * radius ** 2
    assert C.sampling_radius(np.array([0.0, 100.0, 1000.0])) == pytest.approx([2.0, 5.0, 50.0])


def test_thinned_muons_sampled_around_expectation(thinned, layout):
    """Sampled MD muon counts of a thinned shower scatter around the expected Σ w·overlap."""
    sh = thinned[0]                         # 0.98 PeV, 1.4e4 weighted muons
    cfg = C.CorsikaResponse(noise=False)
    mu = np.isin(sh.pid, (5, 6)) & (sh.energy > cfg.md_muon_threshold_gev)
    rng = np.random.default_rng(7)
    n_obs, n_exp = 0.0, 0.0
    for _ in range(12):
        core = C._draw_core(rng, 0.0, 300.0)
        rot = rng.uniform(0, 2 * np.pi)
        ev = C.throw_shower(sh, layout, core, rot, rng, cfg)
        n_obs += ev["true_md_muons"]
        ca, sa = math.cos(rot), math.sin(rot)
        x = sh.x * ca - sh.y * sa + core[0]
        y = sh.x * sa + sh.y * ca + core[1]
        thin = mu & (sh.weight > 1)
        exact = mu & ~thin
        e = C.expected_thinned_counts(x[thin], y[thin], sh.weight[thin], layout.md_pos[:, :2],
                                      layout.md_area, r_core=np.hypot(sh.x, sh.y)[thin])
        n_exp += e.sum()
        n_exp += _brute_crossings(x[exact], y[exact], sh.u[exact] * ca - sh.v[exact] * sa,
                                  sh.u[exact] * sa + sh.v[exact] * ca, sh.w[exact],
                                  layout.md_pos, lambda dx, dy: dx * dx + dy * dy
                                  <= layout.md_area / math.pi).sum()
    assert n_exp > 100
    # Poisson scatter plus the heights (ignored in the expectation): 5 sigma
    assert abs(n_obs - n_exp) < 4 * math.sqrt(n_exp) + 0.05 * n_exp, (n_obs, n_exp)


# --------------------------------------------------------------------------------------------
# records, files, CLI
# --------------------------------------------------------------------------------------------
def test_round_trip_and_extra(tmp_path, layout):
    from joint.io.schema import read_events

    _need(UNTHINNED)
    _need(THINNED)
    out = tmp_path / "cors.root"
    meta = C.write_corsika_events([UNTHINNED, THINNED], out, 3, layout=layout, core_rmax=200.0,
                                  core_rmin=50.0, seed=4)
    assert meta["n_showers"] == 6 and meta["n_thrown"] == 18
    assert meta["n_triggered"] + meta["n_not_triggered"] == 18
    assert meta["obs_level_m"] == [[3000.0], [4.0]]
    rec = read_events(out, km2a=layout)
    extra = C.read_corsika_extra(out)
    n = len(rec["event_id"])
    assert n == meta["n_triggered"] >= 3
    np.testing.assert_array_equal(extra["event_id"], rec["event_id"])
    r = np.hypot(rec["true_core_x"], rec["true_core_y"])
    assert np.all((r >= 50.0) & (r <= 200.0))
    assert np.all(rec["true_t0"] == 0.0) and np.all(np.isnan(rec["true_xmax"]))
    assert set(np.unique(rec["true_mass_number"])) == {1.0}
    assert np.all(extra["true_md_muons"] >= 0) and np.all(extra["true_ed_particles"] > 0)
    # the records written equal those simulated
    rec2, extra2, _ = C.simulate_corsika([UNTHINNED, THINNED], 3, layout=layout, core_rmax=200.0,
                                         core_rmin=50.0, seed=4)
    import awkward as ak
    for k in ("km2a_ed_id", "km2a_ed_time", "km2a_ed_pe", "km2a_md_id", "km2a_md_time",
              "km2a_md_pe"):
        np.testing.assert_array_equal(ak.num(rec[k]), ak.num(rec2[k]))
        np.testing.assert_allclose(ak.to_numpy(ak.flatten(rec[k])),
                                   ak.to_numpy(ak.flatten(rec2[k])), rtol=1e-6)
    np.testing.assert_allclose(rec["true_azimuth"], rec2["true_azimuth"])
    np.testing.assert_array_equal(extra["true_md_muons"], extra2["true_md_muons"])
    # an existing output is kept unless overwrite
    assert C.write_corsika_events([UNTHINNED], out, 1)["skipped"]


def test_cli_from_corsika(tmp_path, capsys):
    from lhaaso_joint.cli import main
    from joint.io.schema import read_events

    _need(UNTHINNED)
    out = tmp_path / "cli.root"
    argv = ["simulate", "--from-corsika", str(UNTHINNED), "--throws", "2", "--core-radius",
            "150", "--core-rmin", "20", "--layout", "3/4", "--seed", "2", "--photon-conversion",
            "0.3", "--md-muon-threshold-gev", "1.5", "--quiet", "-o", str(out)]
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "thrown" in text and "3000 m" in text
    rec = read_events(out)
    assert len(rec["event_id"]) == 2
    mtime = out.stat().st_mtime_ns
    assert main(argv) == 0 and out.stat().st_mtime_ns == mtime          # kept
    assert "skipping" in capsys.readouterr().out
    assert main(argv + ["--overwrite"]) == 0 and out.stat().st_mtime_ns != mtime
    meta = C.read_corsika_extra(out)["meta"]
    assert meta["layout"] == "3/4"
    assert meta["response"]["photon_conversion"] == 0.3
    assert meta["response"]["md_muon_threshold_gev"] == 1.5


def test_bad_inputs(tmp_path, capsys):
    missing = tmp_path / "nope.dat"
    with pytest.raises(EventFileError, match="nope.dat: does not exist"):
        C.read_corsika(missing)
    junk = tmp_path / "junk.dat"
    junk.write_bytes(b"this is not corsika" * 200)
    with pytest.raises(EventFileError, match="junk.dat: is not a CORSIKA particle file"):
        C.read_corsika(junk)
    empty = tmp_path / "empty.dat"
    empty.write_bytes(b"")
    with pytest.raises(EventFileError, match="empty.dat: is empty"):
        C.read_corsika(empty)
    # a run header followed directly by the run end: no showers
    noev = tmp_path / "noevents.dat"
    noev.write_bytes(b"RUNH" + bytes(273 * 4 - 4) + b"RUNE" + bytes(273 * 4 - 4))
    with pytest.raises(EventFileError, match="noevents.dat: has no showers"):
        C.read_corsika(noev)
    # the CLI: one line naming the file, exit status 2
    from lhaaso_joint.cli import main
    assert main(["simulate", "--from-corsika", str(junk), "--throws", "1", "--quiet",
                 "-o", str(tmp_path / "x.root")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "junk.dat" in err[0]
    assert not (tmp_path / "x.root").exists()


def test_wcda_cells(proton, layout):
    """Optional WCDA: cells hit around a core on pond 1, times at the water surface's depth."""
    from detectors.layout import wcda_layout

    wl = wcda_layout()
    core = np.asarray(wl.pond1_centre, float)
    cfg = C.CorsikaResponse(noise=False)
    ev = C.throw_shower(proton, layout, core, 0.4, np.random.default_rng(3), cfg, wcda_layout=wl)
    ids, pe, tm = ev["wcda_id"], ev["wcda_pe"], ev["wcda_time"]
    assert len(ids) > 500 and np.all(np.isin(ids, wl.cell_id))
    assert np.all(pe >= cfg.wcda_threshold_pe) and np.all(np.abs(tm) <= 500)
    assert ev["wcda_particles"].sum() > 1000
    # the cell under the core is hit early (plane front at the pond's depth: the water surface is
    # ~23 m below the plane, so the particles arrive ~ +23 m / (c cos θ) ≈ 80 ns later)
    near = wl.index_of(ids)[np.argmax(pe)]
    assert np.hypot(*(wl.cell_pos[near, :2] - core)) < 60
    assert 40 < np.median(tm[pe > 100]) < 200
