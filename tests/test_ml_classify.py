"""`lhaaso-joint classify`: the network columns and per-hit probabilities on a reconstructed file,
and its one-line refusals of bad input (before any work)."""
import numpy as np
import pytest

from lhaaso_joint.cli import main


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    """8 simulated KM2A photons, their reconstruction and a small KM2A-shaped model."""
    from analysis.ml.dgcnn import DGCNNConfig
    from analysis.ml.train import save, train

    d = tmp_path_factory.mktemp("classify")
    ev, reco = d / "ev.root", d / "reco.root"
    assert main(["simulate", "--primary", "gamma", "--n-events", "8", "--seed", "11",
                 "--log10-energy-range", "4.8", "5.0", "--detectors", "km2a", "-o", str(ev)]) == 0
    assert main(["reconstruct", str(ev), "-o", str(reco), "--hypothesis", "gamma",
                 "--batch-size", "8", "--quiet"]) == 0
    rng = np.random.default_rng(0)
    n, p = 64, 24
    toy = dict(points=rng.normal(size=(n, p, 7)).astype(np.float32), mask=np.ones((n, p), bool),
               event=rng.normal(size=(n, 6)).astype(np.float32),
               label=rng.integers(0, 2, n).astype(np.int8), weight=np.ones(n, np.float32),
               hit_label=np.full((n, p), -1, np.int8))
    tm = train(toy, toy, DGCNNConfig(k=4, widths=(8, 8), hidden=16), epochs=1, batch_size=32,
               progress=False)
    model = save(tm, d / "toy_gh")
    return ev, reco, model, d


def test_classify_adds_gammaness_and_hit_probabilities(small_run, capsys):
    import awkward as ak
    import uproot

    ev, reco, model, d = small_run
    out = d / "classified.root"
    assert main(["classify", str(ev), str(reco), "-o", str(out), "--gamma-hadron-model",
                 str(model), "--hit-probability"]) == 0
    assert "gammaness" in capsys.readouterr().out
    with uproot.open(out) as f:
        t = f["reco"].arrays(library="np")
        h = f["hits"].arrays()
    with uproot.open(reco) as f:
        r = f["reco"].arrays(library="np")
    ok = r["status"] == 0
    assert ok.sum() >= 6
    g = t["gammaness"]
    assert np.all((g[ok] >= 0) & (g[ok] <= 1)) and np.all(np.isnan(g[~ok]))
    np.testing.assert_array_equal(t["reco_core_x"], r["reco_core_x"])   # reco columns kept
    # one probability per hit, in the event file's order; finite for converged events
    from joint.io.schema import read_events

    rec = read_events(ev)
    assert ak.to_list(ak.num(h["km2a_ed_p_signal"])) == ak.to_list(ak.num(rec["km2a_ed_id"]))
    p0 = ak.to_numpy(h["km2a_ed_p_signal"][int(np.argmax(ok))])
    assert np.isfinite(p0).mean() > 0.9 and np.nanmin(p0) >= 0 and np.nanmax(p0) <= 1
    # no overwrite without --overwrite
    assert main(["classify", str(ev), str(reco), "-o", str(out), "--gamma-hadron-model",
                 str(model)]) == 2
    assert "exists" in capsys.readouterr().err


def test_classify_refuses_mismatched_reco(small_run, tmp_path, capsys):
    ev, reco, model, d = small_run
    other = tmp_path / "other.root"
    assert main(["simulate", "--primary", "gamma", "--n-events", "3", "--seed", "12",
                 "--log10-energy-range", "4.8", "5.0", "--detectors", "km2a", "-o", str(other)]) == 0
    capsys.readouterr()
    out = tmp_path / "x.root"
    assert main(["classify", str(other), str(reco), "-o", str(out), "--gamma-hadron-model",
                 str(model)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "reco.root" in err and "entries" in err
    assert not out.exists()
    assert main(["classify", str(ev), str(reco), "-o", str(ev), "--gamma-hadron-model",
                 str(model)]) == 2
    assert "overwrite an input" in capsys.readouterr().err
    assert main(["classify", str(ev), str(reco), "-o", str(out), "--gamma-hadron-model",
                 str(tmp_path / "nope")]) == 2
    assert "nope" in capsys.readouterr().err
