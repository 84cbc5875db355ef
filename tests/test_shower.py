"""Shower pytree and geometry helpers."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from detectors import atmosphere
from detectors.shower import (
    FIELDS, SPEED_OF_LIGHT_M_PER_NS, Shower, direction, direction_cosines,
    from_direction_cosines, ground_slant_depth, shower_plane_coordinates,
)


def test_fields_and_pytree():
    assert FIELDS == ("core_x", "core_y", "zenith", "azimuth", "log10_energy", "xmax",
                      "log_muon_scale", "t0")
    s = Shower.make(core_x=[1.0, 2.0, 3.0], zenith=0.3)
    assert s.zenith.shape == (3,)
    assert len(jax.tree_util.tree_leaves(s)) == 8
    doubled = jax.tree_util.tree_map(lambda x: 2 * x, s)
    assert isinstance(doubled, Shower)
    np.testing.assert_allclose(doubled.core_x, [2, 4, 6])
    with pytest.raises(TypeError, match="energy"):
        Shower.make(energy=1.0)


def test_direction_and_cosines_roundtrip():
    rng = np.random.default_rng(1)
    th = rng.uniform(0.0, 1.2, 100)
    ph = rng.uniform(0.0, 2 * np.pi, 100)
    n = direction(th, ph)
    np.testing.assert_allclose(np.linalg.norm(n, axis=-1), 1.0, rtol=1e-12)
    u, v = direction_cosines(th, ph)
    th2, ph2 = from_direction_cosines(u, v)
    np.testing.assert_allclose(th2, th, atol=1e-9)
    np.testing.assert_allclose(ph2, ph, atol=1e-9)
    # zenith: finite gradient at u = v = 0
    g = jax.grad(lambda uv: sum(from_direction_cosines(uv[0], uv[1])))(jnp.zeros(2))
    assert np.all(np.isfinite(g))


def test_shower_plane_landmarks():
    # vertical shower: r is the horizontal distance, delay -z/c
    s = Shower.make(dtype=jnp.float64, core_x=10.0, core_y=-5.0)
    pos = jnp.array([[10.0, -5.0, 0.0], [13.0, -1.0, 0.0], [10.0, -5.0, 30.0]])
    r, d = shower_plane_coordinates(s, pos)
    np.testing.assert_allclose(r, [0.0, 5.0, 0.0], atol=1e-12)
    np.testing.assert_allclose(d, [0.0, 0.0, -30.0 / SPEED_OF_LIGHT_M_PER_NS], atol=1e-9)
    # inclined shower from +x: a detector at +x (upstream) sees the front earlier
    s = Shower.make(dtype=jnp.float64, zenith=np.deg2rad(30.0), azimuth=0.0)
    r, d = shower_plane_coordinates(s, jnp.array([[100.0, 0.0, 0.0], [0.0, 100.0, 0.0]]))
    np.testing.assert_allclose(d[0], -100.0 * np.sin(np.deg2rad(30)) / SPEED_OF_LIGHT_M_PER_NS, rtol=1e-12)
    np.testing.assert_allclose(r, [100 * np.cos(np.deg2rad(30)), 100.0], rtol=1e-12)
    # height matters: a detector 35 m above the core on the axis is at r = 0
    n = np.asarray(direction(s.zenith, s.azimuth))
    p = n * 35.0 / n[2]
    r, d = shower_plane_coordinates(s, jnp.asarray(p)[None])
    assert float(r[0]) < 1e-6


def test_plane_coordinates_gradients_and_vmap():
    rng = np.random.default_rng(2)
    pos = jnp.asarray(rng.uniform(-300, 300, (50, 3)) * np.array([1, 1, 0.05]))

    def f(params):
        s = Shower(params[0], params[1], params[2], params[3], 5.0, 550.0, 0.0, 0.0)
        r, d = shower_plane_coordinates(s, pos)
        return jnp.sum(r ** 1.5) + jnp.sum(d ** 2)

    check_grads(f, (jnp.array([3.0, -7.0, 0.4, 1.1]),), order=2, modes=["fwd", "rev"])
    batch = Shower.make(dtype=jnp.float64, core_x=jnp.linspace(-50, 50, 5), zenith=0.2, azimuth=2.0)
    rv, dv = jax.vmap(shower_plane_coordinates, in_axes=(0, None))(batch, pos)
    for i in range(5):
        one = jax.tree_util.tree_map(lambda x: x[i], batch)
        r, d = shower_plane_coordinates(one, pos)
        np.testing.assert_allclose(rv[i], r, rtol=1e-12)
        np.testing.assert_allclose(dv[i], d, rtol=1e-12)


def test_ground_slant_depth():
    s = Shower.make(dtype=jnp.float64, zenith=np.deg2rad(60.0))
    x = ground_slant_depth(s, jnp.array([10.0]))
    assert float(x[0]) == pytest.approx(2 * float(atmosphere.vertical_depth(4410.0)), rel=1e-12)
