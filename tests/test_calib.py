"""calib.response (learnable parameters, degeneracies, gradients) and calib.db (the database)."""
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from calib import response as R
from calib.db import CalibrationDB, CalibrationDBError, DetectorConfig, INDEX_NAME, make_entry
from calib.periods import responses_for_events
from detectors import km2a, wcda, wfcta
from detectors.layout import km2a_layout

T0 = 59400.0  # MJD = 2021-07-05T00:00:00 UTC


# ---------------------------------------------------------------------------------------------
# fixtures
# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def configs():
    """A period with all three detectors, some dead channels, two WFCTA telescopes."""
    lay = km2a_layout("full")
    return {"km2a": DetectorConfig("km2a", "full", dead={"ed": lay.ed_id[[5, 17]].tolist(),
                                                         "md": lay.md_id[[3]].tolist()}),
            "wcda": DetectorConfig("wcda", dead={"cell": [10, 2000]}),
            "wfcta": DetectorConfig("wfcta", layout_options={"tel_ids": [1, 2]},
                                    dead={"pixel": [[1, 0], [2, 1023]]})}


@pytest.fixture(scope="module")
def geometries(configs):
    return {d: c.geometry() for d, c in configs.items()}


@pytest.fixture(scope="module")
def constraints(geometries):
    return {"km2a": R.km2a_constraints(geometries["km2a"]),
            "wcda": R.wcda_constraints(geometries["wcda"]),
            "wfcta": R.wfcta_constraints(geometries["wfcta"], reference_tel=0)}


def _nominal(det, geometry):
    return R.DETECTOR_MODULES[det].Response.nominal(geometry)


def _random_params(det, nominal, seed, scale=0.3):
    """Raw parameters ~ 0.5 + scale·N(0, 1) (numpy RNG: no compilation per shape)."""
    zero = R.init_params(nominal)
    rng = np.random.default_rng(seed)
    return type(zero)(*(jnp.asarray(scale * rng.normal(size=jnp.shape(z)) + 0.5) for z in zero))


def _calibrated(geometries, constraints, seed=0):
    """{det: Response} of random (projected) parameters, plus a changed non-learned field each."""
    out = {}
    for det, g in geometries.items():
        nom = _nominal(det, g)
        out[det] = R.apply(_random_params(det, nom, seed), nom, constraints[det])
    out["km2a"] = out["km2a"]._replace(ed_threshold_pe=9.5)
    out["wcda"] = out["wcda"]._replace(slewing=(21.0, -0.1, 10.0, -0.08, 24.0))
    out["wfcta"] = out["wfcta"]._replace(nsb_pe=np.full((2, 1024), 17.0))
    return out


# ---------------------------------------------------------------------------------------------
# calib.response
# ---------------------------------------------------------------------------------------------
def test_init_is_nominal(geometries):
    for det, g in geometries.items():
        nom = _nominal(det, g)
        got = R.apply(R.init_params(nom), nom)
        for f in R.LEARNED_FIELDS[det]:
            np.testing.assert_array_equal(np.asarray(getattr(got, f)), getattr(nom, f))


def test_constraints_hold_for_any_params(geometries, constraints):
    """Mean time offset 0 and mean log-gain 0 over the live (reference) channels, whatever the
    raw parameters (which are offset by +0.5 so that an unprojected mean would be ~0.5)."""
    g = geometries
    nom = {d: _nominal(d, g[d]) for d in g}
    r = {d: R.apply(_random_params(d, nom[d], 1), nom[d], constraints[d]) for d in g}
    ed_live, md_live = g["km2a"].ed_live, g["km2a"].md_live
    assert abs(np.mean(np.log(r["km2a"].ed_gain / 40.0)[ed_live])) < 1e-12
    assert abs(np.mean(np.log(r["km2a"].md_gain / 75.0)[md_live])) < 1e-12
    t_all = np.concatenate([np.asarray(r["km2a"].ed_time_offset)[ed_live],
                            np.asarray(r["km2a"].md_time_offset)[md_live]])
    assert abs(t_all.mean()) < 1e-12 and t_all.std() > 0.1
    live = g["wcda"].cell_live
    assert abs(np.mean(np.log(r["wcda"].efficiency)[live])) < 1e-12
    assert abs(np.mean(np.asarray(r["wcda"].time_offset)[live])) < 1e-12
    pix = np.log(np.asarray(r["wfcta"].pixel_gain))
    for t in range(2):
        assert abs(pix[t][g["wfcta"].pixel_live[t]].mean()) < 1e-12
    assert r["wfcta"].tel_efficiency[0] == pytest.approx(1.0, abs=1e-14)   # reference telescope
    assert abs(np.log(r["wfcta"].tel_efficiency[1])) > 1e-3                 # the other is free
    # dead channels are shifted with their group but do not enter the mean
    assert abs(np.mean(np.log(r["km2a"].ed_gain / 40.0))) > 1e-6


def test_constraint_options(geometries):
    g = geometries["km2a"]
    nom = _nominal("km2a", g)
    p = _random_params("km2a", nom, 2)
    c = R.km2a_constraints(g, reference_ed=[3, 7], reference_md=[0], time_mean="kind")
    r = R.apply_km2a(p, nom, c)
    assert np.mean(np.log(np.asarray(r.ed_gain)[[3, 7]] / 40.0)) == pytest.approx(0.0, abs=1e-12)
    assert r.md_gain[0] == pytest.approx(75.0, rel=1e-12)      # one reference channel: held
    assert np.mean(np.asarray(r.ed_time_offset)[g.ed_live]) == pytest.approx(0.0, abs=1e-12)
    assert np.mean(np.asarray(r.md_time_offset)[g.md_live]) == pytest.approx(0.0, abs=1e-12)
    gw = geometries["wcda"]
    nw = _nominal("wcda", gw)
    rw = R.apply_wcda(_random_params("wcda", nw, 3), nw, R.wcda_constraints(gw, efficiency_mean="pond"))
    for pond in (1, 2, 3):
        sel = (np.asarray(gw.pond) == pond) & gw.cell_live
        assert np.mean(np.log(np.asarray(rw.efficiency)[sel])) == pytest.approx(0.0, abs=1e-12)
    with pytest.raises(ValueError, match="dead"):
        R.km2a_constraints(g, reference_ed=[5])                 # channel 5 is dead


def test_apply_extract_round_trip(geometries, constraints):
    for det, g in geometries.items():
        nom = _nominal(det, g)
        p = _random_params(det, nom, 4)
        r = R.apply(p, nom, constraints[det])
        q = R.extract(r, nom)
        # extract∘apply = the projection; apply∘extract = identity on constrained responses
        for a, b in zip(q, R.project_params(p, constraints[det])):
            np.testing.assert_allclose(a, b, atol=1e-12)
        r2 = R.apply(q, nom, constraints[det])
        for f in R.LEARNED_FIELDS[det]:
            np.testing.assert_allclose(getattr(r2, f), getattr(r, f), rtol=1e-12, atol=1e-12)
        # the projection is idempotent
        pp = R.project_params(q, constraints[det])
        for a, b in zip(pp, q):
            np.testing.assert_allclose(a, b, atol=1e-12)


def test_gradient_matches_finite_differences(geometries, constraints):
    """d/dparams of a scalar of the produced Response (float64 central differences along random
    directions); the gradient has no component along the degenerate directions."""
    for det, g in geometries.items():
        nom = _nominal(det, g)
        c = constraints[det]
        fields = R.LEARNED_FIELDS[det]
        rng = np.random.default_rng(9)
        w = {f: rng.normal(size=np.shape(getattr(nom, f))) for f in fields}

        def f(params):
            r = R.apply(params, nom, c)
            return sum(jnp.sum(w[k] * jnp.sin(getattr(r, k))) for k in fields)

        f = jax.jit(f)
        p = _random_params(det, nom, 5, scale=0.1)
        grad = jax.jit(jax.grad(f))(p)
        for seed in range(2):
            v = _random_params(det, nom, 10 + seed, scale=1.0)
            h = 1e-6
            fd = (f(jax.tree.map(lambda a, b: a + h * b, p, v))
                  - f(jax.tree.map(lambda a, b: a - h * b, p, v))) / (2 * h)
            an = sum(jnp.vdot(a, b) for a, b in zip(grad, v))
            assert float(an) == pytest.approx(float(fd), rel=1e-6, abs=1e-8)
        if det == "km2a":
            live = np.concatenate([g.ed_live, g.md_live])
            assert abs(float(jnp.sum(grad.ed_time_offset) + jnp.sum(grad.md_time_offset))) < 1e-9
            assert abs(float(jnp.sum(grad.ed_log_gain))) < 1e-9
            # a dead channel's raw parameter is not used by the live channels' mean
            assert live.sum() < live.size


def test_gradient_through_detector_model():
    """jax.grad of a KM2A expectation w.r.t. the raw time offsets / log gains equals finite
    differences (a small geometry: 40 EDs, 8 MDs)."""
    from detectors.shower import Shower

    lay = km2a_layout("full")
    g = km2a.Geometry(ed_pos=lay.ed_pos[:40], md_pos=lay.md_pos[:8],
                      ed_live=np.ones(40, bool), md_live=np.ones(8, bool))
    nom = km2a.Response.nominal(g)
    shower = Shower(*(jnp.asarray(v) for v in (lay.ed_pos[:40, 0].mean(), lay.ed_pos[:40, 1].mean(),
                                                0.3, 1.0, 5.0, 600.0, 0.0, 0.0)))
    w = np.random.default_rng(0).normal(size=40)

    def f(params):
        resp = R.apply_km2a(params, nom)
        pred = km2a.expected(shower, g, resp).prediction
        return jnp.sum(w * pred.ed_time) + jnp.sum(jnp.log(resp.ed_gain) * w)

    f = jax.jit(f)
    p = _random_params("km2a", nom, 6, scale=0.2)
    v = _random_params("km2a", nom, 7, scale=1.0)
    h = 1e-6
    fd = (f(jax.tree.map(lambda a, b: a + h * b, p, v))
          - f(jax.tree.map(lambda a, b: a - h * b, p, v))) / (2 * h)
    an = sum(jnp.vdot(a, b) for a, b in zip(jax.jit(jax.grad(f))(p), v))
    assert float(an) == pytest.approx(float(fd), rel=1e-6)


def test_nnx_module_trains_parameters_only(geometries):
    import optax
    from flax import nnx

    g = geometries["wcda"]
    nom = _nominal("wcda", g)
    module = R.WCDACalibration(g)
    target = jnp.linspace(-0.2, 0.2, g.cell_pos.shape[0])

    def loss(m):
        return jnp.sum((jnp.log(m(nom).efficiency) - target) ** 2)

    opt = nnx.Optimizer(module, optax.sgd(0.2), wrt=nnx.Param)
    before = jax.tree.map(np.asarray, module.constraints.get_value())
    l0 = loss(module)
    for _ in range(3):
        grads = nnx.grad(loss)(module)
        opt.update(module, grads)
    assert loss(module) < 0.5 * l0
    after = module.constraints.get_value()
    np.testing.assert_array_equal(before.efficiency.weight, after.efficiency.weight)
    eff = np.log(np.asarray(module(nom).efficiency))
    assert abs(eff[g.cell_live].mean()) < 1e-12


# ---------------------------------------------------------------------------------------------
# calib.db
# ---------------------------------------------------------------------------------------------
def test_round_trip_all_detectors(tmp_path, configs, geometries, constraints):
    resp = _calibrated(geometries, constraints)
    entry = make_entry("2021-07_p1", T0, T0 + 10, resp, configs, input_files=["run1.root", "run2.root"],
                       notes="test period")
    db = CalibrationDB(tmp_path)
    db.add(entry)
    db.save()
    assert not list(tmp_path.rglob("*.tmp"))
    index = json.loads((tmp_path / INDEX_NAME).read_text())
    assert index["format_version"] == 1
    rec = index["entries"][0]
    assert rec["valid_from"] == "2021-07-05T00:00:00.000000" and rec["valid_from_mjd"] == T0
    assert set(rec["arrays"]["fields"]["km2a"]) == {"ed_gain", "md_gain", "ed_time_offset",
                                                    "md_time_offset", "ed_threshold_pe"}
    assert rec["software"]["version"] and rec["software"]["package"] == "lhaaso-joint"

    db2 = CalibrationDB(tmp_path)
    (e,) = db2.entries()
    assert e.name == "2021-07_p1" and e.input_files == ("run1.root", "run2.root")
    assert e.notes == "test period" and e.mjd_range == (T0, T0 + 10)
    assert e.detectors == configs
    for det in ("km2a", "wcda", "wfcta"):
        got = db2.response(e, det, geometries[det])
        want = resp[det]
        assert jax.tree.structure(got) == jax.tree.structure(want)
        for f in want._fields:
            np.testing.assert_array_equal(np.asarray(getattr(got, f)), np.asarray(getattr(want, f)))
    assert db2.response(0, "wcda").slewing == (21.0, -0.1, 10.0, -0.08, 24.0)


def _entry(name, lo, hi, dets=("km2a",), **kw):
    configs = {d: DetectorConfig(d, layout_options={"tel_ids": [1]} if d == "wfcta" else {})
               for d in dets}
    resp = {d: R.DETECTOR_MODULES[d].Response.nominal(c.geometry()) for d, c in configs.items()}
    return make_entry(name, lo, hi, resp, configs, **kw)


def test_lookup_by_time(tmp_path):
    from astropy.time import Time

    db = CalibrationDB(tmp_path)
    for name, lo, hi in (("a", T0, T0 + 10), ("b", T0 + 10, T0 + 20), ("c", T0 + 30, T0 + 40)):
        db.add(_entry(name, lo, hi))
    db.save()
    db = CalibrationDB(tmp_path)
    name = lambda t: None if db.for_time(t) is None else db.for_time(t).name  # noqa: E731
    assert name(T0 + 5) == "a"
    assert name(T0) == "a"                      # start is inclusive
    assert name(T0 + 10) == "b"                 # end is exclusive: the next period
    assert name(T0 + 20) is None                # gap
    assert name(T0 + 25) is None
    assert name(T0 - 1e-9) is None
    assert name(T0 + 40) is None
    assert name(Time(T0 + 35, format="mjd", scale="utc")) == "c"
    times = np.array([T0 - 1, T0, T0 + 9.999, T0 + 10, T0 + 25, T0 + 39.99, T0 + 40, np.nan, -1.0])
    idx = db.for_times(times)
    np.testing.assert_array_equal(idx, [-1, 0, 0, 1, -1, 2, -1, -1, -1])
    assert [None if i < 0 else db.entries()[i].name for i in idx] == \
        [name(t) for t in times]


def test_overlap_refused(tmp_path):
    db = CalibrationDB(tmp_path)
    db.add(_entry("a", T0, T0 + 10))
    with pytest.raises(ValueError, match="'b'.*refused.*'a' overlaps"):
        db.add(_entry("b", T0 + 5, T0 + 15))
    with pytest.raises(ValueError, match="same name"):
        db.add(_entry("a", T0 + 50, T0 + 60))
    db.add(_entry("w", T0 + 5, T0 + 15, dets=("wfcta",)))      # other detector: allowed
    assert db.for_time(T0 + 7, "km2a").name == "a" and db.for_time(T0 + 7, "wfcta").name == "w"
    with pytest.raises(ValueError, match="pass detector="):
        db.for_time(T0 + 7)
    db.add(_entry("b", T0 + 5, T0 + 15), replace=True)          # removes "a"
    assert [e.name for e in db.entries()] == ["b", "w"]
    db.save()
    files = sorted(p.name.split(".")[0] for p in (tmp_path / "entries").glob("*.npz"))
    assert files == ["b", "w"]
    with pytest.raises(ValueError, match="must be after"):
        _entry("z", T0 + 5, T0 + 5)


@pytest.fixture()
def saved_db(tmp_path):
    db = CalibrationDB(tmp_path)
    db.add(_entry("a", T0, T0 + 10))
    db.save()
    return tmp_path


@pytest.mark.parametrize("edit, field", [
    (lambda d: "{not json", "<json>"),
    (lambda d: {k: v for k, v in d.items() if k != "format_version"}, "format_version"),
    (lambda d: {**d, "format_version": 2}, "format_version"),
    (lambda d: {**d, "entries": {}}, "entries"),
    (lambda d: _set(d, "valid_to", "2021-13-45T00:00:00"), "entries[0].valid_to"),
    (lambda d: _set(d, "valid_to_mjd", T0 + 11), "entries[0].valid_to_mjd"),
    (lambda d: _set(d, "name", 3), "entries[0].name"),
    (lambda d: _drop(d, "detectors"), "entries[0].detectors"),
    (lambda d: _set(d, "detectors", {"km2a": {"layout": "half", "dead": {}}}), "entries[0].detectors.km2a"),
    (lambda d: _set(d, "arrays", {**d["entries"][0]["arrays"], "file": "gone.npz"}), "entries[0].arrays.file"),
    (lambda d: _set(d, "detectors", {"km2a": {"layout": "full", "dead": {"ed": [99999]}}}),
     "entries[0].detectors.km2a"),
    (lambda d: _set(d, "arrays", {**d["entries"][0]["arrays"], "fields": {"wcda": {}}}),
     "entries[0].arrays.fields.wcda"),
])
def test_malformed_index_names_file_and_field(saved_db, edit, field):
    path = saved_db / INDEX_NAME
    doc = edit(json.loads(path.read_text()))
    path.write_text(doc if isinstance(doc, str) else json.dumps(doc))
    with pytest.raises(CalibrationDBError) as err:
        CalibrationDB(saved_db)
    assert err.value.field == field and err.value.path == str(path)
    assert str(path) in str(err.value) and field in str(err.value)


def _set(doc, key, value):
    doc["entries"][0][key] = value
    return doc


def _drop(doc, key):
    del doc["entries"][0][key]
    return doc


def test_corrupt_array_file(saved_db):
    (npz,) = (saved_db / "entries").glob("*.npz")
    npz.write_bytes(npz.read_bytes()[:-10])
    db = CalibrationDB(saved_db)                      # arrays are read lazily
    with pytest.raises(CalibrationDBError, match="sha256") as err:
        db.response(0, "km2a")
    assert err.value.path == str(npz)


def test_km2a_three_quarter_period(tmp_path):
    lay = km2a_layout("3/4")
    dead_ed, dead_md = lay.ed_id[[0, 100, 3000]], lay.md_id[[7]]
    cfg = DetectorConfig("km2a", "3/4", dead={"ed": dead_ed.tolist(), "md": dead_md.tolist()})
    g = cfg.geometry()
    nom = km2a.Response.nominal(g)
    resp = R.apply_km2a(_random_params("km2a", nom, 8), nom, R.km2a_constraints(g))
    db = CalibrationDB(tmp_path)
    db.add(make_entry("2020-12_3of4", T0 - 200, T0 - 100, {"km2a": resp}, {"km2a": cfg}))
    db.save()
    db = CalibrationDB(tmp_path)
    e = db.for_time(T0 - 150)
    assert e.detectors["km2a"].layout == "3/4"
    g2 = db.geometry(e, "km2a")
    assert g2.ed_pos.shape == (3978, 3) and g2.md_pos.shape == (917, 3)
    np.testing.assert_array_equal(g2.ed_pos, lay.ed_pos)
    np.testing.assert_array_equal(g2.ed_live, g.ed_live)
    assert (~g2.ed_live).sum() == 3 and (~g2.md_live).sum() == 1
    act = e.active_channels("km2a")
    np.testing.assert_array_equal(act["ed"], np.setdiff1d(lay.ed_id, dead_ed))
    np.testing.assert_array_equal(act["md"], np.setdiff1d(lay.md_id, dead_md))
    np.testing.assert_array_equal(db.response(e, "km2a").ed_gain, resp.ed_gain)
    full = km2a.Geometry.from_layout(km2a_layout("full"))
    with pytest.raises(CalibrationDBError, match="3/4") as err:
        db.response(e, "km2a", full)
    assert err.value.field == "km2a.ed_gain"
    assert DetectorConfig.from_geometry("km2a", g2, "3/4") == cfg


def test_responses_for_events(tmp_path):
    db = CalibrationDB(tmp_path)
    db.add(_entry("k1", T0, T0 + 10))
    db.add(_entry("k2", T0 + 10, T0 + 20))
    db.add(_entry("w1", T0 + 5, T0 + 15, dets=("wfcta",)))
    geoms = {"km2a": DetectorConfig("km2a").geometry(),
             "wfcta": DetectorConfig("wfcta", layout_options={"tel_ids": [1]}).geometry()}
    t = np.array([T0 + 1, T0 + 6, T0 + 12, T0 + 16, T0 + 2, T0 + 30])
    with pytest.raises(ValueError, match="no KM2A calibration"):
        responses_for_events(db, t, ("km2a", "wfcta"), geoms)
    groups, resps = responses_for_events(db, t, ("km2a", "wfcta"), geoms, missing="nominal")
    assert [g.tolist() for g in groups] == [[1], [2], [0, 4], [3], [5]]
    np.testing.assert_array_equal(np.sort(np.concatenate(groups)), np.arange(6))
    for g, r in zip(groups, resps):
        assert set(r) == {"km2a", "wfcta"}
        assert isinstance(r["km2a"], km2a.Response) and isinstance(r["wfcta"], wfcta.Response)
        # every event of a group has the same (KM2A entry, WFCTA entry)
        for det in r:
            assert len(set(db.for_times(t[g], det).tolist())) == 1
    keys = [tuple(db.for_times(t[g[:1]], d)[0] for d in ("km2a", "wfcta")) for g in groups]
    assert len(set(keys)) == len(groups) == 5
    assert keys[-1] == (-1, -1)                                 # uncovered events last
    groups, _ = responses_for_events(db, t[:2], ("km2a",), geoms)
    assert [g.tolist() for g in groups] == [[0, 1]]


def test_time_plane_constraint_removes_mean_and_gradient():
    """Default time constraint with a geometry: the least-squares plane (mean and gradient across
    the array) of the live channels' offsets is 0; a pure plane is degenerate and projects to 0."""
    from detectors.layout import km2a_layout

    lay = km2a_layout("full")
    live = np.ones(lay.n_ed, bool)
    live[[4, 100]] = False
    g = km2a.Geometry.from_layout(lay, ed_live=live)
    c = R.km2a_constraints(g)
    pos = np.concatenate([np.asarray(g.ed_pos), np.asarray(g.md_pos)])[:, :2]
    rng = np.random.default_rng(0)
    x = rng.normal(0.0, 5.0, pos.shape[0])
    px = np.asarray(R.project(jnp.asarray(x), c.time))
    np.testing.assert_allclose(np.asarray(R.project(jnp.asarray(px), c.time)), px, atol=1e-9)
    keep = np.concatenate([live, np.ones(lay.n_md, bool)])
    a = np.column_stack([np.ones(keep.sum()), pos[keep]])
    coef = np.linalg.lstsq(a, px[keep], rcond=None)[0]
    np.testing.assert_allclose(coef, 0.0, atol=1e-9)
    plane = 3.0 + 0.01 * pos[:, 0] - 0.02 * pos[:, 1]
    np.testing.assert_allclose(np.asarray(R.project(jnp.asarray(plane), c.time)), 0.0, atol=1e-9)
    # the mean-only option keeps the gradient
    c1 = R.km2a_constraints(g, time_mean="detector")
    assert np.abs(np.asarray(R.project(jnp.asarray(plane), c1.time))).max() > 1.0
    with pytest.raises(ValueError, match="plane.*geometry"):
        R.km2a_constraints(n_ed=10, n_md=2, time_mean="plane")
