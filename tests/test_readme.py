"""The README's Python example runs as written (from the repository root)."""
import os
import re
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def test_readme_api_example_runs(shared_data, monkeypatch):
    text = (ROOT / "README.md").read_text()
    code = re.search(r"```python\n(.*?)```", text, re.S).group(1)
    assert len(code.strip().splitlines()) <= 15
    monkeypatch.chdir(ROOT)
    code = code.replace("../shared/data", str(shared_data))
    ns: dict = {}
    exec(compile(code, "README.md", "exec"), ns)
    assert ns["events"].km2a_ed.signal.shape == (53, 5216)
    out = ns["out"]
    assert out["reco_zenith"].shape == (53,)
    # LHAASO's G4KM2A photons come from 20 deg zenith: most fits land near it
    assert np.median(np.abs(np.degrees(out["reco_zenith"]) - 20.0)) < 1.0
