"""The common shower description and its geometry helpers.

The array frame (written once, here)
-----------------------------------
* Origin at the KM2A centre; **z up**; x and y as in LHAASO's G4KM2A simulation, i.e. the
  KM2A layout files' ``x = column 3, y = -column 2`` (see ``detectors/data/README.md``).
* Heights of channels (``z``) are relative to the reference height of the array,
  :data:`REFERENCE_HEIGHT_M` = 4400 m a.s.l. (the ``zeroZ`` of KM2A's layout files).
* ``zenith`` and ``azimuth`` describe the **arrival direction** (where the shower comes from):
  the unit vector towards the source is n = (sin θ cos φ, sin θ sin φ, cos θ); the shower
  particles travel along -n. ``azimuth`` is counted from +x towards +y, in [0, 2π).
  Conversions to astropy's AltAz (azimuth from North through East) live in ``joint/sky.py`` only.

Units (canonical inside JAX; no astropy units here)
---------------------------------------------------
=================  ==============================================  =========
field              meaning                                         unit
=================  ==============================================  =========
core_x, core_y     shower core on the plane z = 0                  m
zenith, azimuth    arrival direction                               rad
log10_energy       log10 of the primary energy                     log10(E/GeV)
xmax               depth of shower maximum (slant)                 g/cm²
log_muon_scale     ln(N_mu / N_mu of a proton of the same energy)  1
t0                 time the shower plane crosses the core          ns
=================  ==============================================  =========

Because :class:`Shower` is a ``NamedTuple`` it is a JAX pytree: a batch of showers is the same
type with a leading axis on every leaf, and ``jax.vmap`` maps over it.
"""
from __future__ import annotations

from typing import NamedTuple

import jax.numpy as jnp

from . import atmosphere

__all__ = [
    "Shower",
    "FIELDS",
    "UNITS",
    "REFERENCE_HEIGHT_M",
    "SPEED_OF_LIGHT_M_PER_NS",
    "direction",
    "direction_cosines",
    "from_direction_cosines",
    "shower_plane_coordinates",
    "ground_slant_depth",
]

#: Reference height of the array frame's z = 0 [m a.s.l.] (KM2A layout files' zeroZ).
REFERENCE_HEIGHT_M = 4400.0

#: Speed of light [m/ns] (CODATA).
SPEED_OF_LIGHT_M_PER_NS = 0.299792458


class Shower(NamedTuple):
    """One air shower (or a batch: every leaf with the same leading axis).

    See the module docstring for the frame and the units of each field.
    """

    core_x: jnp.ndarray
    core_y: jnp.ndarray
    zenith: jnp.ndarray
    azimuth: jnp.ndarray
    log10_energy: jnp.ndarray
    xmax: jnp.ndarray
    log_muon_scale: jnp.ndarray
    t0: jnp.ndarray

    @classmethod
    def make(cls, dtype=jnp.float32, **fields) -> "Shower":
        """Build a Shower from keyword fields, missing ones taking neutral defaults
        (core at the origin, vertical, 100 TeV, Xmax 550 g/cm², proton muon content, t0 = 0).
        All leaves are broadcast to a common shape and cast to ``dtype``."""
        defaults = dict(core_x=0.0, core_y=0.0, zenith=0.0, azimuth=0.0, log10_energy=5.0,
                        xmax=550.0, log_muon_scale=0.0, t0=0.0)
        unknown = set(fields) - set(defaults)
        if unknown:
            raise TypeError(f"unknown Shower field(s): {sorted(unknown)}; valid: {FIELDS}")
        defaults.update(fields)
        arrays = jnp.broadcast_arrays(*[jnp.asarray(defaults[f], dtype=dtype) for f in FIELDS])
        return cls(*arrays)

    def as_dict(self) -> dict:
        return self._asdict()


#: Field names in order.
FIELDS = Shower._fields

#: Unit of each field (strings, for file headers and tables).
UNITS = {
    "core_x": "m",
    "core_y": "m",
    "zenith": "rad",
    "azimuth": "rad",
    "log10_energy": "log10(E/GeV)",
    "xmax": "g/cm2",
    "log_muon_scale": "",
    "t0": "ns",
}


def direction(zenith, azimuth):
    """Unit vector towards the source, shape ``zenith.shape + (3,)``:
    n = (sin θ cos φ, sin θ sin φ, cos θ)."""
    st = jnp.sin(zenith)
    return jnp.stack([st * jnp.cos(azimuth), st * jnp.sin(azimuth), jnp.cos(zenith)], axis=-1)


def direction_cosines(zenith, azimuth):
    """(u, v) = sin θ (cos φ, sin φ): the fitter's well-conditioned direction coordinates."""
    st = jnp.sin(zenith)
    return st * jnp.cos(azimuth), st * jnp.sin(azimuth)


def from_direction_cosines(u, v):
    """Inverse of :func:`direction_cosines` (for u² + v² < 1): returns (zenith, azimuth) with
    azimuth in [0, 2π). Gradient-safe at u = v = 0 (double-where)."""
    s2 = u * u + v * v
    s2_safe = jnp.where(s2 > 0, s2, 1.0)
    sin_t = jnp.where(s2 > 0, jnp.sqrt(s2_safe), 0.0)
    zenith = jnp.arcsin(jnp.clip(sin_t, 0.0, 1.0 - 1e-7))
    u_safe = jnp.where(s2 > 0, u, 1.0)
    v_safe = jnp.where(s2 > 0, v, 0.0)
    azimuth = jnp.mod(jnp.arctan2(v_safe, u_safe), 2.0 * jnp.pi)
    return zenith, azimuth


def shower_plane_coordinates(shower: Shower, positions):
    """Project channel positions into the shower frame.

    Parameters
    ----------
    shower : Shower (unbatched: scalar leaves; use ``vmap`` for batches)
    positions : array (n, 3) [m, array frame; z relative to :data:`REFERENCE_HEIGHT_M`]

    Returns
    -------
    r : array (n,) [m]
        Perpendicular distance from the shower axis (the axis passes through
        (core_x, core_y, 0) along n).
    delay : array (n,) [ns]
        Arrival time of a plane front at the channel relative to its arrival at the core,
        delay = -((x - core) · n) / c: negative for channels upstream (towards the source).
        The plane-front arrival time is ``shower.t0 + delay``.
    """
    n = direction(shower.zenith, shower.azimuth)
    core = jnp.stack([shower.core_x, shower.core_y, jnp.zeros_like(shower.core_x)])
    rel = positions - core
    along = rel @ n
    r2 = jnp.sum(rel * rel, axis=-1) - along * along
    r2_pos = r2 > 1e-12
    r = jnp.where(r2_pos, jnp.sqrt(jnp.where(r2_pos, r2, 1.0)), 0.0)
    delay = -along / SPEED_OF_LIGHT_M_PER_NS
    return r, delay


def ground_slant_depth(shower: Shower, z, atm=None, reference_height_m=REFERENCE_HEIGHT_M):
    """Slant depth [g/cm²] along the shower axis at the height of channels with array-frame
    heights ``z`` [m, any shape]: X = X_vert(reference + z) / cos θ (flat atmosphere)."""
    dtype = jnp.result_type(shower.zenith)
    if not jnp.issubdtype(dtype, jnp.floating):
        dtype = jnp.result_type(float)
    return atmosphere.slant_depth(jnp.asarray(reference_height_m + z, dtype), shower.zenith, atm)
