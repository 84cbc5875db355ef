"""analysis.composition on synthetic numbers with known answers (numpy only, fast)."""
import math

import numpy as np
import pytest

from analysis import composition as C


def test_is_light_and_mass_names():
    assert C.LIGHT_MASSES == (1, 4)
    np.testing.assert_array_equal(C.is_light([1, 4, 14, 56, 1.0000001]), [1, 1, 0, 0, 1])
    assert [C.MASS_NAMES[a] for a in C.MASSES] == ["H", "He", "CNO", "Fe"]


def test_purity_efficiency_counts():
    # scores 0..9, light = the top four (6..9) plus score 2
    score = np.arange(10.0)
    light = np.isin(score, [2, 6, 7, 8, 9])
    pur, eff, n = C.purity_efficiency(score, light, [6.0, 5.5, 2.0, 10.0])
    np.testing.assert_allclose(pur[:3], [1.0, 4 / 4, 5 / 8])
    np.testing.assert_allclose(eff, [4 / 5, 4 / 5, 1.0, 0.0])
    np.testing.assert_allclose(n, [4, 4, 8, 0])
    assert math.isnan(pur[3])  # nothing selected


def test_purity_efficiency_weights_and_nan_scores():
    score = np.array([3.0, 2.0, 1.0, np.nan])
    light = np.array([True, False, True, True])
    w = np.array([1.0, 3.0, 1.0, 2.0])
    pur, eff, _ = C.purity_efficiency(score, light, [2.0, 1.0], weights=w)
    np.testing.assert_allclose(pur, [1 / 4, 2 / 5])
    # the NaN-score light event counts in the denominator of the efficiency, never selected
    np.testing.assert_allclose(eff, [1 / 4, 2 / 4])


def test_efficiency_at_purity_interpolates_and_nan_when_unreachable():
    # ranked from the top: L L L L H L H H ...: purity after k = 4: 1.0, k = 5: 0.8, k = 6: 5/6
    score = np.arange(10.0)[::-1]
    light = np.array([1, 1, 1, 1, 0, 1, 0, 0, 0, 0], bool)
    # 100%: the first four (efficiency 4/5)
    assert C.efficiency_at_purity(score, light, 1.0) == pytest.approx(0.8)
    # 90%: last point at or above 0.9 is k=4 (1.0); next k=5 (0.8): halfway in purity -> 0.8
    assert C.efficiency_at_purity(score, light, 0.9) == pytest.approx(0.8)
    # 5/6 is reached at k = 6 (efficiency 1); then k=7 (5/7)
    e = C.efficiency_at_purity(score, light, [0.8, 5 / 6 - 1e-12])
    np.testing.assert_allclose(e, [1.0, 1.0])
    # 0.6: every point down to k=8 (5/8 = 0.625) passes; the efficiency is already 1
    assert C.efficiency_at_purity(score, light, 0.6) == pytest.approx(1.0)
    # no light event at all
    assert math.isnan(C.efficiency_at_purity(score, np.zeros(10, bool), 0.5))


def test_efficiency_at_purity_interpolation_between_points():
    # L L H L H: purity 1, 1, 2/3, 3/4, 3/5; efficiency 1/3, 2/3, 2/3, 1, 1
    score = np.array([5.0, 4, 3, 2, 1])
    light = np.array([1, 1, 0, 1, 0], bool)
    # 0.7: last point >= 0.7 is k=4 (0.75, eff 1); next k=5 (0.6, eff 1) -> 1
    assert C.efficiency_at_purity(score, light, 0.7) == pytest.approx(1.0)
    # 0.8: last point >= 0.8 is k=2 (1.0, eff 2/3) ... next k=3 (2/3, eff 2/3) -> 2/3
    assert C.efficiency_at_purity(score, light, 0.8) == pytest.approx(2 / 3)
    # with weights making the heavy event at k=3 count half: purity there 2/2.5 = 0.8
    w = np.array([1, 1, 0.5, 1, 1.0])
    assert C.efficiency_at_purity(score, light, 0.9, w) == pytest.approx(2 / 3)
    # k=3: p=0.8, k=4: p=3/3.5=0.857 -> 0.85 reached at k=4 (eff 1), next k=5 p=0.667 -> eff 1
    assert C.efficiency_at_purity(score, light, 0.85, w) == pytest.approx(1.0)
    # interpolation proper: light weights unequal so that efficiency moves between points
    score = np.array([3.0, 2.0, 1.0])
    light = np.array([True, True, False])
    # k=1: p=1, e=.5; k=2: p=1, e=1; k=3: p=2/3, e=1 -> 0.9 gives 1
    assert C.efficiency_at_purity(score, light, 0.9) == pytest.approx(1.0)
    score = np.array([3.0, 2.0, 1.0])
    light = np.array([True, False, True])
    # k=1: p=1, e=.5; k=2: p=.5, e=.5; k=3: p=2/3, e=1 -> 0.6: last >= 0.6 is k=3 (e=1)
    assert C.efficiency_at_purity(score, light, 0.6) == pytest.approx(1.0)
    # 0.75: last >= .75 is k=1; next k=2 has the same efficiency -> 0.5
    assert C.efficiency_at_purity(score, light, 0.75) == pytest.approx(0.5)


def test_efficiency_at_purity_linear_interpolation_value():
    # weighted so that the step after the last good point moves both purity and efficiency:
    # k=1: light w=1 -> p=1, e=1/3; k=2: light w=2 + heavy tie? use a mixed tie group
    score = np.array([2.0, 1.0, 1.0])
    light = np.array([True, True, False])
    w = np.array([1.0, 2.0, 1.0])
    # tie group at 1.0 -> one point: p=3/4, e=1. Points: (p=1, e=1/3), (p=.75, e=1)
    # 0.9: f = (1-.9)/(1-.75) = 0.4 -> e = 1/3 + 0.4 * 2/3
    assert C.efficiency_at_purity(score, light, 0.9, w) == pytest.approx(1 / 3 + 0.4 * 2 / 3)
    assert C.threshold_at_purity(score, light, 0.9, w) == 2.0
    assert C.threshold_at_purity(score, light, 0.7, w) == 1.0


def test_threshold_at_purity_unreachable():
    assert math.isnan(C.threshold_at_purity([1.0, 2.0], [False, False], 0.5))
    assert math.isnan(C.efficiency_at_purity([1.0, 2.0], [False, True], 1.01))


def test_elongation_cut_recovers_line_and_centres():
    rng = np.random.default_rng(1)
    lg = rng.uniform(5.5, 6.5, 400)
    x = 600 + 55 * (lg - 6) + rng.normal(0, 5, lg.size)
    cut = C.ElongationCut.fit(lg, x)
    assert cut.coeffs[0] == pytest.approx(55, abs=2)
    assert cut.coeffs[1] == pytest.approx(600 - 6 * 55, abs=12)
    s = cut.score(lg, x)
    assert abs(s.mean()) < 0.5 and 4 < s.std() < 6
    assert cut.score(6.0, 620.0) == pytest.approx(20.0, abs=1.5)


def test_nmu_ne_variable():
    v = C.nmu_ne_variable([100.0, 0.0, -3.0, 10.0, 5.0], [1000.0, 1000.0, 1000.0, 0.0, np.nan])
    assert v[0] == pytest.approx(2 - 0.86 * 3)
    assert v[1] == pytest.approx(np.log10(0.5) - 0.86 * 3)  # no muon: floored at half a muon
    assert v[2] == v[1]
    assert np.isnan(v[3]) and np.isnan(v[4])
    assert C.nmu_ne_variable(10.0, 100.0, exponent=1.0) == pytest.approx(-1.0)


def test_fisher_discriminant_finds_the_separating_direction():
    # two classes separated along (1, -1) after an energy trend common to both; the variables'
    # individual separation is weak, their difference strong
    rng = np.random.default_rng(2)
    n = 4000
    light = rng.random(n) < 0.5
    lg = rng.uniform(5.5, 6.5, n)
    common = rng.normal(0, 3.0, n)  # correlated noise in both variables
    x1 = 50 * lg + common + np.where(light, 1.0, -1.0) + rng.normal(0, 0.3, n)
    x2 = -20 * lg + common - np.where(light, 1.0, -1.0) + rng.normal(0, 0.3, n)
    fis = C.FisherDiscriminant.fit(np.c_[x1, x2], lg, light)
    np.testing.assert_allclose(fis.centring[:, 0], [50, -20], atol=0.5)
    direction = fis.w / np.linalg.norm(fis.w)
    assert abs(direction @ np.array([1, -1]) / np.sqrt(2)) > 0.99
    s = fis.score(np.c_[x1, x2], lg)
    assert s[light].mean() > 0.4 and s[~light].mean() < -0.4  # normalised separation 1
    assert s[light].mean() - s[~light].mean() == pytest.approx(1.0, abs=0.02)
    # near-perfect separation: efficiency at 95% purity close to 1, unlike x1 alone
    e2 = C.efficiency_at_purity(s, light, 0.95)
    cut = C.ElongationCut.fit(lg, x1)
    e1 = C.efficiency_at_purity(cut.score(lg, x1), light, 0.95)
    assert e2 > 0.95 and (np.isnan(e1) or e1 < 0.3)
    # a sequence of columns works like the matrix
    np.testing.assert_allclose(fis.score([x1, x2], lg), s)


def test_fisher_needs_both_classes():
    with pytest.raises(ValueError):
        C.FisherDiscriminant.fit(np.ones((5, 2)), np.ones(5), np.ones(5, bool))


def test_robust_and_binned_stats():
    rng = np.random.default_rng(3)
    r = rng.normal(7.0, 10.0, 200_000)
    s = C.robust_stats(np.r_[r, np.nan])
    assert s["n"] == r.size
    assert s["median"] == pytest.approx(7.0, abs=0.1)
    assert s["half68"] == pytest.approx(10.0 * 0.9945, rel=0.01)  # 16-84% of a Gaussian: 0.9945σ
    assert s["std"] == pytest.approx(10.0, rel=0.01)
    assert C.robust_stats([])["n"] == 0
    x = np.array([0.0, 0.5, 1.0, 1.5, 2.0])
    b = C.binned_stats(x, [1.0, 3.0, 10.0, 20.0, 30.0], [0.0, 1.0, 2.0])
    assert [bb["n"] for bb in b] == [2, 3]  # the last edge counts in the last bin
    assert b[0]["median"] == 2.0 and b[1]["median"] == 20.0
    assert b[1]["lo"] == 1.0 and b[1]["hi"] == 2.0


def test_energy_resolution():
    true = np.full(5, 6.0)
    reco = true + np.log10([0.9, 1.0, 1.1, 1.2, 1.0])
    e = C.energy_resolution(reco, true)
    assert e["n"] == 5
    assert e["bias_pct"] == pytest.approx(0.0, abs=1e-9)
    assert e["mean_bias_pct"] == pytest.approx(4.0)
    assert e["res68_pct"] == pytest.approx(np.percentile([10, 0, 10, 20, 0], 68))


def test_flux_weights_and_halves():
    a = np.array([1, 1, 4, 56, 56, 56, 14])
    lg = np.array([5.5, 6.5, 6.0, 5.5, 5.5, 6.5, 6.0])
    w = C.flux_weights(a, lg, {1: 0.3, 4: 0.3, 14: 0.15, 56: 0.25})
    assert w[a == 1].sum() == pytest.approx(0.3) and w[a == 56].sum() == pytest.approx(0.25)
    # flat-in-log E simulation reweighted to E^-2.7: one decade apart -> 10^1.7
    assert w[0] / w[1] == pytest.approx(10 ** 1.7)
    assert w[3] / w[5] == pytest.approx(10 ** 1.7)
    train = C.split_halves(np.repeat([1, 4, 14, 56], 5), seed=4)
    assert train.sum() == 12  # ceil(5/2) of each mass
    for k in range(4):
        assert train[5 * k:5 * k + 5].sum() == 3
    np.testing.assert_array_equal(train, C.split_halves(np.repeat([1, 4, 14, 56], 5), seed=4))


def test_quality_mask_uses_status_presence_and_image():
    rec = {"event_id": np.arange(4), "present_km2a": np.array([1, 1, 1, 1]),
           "present_wfcta": np.array([1, 0, 1, 1])}
    out = {"status": np.array([0, 0, 1, 0]), "reco_xmax": np.array([600.0, 600, 600, 600]),
           "wfcta_size": np.array([10.0, 10, 10, 0])}
    np.testing.assert_array_equal(C.quality_mask(rec, out, "joint"), [1, 0, 0, 0])
    np.testing.assert_array_equal(C.quality_mask(rec, {k: v for k, v in out.items()
                                                       if k != "wfcta_size"}, "km2a"), [1, 0, 0, 1])


def _synthetic_sample(n_per_mass=60, seed=5):
    """Records and three 'reconstructions' with known Xmax and energy errors."""
    rng = np.random.default_rng(seed)
    a = np.repeat(C.MASSES, n_per_mass).astype(float)
    n = a.size
    lg = rng.uniform(5.5, 6.5, n)
    xmax = 700 + 60 * (lg - 6) - 25 * np.log(a) + rng.normal(0, 20, n)
    rec = {"event_id": np.arange(n), "run": np.zeros(n, int), "true_mass_number": a,
           "true_log10_energy": lg, "true_xmax": xmax, "present_km2a": np.ones(n, np.int8),
           "present_wfcta": np.r_[np.zeros(1, np.int8), np.ones(n - 1, np.int8)]}
    nmu = 10 ** (0.86 * 3 + 0.1 * np.log(a) + rng.normal(0, 0.05, n))
    outs = {}
    for m, sx, bias in (("wfcta", 10.0, 5.0), ("km2a", 40.0, 0.0), ("joint", 5.0, -2.0)):
        outs[m] = {"status": np.where(np.arange(n) % 10 == 3, 1, 0),
                   "reco_xmax": xmax + bias + rng.normal(0, sx, n),
                   "reco_log10_energy": lg + rng.normal(0, 0.02, n) + np.log10(1.01),
                   "wfcta_size": np.full(n, 100.0)}
        if m != "wfcta":
            outs[m]["ne"] = np.full(n, 1000.0)
            outs[m]["nmu"] = nmu
    return rec, outs


def test_summarise_on_a_synthetic_sample():
    rec, outs = _synthetic_sample()
    s = C.summarise(rec, outs)
    assert s["masses"] == [1, 4, 14, 56] and s["n_hybrid"] == 239
    for m, sx, bias in (("wfcta", 10.0, 5.0), ("km2a", 40.0, 0.0), ("joint", 5.0, -2.0)):
        assert s["status"][m] == {"0": 216, "1": 24, "2": 0, "3": 0}
        x = s["xmax"][m]["all"]["all"]
        assert x["n"] == 215  # status 0 and hybrid
        assert x["half68"] == pytest.approx(sx, rel=0.2) and x["std"] == pytest.approx(sx, rel=0.2)
        assert x["median"] == pytest.approx(bias, abs=0.3 * sx)
        assert s["xmax_loose"][m]["all"]["n"] == 239
        assert s["energy"][m]["light_all"]["bias_pct"] == pytest.approx(1.0, abs=1.6)
        assert s["energy"][m]["light_all"]["sigma_log10E"] == pytest.approx(0.02, rel=0.2)
        assert s["mean_xmax"][m]["Fe"] < s["mean_xmax"][m]["H"]
    # the muon richness (here nearly a mass meter) beats Xmax alone; a precise Xmax beats a poor one
    sep = s["separation"]
    for m in ("km2a", "joint", "wfcta"):  # wfcta takes Nmu/Ne from the KM2A-alone fit
        e2 = sep[m]["xmax_nmu"]["eff_at_purity"]["0.90"]
        assert e2 > 0.9
    assert sep["joint"]["xmax"]["eff_at_purity"]["0.90"] > sep["km2a"]["xmax"]["eff_at_purity"]["0.90"]
    # per mass, one entry per energy bin (what the tables and figures of the notebook and of
    # benchmarks/light_heavy.py are drawn from)
    for m in ("km2a", "joint", "wfcta"):
        for k in ("H", "He", "CNO", "Fe", "all"):
            assert len(s["xmax"][m][k]["bins"]) == len(s["edges"]) - 1
            assert sum(b["n"] for b in s["xmax"][m][k]["bins"]) == s["xmax"][m][k]["all"]["n"]


# ------------------------------------------------------------------------------------------------
# the composition table (issue 16): counting with failed fits, binomial errors
# ------------------------------------------------------------------------------------------------
def test_selection_counts_count_failed_fits_in_n_light_all():
    # light: events 0-4; event 2 failed (NaN score), event 4 is outside the population
    light = np.array([1, 1, 1, 1, 1, 0, 0, 0, 0, 0], bool)
    score = np.array([5.0, 4.0, np.nan, 1.0, 3.0, 6.0, 0.5, np.nan, 2.0, 4.5])
    pop = np.ones(10, bool)
    pop[4] = False
    sel = np.isfinite(score) & (score >= 3.0)
    c = C.selection_counts(sel, light, pop)
    # by hand from the inputs: light in the population 0,1,2,3; selected light 0,1; heavy 5,9
    n_all = sum(1 for i in range(10) if light[i] and pop[i])
    n_ls = sum(1 for i in range(10) if light[i] and pop[i] and sel[i])
    n_hs = sum(1 for i in range(10) if not light[i] and pop[i] and sel[i])
    assert (c["n_light_all"], c["n_light_sel"], c["n_heavy_sel"]) == (n_all, n_ls, n_hs)
    assert n_all == 4  # the failed fit is counted, the event outside the population is not
    assert c["efficiency"] == pytest.approx(n_ls / n_all)
    assert c["purity"] == pytest.approx(n_ls / (n_ls + n_hs))
    p, e = n_ls / (n_ls + n_hs), n_ls / n_all
    assert c["purity_err"] == pytest.approx(math.sqrt(p * (1 - p) / (n_ls + n_hs)))
    assert c["efficiency_err"] == pytest.approx(math.sqrt(e * (1 - e) / n_all))
    # weights: sums of weights, effective counts n²/Σw²
    w = np.arange(1.0, 11.0)
    cw = C.selection_counts(sel, light, pop, w)
    wl_all = w[light & pop].sum()
    wl_sel = w[light & pop & sel].sum()
    e = wl_sel / wl_all
    n_eff = wl_all ** 2 / (w[light & pop] ** 2).sum()
    assert cw["efficiency"] == pytest.approx(e)
    assert cw["efficiency_err"] == pytest.approx(math.sqrt(e * (1 - e) / n_eff))
    # nothing selected: purity undefined, efficiency 0
    c0 = C.selection_counts(np.zeros(10, bool), light, pop)
    assert math.isnan(c0["purity"]) and c0["efficiency"] == 0.0


def test_composition_table_trains_on_one_half_and_counts_per_bin():
    rng = np.random.default_rng(11)
    n = 400
    a = rng.choice([1, 4, 14, 56], n)
    light = C.is_light(a)
    lg = rng.uniform(5.5, 6.5, n)
    xt = 700 - 25 * np.log(a) + rng.normal(0, 20, n)
    x = xt + rng.normal(3.0, 10.0, n)
    analysed = rng.random(n) > 0.2           # 20% failed fits or cut events
    score = x - 650.0
    pop = rng.random(n) > 0.05               # a few non-hybrid events
    train = rng.random(n) < 0.5
    edges = (5.5, 6.0, 6.5)
    t = C.composition_table({"m": x}, {"m": analysed}, {"m": score}, xt, lg, a, pop, train,
                            purity=0.8, edges=edges)
    r = t["methods"]["m"]
    # the threshold is the one reaching the purity on the analysed training events
    tr = train & analysed & pop
    assert r["threshold"] == C.threshold_at_purity(score[tr], light[tr], 0.8)
    chosen = analysed & pop & (score >= r["threshold"])
    test = pop & ~train
    for i, b in enumerate(r["selection"]["bins"]):
        inb = (lg >= edges[i]) & ((lg < edges[i + 1]) if i == 0 else (lg <= edges[i + 1]))
        n_all = int((test & inb & light).sum())      # failed fits included
        n_ls = int((test & inb & light & chosen).sum())
        n_hs = int((test & inb & ~light & chosen).sum())
        assert (b["n_light_all"], b["n_light_sel"], b["n_heavy_sel"]) == (n_all, n_ls, n_hs)
        assert b["efficiency"] == pytest.approx(n_ls / n_all)
        assert b["purity"] == pytest.approx(n_ls / (n_ls + n_hs))
        # the failed light fits lower the efficiency: it is at most the analysed fraction
        assert b["efficiency"] <= (test & inb & light & analysed).sum() / n_all + 1e-12
    al = r["selection"]["all"]
    assert al["n_light_all"] == int((test & light).sum())
    # Xmax per mass and bin on the analysed events of the population
    for mm in (1, 56):
        s = r["xmax"][C.MASS_NAMES[mm]]["all"]
        sel = analysed & pop & (a == mm)
        assert s["n"] == sel.sum()
        assert s["median"] == pytest.approx(np.median((x - xt)[sel]))
    assert r["analysed_fraction"] == pytest.approx((analysed & pop).sum() / pop.sum())


def test_summarise_has_the_composition_table_of_five_methods():
    rec, outs = _synthetic_sample()
    s = C.summarise(rec, outs)
    t = s["table"]
    assert set(t["methods"]) == set(C.TABLE_METHODS)
    a = np.rint(rec["true_mass_number"]).astype(int)
    hybrid = (rec["present_km2a"] > 0) & (rec["present_wfcta"] > 0)
    test = hybrid & ~C.split_halves(a, 0)
    for m, r in t["methods"].items():
        # N_light,all is the same for every method: every hybrid light test event
        assert r["selection"]["all"]["n_light_all"] == int((test & C.is_light(a)).sum())
        assert len(r["selection"]["bins"]) == len(C.TABLE_EDGES) - 1
    # no image parameters in the synthetic outputs: Dist has no estimate and selects nothing
    assert "error" in t["dist_info"]
    assert t["methods"]["dist"]["selection"]["all"]["efficiency"] == 0.0
    # joint + Nmu/Ne (nearly a mass meter here) beats the joint Xmax cut at the same purity
    eff = {m: t["methods"][m]["selection"]["all"]["efficiency"] for m in ("joint", "joint_nmu")}
    assert eff["joint_nmu"] > eff["joint"]
