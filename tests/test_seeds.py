"""KM2A seeds (joint/seeds.py): G4KM2A events with their real noise hits, a plane-front toy,
jit/vmap consistency and degenerate events."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from detectors.layout import km2a_layout
from detectors.shower import SPEED_OF_LIGHT_M_PER_NS, Shower, shower_plane_coordinates
from detectors.block import ChannelBlock
from detectors.seeds import densest_window, km2a_seed, seed_batch, to_particles


_jit_seed = jax.jit(lambda b, pos: km2a_seed(b, None, pos))  # one compilation, shared


@pytest.fixture(scope="module")
def layout():
    return km2a_layout("full")


@pytest.fixture(scope="module")
def mc_batch(shared_data, layout):
    from joint.io import read_file
    from joint.io.schema import to_event_batch

    records = read_file(shared_data / "lhaaso" / "km2a" / "KM2AMCTest.root", km2a=layout)
    return to_event_batch(records, km2a=layout, as_jax=False)


@pytest.fixture(scope="module")
def mc_seeds(mc_batch, layout):
    return jax.tree.map(np.asarray, seed_batch(mc_batch, layout))


def _unit(zen, az):
    zen, az = np.asarray(zen), np.asarray(az)
    return np.stack([np.sin(zen) * np.cos(az), np.sin(zen) * np.sin(az), np.cos(zen)], -1)


def _angle_deg(z1, a1, z2, a2):
    c = np.sum(_unit(z1, a1) * _unit(z2, a2), -1)
    return np.degrees(np.arccos(np.clip(c, -1.0, 1.0)))


def _block(i, blk):
    return ChannelBlock(*[jnp.asarray(np.asarray(x)[i]) for x in blk])


# ------------------------------------------------------------------------------------------
# G4KM2A sample (53 photons, 20 deg zenith, 10-400 TeV, with the simulated noise hits)
# ------------------------------------------------------------------------------------------
def test_mc_core(mc_batch, mc_seeds):
    tr = mc_batch.truth
    d = np.hypot(mc_seeds.core_x - tr["true_core_x"], mc_seeds.core_y - tr["true_core_y"])
    largest = np.argsort(-mc_batch.km2a_ed.signal.sum(axis=1))[:12]
    # measured: max 7.0 m over the 12 largest, median 5.1 m over all 53 (the misses > 60 m have
    # their true core on the ED-free WCDA area in the array centre or outside the array)
    assert d[largest].max() < 10.0, d[largest]
    assert np.median(d) < 15.0, d


def test_mc_direction(mc_batch, mc_seeds):
    tr = mc_batch.truth
    ang = _angle_deg(mc_seeds.zenith, mc_seeds.azimuth, tr["true_zenith"], tr["true_azimuth"])
    ed = mc_batch.km2a_ed
    count = jax.jit(jax.vmap(lambda t, q, h: densest_window(t, to_particles(q, h))[1].sum()))
    n_win = np.asarray(count(jnp.asarray(ed.time), jnp.asarray(ed.signal), jnp.asarray(ed.hit)))
    sel = n_win >= 50
    assert sel.sum() >= 20
    # measured: 26 of 28 (93%) within 2 deg; median 0.8 deg over all 53 events
    assert np.mean(ang[sel] < 2.0) >= 0.8, (ang[sel], n_win[sel])
    assert np.median(ang) < 1.5
    assert np.all((mc_seeds.azimuth >= 0) & (mc_seeds.azimuth < 2 * np.pi))


def test_mc_energy_and_t0(mc_batch, mc_seeds, layout):
    tr = mc_batch.truth
    d = np.hypot(mc_seeds.core_x - tr["true_core_x"], mc_seeds.core_y - tr["true_core_y"])
    good = d < 15.0
    de = mc_seeds.log10_energy[good] - tr["true_log10_energy"][good]
    # the default calibration was read off this sample: median ~0, rms ~0.14 dex
    assert abs(np.median(de)) < 0.1 and np.std(de) < 0.25, de
    # t0 is the front time at the core: the largest hits sit on the seeded conical front
    ed = mc_batch.km2a_ed
    pos = jnp.asarray(layout.ed_pos)
    res = []
    for i in np.argsort(-ed.signal.sum(axis=1))[:12]:
        top = np.argsort(-ed.signal[i])[:10]
        sh = jax.tree.map(lambda x: jnp.asarray(x[i]), mc_seeds)
        r, delay = (np.asarray(x) for x in shower_plane_coordinates(sh, pos[top]))
        res.append(np.median(ed.time[i][top] - (mc_seeds.t0[i] + delay + ALPHA * r)))
    # measured: -4.2 ... -1.2 ns (the big hits near the core lead the fitted cone slightly)
    assert np.all(np.abs(res) < 10.0), res
    for f in Shower._fields:
        assert np.all(np.isfinite(getattr(mc_seeds, f)))


# ------------------------------------------------------------------------------------------
# toy plane front with noise
# ------------------------------------------------------------------------------------------
ALPHA = 0.03 / SPEED_OF_LIGHT_M_PER_NS


def _toy_block(rng, layout, zenith, azimuth, core=(-150.0, -70.0), t0=5300.0, n_noise=100,
               size=3e5):
    pos = np.asarray(layout.ed_pos)
    sh = Shower.make(jnp.float64, core_x=core[0], core_y=core[1], zenith=zenith, azimuth=azimuth)
    r, delay = (np.asarray(x) for x in shower_plane_coordinates(sh, jnp.asarray(pos)))
    # NKG-like density [particles/m^2] on 1 m^2 detectors
    rm, s = 30.0, 1.2
    x = np.maximum(r, 1.0) / rm
    rho = size / (2 * np.pi * rm**2) * 2.8 * x ** (s - 2) * (1 + x) ** (s - 4.5)
    npart = rng.poisson(rho)
    hit = npart > 0
    signal = np.where(hit, npart * 40.0, 0.0)
    time = np.where(hit, t0 + delay + ALPHA * r + rng.normal(0.0, 1.0, r.shape), 0.0)
    free = np.flatnonzero(~hit)
    noise = rng.choice(free, n_noise, replace=False)
    hit[noise] = True
    signal[noise] = rng.uniform(10.0, 60.0, n_noise)
    time[noise] = rng.uniform(-5000.0, 5000.0, n_noise) + t0
    n = pos.shape[0]
    blk = ChannelBlock(signal=signal, time=time, hit=hit, valid=np.ones(n, bool),
                       n_pulses=hit.astype(np.int32))
    return blk, np.count_nonzero(npart)


@pytest.mark.parametrize("zen_deg,az", [(0.0, 0.0), (10.0, 0.3), (30.0, 1.9), (30.0, 3.5),
                                        (45.0, 5.0), (25.0, 6.2)])
def test_toy_plane_front(layout, zen_deg, az):
    rng = np.random.default_rng(int(zen_deg * 100 + az * 10))
    zen = math.radians(zen_deg)
    blk, n_shower = _toy_block(rng, layout, zen, az)
    assert n_shower > 80
    seed = jax.tree.map(float, _jit_seed(ChannelBlock(*[jnp.asarray(x) for x in blk]),
                                          jnp.asarray(layout.ed_pos)))
    for f in Shower._fields:
        assert math.isfinite(getattr(seed, f)), f
    assert _angle_deg(seed.zenith, seed.azimuth, zen, az) < 0.1
    assert abs(math.degrees(seed.zenith - zen)) < 0.1
    assert 0.0 <= seed.azimuth < 2 * math.pi
    if zen_deg > 5:
        daz = (seed.azimuth - az + math.pi) % (2 * math.pi) - math.pi
        assert abs(math.degrees(daz)) * math.sin(zen) < 0.1
    assert math.hypot(seed.core_x + 150.0, seed.core_y + 70.0) < 5.0
    # t0 is the front time at the SEEDED core
    dcore = np.array([seed.core_x + 150.0, seed.core_y + 70.0, 0.0])
    t_front = 5300.0 - dcore @ _unit(zen, az) / SPEED_OF_LIGHT_M_PER_NS
    assert abs(seed.t0 - t_front) < 1.0


# ------------------------------------------------------------------------------------------
# jit / vmap and degenerate events
# ------------------------------------------------------------------------------------------
def test_seed_batch_kwargs(mc_batch, layout, mc_seeds):
    """Keyword parameters pass through seed_batch (a different energy calibration shifts the
    energy only)."""
    s = seed_batch(mc_batch, layout, energy_offset=3.73)
    np.testing.assert_allclose(np.asarray(s.log10_energy), mc_seeds.log10_energy + 1.0, atol=1e-9)
    np.testing.assert_allclose(np.asarray(s.core_x), mc_seeds.core_x, atol=1e-9)


def test_vmap_equals_loop(mc_batch, layout):
    pos = jnp.asarray(layout.ed_pos)
    idx = [0, 5, 11, 30]
    ed = mc_batch.km2a_ed
    sub = ChannelBlock(*[jnp.asarray(np.asarray(x)[idx]) for x in ed])
    batched = jax.jit(jax.vmap(lambda b: km2a_seed(b, None, pos)))(sub)
    for k, i in enumerate(idx):
        s = _jit_seed(_block(i, ed), pos)
        for f in Shower._fields:
            np.testing.assert_allclose(getattr(batched, f)[k], getattr(s, f), rtol=1e-7,
                                       atol=1e-7, err_msg=f)


def test_degenerate_events_finite(layout):
    n = layout.ed_pos.shape[0]
    pos = jnp.asarray(layout.ed_pos)
    fn = lambda b: _jit_seed(b, pos)  # noqa: E731 (same compilation as the toy tests)
    empty = ChannelBlock(signal=jnp.zeros(n), time=jnp.zeros(n), hit=jnp.zeros(n, bool),
                         valid=jnp.ones(n, bool), n_pulses=jnp.zeros(n, jnp.int32))
    s = fn(empty)
    for f in Shower._fields:
        assert np.isfinite(float(getattr(s, f))), f
    assert float(s.zenith) == 0.0 and float(s.core_x) == 0.0 and float(s.t0) == 0.0
    # two hits only, and a fully masked (invalid) event
    two = empty._replace(signal=empty.signal.at[:2].set(100.0), time=empty.time.at[:2].set(1e3),
                         hit=empty.hit.at[:2].set(True))
    dead = two._replace(valid=jnp.zeros(n, bool))
    for b in (two, dead):
        s = fn(b)
        for f in Shower._fields:
            assert np.isfinite(float(getattr(s, f))), f
    # gradients through the seed are finite too (the seed may sit inside a differentiable loop)
    g = jax.jit(jax.grad(lambda sig: km2a_seed(two._replace(signal=sig), None,
                                               pos).log10_energy))(two.signal)
    assert np.all(np.isfinite(np.asarray(g)))


def test_float32(mc_batch, layout, mc_seeds):
    """The production dtype: float32 inputs give float32 seeds close to the float64 ones."""
    idx = np.argsort(-mc_batch.km2a_ed.signal.sum(axis=1))[:4]
    ed = mc_batch.km2a_ed
    sub = ChannelBlock(*[jnp.asarray(np.asarray(x)[idx]).astype(jnp.float32)
                         if np.asarray(x).dtype.kind == "f" else jnp.asarray(np.asarray(x)[idx])
                         for x in ed])
    pos = jnp.asarray(layout.ed_pos, jnp.float32)
    s = jax.jit(jax.vmap(lambda b: km2a_seed(b, None, pos)))(sub)
    assert s.zenith.dtype == jnp.float32
    np.testing.assert_allclose(s.core_x, mc_seeds.core_x[idx], atol=0.05)
    np.testing.assert_allclose(s.core_y, mc_seeds.core_y[idx], atol=0.05)
    ang = _angle_deg(s.zenith, s.azimuth, mc_seeds.zenith[idx], mc_seeds.azimuth[idx])
    assert ang.max() < 0.01
