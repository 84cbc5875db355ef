"""Noise-hit tagging (issue 17): G4KM2A truth labels, the likelihood's posterior, the time window
and the ROC (analysis/noise.py), and the likelihood terms exposed for it (bit-identical nll)."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.scipy.special import gammaln, log_ndtr

from analysis import noise
from detectors import km2a
from detectors.block import ChannelBlock
from detectors.channel import (counting_channel_log_terms, counting_channel_nll,
                               noise_probability, time_log_density)
from detectors.shower import Shower


# ------------------------------------------------------------------------------- truth labels
@pytest.fixture(scope="module")
def g4km2a(shared_data):
    from detectors.layout import km2a_layout
    from joint.io.lhevent import read_lhevent

    path = shared_data / "lhaaso" / "km2a" / "KM2AMCTest.root"
    lay = km2a_layout("3/4")
    return path, lay, read_lhevent(path, km2a=lay, hit_labels=True)


def test_lhevent_labels_follow_np(g4km2a):
    """Labels = (np ≥ 0) of every pulse, read straight from the file with uproot, aligned with the
    ids; the noise total is the data README's 3229 ED noise pulses."""
    import awkward as ak
    import uproot

    path, _, rec = g4km2a
    with uproot.open(path) as f:
        t = f["event"]
        leaf = {k.split("/")[-1]: k for k in t.keys(recursive=True)}
        raw = t.arrays([leaf[n] for n in ("HitsE.np", "HitsE.id", "HitsM.np", "HitsM.id")])
    for hits, g in (("HitsE", "km2a_ed"), ("HitsM", "km2a_md")):
        np_raw = ak.to_numpy(ak.flatten(raw[leaf[f"{hits}.np"]]))
        lab = ak.to_numpy(ak.flatten(rec[f"{g}_signal"]))
        assert lab.dtype == np.int8
        assert np.array_equal(ak.num(rec[f"{g}_signal"]), ak.num(rec[f"{g}_id"]))
        assert np.array_equal(ak.to_numpy(ak.flatten(raw[leaf[f"{hits}.id"]])),
                              ak.to_numpy(ak.flatten(rec[f"{g}_id"])))
        assert set(np.unique(np_raw[np_raw < 1])) <= {-1}  # shower pulses carry np ≥ 1
        assert np.array_equal(lab, (np_raw >= 0).astype(np.int8))
    n_ed_noise = int((ak.to_numpy(ak.flatten(rec["km2a_ed_signal"])) == 0).sum())
    assert n_ed_noise == 3229  # /work/shared/data/README.md: "3229 noise pulses in the file"


def test_dense_labels_are_the_kept_pulse(g4km2a):
    """dense_labels = the label of the largest-charge pulse of each channel (first on ties),
    counted here by a plain loop over the pulses of every event."""
    import awkward as ak

    _, lay, rec = g4km2a
    dense = noise.dense_labels(rec, lay)
    for g, ids_of in (("km2a_ed", lay.ed_id), ("km2a_md", lay.md_id)):
        index = {int(i): k for k, i in enumerate(np.asarray(ids_of))}
        expect = np.full(dense[g].shape, -1, np.int8)
        best = {}
        for ev in range(len(rec["event_id"])):
            ids = ak.to_numpy(rec[f"{g}_id"][ev])
            pe = ak.to_numpy(rec[f"{g}_pe"][ev])
            lab = ak.to_numpy(rec[f"{g}_signal"][ev])
            for i, q, lb in zip(ids, pe, lab):
                key = (ev, index[int(i)])
                if key not in best or q > best[key]:
                    best[key] = q
                    expect[key] = lb
        assert np.array_equal(dense[g], expect)
    # per-pulse values of a tagger (a network's) reach the same kept pulse; NaN stays NaN
    import awkward as ak

    vals = noise.dense_hit_values(rec, lay, {
        "km2a_ed": rec["km2a_ed_signal"],
        "km2a_md": ak.values_astype(rec["km2a_md_signal"], np.float64) * np.nan})
    hit = dense["km2a_ed"] >= 0
    assert np.array_equal(vals["km2a_ed"][hit], dense["km2a_ed"][hit].astype(float))
    assert np.all(np.isnan(vals["km2a_ed"][~hit])) and np.all(np.isnan(vals["km2a_md"]))
    # a noise pulse is lost from the dense blocks only where a shower pulse of the same ED has
    # more charge: fewer noise than in the file, but most of them
    assert 0.95 * 3229 < int((dense["km2a_ed"] == 0).sum()) < 3229


# ------------------------------------------------------------------------- likelihood terms
def _old_counting_channel_nll(q, t, hit, valid, mu, fano, t_exp, sigma_t, threshold, saturation,
                              p_noise, window_ns, noise_logpdf, t_lag=None):
    """counting_channel_nll before issue 17 (without the compound branch), verbatim."""
    mu = jnp.maximum(mu, 1e-6)
    is_hit = hit & (q >= threshold)
    sat = q >= saturation
    n_eff = jnp.where(is_hit, q, 0.0) / fano
    mu_eff = mu / fano
    log_pois = n_eff * jnp.log(mu_eff) - mu_eff - gammaln(n_eff + 1.0) - jnp.log(fano)
    log_sat = log_ndtr((mu_eff - saturation / fano) / jnp.sqrt(mu_eff))
    log_p0 = -mu_eff
    log_q_sig = jnp.where(sat, log_sat, log_pois)
    log_t_sig = time_log_density(jnp.where(is_hit, t, t_exp), t_exp, sigma_t, t_lag)
    log_noise = log_p0 + jnp.log(p_noise) + noise_logpdf(q) - jnp.log(window_ns)
    log_hit = jnp.logaddexp(log_q_sig + log_t_sig, log_noise)
    log_empty = log_p0 + jnp.log1p(-p_noise)
    out = -jnp.where(is_hit, log_hit, log_empty)
    return jnp.where(valid, out, 0.0)


@pytest.mark.parametrize("emg", [True, False])
def test_nll_bit_identical_and_terms_compose(emg):
    rng = np.random.default_rng(3)
    n = 400
    q = jnp.asarray(np.where(rng.random(n) < 0.1, 3e5, rng.exponential(200.0, n)), jnp.float32)
    t = jnp.asarray(rng.normal(0, 300, n), jnp.float32)
    hit = jnp.asarray(rng.random(n) < 0.7)
    valid = jnp.asarray(rng.random(n) < 0.9)
    mu = jnp.asarray(rng.exponential(100.0, n), jnp.float32)
    t_exp = jnp.asarray(rng.normal(0, 20, n), jnp.float32)
    lag = jnp.asarray(rng.exponential(5.0, n), jnp.float32) if emg else None
    args = (q, t, hit, valid, mu, 46.4, t_exp, 2.5, 8.0, 2e5, noise_probability(2.5e3, 1e4), 1e4,
            lambda x: -x / 12.0 - jnp.log(12.0))
    new = counting_channel_nll(*args, t_lag=lag)
    old = _old_counting_channel_nll(*args, t_lag=lag)
    assert np.array_equal(np.asarray(new), np.asarray(old))
    new_j = jax.jit(lambda *a: counting_channel_nll(*a, args[-1], t_lag=lag))(*args[:-1])
    old_j = jax.jit(lambda *a: _old_counting_channel_nll(*a, args[-1], t_lag=lag))(*args[:-1])
    assert np.array_equal(np.asarray(new_j), np.asarray(old_j))
    is_hit, ls, ln, le = counting_channel_log_terms(q, t, hit, *args[4:], t_lag=lag)
    recomposed = jnp.where(valid, -jnp.where(is_hit, jnp.logaddexp(ls, ln), le), 0.0)
    assert np.array_equal(np.asarray(recomposed), np.asarray(new))


# -------------------------------------------------------------------------------- posterior
def _toy_event():
    """A 100 TeV photon at 20° on a 5-ED, 2-MD array: a big hit on the front near the core, a
    small hit 3 µs off the front, an empty channel, a below-threshold pulse, a moderate hit
    200 m out on the front; MDs: one empty, one noise-like hit off the front."""
    ed_pos = np.array([[20.0, 0, 0], [25.0, 10, 0], [0, 40.0, 0], [-30.0, 0, 0], [200.0, 0, 0]])
    md_pos = np.array([[60.0, 0, 0], [0, -80.0, 0]])
    geo = km2a.Geometry(ed_pos=ed_pos, md_pos=md_pos, ed_live=np.ones(5, bool),
                        md_live=np.ones(2, bool))
    resp = km2a.Response.nominal(geo)
    phys = km2a.DEFAULT_PHYSICS._replace(is_gamma=1.0)
    sh = Shower.make(core_x=0.0, core_y=0.0, zenith=np.radians(20.0), azimuth=0.3,
                     log10_energy=5.0, xmax=500.0, log_muon_scale=np.log(0.1), t0=0.0)
    e = jax.jit(lambda s: km2a.expected(s, geo, resp, phys))(sh)
    ed_t = np.asarray(e.ed_time)
    md_t = np.asarray(e.md_time)
    ed = ChannelBlock(signal=jnp.array([4000.0, 10.0, 0.0, 5.0, 60.0]),
                      time=jnp.array([ed_t[0] + 1.0, ed_t[1] + 3000.0, 0.0, ed_t[3], ed_t[4] + 20.0]),
                      hit=jnp.array([True, True, False, True, True]), valid=jnp.ones(5, bool),
                      n_pulses=jnp.array([1, 1, 0, 1, 1]))
    md = ChannelBlock(signal=jnp.array([0.0, 75.0]), time=jnp.array([0.0, md_t[1] - 2500.0]),
                      hit=jnp.array([False, True]), valid=jnp.ones(2, bool),
                      n_pulses=jnp.array([0, 1]))
    return sh, ed, md, geo, resp, phys, ed_t


def test_posterior_big_on_front_high_small_off_front_low():
    sh, ed, md, geo, resp, phys, _ = _toy_event()

    @jax.jit
    def evaluate(sh, ed, md):  # one compilation instead of op-by-op dispatch
        e = km2a.expected(sh, geo, resp, phys)
        obs = km2a.Observed(ed, md)
        return (noise.posterior_signal_probability(sh, ed, md, geo, resp, phys),
                noise.signal_log_odds(sh, ed, md, geo, resp, phys)[0],
                km2a.channel_nll(obs, e, geo, resp, phys, log_terms=True)[0],
                km2a.channel_nll(obs, e, geo, resp, phys)[0])

    (p_ed, p_md), lo_ed, terms, nll = evaluate(sh, ed, md)
    p_ed, p_md = np.asarray(p_ed), np.asarray(p_md)
    assert p_ed[0] > 0.999
    assert p_ed[1] < 0.01
    assert np.isnan(p_ed[2]) and np.isnan(p_ed[3])  # no hit; below the 8 PE threshold
    assert p_md[1] < 0.01 and np.isnan(p_md[0])
    fin = np.concatenate([p_ed[np.isfinite(p_ed)], p_md[np.isfinite(p_md)]])
    assert np.all((fin >= 0) & (fin <= 1))
    # the posterior is the likelihood's: L_sig/(L_sig+L_noise) with the nll's own mixture
    hit = np.asarray(terms[0])
    np.testing.assert_allclose(np.asarray(-jnp.logaddexp(terms[1], terms[2]))[hit],
                               np.asarray(nll)[hit], rtol=1e-6)
    np.testing.assert_allclose(np.asarray(lo_ed)[hit], np.asarray(terms[1] - terms[2])[hit])


def test_posterior_vmaps_over_a_padded_batch():
    sh, ed, md, geo, resp, phys, _ = _toy_event()
    stack = lambda x: jnp.stack([x, x])
    shb = jax.tree_util.tree_map(stack, sh)
    edb = jax.tree_util.tree_map(stack, ed)
    mdb = jax.tree_util.tree_map(stack, md)
    # second event: padding (all channels invalid)
    edb = edb._replace(valid=edb.valid.at[1].set(False))
    f = jax.jit(jax.vmap(lambda s, e, m: noise.posterior_signal_probability(s, e, m, geo, resp, phys)))
    p_ed, _ = f(shb, edb, mdb)
    one, _ = jax.jit(lambda s, e, m: noise.posterior_signal_probability(
        s, e, m, geo, resp, phys))(sh, ed, md)
    np.testing.assert_allclose(np.asarray(p_ed[0]), np.asarray(one), rtol=1e-5)
    assert np.all(np.isnan(np.asarray(p_ed[1])))


# ------------------------------------------------------------------------------ time window
def test_time_window_roc_point_matches_direct_count():
    sh, ed, md, geo, resp, phys, ed_t = _toy_event()
    (keep_ed, score_ed), _ = jax.jit(
        lambda s, e, m: noise.time_window_signal(s, e, m, geo, resp, phys))(sh, ed, md)
    keep_ed, score_ed = np.asarray(keep_ed), np.asarray(score_ed)
    assert keep_ed.tolist() == [True, False, False, False, True]
    assert np.isnan(score_ed[2]) and np.isnan(score_ed[3])
    (keep_r, _), _ = jax.jit(lambda s, e, m: noise.time_window_signal(
        s, e, m, geo, resp, phys, r_max=100.0))(sh, ed, md)
    assert np.asarray(keep_r).tolist() == [True, False, False, False, False]
    # on a random event: the ROC point of the classic window equals a direct count of
    # −30 < Δt < 50 ns among labelled hits
    rng = np.random.default_rng(5)
    n = 3000
    label = (rng.random(n) < 0.6).astype(int)
    dt = np.where(label == 1, rng.normal(5, 15, n), rng.uniform(-5000, 5000, n))
    score = -np.abs(dt - 10.0)
    direct_eff = np.mean((dt[label == 1] > -30) & (dt[label == 1] < 50))
    direct_rej = np.mean(~((dt[label == 0] > -30) & (dt[label == 0] < 50)))
    pt = noise.cut_point(score > -40.0, label)
    assert pt["eff"] == pytest.approx(direct_eff) and pt["rej"] == pytest.approx(direct_rej)
    r = noise.roc(score, label)
    j = np.searchsorted(-np.asarray(r["threshold"]), 40.0, side="left")  # first thr <= -40
    thr = r["threshold"][j - 1]  # smallest threshold above −40: the cut score > −40
    assert thr > -40.0
    assert r["eff"][j - 1] == pytest.approx(direct_eff)
    assert r["rej"][j - 1] == pytest.approx(direct_rej)


# ---------------------------------------------------------------------------------------- ROC
def test_roc_auc_perfect_and_random():
    rng = np.random.default_rng(11)
    label = (rng.random(5000) < 0.5).astype(int)
    perfect = label + 0.1 * rng.random(5000)
    r = noise.roc(perfect, label)
    assert r["auc"] == pytest.approx(1.0)
    wp = r["working_points"]["0.99"]
    assert wp["eff"] >= 0.99 and wp["rej"] == pytest.approx(1.0)
    r = noise.roc(rng.random(5000), label)
    assert abs(r["auc"] - 0.5) < 0.03
    # all ties: AUC exactly ½
    assert noise.roc(np.zeros(100), np.arange(100) % 2)["auc"] == pytest.approx(0.5)
    # inverted: 0; labels other than 0/1 and NaN scores are ignored
    lab = np.r_[label, [-1, -1]]
    assert noise.roc(np.r_[-perfect, [np.nan, 7.0]], lab)["auc"] == pytest.approx(0.0)


def test_binomial_errors():
    p, err, lo, hi = noise.binomial_error(90, 100)
    assert p == pytest.approx(0.9) and err == pytest.approx(0.03)
    assert lo < 0.9 < hi
    p, err, lo, hi = noise.binomial_error(100, 100)
    assert err == 0 and lo < 1.0 and hi == pytest.approx(1.0)
