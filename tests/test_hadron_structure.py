"""Hadronic structure of the KM2A simulation and the per-hit truth labels (issue 17 part 0)."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from detectors import km2a
from detectors.layout import km2a_layout
from detectors.shower import Shower, shower_plane_coordinates
from detectors.substructure import lognormal_multiplier, shower_plane_xy


@pytest.fixture(scope="module")
def setup():
    """The full layout's channels within 250 m of (250, 0) m (fast to compile and run)."""
    from detectors.layout import KM2ALayout

    full = km2a_layout("full")
    e = np.hypot(full.ed_pos[:, 0] - 250.0, full.ed_pos[:, 1]) < 250.0
    m = np.hypot(full.md_pos[:, 0] - 250.0, full.md_pos[:, 1]) < 250.0
    lay = KM2ALayout(ed_id=full.ed_id[e], ed_pos=full.ed_pos[e], md_id=full.md_id[m],
                     md_pos=full.md_pos[m], ed_area=full.ed_area, md_area=full.md_area)
    geo = km2a.Geometry.from_layout(lay)
    return lay, geo, km2a.Response.nominal(geo)


def _shower(**kw):
    base = dict(log10_energy=5.0, zenith=np.radians(20.0), core_x=250.0, core_y=0.0)
    base.update(kw)
    return Shower.make(dtype=jnp.float32, **base)


OFF = {k: 0.0 for k in ("subshower_rate", "subshower_fraction", "muon_clump_rate",
                         "muon_clump_fraction", "patch_sigma")}
ON = {k: km2a.HADRON_STRUCTURE[k] for k in OFF}


@pytest.fixture(scope="module")
def sim(setup):
    """One compiled, vmapped km2a.simulate for every test: the structure's switches are traced
    values (jit/vmap-safe), the rest of HADRON_STRUCTURE static."""
    _, geo, resp = setup
    rest = {k: v for k, v in km2a.HADRON_STRUCTURE.items() if k not in OFF}

    def one(key, shower, is_gamma, switches):
        return km2a.simulate(key, shower, geo, resp, km2a.KM2APhysics(is_gamma=is_gamma),
                             return_labels=True, **rest, **switches)
    f = jax.jit(jax.vmap(one, in_axes=(0, 0, 0, None)))

    def run(showers, is_gamma, switches, seed=0, same_key=False):
        n = len(is_gamma)
        keys = (jnp.broadcast_to(jax.random.PRNGKey(seed), (n, 2)) if same_key
                else jax.random.split(jax.random.PRNGKey(seed), n))
        sw = {k: jnp.float32(v) for k, v in switches.items()}
        return f(keys, showers, jnp.asarray(is_gamma, jnp.float32), sw)
    return run


N = 64  # one batch size: one compilation of ``sim``


def _batch(n, **kw):
    return jax.tree_util.tree_map(lambda a: jnp.broadcast_to(a, (n,)), _shower(**kw))


def test_photons_unchanged(sim):
    """Photons: the structure's switches change nothing (bit for bit); hadrons: they do."""
    showers = _batch(N)
    g = np.tile([1.0, 0.0], N // 2)
    a = sim(showers, g, OFF, same_key=True)
    b = sim(showers, g, ON, same_key=True)
    for blk_a, blk_b in ((a[0].ed, b[0].ed), (a[0].md, b[0].md)):
        for f in ("signal", "time", "hit", "valid", "n_pulses"):
            np.testing.assert_array_equal(np.asarray(getattr(blk_a, f))[0],
                                          np.asarray(getattr(blk_b, f))[0])
    assert bool(a[1][0]) == bool(b[1][0])
    assert not np.array_equal(np.asarray(a[0].ed.signal[1]), np.asarray(b[0].ed.signal[1]))


def test_shower_plane_xy_distances(setup):
    _, geo, _ = setup
    sh = _shower(azimuth=1.1, zenith=0.5)
    r, _ = shower_plane_coordinates(sh, geo.ed_pos)
    xy = shower_plane_xy(sh, geo.ed_pos)
    np.testing.assert_allclose(np.hypot(xy[:, 0], xy[:, 1]), np.asarray(r), rtol=1e-4, atol=1e-2)


def test_lognormal_multiplier_mean_one():
    xy = jnp.stack(jnp.meshgrid(jnp.arange(20.0), jnp.arange(20.0)), -1).reshape(-1, 2)
    m = jax.vmap(lambda k: lognormal_multiplier(k, xy, 0.5, 3.0))(jax.random.split(jax.random.PRNGKey(0), 2000))
    m = np.asarray(m, np.float64)
    assert abs(m.mean() - 1.0) < 0.01
    # relative variance ≈ e^σ² − 1 = 0.284
    assert 0.24 < m.var(0).mean() < 0.33
    # neighbours 1 m apart correlate, cells 15 m apart do not
    c1 = np.corrcoef(m[:, 0], m[:, 1])[0, 1]
    c15 = np.corrcoef(m[:, 0], m[:, 15])[0, 1]
    assert c1 > 0.8 and abs(c15) < 0.1


def test_hadron_means_unbiased(setup):
    """The structure redistributes: the mean numbers per channel, summed in radial ranges and
    averaged over draws, stay the smooth model's (within the draws' errors and 1%)."""
    _, geo, resp = setup
    sh = _shower()
    phys = km2a.KM2APhysics(is_gamma=0.0)
    e = km2a.expected(sh, geo, resp, phys)
    n = 120
    em, emu, mmu = jax.jit(jax.vmap(lambda k: km2a._hadron_structure(
        k, sh, e, geo, resp, phys, **km2a.HADRON_STRUCTURE)))(jax.random.split(jax.random.PRNGKey(1), n))
    r_ed = np.asarray(shower_plane_coordinates(sh, geo.ed_pos)[0])
    r_md = np.asarray(shower_plane_coordinates(sh, geo.md_pos)[0])
    smooth_mu_ed = np.asarray(e.ed_particles - e.ed_em)
    for draws, smooth, r in ((em, e.ed_em, r_ed), (emu, smooth_mu_ed, r_ed), (mmu, e.md_muons, r_md)):
        draws, smooth = np.asarray(draws, np.float64), np.asarray(smooth, np.float64)
        for lo, hi in ((0, 60), (60, 150), (150, 250), (0, 2000)):
            s = (r >= lo) & (r < hi)
            tot = draws[:, s].sum(1)
            ratio = tot.mean() / smooth[s].sum()
            err = tot.std() / np.sqrt(n) / smooth[s].sum()
            assert abs(ratio - 1) < max(3 * err, 0.01), (lo, hi, ratio, err)
    # and the structure is there
    s = (r_ed > 100) & (r_ed < 250)
    assert np.mean(np.asarray(em)[:, s].var(0) / np.asarray(e.ed_em)[s] ** 2) > 0.05


def test_hadron_charge_variance_larger(sim, setup):
    """At fixed expected density, the hadrons' ED charges fluctuate more with the structure, and
    their mean stays."""
    _, geo, resp = setup
    n = N
    showers = _batch(n, log10_energy=6.0)
    on = np.asarray(sim(showers, np.zeros(n), ON, seed=7)[0].ed.signal, np.float64)
    off = np.asarray(sim(showers, np.zeros(n), OFF, seed=7)[0].ed.signal, np.float64)
    e = km2a.expected(_shower(log10_energy=6.0), geo, resp, km2a.KM2APhysics(is_gamma=0.0))
    mu = np.asarray(e.ed_particles)
    r = np.asarray(shower_plane_coordinates(_shower(), geo.ed_pos)[0])
    s = (mu > 2) & (r > 20) & (r < 150)   # a few particles: the noise hits do not matter
    assert s.sum() > 40
    v_on = on[:, s].var(0) / on[:, s].mean(0) ** 2
    v_off = off[:, s].var(0) / off[:, s].mean(0) ** 2
    assert np.median(v_on / v_off) > 1.08, np.median(v_on / v_off)
    q_on, q_off = on[:, s].sum(1), off[:, s].sum(1)
    err = np.hypot(q_on.std(), q_off.std()) / np.sqrt(n)
    assert abs(q_on.mean() - q_off.mean()) < 3.5 * err + 0.01 * q_off.mean()


def test_labels_noise_and_core(sim, setup):
    lay = setup[0]
    # no shower on the array: every hit is noise, labelled 0
    far = _batch(N, core_x=1e5, core_y=1e5, log10_energy=3.0)
    obs, _, (led, lmd) = sim(far, np.zeros(N), ON, seed=2)
    assert int(obs.ed.hit.sum()) > 5 and int(obs.md.hit.sum()) > 2
    assert not bool(led.any()) and not bool(lmd.any())
    # a 1 PeV core on an ED: that ED's hit is the shower's
    i = int(np.argmin(np.hypot(lay.ed_pos[:, 0] - 250.0, lay.ed_pos[:, 1])))
    sh = _batch(N, core_x=float(lay.ed_pos[i, 0]), core_y=float(lay.ed_pos[i, 1]), log10_energy=6.0)
    obs, trig, (led, lmd) = sim(sh, np.zeros(N), ON, seed=2)
    assert bool(trig.all()) and bool(obs.ed.hit[:, i].all()) and bool(led[:, i].all())
    assert int(led.sum()) > 100 * N
    # labels only on hits
    assert not bool((led & ~obs.ed.hit).any()) and not bool((lmd & ~obs.md.hit).any())


def test_records_hit_labels(setup):
    import awkward as ak

    from joint.simulation import simulate_records

    lay = setup[0]

    def hook(truth, rng):
        k = len(truth["true_core_x"])
        truth["true_core_x"] = 250.0 + rng.uniform(-100, 100, k)
        truth["true_core_y"] = rng.uniform(-100, 100, k)
        return truth

    rec, _ = simulate_records(6, primary="proton", log10_energy_range=(5.0, 5.3), seed=3,
                              km2a_layout=lay, chunk=8, hit_labels=True, truth_hook=hook)
    for g in ("km2a_ed", "km2a_md"):
        lab = rec[f"{g}_signal"]
        assert ak.to_list(ak.num(lab)) == ak.to_list(ak.num(rec[f"{g}_id"]))
        flat = ak.to_numpy(ak.flatten(lab))
        assert flat.dtype == np.int8 and set(np.unique(flat)) <= {0, 1}
        assert (flat == 0).any() and (flat == 1).any()
    # shower hits are in time, noise hits spread over the ±5 µs window
    t = ak.to_numpy(ak.flatten(rec["km2a_ed_time"]))
    lab = ak.to_numpy(ak.flatten(rec["km2a_ed_signal"]))
    assert np.std(t[lab == 1]) < 0.2 * np.std(t[lab == 0])
    rec2, _ = simulate_records(2, primary="proton", log10_energy_range=(5.0, 5.3), seed=3,
                               km2a_layout=lay, chunk=8, truth_hook=hook)
    assert "km2a_ed_signal" not in rec2
