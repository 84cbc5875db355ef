"""calib.learn: recovering injected KM2A ED gains and time offsets from simulated events, and
resuming from a checkpoint."""
import numpy as np
import jax.numpy as jnp
import pytest

from calib import response as R
from calib.learn import LearnConfig, learn_response, response_errors
from joint.config import ReconstructionConfig, detector_setup

N_EVENTS = 64
GAIN_SPREAD = 0.2      # σ of ln(gain / nominal): a 20% spread
OFFSET_SPREAD = 5.0    # σ of the time offsets [ns]
CENTRE = (300.0, 0.0)  # cores within 20 m of here: 58 EDs within 60 m, hit in most events
ED_FIELDS = ("ed_log_gain", "ed_time_offset")
#: small channel selection and few steps: the test is about the loop, not the last percent.
#: Only EDs hit in at least half of the events are learned (64 events: the others have too few
#: hits). Charges are scored with the compound Poisson-gamma density (LearnConfig default), which
#: keeps single-particle gains unbiased (tests/test_channel_compound.py)
CFG = ReconstructionConfig(hypothesis="gamma", n_ed=256, n_md=64)
LCFG = LearnConfig(fields=ED_FIELDS, n_outer=3, n_steps=100, batch_size=32, learning_rate=0.1,
                   learn_min_hits=N_EVENTS // 2)


@pytest.fixture(scope="module")
def period():
    """64 photons at 100 TeV with cores in a 20 m disc, simulated with ED gains (20% spread)
    and time offsets (5 ns spread) that the fit does not know."""
    from joint.io.schema import to_event_batch
    from joint.simulation import simulate_records

    layouts, geos, noms = detector_setup(("km2a",))
    nom, geo = noms["km2a"], geos["km2a"]
    rng = np.random.default_rng(11)
    n_ed, n_md = nom.ed_gain.shape[0], nom.md_gain.shape[0]
    true_p = R.KM2AParams(ed_log_gain=jnp.asarray(rng.normal(0.0, GAIN_SPREAD, n_ed)),
                          md_log_gain=jnp.zeros(n_md),
                          ed_time_offset=jnp.asarray(rng.normal(0.0, OFFSET_SPREAD, n_ed)),
                          md_time_offset=jnp.zeros(n_md))
    cons = R.km2a_constraints(geo)
    truth = R.apply(true_p, nom, cons)
    truth = truth._replace(**{f: np.asarray(getattr(truth, f)) for f in R.LEARNED_FIELDS["km2a"]})
    rec, _ = simulate_records(N_EVENTS, primary="gamma", log10_energy_range=(5.0, 5.0),
                              zenith_max_deg=30.0, core_radius_m=20.0, core_centre=CENTRE,
                              seed=5, km2a_layout=layouts["km2a"], response=truth, chunk=N_EVENTS)
    batch = to_event_batch(rec, km2a=layouts["km2a"], as_jax=False)
    return {"batch": batch, "geometry": geos, "nominal": noms, "truth": {"km2a": truth},
            "constraints": {"km2a": cons}}


@pytest.fixture(scope="module")
def learned(period):
    return learn_response(period["batch"], period["geometry"], period["nominal"], CFG, LCFG,
                          truth=period["truth"], progress=False)


def _well_illuminated(period, history):
    """EDs hit in at least 75% of the events with ≥ 200 particles in all (nominal gain):
    the Poisson limit on their gain is ≲ sqrt(1.16/200) ≈ 0.08."""
    ed = period["batch"].km2a_ed
    n_hit = history["n_hits"]["km2a"]["ed_log_gain"]
    particles = np.sum(np.where(ed.hit & ed.valid, ed.signal, 0.0), axis=0) / 40.0
    return (n_hit >= 0.75 * N_EVENTS) & (particles >= 200.0)


@pytest.mark.slow
def test_learn_recovers_ed_gains_and_time_offsets(period, learned):
    responses, history = learned
    m = _well_illuminated(period, history)
    assert m.sum() >= 10, f"only {m.sum()} well-illuminated EDs"
    err = response_errors(responses, period["truth"], period["nominal"], period["constraints"],
                          masks={"km2a": {f: m for f in ED_FIELDS}})
    spread = {"ed_log_gain": GAIN_SPREAD, "ed_time_offset": OFFSET_SPREAD}
    for f in ED_FIELDS:
        e = err[f]
        # the learned parameters match the injected ones (up to the common shift that only the
        # whole array's mean fixes) at least 2x better than the injected spread
        assert e["rms_error"] < 0.5 * spread[f], (f, e, int(m.sum()))
    assert err["ed_time_offset"]["rms_error"] < 1.0  # ns; measured 0.28
    # fields not learned stay nominal; constraints hold on the learned ones
    r, nom = responses["km2a"], period["nominal"]["km2a"]
    np.testing.assert_allclose(r.md_gain, nom.md_gain, rtol=1e-6)
    g = np.log(r.ed_gain / nom.ed_gain)
    assert abs(g.mean()) < 1e-5
    assert abs(np.mean(np.concatenate([r.ed_time_offset, r.md_time_offset]))) < 1e-4
    # the summed nll went down, and the shower fits improved with the response
    outer = history["outer"]
    assert outer[-1]["fit_nll"] < outer[0]["fit_nll"]
    assert len(history["loss"]) == LCFG.n_outer * LCFG.n_steps
    assert outer[-1]["n_usable"] >= 0.9 * N_EVENTS


@pytest.mark.slow
def test_checkpoint_resume_equals_uninterrupted_run(period, learned, tmp_path):
    """Two outer iterations in one call == one, then a resumed call to two (same settings and
    compilations as the test above, so it costs only the short loops)."""
    import dataclasses

    lc2 = dataclasses.replace(LCFG, n_outer=2)  # same n_steps: the same compiled step
    args = (period["batch"], period["geometry"], period["nominal"], CFG)
    full, h_full = learn_response(*args, lc2, progress=False)
    ckpt = tmp_path / "period.ckpt.npz"
    learn_response(*args, dataclasses.replace(lc2, n_outer=1), checkpoint=ckpt, progress=False)
    assert ckpt.exists() and (tmp_path / "period.ckpt.npz.json").exists()
    resumed, h_res = learn_response(*args, lc2, checkpoint=ckpt, progress=False)
    assert h_res["resumed_from"] == 1
    for f in R.LEARNED_FIELDS["km2a"]:
        np.testing.assert_array_equal(getattr(resumed["km2a"], f), getattr(full["km2a"], f))
    np.testing.assert_array_equal(h_res["loss"], h_full["loss"])
    # a checkpoint of other settings is refused with a message naming it
    with pytest.raises(ValueError, match="period.ckpt.npz.*fingerprint"):
        learn_response(*args, dataclasses.replace(lc2, seed=1), checkpoint=ckpt, progress=False)


def test_profile_moves_the_shower_field_to_the_minimum_and_holds_it_for_gradients():
    """LearnConfig.profile: damped Newton steps on the profiled fields at the current response;
    the result is held fixed (stop_gradient), so the response gradient is the profile
    likelihood's (envelope theorem)."""
    import jax
    from calib.learn import _profiled
    from detectors.shower import FIELDS, Shower

    s0 = Shower(**{f: jnp.asarray(0.0) for f in FIELDS})._replace(log10_energy=jnp.asarray(5.0))

    def nll(s, theta):  # minimum at log10_energy = 5.3 + theta, quartic term (not one Newton step)
        d = s.log10_energy - 5.3 - theta
        return 40.0 * d ** 2 + 30.0 * d ** 4

    prof = _profiled(nll, ("log10_energy",), 4)
    s = prof(s0, 0.05)
    assert float(s.log10_energy) == pytest.approx(5.35, abs=1e-3)
    grad = jax.grad(lambda th: nll(prof(s0, th), th))(0.05)
    assert abs(float(grad)) < 1e-2  # at the profiled minimum the total derivative vanishes
    assert _profiled(nll, (), 3)(s0, 0.0) is s0
