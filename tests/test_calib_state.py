"""calib.learn as an init/step pair: a LearnState is all that a step depends on, a checkpoint
holds exactly it, and learn_response is init (or resume) + steps. A small toy period (12
events, 3 optimiser steps per outer iteration): the test is about exactness, not recovery."""
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from calib import response as R
from calib.learn import (LearnConfig, learn_init, learn_problem, learn_response, learn_step,
                         load_checkpoint, save_checkpoint)
from joint.config import ReconstructionConfig, detector_setup
from lhaaso_joint.cache import enable_compilation_cache

enable_compilation_cache()  # as the CLI and API do: compilation is most of this test's time

N_EVENTS = 12
CFG = ReconstructionConfig(hypothesis="gamma", n_ed=64, n_md=16)
LCFG = LearnConfig(fields=("ed_log_gain", "ed_time_offset"), n_outer=2, n_steps=3, batch_size=8,
                   fit_batch_size=16, compound_particles=0.0)
TIMINGS = ("fit_seconds", "step_seconds")


@pytest.fixture(scope="module")
def toy():
    """12 photons at 100 TeV with cores in a 20 m disc, simulated with ED gains (20% spread)
    and time offsets (5 ns) that the fit does not know."""
    from joint.io.schema import to_event_batch
    from joint.simulation import simulate_records

    layouts, geos, noms = detector_setup(("km2a",))
    nom = noms["km2a"]
    rng = np.random.default_rng(3)
    n_ed, n_md = nom.ed_gain.shape[0], nom.md_gain.shape[0]
    p = R.KM2AParams(ed_log_gain=jnp.asarray(rng.normal(0.0, 0.2, n_ed)), md_log_gain=jnp.zeros(n_md),
                     ed_time_offset=jnp.asarray(rng.normal(0.0, 5.0, n_ed)),
                     md_time_offset=jnp.zeros(n_md))
    truth = R.apply(p, nom, R.km2a_constraints(geos["km2a"]))
    rec, _ = simulate_records(N_EVENTS, primary="gamma", log10_energy_range=(5.0, 5.0),
                              zenith_max_deg=30.0, core_radius_m=20.0, core_centre=(300.0, 0.0),
                              seed=7, km2a_layout=layouts["km2a"], response=truth, chunk=N_EVENTS)
    batch = to_event_batch(rec, km2a=layouts["km2a"], as_jax=False)
    return {"args": (batch, geos, noms, CFG), "problem": learn_problem(batch, geos, noms, CFG, LCFG)}


def _leaves_equal(a, b, what):
    la, ta = jax.tree_util.tree_flatten(a)
    lb, tb = jax.tree_util.tree_flatten(b)
    assert ta == tb, what
    for x, y in zip(la, lb):
        assert np.asarray(x).dtype == np.asarray(y).dtype, what
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y), err_msg=what)


def _records(state, timings: bool):
    return [{k: v for k, v in r.items() if timings or k not in TIMINGS} for r in state.records]


def assert_same_state(a, b, timings=True):
    """Every field of two LearnStates equal, bit for bit (``timings``: the records' wall times
    too, which only a saved-and-loaded copy of the same state shares)."""
    assert a.outer == b.outer
    _leaves_equal(a.trainable, b.trainable, "trainable")
    _leaves_equal(a.opt_state, b.opt_state, "opt_state")
    _leaves_equal(a.showers, b.showers, "showers")
    assert a.loss == b.loss
    assert _records(a, timings) == _records(b, timings)


def test_init_steps_checkpoint_resume_are_exact(toy, tmp_path):
    problem = toy["problem"]
    s0 = learn_init(problem)
    assert s0.outer == 0 and s0.showers is None and s0.loss == () and s0.records == ()
    for v in jax.tree_util.tree_leaves(s0.trainable):
        assert not np.any(np.asarray(v))   # nominal start: raw parameters 0

    s1, rec = learn_step(s0, problem)
    assert s0.outer == 0 and s0.showers is None   # the input state is left as it was
    assert s1.outer == 1 and len(s1.loss) == LCFG.n_steps and s1.records == (rec,)
    assert rec["n_usable"] >= N_EVENTS // 2
    moved = [np.any(np.asarray(a) != np.asarray(b)) for a, b in
             zip(jax.tree_util.tree_leaves(s1.trainable), jax.tree_util.tree_leaves(s0.trainable))]
    assert all(moved)   # the optimiser moved every learned field

    ckpt = tmp_path / "toy.ckpt.npz"
    save_checkpoint(ckpt, s1, problem)
    r1 = load_checkpoint(ckpt, problem)
    assert_same_state(r1, s1)   # the checkpoint is the state, bit for bit

    s2, _ = learn_step(s1, problem)
    r2, _ = learn_step(r1, problem)
    assert_same_state(r2, s2, timings=False)   # so a resumed step is the same step
    assert any(np.any(np.asarray(a) != np.asarray(b)) for a, b in
               zip(jax.tree_util.tree_leaves(s2.opt_state), jax.tree_util.tree_leaves(s1.opt_state)))

    # learn_response is init + n_outer steps: same Responses and history ...
    full, hist = learn_response(*toy["args"], LCFG, progress=False)
    assert hist["resumed_from"] == 0 and hist["loss"] == list(s2.loss)
    assert [{k: v for k, v in r.items() if k not in TIMINGS} for r in hist["outer"]] == \
        _records(s2, False)
    expected = problem.result(s2)
    for f in R.LEARNED_FIELDS["km2a"]:
        np.testing.assert_array_equal(getattr(full["km2a"], f), getattr(expected["km2a"], f))
    # ... and resuming it from the one-step checkpoint gives them too
    resumed, hist_r = learn_response(*toy["args"], LCFG, checkpoint=ckpt, progress=False)
    assert hist_r["resumed_from"] == 1 and hist_r["loss"] == list(s2.loss)
    for f in R.LEARNED_FIELDS["km2a"]:
        np.testing.assert_array_equal(getattr(resumed["km2a"], f), getattr(expected["km2a"], f))
    assert_same_state(load_checkpoint(ckpt, problem), s2, timings=False)

    # a checkpoint of other settings (here: the minibatch seed) is refused, naming the file
    other = learn_problem(*toy["args"], dataclasses.replace(LCFG, seed=1))
    with pytest.raises(ValueError, match="toy.ckpt.npz.*fingerprint.learn"):
        load_checkpoint(ckpt, other)
