"""Command line: simulate, show, reconstruct with --detectors, clear errors, refusal of unbuilt detectors."""
import numpy as np
import pytest

from lhaaso_joint.cli import main
from joint.io.schema import read_events


def test_simulate_then_show(tmp_path, capsys):
    out = tmp_path / "iron.root"
    assert main(["simulate", "--primary", "iron", "--n-events", "50", "--seed", "3",
                 "--log10-energy-range", "5.5", "6.0", "-o", str(out)]) == 0
    rec = read_events(out)
    assert len(rec["event_id"]) == 50
    assert np.all(rec["true_mass_number"] == 56)
    assert 5.5 <= rec["true_log10_energy"].min() and rec["true_log10_energy"].max() <= 6.0
    assert main(["show", str(out)]) == 0
    text = capsys.readouterr().out
    assert "50 events" in text and "true_xmax" in text


def test_show_lhevent(shared_data, capsys):
    assert main(["show", str(shared_data / "lhaaso/km2a/KM2AMCTest.root")]) == 0
    text = capsys.readouterr().out
    assert "53 events" in text and "km2a_ed" in text and "lhevent" in text


def test_bad_file_message(tmp_path, capsys):
    bad = tmp_path / "not_root.root"
    bad.write_text("hello")
    assert main(["show", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "not_root.root" in err and "file" in err


def test_unknown_detector_refused(tmp_path, capsys):
    assert main(["simulate", "--detectors", "km2a,hess", "-o", str(tmp_path / "x.root")]) == 2
    err = capsys.readouterr().err
    assert err == "lhaaso-joint: error: --detectors: unknown detector 'hess' (known: km2a, wcda, wfcta)\n"
    assert not (tmp_path / "x.root").exists()


@pytest.mark.slow
def test_simulate_and_reconstruct_wcda_from_the_command_line(tmp_path, capsys):
    """`simulate --detectors km2a,wcda` writes both detectors and presence flags; reconstruct
    with --detectors wcda fits WCDA only and writes the WCDA columns."""
    import uproot

    src = tmp_path / "both.root"
    assert main(["simulate", "--detectors", "km2a,wcda", "--cores-on", "wcda", "--primary", "gamma",
                 "--n-events", "16", "--log10-energy-range", "3.6", "3.8", "--seed", "4",
                 "-o", str(src)]) == 0
    rec = read_events(src)
    assert "wcda_id" in rec and "km2a_ed_id" in rec
    assert set(np.unique(rec["present_wcda"])) <= {0, 1} and rec["present_wcda"].sum() >= 12
    out = tmp_path / "reco.root"
    assert main(["reconstruct", str(src), "-o", str(out), "--hypothesis", "gamma",
                 "--detectors", "wcda", "--batch-size", "16", "--quiet"]) == 0
    assert "detectors fitted: wcda" in capsys.readouterr().out
    with uproot.open(out) as f:
        t = f["reco"].arrays(library="np")
    assert {"nll_wcda", "wcda_nhit", "compactness", "pincness", "present_wcda"} <= set(t)
    assert "nll_km2a" not in t
    assert (t["status"] == 0).mean() >= 0.75


@pytest.mark.slow
def test_presence_flag_invalidates_absent_detector():
    """An event whose KM2A did not trigger (present_km2a = 0) has every KM2A channel invalid."""
    from detectors.layout import km2a_layout, wcda_layout
    from joint.io.schema import to_event_batch, to_events
    from joint.simulation import simulate_records

    rec, _ = simulate_records(12, primary="gamma", detectors=("km2a", "wcda"), cores_on="wcda",
                              log10_energy_range=(3.3, 3.3), seed=2)
    absent = rec["present_km2a"] == 0
    assert absent.any() and np.all(rec["present_wcda"][absent] == 1)
    kl, wl = km2a_layout("full"), wcda_layout()
    batch = to_event_batch(rec, km2a=kl, wcda=wl, as_jax=False)
    assert not np.asarray(batch.km2a_ed.valid)[absent].any()
    assert not np.asarray(batch.km2a_ed.hit)[absent].any()
    assert np.asarray(batch.km2a_ed.valid)[~absent].all()
    one = to_events(rec, km2a=kl, wcda=wl)[int(np.flatnonzero(absent)[0])]
    assert not np.asarray(one.km2a_md.valid).any() and np.asarray(one.wcda.valid).all()


def test_reconstruct_refuses_a_file_without_the_fitted_detector(tmp_path, capsys):
    """A WCDA-only file fitted with --detectors km2a: a clear error naming the file and the
    missing branch before any fitting, and no output written."""
    from joint.io.schema import write_events
    from joint.simulation import simulate_records

    rec, _ = simulate_records(4, primary="gamma", detectors=("wcda",), cores_on="wcda",
                              log10_energy_range=(3.8, 3.8), seed=3)
    src = tmp_path / "wcda_only.root"
    write_events(src, rec)
    out = tmp_path / "reco.root"
    assert main(["reconstruct", str(src), "-o", str(out), "--detectors", "km2a", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "wcda_only.root" in err and "km2a_ed_id" in err
    assert not out.exists() and not (tmp_path / "reco.root.part").exists()
