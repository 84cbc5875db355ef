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
    assert ns["r"].shape == (1000, 5216)
    assert np.all(np.isfinite(np.asarray(ns["r"])))
