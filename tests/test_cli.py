"""Command line: simulate (truth only so far), show, clear errors, refusal of unbuilt detectors."""
import numpy as np
import pytest

from joint.cli import main
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


def test_unbuilt_detector_refused(tmp_path):
    with pytest.raises(SystemExit, match="not built yet|unknown detector"):
        main(["simulate", "--detectors", "wfcta", "-o", str(tmp_path / "x.root")])
