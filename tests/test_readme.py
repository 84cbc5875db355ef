"""The README's Python example runs as written (from the repository root)."""
import os
import re
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


def _python_blocks():
    text = (ROOT / "README.md").read_text()
    return re.findall(r"```python\n(.*?)```", text, re.S)


@pytest.mark.slow
def test_readme_joint_example_runs(tmp_path, monkeypatch):
    """The first example: simulate KM2A + WFCTA, joint fit, QTable with units, ≤ 15 lines."""
    import astropy.units as u

    code = _python_blocks()[0]
    assert len(code.strip().splitlines()) <= 15
    monkeypatch.chdir(tmp_path)
    ns: dict = {}
    exec(compile(code, "README.md", "exec"), ns)
    t = ns["table"]
    assert len(t) == 16 and t["energy"].unit == u.TeV and t["ra"].unit == u.deg
    assert {"nll_km2a", "nll_wfcta", "gof_km2a", "gof_wfcta", "present_wfcta"} <= set(t.colnames)
    ok = (np.asarray(t["status"]) == 0) & (np.asarray(t["present_wfcta"]) == 1)
    assert ok.sum() >= 0.5 * len(t), (np.asarray(t["status"]), np.asarray(t["present_wfcta"]))
    e_ratio = np.asarray(t["energy"].to_value(u.GeV))[ok] / 10 ** np.asarray(t["true_log10_energy"])[ok]
    assert np.median(np.abs(e_ratio - 1)) < 0.2


@pytest.mark.slow
def test_readme_api_example_runs(shared_data, monkeypatch):
    code = _python_blocks()[1]
    assert len(code.strip().splitlines()) <= 15
    monkeypatch.chdir(ROOT)
    code = code.replace("../shared/data", str(shared_data))
    ns: dict = {}
    exec(compile(code, "README.md", "exec"), ns)
    # the 3/4 array that the G4KM2A sample simulates (docs/g4km2a.md)
    assert ns["events"].km2a_ed.signal.shape == (53, 3978)
    out = ns["out"]
    assert out["reco_zenith"].shape == (53,)
    # LHAASO's G4KM2A photons come from 20 deg zenith: most fits land near it
    assert np.median(np.abs(np.degrees(out["reco_zenith"]) - 20.0)) < 1.0
