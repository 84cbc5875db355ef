"""Tests of analysis.gamma_hadron: compactness, PINCness, combined score, rejection helpers."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from analysis.gamma_hadron import (
    LOG10_E,
    combined_score,
    compactness,
    cxpe,
    energy_matching_weights,
    pincness,
    rejection_at_efficiency,
)

CORE = np.array([10.0, -5.0])


def _hand_event():
    """10 hit, valid cells + 1 invalid + 1 unhit, core at CORE; ground radii and charges:

    inside R = 45 m (r ≤ 45): r = 5, 10, 20, 30, 40, 45 with q = 100, 80, 50, 30, 200, 1000
      (the r = 40 cell sits 25 m higher: 3-D distance 47 m but ground distance 40 m;
       r = 45 exactly is not "> R");
    outside: r = 50, 60, 80, 150 with q = 3, 7.5, 2, 1;
    invalid (valid False) at r = 100, q = 500; unhit (hit False) at r = 120, q = 300.
    So N_hit = 10, CxPE_45 = 7.5 PE and C = 10 / 7.5 = 4/3 per PE.
    """
    r = np.array([5, 10, 20, 30, 40, 45, 50, 60, 80, 150, 100, 120], float)
    q = np.array([100, 80, 50, 30, 200, 1000, 3, 7.5, 2, 1, 500, 300], float)
    phi = np.linspace(0.0, 2 * np.pi, r.size, endpoint=False)
    z = np.zeros_like(r)
    z[4] = 25.0
    pos = np.stack([CORE[0] + r * np.cos(phi), CORE[1] + r * np.sin(phi), z], axis=1)
    # exact radius 45 for the boundary cell (avoid rounding from cos/sin)
    pos[5, :2] = CORE + np.array([45.0, 0.0])
    hit = np.ones(r.size, bool)
    valid = np.ones(r.size, bool)
    valid[10] = False
    hit[11] = False
    return q, hit, valid, pos


def test_compactness_hand_event():
    q, hit, valid, pos = _hand_event()
    assert float(cxpe(q, hit, valid, pos, CORE)) == pytest.approx(7.5, abs=1e-12)
    assert float(compactness(q, hit, valid, pos, CORE)) == pytest.approx(10 / 7.5, rel=1e-12)
    # HAWC radius R = 40 m: the r = 45 cell (1000 PE) is now outside, the r = 40 one is not
    assert float(cxpe(q, hit, valid, pos, CORE, radius=40.0)) == pytest.approx(1000.0)
    assert float(compactness(q, hit, valid, pos, CORE, radius=40.0)) == pytest.approx(0.01)
    # with the invalid / unhit cells switched on they would dominate CxPE and N_hit
    all_on = np.ones_like(hit)
    assert float(cxpe(q, all_on, all_on, pos, CORE)) == pytest.approx(500.0)
    assert float(compactness(q, all_on, all_on, pos, CORE)) == pytest.approx(12 / 500)


def test_compactness_floor_and_ignored_cells():
    q, hit, valid, pos = _hand_event()
    # keep only the 6 used cells within R: no used cell outside -> CxPE = 0, C = N_hit / q_min
    inside = np.arange(q.size) < 6
    assert float(cxpe(q, hit & inside, valid, pos, CORE)) == 0.0
    assert float(compactness(q, hit & inside, valid, pos, CORE)) == pytest.approx(6.0)
    assert float(compactness(q, hit & inside, valid, pos, CORE, min_charge=2.0)) == \
        pytest.approx(3.0)
    # a single outside cell below the floor: CxPE = 0.5 but the denominator is 1 PE
    q2 = q.copy()
    q2[6:10] = 0.5
    assert float(cxpe(q2, hit, valid, pos, CORE)) == pytest.approx(0.5)
    assert float(compactness(q2, hit, valid, pos, CORE)) == pytest.approx(10.0)
    # charges of unused cells do not matter, even NaN
    q3 = q.copy()
    q3[10] = np.nan
    q3[11] = np.nan
    assert float(compactness(q3, hit, valid, pos, CORE)) == pytest.approx(10 / 7.5)
    # no used cell at all
    none = np.zeros_like(hit)
    assert float(compactness(q, none, valid, pos, CORE)) == 0.0


def _rings(radii, n_per_ring, rng=None, jitter=0.0):
    """Positions (n, 3) of n_per_ring cells on each ring around CORE (optional radial jitter)."""
    r = np.repeat(np.asarray(radii, float), n_per_ring)
    phi = np.tile(np.linspace(0, 2 * np.pi, n_per_ring, endpoint=False), len(radii))
    if jitter:
        r = r + rng.uniform(-jitter, jitter, r.size)
    pos = np.stack([CORE[0] + r * np.cos(phi), CORE[1] + r * np.sin(phi), np.zeros_like(r)], 1)
    return pos, r


def test_pincness_equal_charges_is_zero():
    radii = [7.5, 22.5, 62.5]
    pos, r = _rings(radii, 8)
    q = 1000.0 * np.exp(-r / 30.0)
    ones = np.ones(r.size, bool)
    assert float(pincness(q, ones, ones, pos, CORE, fano=1.0)) == pytest.approx(0.0, abs=1e-20)


def test_pincness_hand_value_and_exclusions():
    """Two cells in annulus 2 (r = 12 m) with q = 100, 400 and fano = 1:
    ζ = 2, 2.60206; ⟨ζ⟩ = 2.30103; P = mean over the 2 cells of d² q / (log10 e)² with
    d = log10(2), i.e. P = log10(2)² (100 + 400) / 2 / log10(e)².
    Everything else must be excluded: a lone cell in another annulus, a cell below q_min, an
    invalid cell, an unhit cell, cells beyond n_annuli · Δr."""
    pos = np.array([[12, 0, 0], [0, 12, 0],          # the pair
                    [30, 0, 0],                      # alone in annulus 6
                    [-12, 0, 0],                     # annulus 2 but q < q_min
                    [0, -12, 0],                     # annulus 2 but invalid
                    [8.5, 8.5, 0],                   # annulus 2 but not hit
                    [210, 0, 0], [0, 210, 0]], float)  # beyond 40 × 5 m
    pos[:, :2] += CORE
    q = np.array([100, 400, 5000, 0.5, 3000, 7000, 100, 900], float)
    hit = np.array([1, 1, 1, 1, 1, 0, 1, 1], bool)
    valid = np.array([1, 1, 1, 1, 0, 1, 1, 1], bool)
    expected = np.log10(2.0) ** 2 * (100 + 400) / 2 / LOG10_E ** 2
    p = float(pincness(q, hit, valid, pos, CORE, fano=1.0))
    assert p == pytest.approx(expected, rel=1e-12)
    # per-cell fano: F = (2, 4) -> each term divided by its F
    p_f = float(pincness(q, hit, valid, pos, CORE, fano=np.array([2, 4, 1, 1, 1, 1, 1, 1.0])))
    assert p_f == pytest.approx(np.log10(2.0) ** 2 * (100 / 2 + 400 / 4) / 2 / LOG10_E ** 2,
                                rel=1e-12)
    # more annuli reach the far pair (ζ = 2, 2.954; annulus 42)
    p_far = float(pincness(q, hit, valid, pos, CORE, fano=1.0, n_annuli=50))
    far = np.log10(3.0) ** 2 * (100 + 900) / 2 / LOG10_E ** 2
    assert p_far == pytest.approx((2 * expected + 2 * far) / 4, rel=1e-12)
    # nothing usable -> 0
    assert float(pincness(q, np.zeros(8, bool), valid, pos, CORE, fano=1.0)) == 0.0


def _smooth_event(rng, n_per_ring=50, n_rings=20, fano_true=1.0):
    """Rings at the annulus centres 2.5, 7.5, ..., 97.5 m (±0.5 m jitter), mean charge
    μ(r) = 500 exp(−r / 43.4 m) (500 → 53 PE); charge = Poisson(μ) (fano 1) or a compound
    Poisson with Gamma single-PE charges of variance fano_true − 1."""
    pos, r = _rings(2.5 + 5.0 * np.arange(n_rings), n_per_ring, rng, jitter=0.5)
    mu = 500.0 * np.exp(-r / 43.4)
    n_pe = rng.poisson(mu)
    if fano_true == 1.0:
        q = n_pe.astype(float)
    else:
        a = 1.0 / (fano_true - 1.0)            # Gamma shape of one PE (mean 1, variance 1/a)
        q = rng.gamma(np.maximum(n_pe, 1) * a, 1.0 / a) * (n_pe > 0)
    return q, pos


def test_pincness_smooth_shower_near_one_and_clumps_large():
    rng = np.random.default_rng(1)
    q, pos = _smooth_event(rng)
    ones = np.ones(q.size, bool)
    p_smooth = float(pincness(q, ones, ones, pos, CORE, fano=1.0))
    assert 0.8 < p_smooth < 1.2
    # five clumps: charge × 10 in five cells
    q_clump = q.copy()
    q_clump[rng.choice(q.size, 5, replace=False)] *= 10.0
    p_clump = float(pincness(q_clump, ones, ones, pos, CORE, fano=1.0))
    assert p_clump > 3.0 and p_clump > 3 * p_smooth


def test_pincness_batch_mean_and_fano():
    """Averaged over 16 events the smooth-shower P is 1 − 1/n_k = 0.98 (within ~2 %); with a
    compound-Poisson charge of variance 1.5 q, P ≈ 1 when fano = 1.5 is passed and ≈ 1.5 when
    the charge is wrongly taken as Poisson."""
    rng = np.random.default_rng(7)
    ev = [_smooth_event(rng, fano_true=1.5) for _ in range(16)]
    q = jnp.asarray(np.stack([e[0] for e in ev]))
    pos = jnp.asarray(np.stack([e[1] for e in ev]))
    ones = jnp.ones(q.shape, bool)
    f = jax.jit(jax.vmap(pincness, in_axes=(0, 0, 0, 0, None, None)))
    p_right = np.asarray(f(q, ones, ones, pos, jnp.asarray(CORE), 1.5))
    p_wrong = np.asarray(f(q, ones, ones, pos, jnp.asarray(CORE), 1.0))
    assert p_right.mean() == pytest.approx(0.98, abs=0.04)
    assert p_wrong.mean() == pytest.approx(1.5 * 0.98, abs=0.06)

    evp = [_smooth_event(rng) for _ in range(16)]
    qp = jnp.asarray(np.stack([e[0] for e in evp]))
    posp = jnp.asarray(np.stack([e[1] for e in evp]))
    assert np.asarray(f(qp, ones, ones, posp, jnp.asarray(CORE), 1.0)).mean() == \
        pytest.approx(0.98, abs=0.04)


def test_jit_vmap_equal_loop():
    rng = np.random.default_rng(3)
    b, n = 6, 300
    pos = rng.uniform(-120, 120, (b, n, 3))
    pos[..., 2] = rng.uniform(-2, 2, (b, n))
    cores = rng.uniform(-30, 30, (b, 2))
    r = np.linalg.norm(pos[..., :2] - cores[:, None, :], axis=-1)
    q = rng.poisson(400 * np.exp(-r / 30)).astype(float) + rng.exponential(2.0, (b, n))
    hit = q > 1.5
    valid = rng.uniform(size=(b, n)) > 0.05
    fano = rng.uniform(1.0, 1.5, (b, n))

    def one(q, hit, valid, pos, core, fano):
        c = compactness(q, hit, valid, pos, core)
        p = pincness(q, hit, valid, pos, core, fano)
        return cxpe(q, hit, valid, pos, core), c, p, combined_score(c, p)

    batched = jax.jit(jax.vmap(one))(q, hit, valid, pos, cores, fano)
    for i in range(b):
        single = one(q[i], hit[i], valid[i], pos[i], cores[i], fano[i])
        for x_b, x_1 in zip(batched, single):
            np.testing.assert_allclose(np.asarray(x_b)[i], np.asarray(x_1), rtol=1e-12)
    assert np.all(np.isfinite(np.asarray(batched[2])))
    # float32 inputs stay float32
    c32 = jax.jit(compactness)(q[0].astype(np.float32), hit[0], valid[0],
                               pos[0].astype(np.float32), cores[0].astype(np.float32))
    assert c32.dtype == jnp.float32


def test_combined_score():
    s = np.asarray(combined_score(jnp.array([100.0, 10.0, 10.0, 0.0]),
                                  jnp.array([1.0, 10.0, 0.0, 1.0])))
    np.testing.assert_allclose(s[:3], [2.0, 0.0, 4.0])   # P = 0 floored at 1e-3
    assert s[3] == -np.inf


def test_rejection_exact_small_sample():
    """Signal 1..10, efficiency 0.5: passing ≥ 6 keeps 5/10. Background passing ≥ 6:
    6, 7, 9.5 of 6 events -> rejection 0.5 ± sqrt(0.25 / 6)."""
    sig = np.arange(1.0, 11.0)
    bkg = np.array([0.5, 2.0, 5.5, 6.0, 7.0, 9.5])
    res = rejection_at_efficiency(sig, bkg, 0.5)
    assert res["cut"] == 6.0
    assert res["signal_efficiency"] == 0.5
    assert res["background_rejection"] == 0.5
    assert res["background_rejection_err"] == pytest.approx(np.sqrt(0.25 / 6))
    assert res["n_background_passed"] == 3
    # the same with the score reversed
    res_low = rejection_at_efficiency(-sig, -bkg, 0.5, higher_is_signal=False)
    assert res_low["cut"] == -6.0
    assert res_low["background_rejection"] == 0.5


def test_rejection_analytic_distributions():
    """Signal score ~ U(0, 1), background ~ Exp(scale 0.25): the 50 % cut is at 0.5 and the
    rejection is P(b < cut) = 1 − exp(−4 cut) (≈ 0.8647)."""
    rng = np.random.default_rng(11)
    sig = rng.uniform(0, 1, 200_000)
    bkg = rng.exponential(0.25, 100_000)
    res = rejection_at_efficiency(sig, bkg, 0.5)
    assert res["signal_efficiency"] == pytest.approx(0.5, abs=1e-4)
    assert res["cut"] == pytest.approx(0.5, abs=0.005)
    analytic = 1 - np.exp(-4 * res["cut"])
    err = res["background_rejection_err"]
    assert err == pytest.approx(np.sqrt(analytic * (1 - analytic) / bkg.size), rel=0.02)
    assert abs(res["background_rejection"] - analytic) < 4 * err
    assert res["n_background_passed"] == np.count_nonzero(bkg >= res["cut"])


def test_rejection_weights_equal_duplicates():
    rng = np.random.default_rng(5)
    sig = rng.normal(1.0, 1.0, 3001)
    bkg = rng.normal(-1.0, 1.0, 2001)
    dup_s = rng.uniform(size=sig.size) < 0.3
    dup_b = rng.uniform(size=bkg.size) < 0.4
    a = rejection_at_efficiency(np.concatenate([sig, sig[dup_s]]),
                                np.concatenate([bkg, bkg[dup_b]]), 0.7)
    b = rejection_at_efficiency(sig, bkg, 0.7, weights_signal=1.0 + dup_s,
                                weights_background=1.0 + dup_b)
    for key in ("cut", "signal_efficiency", "background_rejection"):
        assert a[key] == pytest.approx(b[key], rel=1e-12)
    # fewer distinct events -> larger error; the unweighted count is of distinct events
    assert b["background_rejection_err"] > a["background_rejection_err"]
    assert b["n_background_passed"] == np.count_nonzero(bkg >= b["cut"])
    assert b["n_background_effective"] == pytest.approx(
        (1.0 + dup_b).sum() ** 2 / ((1.0 + dup_b) ** 2).sum())


def test_energy_matching_weights():
    rng = np.random.default_rng(2)
    bins = np.linspace(0.0, 3.0, 16)
    xs = rng.normal(1.2, 0.4, 20_000)                       # a few fall outside the bins
    xb = np.concatenate([rng.uniform(0, 3, 8_000), [-1.0, 3.5, 3.0]])
    w = energy_matching_weights(xs, xb, bins)
    assert w.shape == xb.shape and np.all(w >= 0)
    assert w[-3] == 0 and w[-2] == 0 and w[-1] > 0            # outside: 0; last edge: inside
    h_s = np.histogram(xs, bins)[0].astype(float)
    h_w = np.histogram(xb, bins, weights=w)[0]
    np.testing.assert_allclose(h_w / h_w.sum(), h_s / h_s.sum(), rtol=1e-9)
    # total weight = number of background events inside the bins
    assert h_w.sum() == pytest.approx(np.count_nonzero((xb >= 0) & (xb <= 3)))
    # bins without signal get weight 0
    xs2 = rng.uniform(0, 1.0, 1000)
    w2 = energy_matching_weights(xs2, xb, bins)
    assert np.all(w2[xb > 1.0] == 0)
