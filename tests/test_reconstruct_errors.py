"""``lhaaso-joint reconstruct`` with bad inputs (issue 15): each case one stderr line
``lhaaso-joint: error: ...`` naming the file/option (entries counted in the file), exit status 2,
before any fit; the inputs untouched (checksums) and nothing left behind (no .part, no run
directory, no output). And the warnings with counts for zero-hit events, duplicated ids and
negative charges, which do not stop the run."""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

from helpers import raw_records, set_hit, write_raw

N = 12


@pytest.fixture()
def no_fit(monkeypatch):
    from joint import runner

    monkeypatch.setattr(runner, "fit_records", lambda *a: pytest.fail("a chunk was fitted"))


def _files(tmp_path):
    """{name: path} of the crafted inputs (12 events each, batch size 8 in the calls, so the bad
    entry lies in the second batch)."""
    good = raw_records(N, seed=5)
    cases = {
        "good": good,
        "nan9": set_hit(good, "km2a_ed_time", 9, float("nan")),
        "unknown10": set_hit(good, "km2a_ed_id", 10, 999999, dtype=np.int32),
        "fraction11": set_hit(good, "km2a_ed_id", 11, float(good["km2a_ed_id"][11][0]) + 0.5,
                              dtype=np.float64),
    }
    out = {}
    for name, rec in cases.items():
        out[name] = tmp_path / f"{name}.root"
        write_raw(out[name], rec)
    jag = dict(good)
    import awkward as ak

    lists = ak.to_list(good["km2a_ed_pe"])
    lists[10] = lists[10] + [1.0]
    jag["km2a_ed_pe"] = ak.values_astype(ak.Array(lists), np.float32)
    out["jagged10"] = tmp_path / "jagged10.root"
    write_raw(out["jagged10"], jag, separate=("km2a_ed",))
    data = out["good"].read_bytes()
    out["truncated"] = tmp_path / "truncated.root"
    out["truncated"].write_bytes(data[: len(data) // 2])
    (tmp_path / "afile").write_text("not a directory")
    return out


CASES = [
    # (argv after 'reconstruct' with {name} placeholders, expected substring)
    (["{good}", "-o", "{good}", "--overwrite"], "is the input"),
    (["{good}", "-o", "{tmp}/o.root", "--batch-size", "-5"], "--batch-size must be a positive integer"),
    (["{good}", "-o", "{tmp}/o.root", "--batch-size", "0"], "--batch-size must be a positive integer"),
    (["{good}", "-o", "{tmp}/o.root", "--batch-size", "many"], "--batch-size must be a positive integer"),
    (["{good}", "-o", "{tmp}/o.root", "--chunk-events", "0"], "--chunk-events must be a positive integer"),
    (["{good}", "-o", "{tmp}/o.root", "--max-memory", "0"], "--max-memory must be a positive number"),
    (["{good}", "-o", "{tmp}/o.root", "--n-iter", "0"], "--n-iter must be a positive integer"),
    (["{good}", "-o", "{tmp}/afile/o.root"], "is a file, not a directory"),
    (["{good}", "{nan9}", "-o", "{tmp}/o.root", "--batch-size", "8"],
     "nan9.root: branch 'km2a_ed_time' has NaN in entry 9"),
    (["{unknown10}", "-o", "{tmp}/o.root", "--batch-size", "8"],
     "unknown10.root: branch 'km2a_ed_id' has an id outside the layout in entry 10"),
    (["{fraction11}", "-o", "{tmp}/o.root", "--batch-size", "8"],
     "fraction11.root: branch 'km2a_ed_id' has a fractional id"),
    (["{jagged10}", "-o", "{tmp}/o.root", "--batch-size", "8"], "in entry 10"),
    (["{truncated}", "-o", "{tmp}/o.root"], "truncated.root: cannot be read"),
    (["{good}", "{tmp}/missing.root", "-o", "{tmp}/o.root"], "missing.root"),
    (["{good}", "-o", "{tmp}/o.root", "--cluster", "mesos:3"], "unknown kind"),
    (["{good}", "{good}", "-o", "{tmp}/o.root"], "is given twice"),
]


def _sha(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


@pytest.mark.parametrize("argv, message", CASES, ids=[" ".join(c[0][1:])[:40] for c in CASES])
def test_bad_input_one_line(tmp_path, capsys, no_fit, argv, message):
    from lhaaso_joint.cli import main

    files = _files(tmp_path)
    before = {p.name: _sha(p) for p in tmp_path.iterdir()}
    args = [a.format(tmp=tmp_path, **files) for a in argv]
    status = main(["reconstruct", *args, "--quiet", "--hypothesis", "gamma"])
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 2
    assert len(err) == 1 and err[0].startswith("lhaaso-joint: error: "), err
    assert message in err[0], err[0]
    after = {p.name: _sha(p) for p in tmp_path.iterdir()}
    assert after == before  # inputs untouched, nothing written, nothing left behind


def test_warnings_with_counts_and_the_run_goes_on(tmp_path, capsys):
    from joint.io.schema import write_events
    from joint.simulation import simulate_records
    from lhaaso_joint.cli import main
    import awkward as ak

    rec, _ = simulate_records(8, primary="gamma", log10_energy_range=(4.8, 5.0), seed=3)
    rec["event_id"] = np.array([0, 1, 2, 2, 4, 5, 6, 7], np.int64)  # one duplicate
    for g in ("km2a_ed", "km2a_md"):  # event 5: no hits at all
        for f in ("id", "time", "pe"):
            dtype = ak.to_numpy(ak.flatten(rec[f"{g}_{f}"])).dtype
            lists = ak.to_list(rec[f"{g}_{f}"])
            lists[5] = []
            rec[f"{g}_{f}"] = ak.values_astype(ak.Array(lists), dtype)
    pe = ak.to_list(rec["km2a_ed_pe"])
    pe[6][0] = -1.5
    rec["km2a_ed_pe"] = ak.values_astype(ak.Array(pe), np.float32)
    path = tmp_path / "warn.root"
    write_events(path, rec)
    status = main(["reconstruct", str(path), "-o", str(tmp_path / "o.root"), "--batch-size",
                   "8", "--hypothesis", "gamma", "--quiet"])
    err = capsys.readouterr().err
    assert status == 0, err
    assert "1 event has no hits" in err and "entry 5" in err, err
    assert "duplicated" in err and "entry 3" in err, err
    assert "negative charge" in err and "entry 6" in err, err
    assert (tmp_path / "o.root").exists() and not (tmp_path / "o.root.work").exists()
