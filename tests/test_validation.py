"""Input validation before any fitting (issue 15 item 4): every bad input is one clear line
naming the file, the branch and the entry counted from the start of the file; truncated or
corrupt ROOT files; atomic write_events; whole-file validation and its warnings."""
import os
import re
import struct

import awkward as ak
import numpy as np
import pytest
import uproot

from detectors.layout import km2a_layout, wfcta_layout
from joint.io import file_kind, num_entries
from joint.io.errors import EventFileError
from joint.io.lhevent import read_lhevent
from joint.io.schema import (check_ids, read_events, to_event_batch, validate_records,
                             write_events)
from joint.io.validate import FileReport, validate_file, validate_inputs

from helpers import GROUPS, jag as _jag, raw_records as _records, set_hit as _set_hit, \
    write_raw as _write_raw  # noqa: E402


@pytest.fixture(scope="module")
def lay():
    return km2a_layout()


def _one_line(err):
    msg = str(err.value)
    assert "\n" not in msg, msg
    for leak in ("Error:", "OSError", "zlib.error", "Traceback", "Chunk", "FSSpec",
                 "DeserializationError"):
        assert leak not in msg, msg
    return msg


# ------------------------------------------------------------------------------------------
# 1. entries counted in the file
# ------------------------------------------------------------------------------------------
def test_nan_entry_counted_in_file(tmp_path):
    rec = _set_hit(_records(12), "km2a_md_time", 9, float("nan"))
    p = tmp_path / "nan12.root"
    _write_raw(p, rec)
    match = r"nan12.root: branch 'km2a_md_time' has NaN in entry 9$"
    with pytest.raises(EventFileError, match=match):
        validate_file(p, entries_per_read=8)
    with pytest.raises(EventFileError, match=match):
        read_events(p, entry_start=8)
    with pytest.raises(EventFileError, match=match):
        read_events(p, entry_start=-4)  # negative start: from the end
    read_events(p, entry_stop=9)  # the slice before it is fine
    # records of a slice: the caller passes the file entry of its first record
    sl = {k: v[8:] for k, v in rec.items()}
    with pytest.raises(EventFileError, match="entry 9$"):
        validate_records(sl, "x.root", entry_offset=8)
    with pytest.raises(EventFileError,
                       match="<records>: branch 'km2a_md_time' has NaN in entry 1$"):
        validate_records(sl)
    with pytest.raises(EventFileError, match="entry 109$"):
        to_event_batch(sl, km2a=km2a_layout(), as_jax=False, entry_offset=108)


def test_unknown_id_in_later_slice(tmp_path, lay):
    rec = _set_hit(_records(12), "km2a_ed_id", 10, 999999, hit=0, dtype=np.int32)
    p = tmp_path / "badid.root"
    write_events(p, rec)  # the schema alone does not know the layout
    assert validate_file(p, entries_per_read=4).n_events == 12
    with pytest.raises(EventFileError, match=r"badid.root: branch 'km2a_ed_id' has an id outside "
                                             r"the layout in entry 10 \(.*999999"):
        validate_file(p, {"km2a": lay}, entries_per_read=4)
    with pytest.raises(EventFileError, match="badid.root.*km2a_ed_id.*in entry 10 "):
        read_events(p, {"km2a": lay}, entry_start=9, entry_stop=12)
    sl = {k: v[9:] for k, v in rec.items()}
    with pytest.raises(EventFileError, match="in entry 10 "):
        check_ids(sl, "s", km2a=lay, entry_offset=9)
    # a negative id is outside every layout, and refused by the schema itself
    neg = _set_hit(_records(6), "km2a_md_id", 4, -3, dtype=np.int32)
    with pytest.raises(EventFileError, match=r"neg.root: branch 'km2a_md_id' has a negative id -3 "
                                             r"in entry 4$"):
        write_events(tmp_path / "neg.root", neg)
    with pytest.raises(EventFileError, match="km2a_md_id' has an id outside the layout in entry 4"):
        check_ids(neg, "neg", km2a=lay)


def test_jagged_mismatch_in_later_slice(tmp_path):
    rec = _records(12)
    pes = ak.to_list(rec["km2a_ed_pe"])
    pes[10] = pes[10] + [1.0]
    rec["km2a_ed_pe"] = _jag(pes, np.float32)
    p = tmp_path / "jag.root"
    _write_raw(p, rec, separate=("km2a_ed",))
    n_id = len(ak.to_list(rec["km2a_ed_id"])[10])
    with pytest.raises(EventFileError, match=rf"jag.root: branch 'km2a_ed_pe' has {n_id + 1} hits "
                                             rf"in entry 10 but 'km2a_ed_id' has {n_id}$"):
        validate_file(p, entries_per_read=5)
    read_events(p, entry_stop=10)


# ------------------------------------------------------------------------------------------
# 2. fractional ids
# ------------------------------------------------------------------------------------------
def test_fractional_ids(tmp_path):
    rec = _records(6, wfcta=True)
    ed = ak.to_list(rec["km2a_ed_id"])
    ed = [[float(x) for x in row] for row in ed]
    ed[3][0] = 12.5
    frac = dict(rec, km2a_ed_id=ak.Array(ed))
    msg = r"frac.root: branch 'km2a_ed_id' has a fractional id 12.5 in entry 3$"
    with pytest.raises(EventFileError, match=msg):
        validate_records(frac, "frac.root")
    with pytest.raises(EventFileError, match=msg):
        write_events(tmp_path / "frac.root", frac)
    assert not (tmp_path / "frac.root").exists()
    assert not (tmp_path / "frac.root.part").exists()
    # integral floats are fine (written as int32)
    ed[3][0] = float(ak.to_list(rec["km2a_ed_id"])[3][0])
    write_events(tmp_path / "ok.root", dict(rec, km2a_ed_id=ak.Array(ed)))
    assert str(read_events(tmp_path / "ok.root")["km2a_ed_id"].type).endswith("int32")
    # a float id branch in a file, read in a later slice
    _write_raw(tmp_path / "frac.root", frac)
    with pytest.raises(EventFileError, match=msg):
        validate_file(tmp_path / "frac.root", entries_per_read=2)
    # both WFCTA id fields; an id beyond the int16 branch would wrap on write
    pix = _set_hit(rec, "wfcta_pix", 2, 7.25)
    with pytest.raises(EventFileError, match=r"branch 'wfcta_pix' has a fractional id 7.25 in "
                                             r"entry 7$"):
        validate_records(pix, "w.root", entry_offset=5)
    tel = _set_hit(rec, "wfcta_tel", 1, float("nan"))
    with pytest.raises(EventFileError,
                       match="branch 'wfcta_tel' has a non-finite id nan in entry 1$"):
        write_events(tmp_path / "w.root", tel)
    big = _set_hit(rec, "wfcta_pix", 5, 70000, dtype=np.int32)
    with pytest.raises(EventFileError, match="'wfcta_pix' has id 70000, beyond the int16 range.* "
                                             "in entry 5"):
        write_events(tmp_path / "w.root", big)
    to_event_batch(rec, wfcta=wfcta_layout(), as_jax=False)


# ------------------------------------------------------------------------------------------
# 3. truncated / corrupt files
# ------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def full_file(tmp_path_factory):
    p = tmp_path_factory.mktemp("full") / "full.root"
    write_events(p, _records(300, seed=11))
    return p


@pytest.mark.parametrize("cut", [100, 0.5, 0.9])
def test_truncated_file(tmp_path, full_file, cut):
    data = full_file.read_bytes()
    n = cut if isinstance(cut, int) else int(len(data) * cut)
    p = tmp_path / "cut.root"
    p.write_bytes(data[:n])
    expected = (f"cut.root: cannot be read: the file is truncated or corrupt (it has {n} of the "
                f"{len(data)} bytes its header declares)")
    for fn in (file_kind, read_events, validate_file, num_entries, read_lhevent,
               lambda q: validate_inputs([full_file, q])):
        with pytest.raises(EventFileError) as err:
            fn(p)
        assert _one_line(err).endswith(expected), (fn, str(err.value))
        # no chained uproot/zlib exception behind it
        assert err.value.__cause__ is None
        assert err.value.__context__ is None or err.value.__suppress_context__
        assert err.value.kind == "file"


@pytest.mark.parametrize("frac", [0.5, 0.9])
def test_truncated_baskets(tmp_path, full_file, frac):
    """Header patched to the cut size: the file opens, reading its baskets fails."""
    data = bytearray(full_file.read_bytes())
    n = int(len(data) * frac)
    cut = data[:n]
    assert struct.unpack(">i", cut[4:8])[0] < 1000000  # small-file header: fEND is int32
    cut[12:16] = struct.pack(">i", n)
    p = tmp_path / "short.root"
    p.write_bytes(bytes(cut))
    assert file_kind(p) == "own" and num_entries(p) == 300
    for fn in (read_events, validate_file):
        with pytest.raises(EventFileError, match=r"short.root: cannot be read: the file is "
                                                 r"truncated or corrupt \(branch '\w+': a \d+-byte "
                                                 r"record runs past the end of the file, \d+ bytes "
                                                 r"of it are there\)$"):
            fn(p)
        _one_line(pytest.raises(EventFileError, fn, p))


def test_corrupt_and_foreign_files(tmp_path, full_file, shared_data):
    data = bytearray(full_file.read_bytes())
    data[len(data) // 2:len(data) // 2 + 4000] = bytes(4000)
    p = tmp_path / "zeroed.root"
    p.write_bytes(bytes(data))
    with pytest.raises(EventFileError) as err:
        validate_file(p)
    msg = _one_line(err)
    assert msg.startswith(f"{p}: cannot be read: the file is truncated or corrupt (")
    # the first unreadable branch is named (the zeros hit a compressed basket)
    assert re.search(r"\(branch '(km2a_ed|km2a_md|wcda)_\w+': Error -\d while decompressing "
                     r"data: [^()]+\)$", msg), msg
    # not ROOT at all, empty, missing
    (tmp_path / "text.root").write_text("hello")
    with pytest.raises(EventFileError, match=r"text.root: is not a ROOT file \(it does not start "
                                             r"with 'root'\)$"):
        file_kind(tmp_path / "text.root")
    (tmp_path / "empty.root").write_bytes(b"")
    with pytest.raises(EventFileError, match=r"empty.root: is not a ROOT file \(it is empty\)$"):
        read_events(tmp_path / "empty.root")
    with pytest.raises(EventFileError, match="nothere.root: file does not exist$"):
        validate_inputs([tmp_path / "nothere.root"])
    # a truncated G4KM2A file
    lh = (shared_data / "lhaaso" / "km2a" / "KM2AMCTest.root").read_bytes()
    (tmp_path / "lh.root").write_bytes(lh[:len(lh) // 2])
    with pytest.raises(EventFileError, match=r"lh.root: cannot be read: the file is truncated"):
        read_lhevent(tmp_path / "lh.root")


# ------------------------------------------------------------------------------------------
# 4. atomic write_events
# ------------------------------------------------------------------------------------------
def test_write_events_atomic(tmp_path, monkeypatch):
    import joint.io.schema as schema

    p = tmp_path / "out.root"
    write_events(p, _records(5))
    before = p.read_bytes()
    assert not (tmp_path / "out.root.part").exists()
    # validation error: nothing written, the existing file untouched
    bad = _set_hit(_records(5), "km2a_ed_pe", 1, float("inf"))
    with pytest.raises(EventFileError, match="out.root: branch 'km2a_ed_pe' has a non-finite "
                                             "value in entry 1"):
        write_events(p, bad)
    assert p.read_bytes() == before and os.listdir(tmp_path) == ["out.root"]
    # an error while writing (after the .part exists): .part removed, file untouched

    def boom(src, dst):
        assert str(src).endswith("out.root.part") and os.path.exists(src)
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(schema.os, "replace", boom)
    with pytest.raises(EventFileError, match=r"out.root: cannot be written \(No space left on "
                                             r"device\)$"):
        write_events(p, _records(7))
    assert p.read_bytes() == before and os.listdir(tmp_path) == ["out.root"]
    monkeypatch.undo()

    def interrupted(self, data):
        raise KeyboardInterrupt

    monkeypatch.setattr(uproot.writing.WritableTree, "extend", interrupted)
    with pytest.raises(KeyboardInterrupt):
        write_events(p, _records(7))
    assert p.read_bytes() == before and os.listdir(tmp_path) == ["out.root"]
    monkeypatch.undo()
    # a directory in the way: one line, no .part left
    (tmp_path / "adir.root").mkdir()
    with pytest.raises(EventFileError, match=r"adir.root: cannot be written \(Is a directory\)$"):
        write_events(tmp_path / "adir.root", _records(3))
    assert sorted(os.listdir(tmp_path)) == ["adir.root", "out.root"]
    (tmp_path / "adir.root").rmdir()
    # success replaces the file
    write_events(p, _records(7))
    assert num_entries(p) == 7 and os.listdir(tmp_path) == ["out.root"]


# ------------------------------------------------------------------------------------------
# 5. whole-file validation and its warnings
# ------------------------------------------------------------------------------------------
def _crafted(n=10):
    """Entries 4, 7, 9 without hits; entries 6 and 8 repeat entry 2's (run, event_id);
    negative charges: 2 hits of km2a_md and 1 of wcda in entry 2, 1 of km2a_ed in entry 5."""
    c = np.full(n, 3)
    c[[4, 7, 9]] = 0
    rec = _records(n, counts={g: c for g in GROUPS})
    rec["event_id"] = rec["event_id"].copy()
    rec["event_id"][[6, 8]] = rec["event_id"][2]
    for branch, entry, hit in (("km2a_md_pe", 2, 0), ("km2a_md_pe", 2, 2), ("wcda_pe", 2, 1),
                               ("km2a_ed_pe", 5, 1)):
        rec = _set_hit(rec, branch, entry, -1.5, hit=hit, dtype=np.float32)
    return rec


def test_warnings_counts(tmp_path):
    p = tmp_path / "run_1.root"
    write_events(p, _crafted())
    for step in (3, 20000):
        rep = validate_file(p, entries_per_read=step)
        assert (rep.kind, rep.n_events, rep.n_zero_hit, rep.n_duplicate_ids,
                rep.n_negative_charge, rep.n_negative_charge_events) == ("own", 10, 3, 2, 4, 2)
        assert rep.warnings() == [
            f"{p}: 3 events have no hits (entries 4, 7, 9)",
            f"{p}: 2 duplicated (run, event_id) (first: entry 6 repeats entry 2)",
            f"{p}: 4 hits with negative charge in 2 events (first: entry 2, branch km2a_md_pe)",
        ]
    # singular forms; a repeat of a repeat still names the first occurrence
    rec = _records(4, counts={g: [1, 0, 1, 1] for g in GROUPS})
    rec["event_id"] = np.array([7, 8, 9, 9])
    rec = _set_hit(rec, "wcda_pe", 3, -2.0, dtype=np.float32)
    write_events(tmp_path / "one.root", rec)
    assert validate_file(tmp_path / "one.root").warnings() == [
        f"{tmp_path / 'one.root'}: 1 event has no hits (entry 1)",
        f"{tmp_path / 'one.root'}: 1 duplicated (run, event_id) (first: entry 3 repeats entry 2)",
        f"{tmp_path / 'one.root'}: 1 hit with negative charge in 1 event (first: entry 3, "
        "branch wcda_pe)",
    ]
    # the same event_id in another run is no duplicate
    rec["run"] = np.array([1, 1, 1, 2], np.int32)
    write_events(tmp_path / "runs.root", rec)
    assert validate_file(tmp_path / "runs.root").n_duplicate_ids == 0


def test_many_zero_hit_entries_listed_briefly(tmp_path):
    c = np.zeros(40, int)
    c[::3] = 2
    write_events(tmp_path / "z.root", _records(40, counts={g: c for g in GROUPS}))
    rep = validate_file(tmp_path / "z.root", entries_per_read=7)
    assert rep.n_zero_hit == 26
    assert rep.warnings() == [f"{tmp_path / 'z.root'}: 26 events have no hits "
                              "(entries 1, 2, 4, 5, 7, 8, 10, 11, 13, 14, ...)"]


def test_clean_files_give_no_warnings(tmp_path, lay, shared_data):
    p = tmp_path / "clean.root"
    write_events(p, _records(50, wfcta=True))
    reps = validate_inputs([p, str(p)], {"km2a": lay, "wfcta": wfcta_layout()},
                           entries_per_read=16)
    assert reps == [FileReport(path=str(p), kind="own", n_events=50)] * 2
    assert reps[0].warnings() == []
    assert num_entries(p) == 50
    lh = shared_data / "lhaaso" / "km2a" / "KM2AMCTest.root"
    rep = validate_inputs(lh, {"km2a": km2a_layout("3/4")})[0]
    assert (rep.kind, rep.n_events, rep.warnings()) == ("lhevent", 53, [])
    assert num_entries(lh) == 53


def test_validate_inputs_raises_first_error(tmp_path):
    good, nan = tmp_path / "good.root", tmp_path / "nan.root"
    write_events(good, _records(5))
    _write_raw(nan, _set_hit(_records(5), "wcda_pe", 3, float("nan")))
    with pytest.raises(EventFileError, match=r"nan.root: branch 'wcda_pe' has NaN in entry 3$"):
        validate_inputs([good, nan, tmp_path / "missing.root"])
    with pytest.raises(ValueError, match="entries_per_read"):
        validate_file(good, entries_per_read=0)


def test_write_events_baskets_and_slices(tmp_path):
    """write_events writes baskets of BASKET_ENTRIES events (a slice read decompresses only its
    baskets); slices across basket edges read back exactly, and validate_file in slices counts
    as a whole read does."""
    from joint.io.schema import BASKET_ENTRIES

    rec = _crafted(10)
    big = {k: (ak.concatenate([v] * 250) if isinstance(v, ak.Array) else np.concatenate([v] * 250))
           for k, v in rec.items()}
    big["event_id"] = np.arange(2500, dtype=np.int64)
    p = tmp_path / "baskets.root"
    write_events(p, big)
    with uproot.open(p) as f:
        assert f["events"]["km2a_ed_pe"].num_baskets == -(-2500 // BASKET_ENTRIES)
    part = read_events(p, entry_start=990, entry_stop=1012)
    assert ak.to_list(part["km2a_md_pe"]) == ak.to_list(big["km2a_md_pe"][990:1012])
    np.testing.assert_array_equal(part["event_id"], np.arange(990, 1012))
    rep = validate_file(p, entries_per_read=333)
    assert (rep.n_zero_hit, rep.n_duplicate_ids, rep.n_negative_charge,
            rep.n_negative_charge_events, rep.first_negative_charge) == (750, 0, 1000, 500,
                                                                         (2, "km2a_md_pe"))
    assert rep == validate_file(p)
