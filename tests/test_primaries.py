"""Tests of the truth generator detectors/primaries.py.

References: PHYSICS.md §7.2 ([D] moment table of the generalised Gumbel), §8b (photon Xmax),
§7.3 (Heitler–Matthews muon number). Statistical checks use fixed seeds and 5-sigma bands built
from the samples' own errors, so they fail for wrong physics, not by chance.
"""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from detectors import primaries as P

LN10 = math.log(10.0)

# PHYSICS.md §7.2, [D] moments from Table 1 (mean, rms) in g/cm² for A = 1, 4, 14, 56.
MOMENT_TABLE = {
    "EPOS-LHC": {
        15: [(579, 77), (538, 53), (501, 38), (451, 22)],
        16: [(638, 71), (600, 48), (567, 35), (522, 21)],
        17: [(696, 67), (660, 44), (630, 32), (589, 19)],
        19: [(808, 59), (775, 38), (748, 28), (712, 17)],
    },
    "QGSJetII-04": {
        15: [(577, 86), (537, 52), (506, 42), (456, 28)],
        16: [(630, 77), (593, 49), (564, 39), (520, 26)],
        17: [(684, 71), (648, 47), (621, 37), (582, 25)],
        19: [(793, 61), (758, 43), (731, 34), (698, 22)],
    },
}
MASSES = (1, 4, 14, 56)


def _lateral_available():
    try:
        from detectors.lateral import muon_number  # noqa: F401
    except ImportError:
        return False
    return True


needs_lateral = pytest.mark.skipif(not _lateral_available(), reason="detectors/lateral.py not present yet")


# ------------------------------------------------------------------ Xmax moments (reference table)

@pytest.mark.parametrize("model", sorted(MOMENT_TABLE))
def test_xmax_moments_reproduce_physics_table(model):
    for lg, row in MOMENT_TABLE[model].items():
        for a_num, (mean_ref, rms_ref) in zip(MASSES, row):
            mean, std = P.xmax_moments(float(lg), float(a_num), model)
            # table entries are rounded to integers: |err| <= 0.5 if the formula is right
            assert abs(float(mean) - mean_ref) < 1.0, (model, lg, a_num, float(mean), mean_ref)
            assert abs(float(std) - rms_ref) < 1.0, (model, lg, a_num, float(std), rms_ref)


def test_xmax_moments_broadcast_matches_scalar():
    lg = jnp.array([15.0, 16.0, 17.0, 19.0])[:, None]
    a_num = jnp.array(MASSES, dtype=float)[None, :]
    mean, std = P.xmax_moments(lg, a_num, "EPOS-LHC")
    assert mean.shape == std.shape == (4, 4)
    for i, l in enumerate([15, 16, 17, 19]):
        for j, a in enumerate(MASSES):
            assert abs(float(mean[i, j]) - MOMENT_TABLE["EPOS-LHC"][l][j][0]) < 1.0


def test_gamma_xmax_is_greisen():
    # PHYSICS §8b [D]: 346, 430, 515, 599 g/cm² at 1, 10, 100, 1000 TeV
    lg_ev = jnp.array([12.0, 13.0, 14.0, 15.0])
    mean, std = P.xmax_moments(lg_ev, 0.0)
    np.testing.assert_allclose(np.asarray(mean), [346, 430, 515, 599], atol=1.0)
    # elongation rate of the Greisen form: X0 ln 10 per decade
    np.testing.assert_allclose(np.diff(np.asarray(mean)), 36.7 * LN10, rtol=1e-12)
    np.testing.assert_allclose(np.asarray(std), math.hypot(9 / 7 * 36.7, 20.0), rtol=1e-12)
    # photon showers fluctuate less than proton showers of the same energy (100 TeV)
    assert float(std[2]) < float(P.xmax_moments(14.0, 1.0)[1])


def _moments_sensible(model, lg_from):
    """Means and rms ordered p > He > N > Fe, finite, and means rising with energy to 10^19 eV."""
    lg = jnp.arange(lg_from, 19.01, 0.5)
    means = [np.asarray(P.xmax_moments(lg, a, model)[0]) for a in MASSES]
    stds = [np.asarray(P.xmax_moments(lg, a, model)[1]) for a in MASSES]
    return (
        all(np.all(np.isfinite(v)) for v in means + stds)
        and all(np.all(lo > hi) for lo, hi in zip(means, means[1:]))  # heavier peak higher
        and all(np.all(lo > hi) for lo, hi in zip(stds, stds[1:]))  # and fluctuate less
        and all(np.all(np.diff(m) > 0) for m in means)  # Xmax grows with energy
    )


@pytest.mark.parametrize("model", sorted(P.GUMBEL_COEFFICIENTS))
def test_xmax_moments_orderings_within_validity(model):
    assert _moments_sensible(model, P.GUMBEL_VALID_FROM_LOG10_EV[model])


@pytest.mark.parametrize("model", ["Sibyll2.1", "QGSJetII"])
def test_validity_bounds_are_tight(model):
    # half a decade lower the extrapolation of these two models is no longer sensible
    assert not _moments_sensible(model, P.GUMBEL_VALID_FROM_LOG10_EV[model] - 0.5)


def test_unknown_model_and_primary_raise():
    with pytest.raises(ValueError, match="unknown hadronic model"):
        P.xmax_moments(15.0, 1.0, "NoSuchModel")
    with pytest.raises(ValueError, match="unknown primary"):
        P.mass_number_of("unobtainium")
    assert [P.mass_number_of(x) for x in ("gamma", "proton", "H", "helium", "He", "nitrogen",
                                          "N", "CNO", "iron", "Fe", 56, 0)] == [0, 1, 1, 4, 4, 14,
                                                                                14, 14, 56, 56, 56, 0]


# ------------------------------------------------------------------ JAX safety

def test_xmax_moments_jit_vmap_equal_eager():
    lg = jnp.array([14.0, 15.3, 16.1, 17.5, 19.0])
    a_num = jnp.array([0.0, 1.0, 4.0, 14.0, 56.0])
    eager = P.xmax_moments(lg, a_num, "QGSJetII-04")
    jitted = jax.jit(P.xmax_moments, static_argnames="model")(lg, a_num, model="QGSJetII-04")
    vmapped = jax.vmap(lambda l, a: P.xmax_moments(l, a, "QGSJetII-04"))(lg, a_num)
    looped = [P.xmax_moments(l, a, "QGSJetII-04") for l, a in zip(lg, a_num)]
    for k in range(2):
        np.testing.assert_allclose(jitted[k], eager[k], rtol=1e-12)
        np.testing.assert_allclose(vmapped[k], eager[k], rtol=1e-12)
        np.testing.assert_allclose([float(x[k]) for x in looped], eager[k], rtol=1e-12)
    assert eager[0].dtype == jnp.float64


@pytest.mark.parametrize("a_num", [0.0, 1.0, 4.0, 14.0, 56.0])
@pytest.mark.parametrize("lg", [14.5, 16.0, 18.7])
def test_xmax_moments_gradients(lg, a_num):
    for k in range(2):
        check_grads(lambda x: P.xmax_moments(x, a_num)[k], (jnp.float64(lg),), order=2,
                    modes=("fwd", "rev"), atol=1e-6, rtol=1e-6)
    # gradient w.r.t. mass is finite everywhere, including the photon (A = 0) branch
    g = jax.grad(lambda a: P.xmax_moments(lg, a)[0])(jnp.float64(a_num))
    assert np.isfinite(float(g))


def test_proton_elongation_rate_from_gradient():
    # d<Xmax>/d lg E near 10^17 eV for EPOS-LHC protons: close to the ~55-60 g/cm²/decade of §7.1
    d = jax.grad(lambda x: P.xmax_moments(x, 1.0)[0])(17.0)
    assert 50.0 < float(d) < 65.0


# ------------------------------------------------------------------ Xmax sampling

def _std_error_of_std(x):
    n = x.size
    m2 = np.var(x)
    m4 = np.mean((x - x.mean()) ** 4)
    return math.sqrt(max(m4 - m2**2, 0.0) / (4.0 * m2 * n))


@pytest.mark.parametrize(
    "lg_ev, a_num, model",
    [(15.0, 1, "EPOS-LHC"), (16.0, 56, "EPOS-LHC"), (15.5, 4, "QGSJetII-04"),
     (17.0, 14, "Sibyll2.1"), (14.0, 0, "EPOS-LHC"), (16.0, 0, "QGSJetII-04")],
)
def test_sample_xmax_matches_moments(lg_ev, a_num, model):
    n = 100_000
    rng = np.random.default_rng(1234 + int(10 * lg_ev) + a_num)
    x = P.sample_xmax(rng, np.full(n, lg_ev), a_num, model)
    assert x.shape == (n,)
    mean, std = (float(v) for v in P.xmax_moments(lg_ev, a_num, model))
    assert abs(x.mean() - mean) < 5 * std / math.sqrt(n), (x.mean(), mean)
    assert abs(x.std() - std) < 5 * _std_error_of_std(x), (x.std(), std)


def test_sample_xmax_shape_is_gumbel_like():
    # the generalised Gumbel of protons has a long tail to deep Xmax: positive skewness
    x = P.sample_xmax(np.random.default_rng(7), np.full(50_000, 15.0), 1, "EPOS-LHC")
    skew = np.mean((x - x.mean()) ** 3) / x.std() ** 3
    assert skew > 0.5


def test_sample_xmax_rejects_out_of_range_energy():
    with pytest.raises(ValueError, match="not positive"):
        P.sample_xmax(np.random.default_rng(0), 0.0, 1, "EPOS-LHC")  # 1 eV: lambda < 0


# ------------------------------------------------------------------ spectra, directions, cores

def _power_law_mle(log10_e, lo, hi):
    """MLE of gamma for dN/dE ∝ E^gamma truncated to [10^lo, 10^hi]; returns (gamma, sigma)."""
    from scipy.optimize import brentq

    l_mean = np.mean((log10_e - lo) * LN10)
    big_l = (hi - lo) * LN10

    def score(g1):
        return l_mean + 1.0 / g1 - big_l / (-np.expm1(-g1 * big_l))

    g1 = brentq(score, -6.0, -1e-6) if score(-1e-6) < 0 else brentq(score, 1e-6, 6.0)
    fisher = 1.0 / g1**2 - big_l**2 * np.exp(-g1 * big_l) / np.expm1(-g1 * big_l) ** 2
    return g1 - 1.0, 1.0 / math.sqrt(log10_e.size * fisher)


@pytest.mark.parametrize("index", [-2.7, -2.0, -3.1])
def test_power_law_index_recovered(index):
    n, lo, hi = 100_000, 4.0, 6.0
    lg = P.sample_power_law(np.random.default_rng(11), n, (lo, hi), index)
    assert lg.min() >= lo and lg.max() <= hi
    g_hat, sig = _power_law_mle(lg, lo, hi)
    assert abs(g_hat - index) < 5 * sig, (g_hat, index, sig)
    assert sig < 0.02


def test_power_law_index_minus_one_is_log_uniform():
    n = 100_000
    lg = P.sample_power_law(np.random.default_rng(3), n, (3.0, 7.0), -1.0)
    # log-uniform: uniform on [3, 7], mean 5, variance 16/12
    assert abs(lg.mean() - 5.0) < 5 * math.sqrt(16 / 12 / n)
    counts, _ = np.histogram(lg, bins=8, range=(3.0, 7.0))
    chi2 = np.sum((counts - n / 8) ** 2 / (n / 8))
    assert chi2 < 30.0  # 7 dof; p ~ 1e-4


def _ks_uniform(u):
    """Kolmogorov statistic of samples u against U(0, 1), and its 5-sigma-like threshold."""
    u = np.sort(u)
    n = u.size
    d = max(np.max(np.arange(1, n + 1) / n - u), np.max(u - np.arange(n) / n))
    return d, 1.95 / math.sqrt(n)  # p ~ 0.001


@pytest.mark.parametrize("flat", [True, False])
def test_zenith_isotropic(flat):
    n, tmax = 50_000, 40.0
    z = P.sample_zenith(np.random.default_rng(5), n, tmax, flat_detector=flat)
    assert z.min() >= 0.0 and z.max() <= math.radians(tmax) + 1e-12
    cmin = math.cos(math.radians(tmax))
    c = np.cos(z)
    u_right = (c**2 - cmin**2) / (1 - cmin**2) if flat else (c - cmin) / (1 - cmin)
    u_wrong = (c - cmin) / (1 - cmin) if flat else (c**2 - cmin**2) / (1 - cmin**2)
    d, thr = _ks_uniform(u_right)
    assert d < thr
    d_wrong, _ = _ks_uniform(u_wrong)
    assert d_wrong > thr  # the test can tell the two laws apart


def test_cores_uniform_on_disc():
    n, radius, centre = 50_000, 400.0, (120.0, -35.0)
    x, y = P.sample_core(np.random.default_rng(9), n, radius, centre)
    r = np.hypot(x - centre[0], y - centre[1])
    assert r.max() <= radius
    d, thr = _ks_uniform((r / radius) ** 2)  # uniform on a disc: P(<r) = r²/R²
    assert d < thr
    d_lin, _ = _ks_uniform(r / radius)
    assert d_lin > thr
    assert abs(x.mean() - centre[0]) < 5 * radius / 2 / math.sqrt(n)
    assert abs(y.mean() - centre[1]) < 5 * radius / 2 / math.sqrt(n)
    phi = np.arctan2(y - centre[1], x - centre[0])
    d_phi, thr = _ks_uniform((phi + np.pi) / (2 * np.pi))
    assert d_phi < thr


# ------------------------------------------------------------------ sample_primaries

KEYS = {"true_core_x", "true_core_y", "true_zenith", "true_azimuth", "true_log10_energy",
        "true_xmax", "true_log_muon_scale", "true_t0", "true_mass_number"}


@needs_lateral
def test_sample_primaries_contract():
    n = 1000
    rec = P.sample_primaries(np.random.default_rng(0), n, "iron", log10_energy_range=(5.0, 6.0),
                             zenith_max_deg=30.0, core_radius_m=200.0)
    assert set(rec) == KEYS
    for k, v in rec.items():
        assert isinstance(v, np.ndarray) and v.shape == (n,) and v.dtype == np.float64, k
        assert np.all(np.isfinite(v)), k
    assert np.all(rec["true_t0"] == 0.0)
    assert np.all(rec["true_mass_number"] == 56)
    assert np.all((rec["true_log10_energy"] >= 5.0) & (rec["true_log10_energy"] <= 6.0))
    assert np.all(rec["true_zenith"] <= math.radians(30.0) + 1e-12)
    assert np.all((rec["true_azimuth"] >= 0) & (rec["true_azimuth"] < 2 * np.pi))
    assert np.all(np.hypot(rec["true_core_x"], rec["true_core_y"]) <= 200.0)
    # same seed -> same sample; seed keyword equivalent to passing an int
    rec2 = P.sample_primaries(None, n, "Fe", log10_energy_range=(5.0, 6.0), zenith_max_deg=30.0,
                              core_radius_m=200.0, seed=0)
    for k in KEYS:
        np.testing.assert_array_equal(rec[k], rec2[k])


@needs_lateral
def test_sample_primaries_xmax_follows_energy():
    # per-event Xmax is drawn at each event's own energy: residuals from xmax_moments are unbiased
    n = 40_000
    rec = P.sample_primaries(np.random.default_rng(21), n, "proton", log10_energy_range=(4.0, 7.0),
                             model="QGSJetII-04")
    mean, std = P.xmax_moments(rec["true_log10_energy"] + 9.0, 1.0, "QGSJetII-04")
    pull = (rec["true_xmax"] - np.asarray(mean)) / np.asarray(std)
    assert abs(pull.mean()) < 5 / math.sqrt(n)
    assert abs(pull.std() - 1.0) < 0.03


@needs_lateral
def test_mixed_composition_fractions():
    n = 100_000
    comp = {"proton": 0.4, 4: 0.1, "CNO": 0.2, "iron": 0.3}
    rec = P.sample_primaries(np.random.default_rng(4), n, "mixed", composition=comp)
    expected = {1: 0.4, 4: 0.1, 14: 0.2, 56: 0.3}
    assert set(np.unique(rec["true_mass_number"])) == set(expected)
    for a_num, f in expected.items():
        frac = np.mean(rec["true_mass_number"] == a_num)
        assert abs(frac - f) < 5 * math.sqrt(f * (1 - f) / n), (a_num, frac, f)
    # default mix [M]
    rec = P.sample_primaries(np.random.default_rng(5), n, "mixed")
    for a_num, f in P.DEFAULT_COMPOSITION.items():
        frac = np.mean(rec["true_mass_number"] == a_num)
        assert abs(frac - f) < 5 * math.sqrt(f * (1 - f) / n)
    # heavier events have shallower Xmax on average at the same energy range
    assert rec["true_xmax"][rec["true_mass_number"] == 56].mean() < \
        rec["true_xmax"][rec["true_mass_number"] == 1].mean() - 50.0


@needs_lateral
def test_log_muon_scale_per_mass():
    n, beta = 100_000, 0.92
    for name, a_num in (("proton", 1), ("helium", 4), ("iron", 56)):
        rec = P.sample_primaries(np.random.default_rng(a_num), n, name, beta=beta)
        s = rec["true_log_muon_scale"]
        expected_mean = (1 - beta) * math.log(a_num)  # Heitler–Matthews, PHYSICS §7.3
        expected_sigma = P.SIGMA_LN_MUON_PROTON * a_num ** (-P.SIGMA_LN_MUON_MASS_EXPONENT)
        assert abs(s.mean() - expected_mean) < 5 * expected_sigma / math.sqrt(n), (name, s.mean())
        assert abs(s.std() - expected_sigma) < 5 * expected_sigma / math.sqrt(2 * n), (name, s.std())
    rec = P.sample_primaries(np.random.default_rng(56), n, "iron", beta=beta)
    assert abs(rec["true_log_muon_scale"].mean() - 0.322) < 0.01
    # the exotic beta = 0.96 halves the iron excess
    rec = P.sample_primaries(np.random.default_rng(56), n, "iron", beta=0.96)
    assert abs(rec["true_log_muon_scale"].mean() - 0.04 * math.log(56)) < 0.01


@needs_lateral
def test_gamma_primaries_muon_poor():
    rec = P.sample_primaries(np.random.default_rng(8), 20_000, "gamma", log10_energy_range=(4.0, 6.0))
    assert np.all(rec["true_mass_number"] == 0)
    assert rec["true_log_muon_scale"].mean() < -1.0  # strongly muon poor
    assert np.all(np.isfinite(rec["true_log_muon_scale"]))
    # photon default spectrum is the harder -2.6
    g_hat, sig = _power_law_mle(rec["true_log10_energy"], 4.0, 6.0)
    assert abs(g_hat + 2.6) < 5 * sig
    # explicit gamma muon fraction is honoured
    rec = P.sample_primaries(np.random.default_rng(8), 20_000, "gamma", gamma_muon_fraction=0.01,
                             sigma_ln_muon_gamma=0.0)
    np.testing.assert_allclose(rec["true_log_muon_scale"], math.log(0.01))


@needs_lateral
def test_shower_from_truth():
    from detectors.shower import Shower

    rec = P.sample_primaries(np.random.default_rng(1), 17, "helium")
    sh = P.shower_from_truth(rec)
    assert isinstance(sh, Shower)
    for f in Shower._fields:
        leaf = getattr(sh, f)
        assert isinstance(leaf, jax.Array) and leaf.shape == (17,)
        np.testing.assert_array_equal(np.asarray(leaf), rec["true_" + f])
    sh32 = P.shower_from_truth(rec, dtype=jnp.float32)
    assert sh32.xmax.dtype == jnp.float32


def test_xmax_moments_float32_agrees_with_float64():
    lg = np.array([12.5, 14.0, 15.5, 17.0, 19.0])
    for a_num in (0.0, 1.0, 14.0, 56.0):
        m64, s64 = P.xmax_moments(jnp.asarray(lg, jnp.float64), jnp.float64(a_num))
        m32, s32 = P.xmax_moments(jnp.asarray(lg, jnp.float32), jnp.float32(a_num))
        assert m32.dtype == jnp.float32 and s32.dtype == jnp.float32
        np.testing.assert_allclose(np.asarray(m32), np.asarray(m64), rtol=1e-5)
        np.testing.assert_allclose(np.asarray(s32), np.asarray(s64), rtol=1e-4)
