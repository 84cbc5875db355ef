"""Atmosphere: vertical depth <-> height, density, refractive index, Moliere radius.

Two models, both immutable pytrees (``NamedTuple``) so they can be passed into jitted
functions, differentiated through and (for calibration) learned:

* :class:`LinsleyAtmosphere` -- the CORSIKA 5-layer parameterisation. The default
  :data:`US_STANDARD` uses the Linsley US-standard coefficients of PHYSICS.md §7.6 [C]
  (``a1 = -186.5562`` g/cm², ``c4 = 772170.16`` cm, i.e. the AATM/BATM/CATM DATA statements of
  the CORSIKA utility programs; the manual's variant ``a1 = -186.555305`` moves X by < 0.001 g/cm²).

  Layers i = 1..4:  X_vert(h) = a_i + b_i exp(-h / c_i)
  Layer 5:          X_vert(h) = a_5 - b_5 h / c_5          (h in cm, X in g/cm²)
  Density:          rho(h) = b_i / c_i exp(-h / c_i), layer 5: b_5 / c_5

* :class:`TabulatedAtmosphere` -- a CORSIKA ``atmprof`` table (altitude, density, vertical
  thickness, n-1), interpolated log-linearly; :func:`load_atmprof` reads one
  (``../shared/data/iact/atmprof8.dat`` is an example).

Public functions take heights in metres above sea level and return canonical units
(g/cm², g/cm³, metres). All are pure, jit-, vmap- and grad-safe.

The refractive index follows CORSIKA / MCEq: n(h) - 1 = eta0 * rho(h) / rho(0) with
rho(0) the sea-level density of the same model (PHYSICS.md §8b, eta0 = 2.83e-4 [C]).
For a tabulated atmosphere the table's own n - 1 column is used.

The Moliere radius is r_M = E_s X_0 / (E_c rho) = 9.6 g/cm² / rho (ShowerModel convention,
PHYSICS.md §8b [C]); :func:`nkg_moliere_radius` evaluates it two radiation lengths above the
observation level (Greisen's prescription, [M]), which gives 136 m at 4410 m.
"""
from __future__ import annotations

from pathlib import Path
from typing import NamedTuple, Union

import jax.numpy as jnp
import numpy as np

__all__ = [
    "LinsleyAtmosphere",
    "TabulatedAtmosphere",
    "US_STANDARD",
    "load_atmprof",
    "vertical_depth",
    "height",
    "density",
    "refractive_index",
    "moliere_radius",
    "nkg_moliere_radius",
    "slant_depth",
    "LHAASO_ALTITUDE_M",
]

#: Altitude of the LHAASO site [m a.s.l.] (PHYSICS.md §1 [C]).
LHAASO_ALTITUDE_M = 4410.0

#: Sea-level refractivity used by CORSIKA / VERITAS VAtmCorsika (PHYSICS.md §8b [C]).
ETA0_CORSIKA = 2.83e-4

#: Moliere-radius depth E_s X_0 / E_c = 21.2 MeV * 36.7 g/cm² / 81 MeV (PHYSICS.md §8b [C]).
MOLIERE_DEPTH_G_CM2 = 9.6

#: Radiation length of air [g/cm²] (PDG; PHYSICS.md §8b [M]).
RADIATION_LENGTH_G_CM2 = 36.62


def _as_float(x):
    """x as a floating jax array; the result dtype follows x (float32 stays float32 even with
    x64 enabled), integers and Python floats take the default float type."""
    x = jnp.asarray(x)
    return x if jnp.issubdtype(x.dtype, jnp.floating) else x.astype(jnp.result_type(float))


class LinsleyAtmosphere(NamedTuple):
    """CORSIKA 5-layer (Linsley) atmosphere.

    Attributes
    ----------
    a, b : array, shape (5,) [g/cm²]
    c : array, shape (5,) [cm]
    bounds : array, shape (6,) [cm]
        Lower edge of each layer and the top of the atmosphere (X = 0 there).
    eta0 : float
        Sea-level refractivity n(0) - 1 (default 2.83e-4, CORSIKA [C]).
    """

    a: jnp.ndarray
    b: jnp.ndarray
    c: jnp.ndarray
    bounds: jnp.ndarray
    eta0: float = ETA0_CORSIKA

    # -- depth <-> height ------------------------------------------------------------
    def _layer_of_height(self, h_cm):
        i = jnp.sum(h_cm[..., None] >= jnp.asarray(self.bounds, h_cm.dtype)[1:5], axis=-1)
        return jnp.clip(i, 0, 4)

    def vertical_depth(self, height_m):
        h = _as_float(height_m) * 100.0
        i = self._layer_of_height(h)
        a, b, c = (jnp.asarray(t, h.dtype)[i] for t in (self.a, self.b, self.c))
        x_exp = a + b * jnp.exp(-h / c)
        x_lin = a - b * h / c
        x = jnp.where(i == 4, x_lin, x_exp)
        return jnp.maximum(x, 0.0)

    def height(self, depth):
        x = jnp.asarray(depth)
        # depth at the layer boundaries (upper side of each boundary, i.e. layer i at its lower edge)
        a_, b_, c_, h_ = (jnp.asarray(t) for t in (self.a, self.b, self.c, self.bounds))
        x_bounds = a_[1:5] + b_[1:5] * jnp.exp(-h_[1:5] / c_[1:5])
        x_bounds = x_bounds.at[3].set(a_[4] - b_[4] * h_[4] / c_[4])
        i = jnp.clip(jnp.sum(x[..., None] <= x_bounds, axis=-1), 0, 4)
        a, b, c = a_[i], b_[i], c_[i]
        arg = (x - a) / b
        safe = jnp.where(arg > 0, arg, 1.0)
        h_exp = -c * jnp.log(safe)
        h_lin = (a - x) * c / b
        h = jnp.where(i == 4, h_lin, h_exp)
        return h / 100.0

    def density(self, height_m):
        h = _as_float(height_m) * 100.0
        i = self._layer_of_height(h)
        b, c = jnp.asarray(self.b, h.dtype)[i], jnp.asarray(self.c, h.dtype)[i]
        rho_exp = b / c * jnp.exp(-h / c)
        return jnp.where(i == 4, b / c, rho_exp)

    def refractive_index(self, height_m):
        rho0 = self.b[0] / self.c[0]
        return 1.0 + self.eta0 * self.density(height_m) / rho0


class TabulatedAtmosphere(NamedTuple):
    """Atmosphere from a table (e.g. CORSIKA ``atmprof``), log-linear interpolation.

    Attributes
    ----------
    height_m : array (n,) [m], increasing
    log_depth : array (n,) [ln(g/cm²)] vertical thickness above each height
    log_density : array (n,) [ln(g/cm³)]
    log_refractivity : array (n,) [ln(n - 1)]
    """

    height_m: jnp.ndarray
    log_depth: jnp.ndarray
    log_density: jnp.ndarray
    log_refractivity: jnp.ndarray

    def _interp(self, x, xp, fp):
        x = _as_float(x)
        return jnp.interp(x, jnp.asarray(xp, x.dtype), jnp.asarray(fp, x.dtype))

    def vertical_depth(self, height_m):
        return jnp.exp(self._interp(height_m, self.height_m, self.log_depth))

    def height(self, depth):
        # log_depth decreases with height: interpolate on the reversed table
        x = jnp.log(jnp.maximum(_as_float(depth), 1e-30))
        return self._interp(x, self.log_depth[::-1], self.height_m[::-1])

    def density(self, height_m):
        return jnp.exp(self._interp(height_m, self.height_m, self.log_density))

    def refractive_index(self, height_m):
        return 1.0 + jnp.exp(self._interp(height_m, self.height_m, self.log_refractivity))


Atmosphere = Union[LinsleyAtmosphere, TabulatedAtmosphere]


def _us_standard() -> LinsleyAtmosphere:
    # PHYSICS.md §7.6 [C]: a (g/cm²), b (g/cm²), c (cm); layer lower edges in cm.
    a = np.array([-186.5562, -94.919, 0.61289, 0.0, 0.01128292])
    b = np.array([1222.6562, 1144.9069, 1305.5948, 540.1778, 1.0])
    c = np.array([994186.38, 878153.55, 636143.04, 772170.16, 1.0e9])
    bounds = np.array([0.0, 4.0e5, 1.0e6, 4.0e6, 1.0e7, 1.128292e7])
    return LinsleyAtmosphere(a=a, b=b, c=c, bounds=bounds, eta0=ETA0_CORSIKA)


#: Linsley US-standard atmosphere (CORSIKA model 1), the default everywhere.
US_STANDARD = _us_standard()


def load_atmprof(path: str | Path) -> TabulatedAtmosphere:
    """Read a CORSIKA ``atmprof`` table.

    Columns: altitude [km], density [g/cm³], vertical thickness [g/cm²], n - 1. Lines starting
    with ``#`` are comments.

    Raises
    ------
    ValueError
        naming the file and the column when the table is empty, malformed or not monotonic.
    """
    path = Path(path)
    rows = []
    with open(path) as fh:
        for k, line in enumerate(fh, 1):
            s = line.strip()
            if not s or s.startswith("#"):
                continue
            parts = s.split()
            if len(parts) < 4:
                raise ValueError(f"{path}: line {k}: expected 4 columns (alt, rho, thick, n-1), got {len(parts)}")
            try:
                rows.append([float(p) for p in parts[:4]])
            except ValueError as exc:
                raise ValueError(f"{path}: line {k}: not a number ({exc})") from None
    if len(rows) < 2:
        raise ValueError(f"{path}: atmprof table has {len(rows)} rows; need at least 2")
    t = np.asarray(rows, dtype=np.float64)
    alt, rho, thick, nm1 = t.T
    if np.any(np.diff(alt) <= 0):
        raise ValueError(f"{path}: column 'altitude' is not strictly increasing")
    for name, col in (("density", rho), ("thickness", thick), ("n-1", nm1)):
        if np.any(~np.isfinite(col)):
            raise ValueError(f"{path}: column '{name}' has non-finite values")
    # the last rows can be exactly 0 (top of the atmosphere): floor them for the log
    tiny = 1e-30
    return TabulatedAtmosphere(
        height_m=alt * 1000.0,
        log_depth=np.log(np.maximum(thick, tiny)),
        log_density=np.log(np.maximum(rho, tiny)),
        log_refractivity=np.log(np.maximum(nm1, tiny)),
    )


def _atm(atm):
    return US_STANDARD if atm is None else atm


def vertical_depth(height_m, atm: Atmosphere | None = None):
    """Vertical atmospheric depth above ``height_m``.

    Parameters
    ----------
    height_m : array, any shape [m a.s.l.]
    atm : atmosphere model (default :data:`US_STANDARD`)

    Returns
    -------
    array, same shape [g/cm²]. US-standard: 1036.10 at sea level, 597.98 at 4410 m.
    """
    return _atm(atm).vertical_depth(height_m)


def height(depth, atm: Atmosphere | None = None):
    """Height [m a.s.l.] at which the vertical depth equals ``depth`` [g/cm²] (inverse of
    :func:`vertical_depth`)."""
    return _atm(atm).height(depth)


def density(height_m, atm: Atmosphere | None = None):
    """Air density [g/cm³] at ``height_m`` [m a.s.l.]; US-standard 7.890e-4 at 4410 m."""
    return _atm(atm).density(height_m)


def refractive_index(height_m, atm: Atmosphere | None = None):
    """Refractive index n at ``height_m`` [m a.s.l.]: n - 1 = eta0 rho(h)/rho(0) (CORSIKA)."""
    return _atm(atm).refractive_index(height_m)


def moliere_radius(height_m, atm: Atmosphere | None = None, moliere_depth=MOLIERE_DEPTH_G_CM2):
    """Moliere radius [m] of air at ``height_m``: r_M = moliere_depth / rho(h).

    ``moliere_depth`` = E_s X_0 / E_c = 9.6 g/cm² (ShowerModel [C]; MCEq uses 9.3).
    US-standard: 121.7 m at 4410 m, 78 m at sea level.
    """
    return moliere_depth / density(height_m, atm) / 100.0


def nkg_moliere_radius(
    observation_height_m=LHAASO_ALTITUDE_M,
    atm: Atmosphere | None = None,
    n_radiation_lengths=2.0,
    radiation_length=RADIATION_LENGTH_G_CM2,
    moliere_depth=MOLIERE_DEPTH_G_CM2,
):
    """Moliere radius [m] for the NKG function: r_M evaluated ``n_radiation_lengths`` radiation
    lengths above the observation level (Greisen's prescription, PHYSICS.md §6.1 [M]).

    With the defaults at 4410 m: X = 598.0 - 73.2 g/cm² -> h = 5.39 km -> r_M = 136.0 m.
    """
    x_obs = vertical_depth(observation_height_m, atm)
    h = height(x_obs - n_radiation_lengths * radiation_length, atm)
    return moliere_radius(h, atm, moliere_depth)


def slant_depth(height_m, zenith, atm: Atmosphere | None = None):
    """Slant depth [g/cm²] of the point at ``height_m`` along a straight track of ``zenith`` [rad]:
    X = X_vert(h) / cos(zenith) (flat atmosphere, PHYSICS.md §8b [C]; high by 0.04% at 30°,
    0.3% at 60° compared with a curved atmosphere)."""
    return vertical_depth(height_m, atm) / jnp.cos(zenith)
