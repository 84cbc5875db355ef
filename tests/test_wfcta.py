"""WFCTA: the Cherenkov yield and angular distribution against PHYSICS.md, the image model, and
the fit of Xmax with the geometry fixed (from truth, through the pipeline and the CLI)."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from detectors import cherenkov, wfcta
from detectors.layout import wfcta_layout
from helpers import wfcta_test_shower as _shower


def test_cherenkov_yield_threshold_and_angle_match_physics_md():
    """PHYSICS.md §7.5/§8b [D]: 10.3, 7.7, 5.8 photons/m per particle at 4410 m for s = 0.6,
    1.0, 1.4; E_th = 26.8 / 36.5 MeV at 4.41 / 10 km; θ_c = 4.9° at 4410 m."""
    h = jnp.array([4410.0, 10000.0])
    np.testing.assert_allclose(np.asarray(cherenkov.threshold_energy_mev(h)), [26.8, 36.5], atol=0.1)
    y = [float(cherenkov.yield_per_metre(jnp.array(4410.0), s)) for s in (0.6, 1.0, 1.4)]
    np.testing.assert_allclose(y, [10.3, 7.7, 5.8], rtol=0.02)
    assert abs(np.degrees(float(cherenkov.theta_c(jnp.array(4410.0)))) - 4.9) < 0.05


def test_angular_distribution_is_normalised_and_quadrature_converged():
    b = np.linspace(1e-6, np.pi, 600001)
    for s in (0.6, 1.0, 1.4, 2.2):  # 2.2: θ_cc < 0, the second term dropped
        pdf = np.asarray(cherenkov.angular_pdf(jnp.asarray(b), 6000.0, s))
        assert abs(np.trapezoid(pdf, b) - 1.0) < 2e-3
    # the 128-point quadrature of the yield against a 4000-point reference
    h, s = 6000.0, 1.1
    e_th = float(cherenkov.threshold_energy_mev(jnp.array(h)))
    u = np.linspace(np.log(e_th), np.log(1e6), 4000)
    e = np.exp(u)
    ref = cherenkov.ELECTRON_MASS_MEV ** 2 * np.trapezoid(
        (1 / e_th ** 2 - 1 / e ** 2) * np.asarray(cherenkov.electron_spectrum(jnp.asarray(e), s)), u)
    assert abs(float(cherenkov.mean_sin2_theta(jnp.array(h), jnp.array(s))) / ref - 1) < 1e-3


def test_small_angle_distribution_normalised_finite_on_axis_with_a_ring():
    """Arbeletche–de Souza: ∫dN/dθ = 1 on 0–60° (photons and protons, several heights and ages),
    dN/dΩ = (dN/dθ)/(2π sin θ), finite on the axis, maximal at the cone θ_em = arccos(1/n)."""
    from detectors import atmosphere
    th = np.linspace(0.0, np.pi / 3, 2_000_001)
    for h, s, g, e in ((9000.0, 1.0, 1.0, 1.0), (4400.0, 1.4, 0.0, 1000.0), (15000.0, 0.6, 0.0, 300.0)):
        h_, s_ = jnp.asarray(h), jnp.asarray(s)
        pdf = np.asarray(cherenkov.angular_pdf_ads(jnp.asarray(th), h_, s_, None, g, e))
        assert abs(np.trapezoid(pdf, th) - 1.0) < 5e-5
        per_sr = np.asarray(cherenkov.angular_pdf_ads_per_sr(jnp.asarray(th), h_, s_, None, g, e))
        np.testing.assert_allclose(per_sr[1:] * 2 * np.pi * np.sin(th[1:]), pdf[1:], rtol=1e-9)
        assert np.isfinite(per_sr[0]) and per_sr[0] > 0
        t_em = float(np.arccos(1.0 / atmosphere.refractive_index(h_)))
        assert abs(th[np.argmax(per_sr)] - t_em) < 1e-4 * t_em + 1e-6
    # differentiable in the slice's age and height (float64)
    f = lambda s: cherenkov.angular_pdf_ads_per_sr(jnp.asarray(0.01), jnp.asarray(8000.0), s)
    g_ad = float(jax.grad(f)(jnp.asarray(1.1)))
    g_fd = float((f(jnp.asarray(1.1 + 1e-6)) - f(jnp.asarray(1.1 - 1e-6))) / 2e-6)
    assert g_ad == pytest.approx(g_fd, rel=1e-5)


@pytest.fixture(scope="module")
def setup():
    lay = wfcta_layout()
    geo = wfcta.Geometry.from_layout(lay)
    return lay, geo, wfcta.Response.nominal(geo)


def test_image_scales_with_energy_and_moves_with_xmax(setup):
    """The image of the telescope the shower points at: its size ∝ ~E, and a deeper Xmax moves
    the image centroid away from the arrival direction (larger Dist), as the Dist method uses."""
    from analysis.dist_xmax import source_in_camera

    lay, geo, resp = setup
    sizes, dists = [], []
    for lg, xm in ((6.0, 600.0), (6.5, 600.0), (6.0, 750.0)):
        s = _shower(lay, lg, xm)
        sig = np.asarray(wfcta.expected(s, geo, resp).signal_pe)[0]
        sizes.append(sig.sum())
        px = np.tile(np.asarray(geo.col_x), 32)
        py = np.repeat(np.asarray(geo.row_y), 32)
        cx, cy = (sig * px).sum() / sig.sum(), (sig * py).sum() / sig.sum()
        src = np.asarray(source_in_camera(s.zenith, s.azimuth, geo))[0]
        dists.append(np.hypot(cx - src[0], cy - src[1]))
    assert 2.0 < sizes[1] / sizes[0] < 4.5          # 10^0.5 = 3.2 in energy
    assert dists[2] > dists[0] + np.radians(0.3)     # deeper shower: image further from source


def test_simulated_images_match_the_model_mean(setup):
    """Without the shower-to-shower fluctuations the simulation's mean equals the model
    (Poisson + excess noise + background), pixel by pixel in the bright region."""
    lay, geo, resp = setup
    s = _shower(lay)
    e = wfcta.expected(s, geo, resp)
    sim = jax.jit(jax.vmap(lambda k: wfcta.simulate(k, s, geo, resp, width_sigma=0.0,
                                                    lateral_sigma=0.0)[0].pixels.signal))
    q = np.asarray(sim(jax.random.split(jax.random.PRNGKey(0), 200))).reshape(200, -1)
    mu = np.ravel(np.asarray(e.pixel_pe))
    bright = mu > 100
    assert bright.sum() > 20
    np.testing.assert_allclose(q[:, bright].mean(0).sum() / mu[bright].sum(), 1.0, atol=0.01)
    f = q[:, bright].var(0) / q[:, bright].mean(0)
    assert abs(np.median(f) / resp.excess_noise - 1) < 0.1


@pytest.mark.slow
def test_xmax_fit_with_geometry_from_truth_reaches_the_bound_on_model_showers():
    """Showers without the [M] fluctuations (the model's own), fitted without the nuisances:
    the Xmax fit's scatter is close to its fitted error; with the fluctuations and the
    nuisances profiled (opt-in settings), the scatter stays below 30 g/cm² at 1 PeV
    (BENCHMARKS.md has the 100-event figures)."""
    import dataclasses

    from helpers import simulate_and_reconstruct
    from joint.config import ReconstructionConfig

    @dataclasses.dataclass(frozen=True)
    class NoNuisances(ReconstructionConfig):  # the registry reads wfcta_nuisance_sigmas
        wfcta_nuisance_sigmas: tuple = (0.0, 0.0)

    geo = dict(hypothesis="hadron", detectors=("wfcta",), free=("log10_energy", "xmax"),
               truth_fields=("core_x", "core_y", "zenith", "azimuth"), xmax_prior=False)
    cfg = ReconstructionConfig(**geo)
    assert cfg.physics_of("wfcta").nuisance_sigmas == (0.0, 0.0)      # opt-in (docs/nuisances.md)
    kw = dict(detectors=("wfcta",), cores_on="wfcta", core_radius=300.0, batch_size=32)
    rec, out = simulate_and_reconstruct("proton", 6.0, 32, 3, "hadron", cfg=NoNuisances(**geo),
                                        wfcta_fluctuations=(0.0, 0.0), **kw)
    @dataclasses.dataclass(frozen=True)
    class WithNuisances(ReconstructionConfig):  # None: the documented priors (opt-in)
        wfcta_nuisance_sigmas: tuple | None = None

    kw["cfg"] = WithNuisances(**geo)
    assert kw["cfg"].physics_of("wfcta").nuisance_sigmas == wfcta.NUISANCE_SIGMAS
    ok = out["status"] == 0
    assert ok.mean() >= 0.9
    dx = (out["reco_xmax"] - rec["true_xmax"])[ok]
    pull = dx / out["reco_xmax_err"][ok]
    assert 0.6 < np.std(pull) < 1.5 and abs(np.mean(pull)) < 0.6
    assert {"nll_wfcta", "hillas_size", "hillas_dist", "x_dist"} <= set(out)
    assert out["hillas_size"].shape == (32, 6)
    rec2, out2 = simulate_and_reconstruct("proton", 6.0, 32, 4, "hadron", **kw)
    ok2 = out2["status"] == 0
    assert np.std((out2["reco_xmax"] - rec2["true_xmax"])[ok2]) < 30.0


def test_wfcta_from_the_command_line(tmp_path, capsys):
    from lhaaso_joint.cli import main
    import uproot

    src = tmp_path / "wfcta.root"
    assert main(["simulate", "--detectors", "wfcta", "--cores-on", "wfcta", "--primary", "proton",
                 "--n-events", "8", "--log10-energy-range", "6.0", "6.0", "--seed", "5",
                 "-o", str(src)]) == 0
    out = tmp_path / "reco.root"
    capsys.readouterr()  # (the simulation's progress bar)
    assert main(["reconstruct", str(src), "-o", str(out), "--detectors", "wfcta", "--quiet"]) == 2
    err = capsys.readouterr().err.splitlines()  # one line, the CLI's error format
    assert len(err) == 1 and err[0].startswith("lhaaso-joint: error: ") and "geometry fixed" in err[0]
    assert main(["reconstruct", str(src), "-o", str(out), "--detectors", "wfcta",
                 "--fix", "core,direction", "--batch-size", "8", "--quiet"]) == 0
    with uproot.open(out) as f:
        t = f["reco"].arrays(library="np")
    assert t["hillas_size"].shape == (8, 6)
    np.testing.assert_allclose(t["reco_core_x"], t["true_core_x"], atol=1e-3)  # fixed (float32)
    assert (t["status"] == 0).mean() >= 0.75
    assert np.median(np.abs(t["reco_xmax"] - t["true_xmax"])) < 40.0
