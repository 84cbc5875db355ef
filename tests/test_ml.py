"""analysis/ml: the DGCNN's graph and invariances, a tiny training run, save/load, figures of merit,
point clouds of simulated KM2A events."""
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from analysis.ml import metrics
from analysis.ml.dgcnn import DGCNN, DGCNNConfig, knn


def _cloud(rng, n_events, n_points, n_real, clump):
    """Toy point clouds: uniform points, class 1 with a tight clump of 6 points (a 'sub-shower')."""
    pts = rng.normal(size=(n_events, n_points, 7)).astype(np.float32)
    mask = np.zeros((n_events, n_points), bool)
    for i in range(n_events):
        mask[i, :n_real[i]] = True
        if clump[i]:
            c = rng.normal(size=3) * 0.5
            pts[i, :6, :3] = c + 0.05 * rng.normal(size=(6, 3))
            pts[i, :6, 3] = 2.5
    pts[~mask] = 0.0
    return pts, mask


def test_knn_nearest_and_padding():
    x = jnp.asarray([[[0.0], [1.0], [3.0], [10.0], [0.0]]])
    mask = jnp.asarray([[True, True, True, True, False]])
    idx, ok = knn(x, mask, 3)
    assert idx[0, 0].tolist() == [0, 1, 2]          # itself, then 1, then 3 (not the padded 0)
    assert idx[0, 3, 0] == 3 and bool(ok[0, 0].all())
    assert not bool(ok[0, 4].any())                  # a padding point has no neighbours
    idx, ok = knn(x, mask, 5)                         # k > valid points: padding masked out
    assert int(ok[0, 0].sum()) == 4


def test_dgcnn_permutation_and_padding_invariance():
    rng = np.random.default_rng(0)
    cfg = DGCNNConfig(k=4, widths=(8, 8), hidden=16, n_event=2)
    m = DGCNN(cfg, rngs=nnx.Rngs(0))
    pts, mask = _cloud(rng, 2, 12, [9, 12], [True, False])
    ev = rng.normal(size=(2, 2)).astype(np.float32)
    out, hit = m(jnp.asarray(pts), jnp.asarray(mask), jnp.asarray(ev))
    perm = rng.permutation(12)
    out_p, hit_p = m(jnp.asarray(pts[:, perm]), jnp.asarray(mask[:, perm]), jnp.asarray(ev))
    np.testing.assert_allclose(np.asarray(out), np.asarray(out_p), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(np.asarray(hit)[:, perm][mask[:, perm]],
                               np.asarray(hit_p)[mask[:, perm]], rtol=1e-4, atol=1e-5)
    # more padding changes nothing
    pad = np.concatenate([pts, np.zeros((2, 5, 7), np.float32)], 1)
    pmask = np.concatenate([mask, np.zeros((2, 5), bool)], 1)
    out_pad, _ = m(jnp.asarray(pad), jnp.asarray(pmask), jnp.asarray(ev))
    np.testing.assert_allclose(np.asarray(out), np.asarray(out_pad), rtol=1e-4, atol=1e-5)


def test_tiny_training_learns_a_clump_and_round_trips(tmp_path):
    from analysis.ml.train import load, predict, save, train

    rng = np.random.default_rng(1)

    def sample(n, seed):
        r = np.random.default_rng(seed)
        lab = r.integers(0, 2, n)
        pts, mask = _cloud(r, n, 24, r.integers(12, 25, n), lab == 1)
        hit = np.where(mask, 0, -1).astype(np.int8)
        hit[lab == 1, :6] = 1
        return dict(points=pts, mask=mask, event=r.normal(size=(n, 3)).astype(np.float32),
                    label=lab.astype(np.int8), weight=np.ones(n, np.float32), hit_label=hit)

    tr, va, te = sample(384, 2), sample(128, 3), sample(256, 4)
    cfg = DGCNNConfig(n_features=7, n_event=3, k=6, widths=(16, 16), hidden=32)
    tm = train(tr, va, cfg, epochs=6, batch_size=32, learning_rate=5e-3, hit_weight=0.5,
               progress=False)
    out, hitp = predict(tm, te)
    a = metrics.auc(out[:, 0], te["label"])
    assert a > 0.9, a                                         # learnt the clump
    known = te["mask"] & (te["hit_label"] >= 0)
    assert metrics.auc(hitp[known], te["hit_label"][known]) > 0.9
    assert tm.card["training"]["best_epoch"] >= 0
    card = save(tm, tmp_path / "toy")
    with pytest.raises(FileExistsError):
        save(tm, tmp_path / "toy")
    tm2 = load(card)
    out2, hit2 = predict(tm2, te)
    np.testing.assert_allclose(out, out2, rtol=1e-5, atol=1e-6)
    assert json.loads(card.read_text())["config"]["widths"] == [16, 16]
    # a weights file of another shape is refused with the parameter's name
    bad = DGCNN(DGCNNConfig(n_features=7, n_event=3, k=6, widths=(8, 8), hidden=32),
                rngs=nnx.Rngs(0))
    tm2.model = bad
    save(tm2, tmp_path / "bad")
    (tmp_path / "bad.json").write_text(card.read_text())
    with pytest.raises(ValueError, match="parameter"):
        load(tmp_path / "bad")


def test_survival_errors_and_upper_limits():
    rng = np.random.default_rng(3)
    sig = rng.normal(2.0, 1.0, 4000)
    bkg = rng.normal(0.0, 1.0, 4000)
    cut = metrics.cut_at_efficiency(sig, 0.9)
    assert abs(np.mean(sig >= cut) - 0.9) < 0.002
    f, err, ul = metrics.survival(bkg, cut)
    expect = np.mean(bkg >= cut)
    assert not ul and f == pytest.approx(expect) and err == pytest.approx(
        np.sqrt(expect * (1 - expect) / 4000), rel=0.01)
    f, err, ul = metrics.survival(bkg, 100.0)
    assert ul and f == pytest.approx(2.30 / 4000)
    rows = metrics.survival_table({"s": np.r_[sig, bkg]}, np.r_[np.ones(4000), np.zeros(4000)],
                                  np.full(8000, 20.0), np.ones(8000), bins=((10, 25),),
                                  efficiencies=(0.9,))
    assert rows[0]["survival"] == pytest.approx(expect, rel=0.05)
    assert rows[0]["q"] == pytest.approx(rows[0]["eff_gamma_real"] / np.sqrt(rows[0]["survival"]))


def test_auc_limits():
    rng = np.random.default_rng(4)
    y = np.r_[np.ones(500), np.zeros(500)]
    assert metrics.auc(np.r_[np.ones(500) + 1, np.zeros(500)], y) == 1.0
    assert abs(metrics.auc(rng.normal(size=1000), y) - 0.5) < 0.05
    assert metrics.auc(np.zeros(1000), y) == 0.5                # all tied
    eff, rej = metrics.roc_curve(np.r_[np.ones(500), np.zeros(500)], y)
    assert eff.max() == 1.0 and rej.max() == 1.0


def test_km2a_points_of_a_simulated_event():
    from analysis.ml.points import KM2A_FEATURES, km2a_points
    from detectors import km2a
    from detectors.layout import km2a_layout
    from detectors.shower import Shower

    lay = km2a_layout("full")
    geo = km2a.Geometry.from_layout(lay)
    resp = km2a.Response.nominal(geo)
    cx, cy = geo.ed_pos[2500, :2] + 2.0       # on the ED grid (not the WCDA area)
    sh = Shower.make(log10_energy=5.0, zenith=0.3, core_x=cx, core_y=cy)
    obs, trig = km2a.simulate(jax.random.PRNGKey(2), sh, geo, resp,
                              km2a.DEFAULT_PHYSICS._replace(is_gamma=1.0))
    pc = km2a_points(sh, obs.ed, obs.md, geo, resp, n_ed=64, n_md=16)
    assert pc.points.shape == (80, len(KM2A_FEATURES))
    n_ed_hits = int(jnp.sum(obs.ed.hit & obs.ed.valid))
    assert int(pc.mask[:64].sum()) == min(64, n_ed_hits)
    # the kept EDs are the largest charges, in order, and point back to their channels
    ch = np.asarray(pc.channel[:64])[np.asarray(pc.mask[:64])]
    q = np.asarray(obs.ed.signal)[ch]
    assert np.all(np.diff(q) <= 0) and q[-1] >= np.sort(np.asarray(obs.ed.signal))[-64]
    np.testing.assert_allclose(np.asarray(pc.points[0, 0]) * 100 + cx, geo.ed_pos[ch[0], 0],
                               atol=1e-3)
    assert np.all(np.asarray(pc.points[64:, 6])[np.asarray(pc.mask[64:])] == 1.0)   # MDs
    # large charges near the core lie on the front: |dt| small in asinh units
    assert float(jnp.median(jnp.abs(pc.points[:10, 2]))) < 1.0
