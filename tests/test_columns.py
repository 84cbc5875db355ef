"""The declared schema of the ``reco`` tree (joint/io/columns.py): the docs table is generated
from it, the writer's check rejects undeclared columns and wrong dtypes/shapes, the columns the
code produces are declared, and the QTable gives every column its unit and description."""
from pathlib import Path

import numpy as np
import pytest

from joint.io import columns as C

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs" / "event_files.md"
ALL = C.DETECTORS


# ---------------------------------------------------------------------------------------------
# the declaration itself
# ---------------------------------------------------------------------------------------------

def test_docs_table_is_the_declared_schema():
    """docs/event_files.md holds markdown_table() between the markers (regenerate with
    ``python -m joint.io.columns --write-docs docs/event_files.md``)."""
    assert C.docs_section(DOCS.read_text()) == C.markdown_table(), (
        "docs/event_files.md: the reco column table is stale; run "
        "python -m joint.io.columns --write-docs docs/event_files.md")


def test_a_new_column_makes_the_docs_stale(monkeypatch, tmp_path):
    extra = C.Column("reco_new_thing", np.float64, "m", "a column nobody documented")
    monkeypatch.setattr(C, "COLUMNS", C.COLUMNS + (extra,))
    assert C.docs_section(DOCS.read_text()) != C.markdown_table()
    assert "`reco_new_thing` | float64 | `m` |" in C.markdown_table()
    # --check-docs fails, --write-docs fixes it, then --check-docs passes
    md = tmp_path / "event_files.md"
    md.write_text(DOCS.read_text())
    assert C.main(["--check-docs", str(md)]) == 1
    assert C.main(["--write-docs", str(md)]) == 0
    assert C.main(["--check-docs", str(md)]) == 0
    text = md.read_text()
    assert "reco_new_thing" in text and text.endswith(DOCS.read_text().split(C.DOCS_END)[1])
    md.write_text("# no markers\n")
    with pytest.raises(ValueError, match="markers"):
        C.write_docs(md)


def test_declared_units_parse_and_names_are_unique():
    import astropy.units as u

    names = [c.name for c in C.COLUMNS]
    assert len(names) == len(set(names))
    for c in C.COLUMNS:
        assert c.description.strip(), c.name
        if c.unit is not None:
            u.Unit(c.unit)  # astropy-parsable
    assert u.Unit(C.lookup("nmu").unit) == u.dimensionless_unscaled
    assert u.Unit(C.lookup("reco_xmax").unit) == u.g / u.cm ** 2
    assert [c.name for c in C.COLUMNS if c.unit is None] == ["reco_covariance"]


def test_fields_detectors_truth_and_presence_match_the_code():
    import astropy.units as u

    from detectors.shower import FIELDS, UNITS
    from detectors import registry
    from joint.io.schema import SCALARS, TRUTH, presence

    assert C.FIELDS == tuple(FIELDS)
    assert C.DETECTORS == tuple(registry.BUILT)
    for f in FIELDS:
        if f != "log10_energy":  # "log10(E/GeV)" there, a dimensionless number here
            assert u.Unit(C.FIELD_UNITS[f][0]) == u.Unit(UNITS[f].replace("g/cm2", "g / cm2")), f
    for t in TRUTH:
        assert C.lookup(t).when == "truth" and C.lookup(t).dtype == np.float64
    for p in presence():
        assert C.lookup(p).when == "presence" and C.lookup(p).dtype == np.int8
    for name, dt in SCALARS.items():
        assert C.lookup(name).dtype == np.dtype(dt)
    from joint.sky import SKY_COLUMNS

    assert set(SKY_COLUMNS) == set(C.SKY) and set(SKY_COLUMNS.values()) == {"deg"}


def test_lookup_is_pattern_aware():
    assert C.lookup("nll_wcda").name == "nll_wcda"
    assert "WFCTA" in C.lookup("gof_wfcta").description
    assert C.lookup("gof_km2a_n").dtype == np.int32
    assert C.lookup("calib_wfcta").when == "calib"
    assert C.lookup("hillas_size").shape == ("n_tel",)
    assert C.lookup("reco_covariance").shape == (len(C.FIELDS) ** 2,)
    for bad in ("nll_foo", "nll_{det}", "reco_energy", "hillas"):
        with pytest.raises(KeyError, match=repr(bad).replace("{", r"\{").replace("}", r"\}")):
            C.lookup(bad)


# ---------------------------------------------------------------------------------------------
# the writer's check
# ---------------------------------------------------------------------------------------------

def test_check_rejects_undeclared_columns_and_wrong_dtypes_or_shapes():
    good = C.example_columns(4, ALL, truth=True)
    C.check(good, "chunk 1 of x.root")

    def fails(cols, *words):
        with pytest.raises(ValueError) as e:
            C.check(cols, "chunk 1 of x.root")
        msg = str(e.value)
        assert "\n" not in msg and msg.startswith("chunk 1 of x.root: "), msg
        for w in words:
            assert w in msg, msg

    fails({**good, "reco_energy": np.zeros(4)}, "'reco_energy'", "not declared")
    fails({**good, "nll_foo": np.zeros(4)}, "'nll_foo'", "not declared")
    fails({**good, "status": np.zeros(4)}, "'status'", "float64", "int32")
    fails({**good, "core_inside": np.zeros(4, bool)}, "'core_inside'", "bool", "int8")
    fails({**good, "reco_xmax": np.zeros(4, np.int64)}, "'reco_xmax'", "int64", "float64")
    fails({**good, "reco_covariance": np.zeros((4, 8, 8))}, "'reco_covariance'", "(4, 8, 8)",
          "(n_events, 64)")
    fails({**good, "hillas_size": np.zeros(4)}, "'hillas_size'", "(n_events, n_tel)")
    fails({**good, "nmu": np.zeros((4, 2))}, "'nmu'")
    fails({**good, "nmu": np.zeros(3)}, "'nmu'", "3 rows")
    # the width may differ (the writer casts to the declared dtype)
    C.check({**good, "nmu": np.zeros(4, np.float32), "status": np.zeros(4, np.int64)}, "x")


def test_branch_types_are_the_declared_dtypes_and_round_trip_through_root(tmp_path):
    import uproot

    cols = C.example_columns(5, ALL, n_tel=6, truth=True, presence=ALL, calib=True)
    # as produced by a float32 fit or a careless producer: the declared dtypes win
    cols["nmu"] = np.arange(5, dtype=np.float32)
    cols["hillas_size"] = np.ones((5, 6), np.float32)
    cols["wcda_nhit"] = np.arange(5, dtype=np.int64)
    types = C.branch_types(cols)
    assert types["nmu"] == np.float64 and types["wcda_nhit"] == np.int32
    assert types["core_inside"] == np.int8 and types["event_id"] == np.int64
    assert types["reco_covariance"] == (np.float64, (64,))
    assert types["hillas_size"] == (np.float64, (6,))
    with pytest.raises(ValueError, match="'bogus'"):
        C.branch_types({**cols, "bogus": np.zeros(5)})
    path = tmp_path / "reco.root"
    with uproot.recreate(path) as f:
        f.mktree("reco", types).extend(cols)
    with uproot.open(path) as f:
        back = f["reco"].arrays(library="np")
    assert set(back) == set(cols)
    for k, v in back.items():
        c = C.lookup(k)
        assert v.dtype == c.dtype, k
    assert back["hillas_size"].shape == (5, 6)
    C.check(back, str(path))


def test_expected_names_per_run():
    km2a = set(C.expected_names(("km2a",)))
    assert {"nll_km2a", "gof_km2a", "ne", "nmu", "age", "core_inside", "ra"} <= km2a
    assert not km2a & {"nll_wcda", "compactness", "hillas_size", "true_xmax", "calib_km2a",
                       "present_km2a"}
    both = set(C.expected_names(("wcda", "wfcta"), truth=True, presence=("wfcta",), calib=True))
    assert {"compactness", "hillas_size", "x_dist", "gof_wfcta_dev", "true_mass_number",
            "present_wfcta", "calib_wcda", "calib_wfcta"} <= both
    assert not both & {"ne", "nll_km2a", "present_km2a", "calib_km2a"}
    with pytest.raises(ValueError, match="unknown detectors"):
        C.expected_names(("hawc",))


# ---------------------------------------------------------------------------------------------
# what the code writes is declared (no fit: the producers' outputs or their traced shapes)
# ---------------------------------------------------------------------------------------------

def test_numpy_producers_are_declared():
    """core_quality (KM2A containment flags) and sky_columns as reconstruct_files writes them,
    plus the run/event/time/truth/presence columns copied from a records dict."""
    from detectors import km2a
    from detectors.layout import km2a_layout
    from analysis.observables import core_quality
    from joint.io.schema import TRUTH, presence
    from joint.sky import sky_columns

    geo = km2a.Geometry.from_layout(km2a_layout("full"))
    cols = dict(core_quality(np.array([0.0, 300.0, 2000.0]), np.array([0.0, 50.0, 0.0]), geo))
    reco = {"reco_zenith": np.radians([10.0, 20.0, 30.0]), "reco_azimuth": np.ones(3),
            "reco_covariance": np.zeros((3, 64))}
    cols.update(sky_columns(reco, np.array([60000.1, -1.0, 60000.2])))
    cols.update({"run": np.zeros(3, np.int32), "event_id": np.arange(3, dtype=np.int64),
                 "time_mjd": np.zeros(3)})
    cols.update({t: np.zeros(3) for t in TRUTH})
    cols.update({p: np.ones(3, np.int8) for p in presence()})
    C.check(cols, "producers")
    # the check saw real values: the core 2 km away is outside
    assert cols["core_inside"][2] == 0 and cols["core_edge_distance"][2] < 0


def test_detector_observables_are_declared():
    """The WCDA, WFCTA and KM2A observables of analysis.observables, traced for their names and
    shapes (jax.eval_shape: no compilation) and cast as reconstruct_batch casts them."""
    import jax
    import jax.numpy as jnp

    from detectors.shower import Shower
    from analysis import observables as R
    from detectors.block import ChannelBlock
    from joint.config import ReconstructionConfig, detector_setup

    cfg = ReconstructionConfig(detectors=ALL)
    _, geos, resps = detector_setup(ALL)
    b = 2
    shower = Shower.make(dtype=jnp.float32, core_x=jnp.zeros(b))

    def block(n):
        s = jax.ShapeDtypeStruct
        return ChannelBlock(s((b, n), jnp.float32), s((b, n), jnp.float32), s((b, n), bool),
                            s((b, n), bool), s((b, n), jnp.int32))

    out = {}
    out.update(jax.eval_shape(R._wcda_observables_fn(cfg), shower,
                              block(geos["wcda"].cell_pos.shape[0]), geos["wcda"], resps["wcda"]))
    g = geos["wfcta"]
    n_tel = g.tel_pos.shape[0]
    out.update(jax.eval_shape(R._wfcta_observables_fn(g.col_x.shape[0]), shower,
                              block(n_tel * g.col_x.shape[0] * g.row_y.shape[0]), g,
                              resps["wfcta"]))
    g = geos["km2a"]
    ne, nmu, age = jax.eval_shape(R._observables_fn(cfg), shower, block(g.ed_pos.shape[0]),
                                  block(g.md_pos.shape[0]), g, resps["km2a"])
    out.update({"ne": ne, "nmu": nmu, "age": age})
    cols = {k: np.zeros(v.shape, np.int32 if k == "wcda_nhit" else np.float64)
            for k, v in out.items()}
    assert {"compactness", "pincness", "hillas_size", "hillas_x_dist", "x_dist"} <= set(cols)
    assert cols["hillas_size"].shape == (b, n_tel)
    C.check(cols, "observables")


# ---------------------------------------------------------------------------------------------
# the QTable
# ---------------------------------------------------------------------------------------------

def test_events_table_gives_every_column_its_unit_and_description():
    import astropy.units as u
    from astropy.time import Time

    from joint.sky import events_table

    n = 3
    cols = C.example_columns(n, ALL, n_tel=6, truth=True, presence=ALL, calib=True)
    cols["reco_zenith"] = np.radians([10.0, 20.0, 30.0])
    cols["reco_log10_energy"] = np.array([5.0, 5.5, 6.0])
    cols["time_mjd"] = np.array([60000.1, 60000.2, -1.0])
    cols["nmu"] = np.array([1.5, 2.0, 0.0])
    cols["hillas_psi"][:, 0] = 0.5
    cols["status"] = np.array([0, 1, 2], np.int32)
    for k in C.SKY:
        del cols[k]  # recomputed from the direction and time
    tab = events_table(cols)
    assert tab["nmu"].unit == u.dimensionless_unscaled and tab["nmu"][0].value == 1.5
    assert tab["compactness"].unit == u.dimensionless_unscaled
    assert tab["hillas_size"].unit == u.dimensionless_unscaled
    assert tab["hillas_size"].shape == (n, 6)
    assert tab["hillas_psi"].unit == u.deg  # angles shown in deg
    assert tab["hillas_psi"][0, 0].to_value(u.rad) == pytest.approx(0.5)
    assert tab["hillas_x_dist"].unit == u.g / u.cm ** 2 and tab["x_dist"].unit == u.g / u.cm ** 2
    assert tab["core_edge_distance"].unit == u.m and tab["reco_t0"].unit == u.ns
    assert tab["reco_zenith"].unit == u.deg and tab["true_zenith"].unit == u.deg
    assert tab["energy"].unit == u.TeV and tab["energy"][1].to_value(u.TeV) == pytest.approx(
        10 ** 2.5)
    # integer columns keep their dtype; comparisons and masks work as before
    assert tab["status"].dtype == np.int32 and tab["event_id"].dtype == np.int64
    assert (tab["status"] == 1).tolist() == [False, True, False]
    assert isinstance(tab["time"], Time) and "time_mjd" not in tab.colnames
    assert tab["ra"].unit == u.deg and np.isfinite(tab["ra"][0].value)
    for name in tab.colnames:
        col = tab[name]
        assert col.info.description, name
        if name == "reco_covariance":
            assert col.shape == (n, 8, 8)  # mixed units: a plain column
            continue
        if name != "time":
            assert isinstance(col, u.Quantity), name  # a unit, dimensionless ones explicit
        if name in C._INDEX:
            assert col.info.description == C.lookup(name).description, name
            declared = u.Unit(C.lookup(name).unit)
            assert col.unit.is_equivalent(declared), name
    with pytest.raises(ValueError, match="'reco_energy'.*not declared"):
        events_table({**cols, "reco_energy": np.zeros(n)})
