"""WCDA forward model: response defaults, the model's charge moments against its particle-level
simulation, time slewing and timing pulls, and the WCDA / KM2A+WCDA pipelines on small samples."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from detectors import wcda
from detectors.layout import wcda_layout
from detectors.shower import Shower, shower_plane_coordinates


@pytest.fixture(scope="module")
def setup():
    lay = wcda_layout()
    geo = wcda.Geometry.from_layout(lay)
    return lay, geo, wcda.Response.nominal(geo)


def _shower(lay, lg=4.0, dtype=jnp.float64, **kw):
    c = lay.cell_pos[lay.pond == 1, :2].mean(axis=0)
    base = dict(core_x=float(c[0]) + 3.0, core_y=float(c[1]) - 4.0, zenith=0.3, azimuth=1.0,
                log10_energy=lg, xmax=36.7 * np.log(10 ** lg / 0.081), log_muon_scale=np.log(0.1),
                t0=0.0)
    base.update(kw)
    return Shower.make(dtype=dtype, **base)


def test_response_per_pond_and_measured_efficiency(setup):
    lay, geo, resp = setup
    assert geo.cell_pos.shape == (3120, 3) and geo.cell_area == 25.0
    p1, p2 = np.asarray(lay.pond) == 1, np.asarray(lay.pond) == 2
    assert np.all(resp.pe_per_muon[p1] == 45.0) and np.all(resp.pe_per_muon[p2] == 180.0)
    np.testing.assert_allclose(resp.small_ratio[p1], (1.5 / 8) ** 2)
    eff = wcda.Response.measured_efficiency(lay)
    assert 0.9 < eff[p1].min() and eff[p1].max() < 1.5 and np.all(eff[~p1] == 1.0)
    assert eff[p1].std() > 0.02  # the real spread of water_eff_0110.txt


def test_time_slewing_matches_wcda1_code(setup):
    _, _, resp = setup
    q = np.array([1.0, 10.0, 100.0])
    want = 20 * q ** -0.1 + 10 * q ** -0.08 - 24.2
    np.testing.assert_allclose(np.asarray(wcda.time_slewing(jnp.asarray(q), resp)), want, rtol=1e-12)
    # small charges come late: slewing falls with charge
    assert np.all(np.diff(want) < 0)


def test_charge_moments_match_particle_level_simulation(setup):
    """The model's mean charge and variance-to-mean ratio (large PMT and, above the switch-over,
    small PMT) agree with the particle-level simulation it did not produce: per cell, over 300
    simulated events of one shower (no age fluctuation, no noise)."""
    lay, geo, resp = setup
    resp = resp._replace(noise_rate_hz=np.zeros_like(resp.noise_rate_hz))
    s = _shower(lay, lg=4.7)
    # the particle-level moments (the model uncertainty κ is on top of them: off here)
    phys = wcda.WCDAPhysics(is_gamma=1.0, model_rel_sigma=0.0)
    e = wcda.expected(s, geo, resp, phys)
    sim = jax.jit(jax.vmap(lambda k: wcda.simulate(k, s, geo, resp, phys, age_sigma=0.0)[0].cells.signal))
    q = np.asarray(sim(jax.random.split(jax.random.PRNGKey(0), 300)))
    mu, fano = np.asarray(e.cell_pe), np.asarray(e.cell_fano)
    large = (mu > 30) & (mu < 0.3 * np.asarray(resp.switch_pe))
    assert large.sum() > 50
    np.testing.assert_allclose(q[:, large].mean(0).mean() / mu[large].mean(), 1.0, atol=0.02)
    ratio = q[:, large].var(0) / q[:, large].mean(0)
    assert abs(np.median(ratio / fano[large]) - 1.0) < 0.1
    small = (mu > 1.5 * np.asarray(resp.switch_pe)) & (mu < 0.5 * np.asarray(resp.saturation_pe))
    assert small.sum() >= 3
    f_small = np.asarray(wcda._small_fano(e.cell_fano, resp))
    ratio_s = q[:, small].var(0) / q[:, small].mean(0)
    assert abs(np.median(ratio_s / f_small[small]) - 1.0) < 0.25
    np.testing.assert_allclose(q[:, small].mean(0) / mu[small], 1.0, atol=0.05)


def test_muon_cells_carry_pe_per_muon(setup):
    """A hadron shower's muons: far from the core the model's mean PE is muon-dominated, with
    a variance-to-mean ratio near the single-muon charge (≈ pe_per_muon)."""
    lay, geo, resp = setup
    s = _shower(lay, lg=4.5, log_muon_scale=0.0, xmax=600.0)
    e = wcda.expected(s, geo, resp, wcda.WCDAPhysics())
    r, _ = shower_plane_coordinates(s, geo.cell_pos)
    far = np.asarray(r) > 150
    assert far.sum() > 100
    mu_frac = np.asarray(e.cell_muons * resp.pe_per_muon / e.cell_pe)[far]
    assert np.median(mu_frac) > 0.5
    assert np.median(np.asarray(e.cell_fano / resp.pe_per_muon)[far]) > 0.5


def test_timing_pulls_at_truth(setup):
    """Signal hits within 100 m of the core: (t − t_exp)/σ_t of the model is ≈ N(0, 1) on the
    particle-level simulation (slewing, first-particle lag, jitter)."""
    lay, geo, resp = setup
    resp = resp._replace(noise_rate_hz=np.zeros_like(resp.noise_rate_hz))
    s = _shower(lay, lg=4.2, dtype=jnp.float32)
    phys = wcda.WCDAPhysics(is_gamma=1.0)
    e = wcda.expected(s, geo, resp, phys)
    r = np.asarray(shower_plane_coordinates(s, geo.cell_pos)[0])
    zs = []
    for k in range(6):
        c = wcda.simulate(jax.random.PRNGKey(k), s, geo, resp, phys, age_sigma=0.0)[0].cells
        q = c.signal
        fano = jnp.where(q >= resp.switch_pe, wcda._small_fano(e.cell_fano, resp), e.cell_fano)
        t_exp, sig = wcda._hit_time(q, fano, e.prediction, resp)
        z = np.asarray((c.time - t_exp) / sig)
        use = np.asarray(c.hit) & (r < 100)
        zs.append(z[use])
    z = np.concatenate(zs)
    assert z.size > 2000
    assert abs(np.mean(z)) < 0.1
    assert 0.8 < np.std(z) < 1.15


def test_wcda_pipeline_photons_on_ponds(tmp_path):
    """WCDA-only: simulate → write → read → fit 48 photons at 10 TeV: converged, resolutions
    in range, the output columns of issue 4 present and sensible."""
    from joint.config import ReconstructionConfig
    from lhaaso_joint.api import reconstruct_files
    from joint.simulation import simulate_records
    from joint.io.schema import write_events
    import uproot

    rec, _ = simulate_records(48, primary="gamma", detectors=("wcda",),
                              log10_energy_range=(4.0, 4.0), cores_on="wcda", seed=12)
    src = tmp_path / "wcda.root"
    write_events(src, rec)
    out = tmp_path / "reco.root"
    summary = reconstruct_files([src], out, ReconstructionConfig(hypothesis="gamma"),
                                batch_size=48, progress=False, detectors="auto")
    assert summary["detectors"] == ["wcda"]
    with uproot.open(out) as f:
        t = f["reco"].arrays(library="np")
    for col in ("nll_wcda", "wcda_nhit", "wcda_npe", "compactness", "pincness", "cxpe"):
        assert col in t
    conv = t["status"] == 0
    assert conv.mean() >= 0.85
    from helpers import angle_deg
    ang = angle_deg(t["reco_zenith"], t["reco_azimuth"], t["true_zenith"], t["true_azimuth"])[conv]
    core = np.hypot(t["reco_core_x"] - t["true_core_x"], t["reco_core_y"] - t["true_core_y"])[conv]
    de = (t["reco_log10_energy"] - t["true_log10_energy"])[conv]
    assert np.percentile(ang, 68) < 0.3
    assert np.percentile(core, 68) < 2.0
    assert abs(np.median(de)) < 0.05 and np.std(de) < 0.15
    assert np.all(t["wcda_nhit"][conv] > 100) and np.all(t["wcda_npe"][conv] > 1000)


@pytest.mark.slow
def test_joint_km2a_wcda_beats_km2a_alone_on_ponds():
    """Showers landing on the ponds at 100 TeV: KM2A has no EDs there, so its core is poor;
    the joint fit takes the core from the cells (and both nll terms are reported)."""
    from helpers import resolution_figures, simulate_and_reconstruct

    kw = dict(detectors=("km2a", "wcda"), cores_on="wcda", batch_size=32)
    rec, joint = simulate_and_reconstruct("gamma", 5.0, 32, 21, "gamma", **kw)
    _, alone = simulate_and_reconstruct("gamma", 5.0, 32, 21, "gamma", fit_detectors=("km2a",), **kw)
    assert "nll_km2a" in joint and "nll_wcda" in joint and "nll_wcda" not in alone
    fj = resolution_figures(rec, joint, joint["status"] == 0)
    fa = resolution_figures(rec, alone, alone["status"] == 0)
    assert fj["n"] >= 28
    assert fj["core68"] < 0.5 * fa["core68"]
    assert fj["ang68"] < fa["ang68"]


@pytest.mark.slow
def test_wcda_pulls_small_sample():
    """96 photons of 2–30 TeV (E^-1) on the ponds, no age fluctuation: the fitted errors
    describe the scatter (robust pull width ~1, mean ~0); the large-sample figures are in
    BENCHMARKS.md (benchmarks/wcda_pulls.py, the same configuration)."""
    from helpers import pull_stats, simulate_and_reconstruct
    from joint.config import ReconstructionConfig

    cfg = ReconstructionConfig(hypothesis="gamma", detectors=("wcda",))
    rec, out = simulate_and_reconstruct("gamma", None, 96, 8, "gamma", cfg=cfg, detectors=("wcda",),
                                           cores_on="wcda", age_sigma=0.0, batch_size=96,
                                           log10_energy_range=(3.3, 4.5), spectral_index=-1.0)
    res, conv = pull_stats(rec, out, ("core_x", "core_y", "zenith", "azimuth", "log10_energy"))
    assert conv >= 0.9
    for f, r in res.items():
        assert 0.7 < r["robust_std"] < 1.35, (f, r)
        assert abs(r["mean"]) < 0.4, (f, r)


# ---------------------------------------------------------------------------------------------
# the model-uncertainty term κ (WCDAPhysics.model_rel_sigma, issue 16)
# ---------------------------------------------------------------------------------------------
def test_model_uncertainty_off_reduces_to_the_particle_level_model(setup):
    """κ = 0: the predicted variance-to-mean ratio is the particle-level one (``cell_fano``) and
    the nll equals the one computed from it; κ > 0 at 1 PeV adds κ²μ to it; κ(E) is switched
    off at TeV energies."""
    lay, geo, resp = setup
    s = _shower(lay, lg=6.0)
    off = wcda.WCDAPhysics(model_rel_sigma=0.0)
    e = wcda.expected(s, geo, resp, off)
    f0 = wcda.cell_fano(e.cell_em, e.cell_muons, *wcda._yields(
        shower_plane_coordinates(s, geo.cell_pos)[0], resp, off), resp.spe_resolution, off)
    np.testing.assert_array_equal(np.asarray(e.cell_fano), np.asarray(f0))
    obs = wcda.simulate(jax.random.PRNGKey(1), s, geo, resp, off)[0]
    old = wcda.nll(obs, e.prediction._replace(cell_fano=f0), geo, resp)
    assert float(wcda.nll(obs, e.prediction, geo, resp)) == float(old)
    on = wcda.WCDAPhysics(model_rel_sigma=0.25, model_sigma_core_radius_m=20.0)
    e_on = wcda.expected(s, geo, resp, on)
    k = float(wcda.model_rel_sigma(s, on))
    assert 0.24 < k <= 0.25
    r = np.asarray(shower_plane_coordinates(s, geo.cell_pos)[0])
    k_r = k * (1.0 - np.exp(-r / 20.0))  # grows from the core
    np.testing.assert_allclose(np.asarray(e_on.cell_fano), np.asarray(f0) + k_r ** 2
                               * np.asarray(e.cell_pe), rtol=1e-9)
    flat = wcda.expected(s, geo, resp, on._replace(model_sigma_core_radius_m=0.0))
    np.testing.assert_allclose(np.asarray(flat.cell_fano), np.asarray(f0) + k * k
                               * np.asarray(e.cell_pe), rtol=1e-9)
    assert float(wcda.nll(obs, e_on.prediction, geo, resp)) != float(old)
    assert float(wcda.model_rel_sigma(_shower(lay, lg=4.0), on)) < 0.005  # 10 TeV: off


def _charge_density(q, mu, fano):
    """exp(−nll) of one hit cell's charge alone (no noise, time at its expectation, times the
    time density's normalisation) [1/PE]."""
    from detectors.channel import counting_channel_nll

    one = jnp.ones_like(q)
    sigma_t = 2.0
    nll = counting_channel_nll(q, 0.0 * one, one > 0, one > 0, mu * one, fano * one, 0.0 * one,
                               sigma_t * one, 0.3, 1e9, 0.0, 1000.0, lambda x: -x)
    return np.exp(-np.asarray(nll, np.float64)) * np.sqrt(2 * np.pi) * sigma_t


@pytest.mark.parametrize("kappa", [0.0, 0.25, 0.35])
def test_model_uncertainty_density_normalised_with_the_stated_variance(kappa):
    """With F = F₀ + κ²μ the cell's charge density integrates to 1 (with the empty-cell
    probability) and its variance is F₀μ + (κμ)² (μ = 800 PE, F₀ = 6 PE; float32, as the
    global x64 switch would leak into other tests' cached programs). The scaled
    Poisson is a density in q only to ~1% down to μ/F ≈ 8 effective counts (κ ≤ 0.35 here; at
    κ = 0.5, μ/F ≈ 4 and it integrates to 1.014: detectors.channel's docstring)."""
    mu, f0 = 800.0, 6.0
    fano = f0 + kappa ** 2 * mu
    q = np.linspace(0.3, 6000.0, 400_001)
    p = _charge_density(jnp.asarray(q, jnp.float32), mu, fano)
    dq = q[1] - q[0]
    norm = p.sum() * dq + np.exp(-mu / fano)
    mean = (q * p).sum() * dq
    var = (q * q * p).sum() * dq - mean ** 2
    assert abs(norm - 1.0) < 0.01, norm
    assert abs(mean / mu - 1.0) < 0.01, mean
    assert abs(var / (f0 * mu + (kappa * mu) ** 2) - 1.0) < 0.03, var


def test_model_uncertainty_lowers_an_outlier_cells_pull():
    """A cell 2.5× above its mean (a sub-shower lump): the nll's gradient with respect to the
    mean charge — the pull the cell exerts on the fit — falls as κ grows."""
    from detectors.channel import counting_channel_nll

    def nll(mu, kappa, q):
        fano = 6.0 + kappa ** 2 * mu
        return counting_channel_nll(q, 0.0, True, True, mu, fano, 0.0, 2.0, 0.3, 1e9, 0.0,
                                    1000.0, lambda x: -x)
    grad = jax.grad(nll)
    pulls = [abs(float(grad(800.0, k, 2000.0))) for k in (0.0, 0.1, 0.25, 0.5)]
    typical = [abs(float(grad(800.0, k, 830.0))) for k in (0.0, 0.25)]
    assert all(a > b for a, b in zip(pulls, pulls[1:])), pulls
    assert pulls[2] < 0.25 * pulls[0], pulls  # κ = 0.25: the lump pulls > 4× less
    assert typical[1] < pulls[2]  # a cell near its mean still pulls less than the outlier
