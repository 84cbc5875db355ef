"""examples/overlapping_sources_and_flare.ipynb: every code cell compiles, imports the package only
(nothing from benchmarks/, no sys.path), and the cells the issue asks for are there (gammapy
DataStore without warnings, the 3-D fit, the one-vs-two-source TS, LightCurveEstimator).

Not yet committed executed: its run of 2026-12-07 reached the fits (printed output in
benchmarks/results/overlapping_sources_partial_run.txt) and failed in the light-curve cell
(fixed since, not rerun: ~30 min on 2 CPUs). The physics criteria of issue 18 are to be
asserted on its executed outputs once it is (BENCHMARKS.md, issue 18)."""
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "examples" / "overlapping_sources_and_flare.ipynb"


def test_cells_compile_and_use_the_package_only():
    nb = json.loads(NOTEBOOK.read_text())
    code = ["".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code"]
    assert len(code) >= 7
    for i, src in enumerate(code):
        body = "\n".join(l for l in src.splitlines() if not l.startswith("%"))
        compile(body, f"{NOTEBOOK.name}[{i}]", "exec")
        assert "sys.path" not in src and "benchmarks" not in src
    allsrc = "\n".join(code)
    for need in ('warnings.simplefilter("error")', "DataStore.from_dir", "GaussianSpatialModel",
                 "LightCurveEstimator", "ExcessMapEstimator", "TS = stat1 - stat2"):
        assert need in allsrc, need
