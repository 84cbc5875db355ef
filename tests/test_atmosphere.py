"""Atmosphere: Linsley US-standard against PHYSICS.md §7.6, atmprof tables, gradients."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from detectors import atmosphere as atm


def test_vertical_depth_at_lhaaso():
    # PHYSICS.md §1/§7.6 [D]: 597.98 g/cm² at 4410 m; 600.64 at the WCDA water level 4376.37 m
    assert abs(float(atm.vertical_depth(4410.0)) - 598.0) < 0.5
    assert abs(float(atm.vertical_depth(4410.0)) - 597.98) < 0.01
    assert abs(float(atm.vertical_depth(4376.37)) - 600.64) < 0.01


@pytest.mark.parametrize(
    "h_km, below, above",
    [  # PHYSICS.md §7.6 layer-boundary depths, below/above each boundary
        (4.0, 631.0999, 631.1009),
        (10.0, 271.7009, 271.7001),
        (40.0, 3.03956, 3.03950),
    ],
)
def test_layer_boundaries(h_km, below, above):
    h = h_km * 1000.0
    eps = 1e-6
    x_below = float(atm.vertical_depth(h - eps))  # layer underneath
    x_above = float(atm.vertical_depth(h + eps))  # layer on top (at its lower edge)
    # the table is rounded to its last digit; 2e-4 g/cm² is well inside the 1e-3
    assert x_below == pytest.approx(below, abs=2e-4)
    assert x_above == pytest.approx(above, abs=2e-4)


def test_sea_level_top_and_layer5():
    assert abs(float(atm.vertical_depth(0.0)) - 1036.1000) < 1e-3
    assert abs(float(atm.vertical_depth(100e3)) - 0.0012829) < 1e-6
    assert float(atm.vertical_depth(112.8292e3)) == pytest.approx(0.0, abs=1e-9)


def test_density_refractive_index_moliere():
    # PHYSICS.md §8b [D]
    assert float(atm.density(4410.0)) == pytest.approx(7.890e-4, rel=1e-3)
    assert float(atm.density(0.0)) == pytest.approx(1.2298e-3, rel=1e-4)
    assert float(atm.refractive_index(4410.0) - 1.0) == pytest.approx(1.816e-4, rel=2e-3)
    assert float(atm.moliere_radius(4410.0)) == pytest.approx(121.7, abs=0.1)
    assert float(atm.moliere_radius(0.0)) == pytest.approx(78.0, abs=0.1)
    assert float(atm.nkg_moliere_radius(4410.0)) == pytest.approx(136.0, abs=0.2)


def test_density_is_minus_derivative_of_depth():
    # rho = -dX/dh (with h in cm) inside every layer
    for h in [1000.0, 4410.0, 7000.0, 25e3, 60e3, 105e3]:
        dxdh = jax.grad(lambda z: atm.vertical_depth(z))(jnp.float64(h)) / 100.0
        assert float(-dxdh) == pytest.approx(float(atm.density(h)), rel=1e-9)


def test_height_inverts_depth():
    h = jnp.linspace(0.0, 110e3, 997)
    back = atm.height(atm.vertical_depth(h))
    np.testing.assert_allclose(np.asarray(back), np.asarray(h), atol=1e-3)


def test_atmprof_table(shared_data):
    table = atm.load_atmprof(shared_data / "iact" / "atmprof8.dat")
    # node values are reproduced exactly, in-between values are smooth
    assert float(table.vertical_depth(2000.0)) == pytest.approx(832.21, rel=1e-6)
    assert float(table.density(2000.0)) == pytest.approx(0.99545e-3, rel=1e-6)
    assert float(table.refractive_index(2000.0) - 1) == pytest.approx(0.22947e-3, rel=1e-6)
    x = float(atm.vertical_depth(2200.0, table))
    assert 811.0 < x < 832.21
    assert float(atm.height(x, table)) == pytest.approx(2200.0, abs=1e-2)
    # a tabulated (MAGIC winter) atmosphere is close to but not identical to US standard
    us = float(atm.vertical_depth(2200.0))
    assert abs(x - us) / us < 0.03


def test_atmprof_bad_input(tmp_path):
    p = tmp_path / "bad.dat"
    p.write_text("# header\n0.0 1e-3 1000\n")
    with pytest.raises(ValueError, match="bad.dat"):
        atm.load_atmprof(p)
    p.write_text("0.0 1e-3 1000 2e-4\n1.0 x 900 2e-4\n")
    with pytest.raises(ValueError, match="line 2"):
        atm.load_atmprof(p)


@pytest.mark.parametrize("fn", [atm.vertical_depth, atm.density, atm.refractive_index, atm.moliere_radius])
def test_gradients_float64(fn):
    for h in [100.0, 4410.0, 12e3, 50e3]:
        check_grads(fn, (jnp.float64(h),), order=2, modes=["fwd", "rev"], eps=1.0, rtol=1e-4)


def test_height_gradient_and_jit_vmap():
    check_grads(atm.height, (jnp.float64(598.0),), order=1, modes=["fwd", "rev"], eps=1e-2)
    h = jnp.linspace(0, 30e3, 17)
    v = jax.jit(jax.vmap(atm.vertical_depth))(h)
    loop = jnp.stack([atm.vertical_depth(x) for x in h])
    np.testing.assert_allclose(np.asarray(v), np.asarray(loop), rtol=1e-12)


def test_float32_matches_float64():
    h64 = jnp.linspace(0.0, 30e3, 31, dtype=jnp.float64)
    x64 = atm.vertical_depth(h64)
    x32 = atm.vertical_depth(h64.astype(jnp.float32))
    np.testing.assert_allclose(np.asarray(x32, dtype=np.float64), np.asarray(x64), rtol=1e-5)
