"""Event files: G4KM2A LHEvent reader (frame and azimuth checks), own schema round trip,
bad-input errors, dense blocks."""
import awkward as ak
import numpy as np
import pytest
import uproot

from detectors.layout import km2a_layout, wfcta_layout
from joint.event import build_block, pad_batch, stack_events
from joint.io.errors import EventFileError
from joint.io.lhevent import mass_number_from_corsika_id, read_lhevent
from joint.io.schema import read_events, to_event_batch, to_events, write_events

C_LIGHT = 0.299792458  # m/ns


@pytest.fixture(scope="module")
def km2a():
    return km2a_layout("full")


@pytest.fixture(scope="module")
def mc_records(shared_data, km2a):
    return read_lhevent(shared_data / "lhaaso" / "km2a" / "KM2AMCTest.root", km2a=km2a)


@pytest.fixture(scope="module")
def mc_batch(mc_records, km2a):
    return to_event_batch(mc_records, km2a=km2a, as_jax=False)


def _largest(batch, n=12):
    total = batch.km2a_ed.signal.sum(axis=1)
    return np.argsort(-total)[:n]


def test_lhevent_contents(mc_records, km2a):
    assert len(mc_records["event_id"]) == 53
    ids = ak.to_numpy(ak.flatten(mc_records["km2a_ed_id"]))
    assert np.isin(ids, km2a.ed_id).all()
    assert np.isin(ak.to_numpy(ak.flatten(mc_records["km2a_md_id"])), km2a.md_id).all()
    assert "wcda_id" not in mc_records  # HitsW is empty in this file
    np.testing.assert_array_equal(mc_records["true_mass_number"], 0.0)  # all gammas
    np.testing.assert_allclose(np.degrees(mc_records["true_zenith"]), 20.0, atol=0.01)
    np.testing.assert_allclose(np.degrees(mc_records["true_azimuth"]), 358.57, atol=0.01)
    e = 10 ** mc_records["true_log10_energy"]
    assert 1e4 <= e.min() and e.max() < 4e5  # 10-388 TeV in GeV


def test_mass_numbers():
    np.testing.assert_array_equal(mass_number_from_corsika_id([1, 14, 402, 1206, 1407, 5626]),
                                  [0, 1, 4, 12, 14, 56])


def test_core_matches_charge_centroid(mc_batch, km2a):
    """Frame check: x = column 3, y = -column 2 puts the big ED signals on the true cores."""
    for i in _largest(mc_batch):
        s = mc_batch.km2a_ed.signal[i]
        top = np.argsort(-s)[:10]
        cen = (km2a.ed_pos[top, :2] * s[top, None]).sum(0) / s[top].sum()
        core = np.array([mc_batch.truth["true_core_x"][i], mc_batch.truth["true_core_y"][i]])
        assert np.hypot(*(cen - core)) < 10.0, (i, cen, core)
        # the mirrored frame (y = +column 2, the original reader's) misses by far
        mirrored = cen * np.array([1.0, -1.0])
        if abs(core[1]) > 60:
            assert np.hypot(*(mirrored - core)) > 100.0


def _plane_fit(pos, t, q, centre):
    """Arrival direction n from c·t = c·t0 − n·r + cone; iterative outlier rejection."""
    sel = (q > 0) & (np.abs(t - np.median(t[q > 0])) < 1000.0)
    sel &= np.hypot(pos[:, 0] - centre[0], pos[:, 1] - centre[1]) < 200.0
    r = np.hypot(pos[:, 0] - centre[0], pos[:, 1] - centre[1])
    ct = C_LIGHT * t - 0.03 * r  # conical front, slope 0.03 (PHYSICS.md §2.1 [U])
    w_z = np.cos(np.radians(20.0))
    for _ in range(6):
        a = np.column_stack([np.ones(sel.sum()), -pos[sel, 0], -pos[sel, 1]])
        sol = np.linalg.lstsq(a, ct[sel] + w_z * pos[sel, 2], rcond=None)[0]
        u, v = sol[1], sol[2]
        w_z = np.sqrt(max(1 - u * u - v * v, 0.0))
        res = ct - (sol[0] - u * pos[:, 0] - v * pos[:, 1] - w_z * pos[:, 2])
        sel = sel & (np.abs(res) < 3.0 * C_LIGHT * 10.0)
    return np.array([u, v, w_z])


def _unit(zen, az):
    return np.array([np.sin(zen) * np.cos(az), np.sin(zen) * np.sin(az), np.cos(zen)])


def test_azimuth_convention_from_hit_times(mc_batch, km2a):
    """true_azimuth = Phi + pi (where the shower comes from) agrees with the timing plane fit in
    the x = col3, y = -col2 frame; Phi itself is ~180 deg off."""
    errs, errs_phi = [], []
    for i in _largest(mc_batch):
        blk = mc_batch.km2a_ed
        s, t = blk.signal[i], blk.time[i]
        top = np.argsort(-s)[:10]
        centre = (km2a.ed_pos[top, :2] * s[top, None]).sum(0) / s[top].sum()
        n = _plane_fit(km2a.ed_pos, t, s * blk.hit[i], centre)
        tr = mc_batch.truth
        truth = _unit(tr["true_zenith"][i], tr["true_azimuth"][i])
        phi = _unit(tr["true_zenith"][i], tr["true_azimuth"][i] - np.pi)
        errs.append(np.degrees(np.arccos(np.clip(n @ truth / np.linalg.norm(n), -1, 1))))
        errs_phi.append(np.degrees(np.arccos(np.clip(n @ phi / np.linalg.norm(n), -1, 1))))
    errs = np.array(errs)
    # measured: 0.1-2.2 deg, median ~1 deg; with Phi (travel direction) ~40 deg = 2 x zenith
    assert np.median(errs) < 1.5, errs
    assert errs.max() < 4.0, errs
    assert np.min(errs_phi) > 30.0


def test_dense_batch_from_lhevent(mc_batch, mc_records, km2a):
    assert mc_batch.km2a_ed.signal.shape == (53, 5216)
    assert mc_batch.km2a_md.signal.shape == (53, 1188)
    assert mc_batch.wcda is None and mc_batch.wfcta is None
    # number of raw hits is conserved in n_pulses
    np.testing.assert_array_equal(mc_batch.km2a_ed.n_pulses.sum(axis=1),
                                  ak.to_numpy(ak.num(mc_records["km2a_ed_id"], axis=1)))
    assert mc_batch.km2a_ed.valid.all()
    np.testing.assert_array_equal(mc_batch.event_id, mc_records["event_id"])


# ------------------------------------------------------------------------------------------
# own schema
# ------------------------------------------------------------------------------------------
def _toy_records(n=4, seed=1, truth=True):
    rng = np.random.default_rng(seed)
    lay = km2a_layout()

    def jag(counts, fn):
        return ak.unflatten(fn(int(counts.sum())), counts)

    rec = {"run": np.arange(n, dtype=np.int32) + 7, "event_id": np.arange(n, dtype=np.int64) * 3,
           "time_mjd": 59000.0 + rng.random(n)}
    for g, ids in (("km2a_ed", lay.ed_id), ("km2a_md", lay.md_id), ("wcda", np.arange(3120))):
        c = rng.integers(0, 30, n)
        c[1] = 0  # an event without hits in this group
        rec[f"{g}_id"] = jag(c, lambda k: rng.choice(ids, k).astype(np.int32))
        rec[f"{g}_time"] = jag(c, lambda k: rng.normal(5000, 300, k))
        rec[f"{g}_pe"] = jag(c, lambda k: rng.exponential(20, k).astype(np.float32))
    c = rng.integers(1, 50, n)
    rec["wfcta_tel"] = jag(c, lambda k: rng.integers(1, 7, k).astype(np.int16))
    rec["wfcta_pix"] = jag(c, lambda k: rng.integers(0, 1024, k).astype(np.int16))
    rec["wfcta_pe"] = jag(c, lambda k: rng.exponential(50, k).astype(np.float32))
    if truth:
        for k in ("true_core_x", "true_core_y", "true_zenith", "true_azimuth",
                  "true_log10_energy", "true_xmax", "true_log_muon_scale", "true_t0"):
            rec[k] = rng.normal(size=n)
        rec["true_mass_number"] = np.array([0, 1, 4, 56][:n] + [1] * max(0, n - 4), float)
    return rec


def _assert_records_equal(a, b):
    assert set(a) == set(b)
    for k in a:
        if isinstance(a[k], ak.Array):
            assert ak.to_list(a[k]) == ak.to_list(b[k]), k
            assert str(ak.Array(a[k]).type) == str(b[k].type), k
        else:
            np.testing.assert_array_equal(a[k], b[k], err_msg=k)
            assert np.asarray(a[k]).dtype == b[k].dtype, k


def test_round_trip_own_schema(tmp_path):
    rec = _toy_records()
    path = tmp_path / "events.root"
    write_events(path, rec)
    back = read_events(path, km2a=km2a_layout(), wfcta=wfcta_layout())
    _assert_records_equal(rec, back)
    # real data: no truth branches at all
    rec_data = _toy_records(truth=False)
    write_events(tmp_path / "data.root", rec_data)
    back = read_events(tmp_path / "data.root")
    assert not any(k.startswith("true_") for k in back)
    batch = to_event_batch(back, km2a=km2a_layout(), wfcta=wfcta_layout(), as_jax=False)
    assert batch.truth is None and batch.wfcta.signal.shape == (4, 6 * 1024)


def test_lhevent_and_own_schema_give_same_batch(tmp_path, mc_records, km2a):
    write_events(tmp_path / "mc.root", mc_records)
    back = read_events(tmp_path / "mc.root", km2a=km2a)
    a = to_event_batch(mc_records, km2a=km2a, as_jax=False)
    b = to_event_batch(back, km2a=km2a, as_jax=False)
    for blk in ("km2a_ed", "km2a_md"):
        for x, y in zip(getattr(a, blk), getattr(b, blk)):
            np.testing.assert_array_equal(x, y)
    for k in a.truth:
        np.testing.assert_array_equal(a.truth[k], b.truth[k])


def _write_raw(path, branches):
    with uproot.recreate(path) as f:
        types = {k: (v.type.content if isinstance(v, ak.Array) else v.dtype)
                 for k, v in branches.items()}
        tree = f.mktree("events", types)
        if len(branches["run"]):
            tree.extend(branches)


def _zip(rec, g, fields):
    return ak.zip({f: rec[f"{g}_{f}"] for f in fields})


def test_bad_inputs(tmp_path):
    rec = _toy_records()
    lay = km2a_layout()

    # missing tree
    p = tmp_path / "notree.root"
    with uproot.recreate(p) as f:
        f.mktree("other", {"x": np.int32}).extend({"x": np.arange(3, dtype=np.int32)})
    with pytest.raises(EventFileError, match="notree.root") as err:
        read_events(p)
    assert "'events'" in str(err.value)

    # missing scalar branch
    p = tmp_path / "nobranch.root"
    _write_raw(p, {"run": rec["run"], "time_mjd": rec["time_mjd"]})
    with pytest.raises(EventFileError, match="nobranch.root.*event_id"):
        read_events(p)

    # missing branch of a hit group
    p = tmp_path / "nope.root"
    _write_raw(p, {"run": rec["run"], "event_id": rec["event_id"], "time_mjd": rec["time_mjd"],
                   "km2a_ed": _zip(rec, "km2a_ed", ("id", "time"))})
    with pytest.raises(EventFileError, match="nope.root.*km2a_ed_pe"):
        read_events(p)

    # empty file
    p = tmp_path / "empty.root"
    _write_raw(p, {"run": rec["run"][:0], "event_id": rec["event_id"][:0],
                   "time_mjd": rec["time_mjd"][:0]})
    with pytest.raises(EventFileError, match="empty.root.*'events'.*0 entries"):
        read_events(p)

    # id outside the layout
    bad = dict(rec)
    ids = ak.to_list(rec["km2a_ed_id"])
    ids[2][0] = 999999
    bad["km2a_ed_id"] = ak.values_astype(ak.Array(ids), np.int32)
    p = tmp_path / "badid.root"
    write_events(p, bad)  # the schema itself does not know the layout
    with pytest.raises(EventFileError, match="badid.root.*km2a_ed_id.*entry 2.*999999"):
        read_events(p, km2a=lay)
    with pytest.raises(EventFileError, match="km2a_ed_id"):
        to_events(bad, km2a=lay, source="bad-records")

    # NaN time, written raw (write_events refuses it)
    times = ak.to_list(rec["km2a_md_time"])
    times[3][1] = float("nan")
    nan = dict(rec)
    nan["km2a_md_time"] = ak.Array(times)
    with pytest.raises(EventFileError, match="nan.root.*km2a_md_time.*NaN in entry 3"):
        write_events(tmp_path / "nan.root", nan)
    p = tmp_path / "nan_raw.root"
    _write_raw(p, {"run": rec["run"], "event_id": rec["event_id"], "time_mjd": rec["time_mjd"],
                   "km2a_md": _zip(nan, "km2a_md", ("id", "time", "pe"))})
    with pytest.raises(EventFileError, match="nan_raw.root.*'km2a_md_time' has NaN in entry 3"):
        read_events(p)

    # mismatched jagged lengths on write
    mis = dict(rec)
    pes = ak.to_list(rec["wcda_pe"])
    pes[0] = pes[0] + [1.0]
    mis["wcda_pe"] = ak.Array(pes)
    with pytest.raises(EventFileError, match="mismatch.root.*wcda_pe.*entry 0"):
        write_events(tmp_path / "mismatch.root", mis)


def test_lhevent_errors(tmp_path):
    p = tmp_path / "nolh.root"
    _write_raw(p, {"run": np.arange(2, dtype=np.int32)})
    with pytest.raises(EventFileError, match="nolh.root.*'event'"):
        read_lhevent(p)


# ------------------------------------------------------------------------------------------
# dense blocks
# ------------------------------------------------------------------------------------------
def test_build_block_keeps_largest_charge():
    blk = build_block(ids=[3, 1, 3, 3, 0], times=[10.0, 20.0, 30.0, 40.0, 50.0],
                      pes=[5.0, 2.0, 9.0, 1.0, 0.0], n_channels=5)
    np.testing.assert_array_equal(blk.signal, [0.0, 2.0, 0.0, 9.0, 0.0])
    np.testing.assert_array_equal(blk.time, [50.0, 20.0, 0.0, 30.0, 0.0])
    np.testing.assert_array_equal(blk.n_pulses, [1, 1, 0, 3, 0])
    np.testing.assert_array_equal(blk.hit, [True, True, False, True, False])
    # index_map with layout ids; dead channels are not hit
    lay = km2a_layout()
    ids = lay.ed_id[[10, 20]]
    blk = build_block(ids, [1.0, 2.0], [3.0, 4.0], lay.n_ed, lay.ed_index_of,
                      valid=np.arange(lay.n_ed) != 20)
    assert blk.hit[10] and not blk.hit[20] and not blk.valid[20]
    with pytest.raises(ValueError, match="12345678"):
        build_block([12345678], [0.0], [1.0], lay.n_ed, lay.ed_index_of)


def test_stack_and_pad():
    rec = _toy_records(n=3)
    lay = km2a_layout()
    events = to_events(rec, km2a=lay)
    batch = stack_events(events)
    assert batch.km2a_ed.signal.shape == (3, lay.n_ed)
    padded, mask = pad_batch(batch, 8)
    np.testing.assert_array_equal(mask, [True] * 3 + [False] * 5)
    assert padded.km2a_ed.valid.shape == (8, lay.n_ed)
    assert not np.asarray(padded.km2a_ed.valid[3:]).any()
    assert not np.asarray(padded.km2a_md.hit[3:]).any()
    np.testing.assert_array_equal(np.asarray(padded.km2a_ed.signal[:3]),
                                  np.asarray(batch.km2a_ed.signal))
    assert np.isnan(np.asarray(padded.truth["true_core_x"][3:])).all()
    with pytest.raises(ValueError):
        pad_batch(batch, 2)
    # jax pytree: leaves of the padded batch all have the leading axis 8
    import jax
    assert {np.shape(x)[0] for x in jax.tree_util.tree_leaves(padded)} == {8}


def test_vectorised_batch_equals_per_event_blocks(shared_data):
    """to_event_batch (vectorised over events) gives exactly the blocks of to_events + stack."""
    from detectors.layout import km2a_layout
    from joint.event import stack_events
    from joint.io import read_file
    from joint.io.schema import to_event_batch, to_events

    lay = km2a_layout("full")
    rec = read_file(shared_data / "lhaaso/km2a/KM2AMCTest.root", km2a=lay)
    a = to_event_batch(rec, km2a=lay, as_jax=False)
    b = stack_events(to_events(rec, km2a=lay), as_jax=False)
    for blk in ("km2a_ed", "km2a_md"):
        for x, y in zip(getattr(a, blk), getattr(b, blk)):
            np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    np.testing.assert_array_equal(np.asarray(a.event_id), np.asarray(b.event_id))
    for k in a.truth:
        np.testing.assert_array_equal(np.asarray(a.truth[k]), np.asarray(b.truth[k]))
