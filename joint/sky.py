"""Sky coordinates of reconstructed showers: array frame <-> AltAz <-> ICRS / Galactic.

This is the only module that converts between the array frame and astropy (numpy + astropy;
not on the GPU path). Everything else in the project works in the array frame.

Frames and conventions
----------------------
* **Array frame** (``detectors/shower.py``, ``docs/conventions.md``): zenith θ and azimuth φ of
  the *arrival direction* (towards the source), φ counted from the array's +x axis towards +y,
  radians.
* **astropy AltAz**: altitude ``alt = 90° − θ``, azimuth ``az`` from true North through East.
* **Rotation of the array frame** ``frame_rotation_deg`` = ρ: the angle of the array +x axis
  counter-clockwise from true East, looking down (so ρ = 0 means +x = East, +y = North). The
  orientation of the KM2A/G4KM2A x axis relative to true East is not confirmed officially: the
  default ρ = 0 is an assumption [M]. (PHYSICS.md §1 quotes 29.45° for the *WCDA* x axis, which
  is a different frame.) Then

      az = (90° − (φ + ρ)) mod 360°,       φ = (90° − az − ρ) mod 360°.

  A source due North (az = 0) is at φ = 90° − ρ; due East (az = 90°) at φ = −ρ.
* **Refraction is off** by default (``pressure=0``): showers are particle cascades, not light
  refracted by the atmosphere. Aberration, precession/nutation and light deflection are applied
  by astropy as for any celestial source (γ rays travel at c).
* **Event time**: MJD, float64, UTC scale (the ``time_mjd`` of the event files). Times that are
  not finite or negative (``−1`` = unknown, e.g. G4KM2A MC) give NaN sky coordinates.
* **Site** (PHYSICS.md §1): LHAASO, 29.35767° N, 100.13879° E, 4410 m a.s.l. (the geodetic
  coordinates are tagged [U]: read in unofficial LHAASO code). Parallax of the site height is
  irrelevant for celestial sources.

Direction errors
----------------
The (zenith, azimuth) covariance of the fit is propagated to (RA, Dec) with the Jacobian
∂(α, δ)/∂(θ, φ), computed by central finite differences through the same vectorised astropy
transform (step 1e-6 rad). ``cov_ra_ra`` is in (degrees of RA)², i.e. *not* multiplied by
cos²δ. The 1-D **error radius** is

    ra_dec_err = sqrt((cos²δ · σ_α² + σ_δ²) / 2)      [deg],

the rms of the angular error along one axis of the tangent plane. For a circular Gaussian of
σ per axis it equals σ; the 39.3% containment radius is then σ and the 68% containment radius
1.515σ (P(r < R) = 1 − exp(−R²/2σ²)). Because the trace of a covariance is
invariant under rotation, 2·ra_dec_err² = σ_θ² + sin²θ·σ_φ² (in deg²) up to the tiny
distortions of aberration and precession.

Speed
-----
The AltAz <-> ICRS transform for N distinct times costs ~70 µs per event in astropy. With many
events, astropy's :class:`~astropy.coordinates.erfa_astrom.ErfaAstromInterpolator` (support
points every ``astrom_interpolation_s`` = 300 s) is used: ~40× faster, error < 1e-7 arcsec.
Pass ``astrom_interpolation_s=None`` for the exact transform.

IERS tables
-----------
UT1−UTC and polar motion come from astropy's IERS tables. If they are stale and cannot be
downloaded (offline machine, times beyond the bundled predictions), the transform is retried
with astropy's predictive/degraded values and a warning: the error is then < 1 s of UT1,
i.e. < 15 arcsec of RA, far below the angular resolution of the array.
"""
from __future__ import annotations

import warnings
from typing import NamedTuple

import numpy as np

from joint.io.columns import SKY, lookup

__all__ = [
    "Site",
    "LHAASO_SITE",
    "site_location",
    "altaz_from_array",
    "array_from_altaz",
    "to_icrs",
    "to_galactic",
    "from_icrs",
    "radec_jacobian",
    "radec_covariance",
    "ra_dec_err",
    "direction_covariance",
    "sky_columns",
    "events_table",
    "SKY_COLUMNS",
]


class Site(NamedTuple):
    """Geodetic position of an observatory (WGS84)."""

    lat_deg: float
    lon_deg: float
    height_m: float


#: LHAASO (PHYSICS.md §1): 29.35767° N, 100.13879° E [U], 4410 m a.s.l. [C].
LHAASO_SITE = Site(lat_deg=29.35767, lon_deg=100.13879, height_m=4410.0)

#: Output columns of :func:`sky_columns` and their units (declared in joint/io/columns.py).
SKY_COLUMNS = {name: lookup(name).unit for name in SKY}

#: Default spacing of the support points of astropy's ErfaAstromInterpolator [s].
ASTROM_INTERPOLATION_S = 300.0

#: Default finite-difference step of the Jacobian [rad].
JACOBIAN_STEP_RAD = 1e-6


def site_location(site: Site = LHAASO_SITE):
    """The site as an :class:`astropy.coordinates.EarthLocation` (``from_geodetic``, WGS84)."""
    import astropy.units as u
    from astropy.coordinates import EarthLocation

    return EarthLocation.from_geodetic(lon=site.lon_deg * u.deg, lat=site.lat_deg * u.deg,
                                       height=site.height_m * u.m)


# --------------------------------------------------------------------------------------------
# array frame <-> AltAz (pure numpy)
# --------------------------------------------------------------------------------------------

def altaz_from_array(zenith, azimuth, frame_rotation_deg=0.0):
    """Array-frame arrival direction -> (alt, az) of astropy's AltAz.

    Parameters
    ----------
    zenith, azimuth : array_like, same or broadcastable shapes [rad]
        Arrival direction in the array frame (φ from +x towards +y).
    frame_rotation_deg : float
        Angle of the array +x axis counter-clockwise from true East [deg]. Default 0 [M].

    Returns
    -------
    alt, az : ndarray [rad]; ``alt = π/2 − θ``, ``az = (π/2 − φ − ρ) mod 2π`` (North through East).
    A zenith outside [0, π] is folded back onto the same direction (θ -> −θ, φ -> φ + π).
    """
    zenith = np.mod(np.asarray(zenith, np.float64), 2.0 * np.pi)
    azimuth = np.asarray(azimuth, np.float64)
    flip = zenith > np.pi
    zenith = np.where(flip, 2.0 * np.pi - zenith, zenith)
    azimuth = np.where(flip, azimuth + np.pi, azimuth)
    rho = np.deg2rad(frame_rotation_deg)
    alt = 0.5 * np.pi - zenith
    az = np.mod(0.5 * np.pi - (azimuth + rho), 2.0 * np.pi)
    return alt, az


def array_from_altaz(alt, az, frame_rotation_deg=0.0):
    """Inverse of :func:`altaz_from_array`: (alt, az) [rad] -> (zenith, azimuth) [rad] in the
    array frame, azimuth in [0, 2π)."""
    alt = np.asarray(alt, np.float64)
    az = np.asarray(az, np.float64)
    rho = np.deg2rad(frame_rotation_deg)
    zenith = 0.5 * np.pi - alt
    azimuth = np.mod(0.5 * np.pi - az - rho, 2.0 * np.pi)
    return zenith, azimuth


# --------------------------------------------------------------------------------------------
# astropy plumbing
# --------------------------------------------------------------------------------------------

def _valid_time(time_mjd):
    t = np.asarray(time_mjd, np.float64)
    return np.isfinite(t) & (t >= 0.0)


def _pressure(pressure):
    import astropy.units as u

    if isinstance(pressure, u.Quantity):
        return pressure
    return float(pressure) * u.hPa


def _is_iers_error(err: Exception) -> bool:
    msg = str(err)
    return "IERS" in msg or "auto_max_age" in msg


_IERS_LOADED = False


def _use_cached_iers_table() -> None:
    """Parsing astropy's IERS tables from their text files takes ~3 s in every process (most of
    a warm reconstruction of a small file, issue 14). The parsed ``IERS_Auto`` table is kept as a
    pickle next to the compilation cache (``joint.traced.traced_dir``), one file per day and
    astropy / astropy-iers-data version, and installed with ``iers.earth_orientation_table``;
    astropy's own staleness checks still apply to it. No cache directory: astropy as usual."""
    global _IERS_LOADED
    if _IERS_LOADED:
        return
    _IERS_LOADED = True
    import pickle
    import time

    import astropy
    from astropy.utils import iers

    from joint.traced import traced_dir

    where = traced_dir()
    if where is None:
        return
    try:
        import astropy_iers_data
        data_version = astropy_iers_data.__version__
    except ImportError:
        data_version = "none"
    path = where.parent / f"iers-{astropy.__version__}-{data_version}-{time.strftime('%Y%m%d')}.pkl"
    try:
        if path.exists():
            table = pickle.loads(path.read_bytes())
        else:
            table = iers.IERS_Auto.open()
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f"{path.name}.{id(table)}.tmp")
            tmp.write_bytes(pickle.dumps(table))
            tmp.replace(path)
        if isinstance(table, iers.IERS_Auto):
            iers.earth_orientation_table.set(table)
    except Exception as err:  # never fail a reconstruction on the cache: astropy reads its files
        warnings.warn(f"joint.sky: cached IERS table not used ({err})", RuntimeWarning)


def _run_transform(fn, interpolation_s, time_mjd):
    """Call ``fn()`` (which builds the astropy objects itself) with the astrom interpolator when
    worthwhile, retrying with degraded IERS values when the tables are stale and offline."""
    from astropy.utils import iers

    _use_cached_iers_table()

    def call():
        if interpolation_s is None or np.size(time_mjd) < 64:
            return fn()
        t = np.asarray(time_mjd)
        span_s = (t.max() - t.min()) * 86400.0
        if span_s / interpolation_s + 2 > 0.5 * t.size:
            return fn()  # fewer events than support points: the exact transform is cheaper
        import astropy.units as u
        from astropy.coordinates.erfa_astrom import ErfaAstromInterpolator, erfa_astrom

        with erfa_astrom.set(ErfaAstromInterpolator(interpolation_s * u.s)):
            return fn()

    try:
        return call()
    except ValueError as err:  # stale IERS-A table and no network
        if not _is_iers_error(err):
            raise
        warnings.warn("joint.sky: IERS tables are stale or do not cover the event times and "
                      "could not be updated; using astropy's predictive/degraded UT1-UTC and "
                      "polar motion (error < 15 arcsec in RA).", RuntimeWarning, stacklevel=3)
        with iers.conf.set_temp("auto_max_age", None), \
                iers.conf.set_temp("iers_degraded_accuracy", "warn"), warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*dubious year.*")
            warnings.filterwarnings("ignore", message=".*IERS data is valid.*")
            return call()


def _broadcast(*arrays):
    arrs = np.broadcast_arrays(*[np.asarray(a, np.float64) for a in arrays])
    return [np.array(a, np.float64) for a in arrs]  # writable copies


def _altaz_to_icrs_valid(alt, az, t, location, pressure, interpolation_s):
    """1-D arrays of valid entries only -> (ra, dec) [deg]."""
    import astropy.units as u
    from astropy.coordinates import AltAz, SkyCoord
    from astropy.time import Time

    def fn():
        frame = AltAz(obstime=Time(t, format="mjd", scale="utc"), location=location,
                      pressure=_pressure(pressure))
        c = SkyCoord(alt=alt * u.rad, az=az * u.rad, frame=frame).transform_to("icrs")
        return c.ra.deg, c.dec.deg

    return _run_transform(fn, interpolation_s, t)


def _icrs(zenith, azimuth, time_mjd, frame_rotation_deg, location, pressure, interpolation_s):
    """(ra, dec) [deg] with NaN where the direction or the time is invalid; broadcast shape."""
    zenith, azimuth, time_mjd = _broadcast(zenith, azimuth, time_mjd)
    shape = zenith.shape
    ok = np.isfinite(zenith) & np.isfinite(azimuth) & _valid_time(time_mjd)
    ra = np.full(shape, np.nan)
    dec = np.full(shape, np.nan)
    if ok.any():
        alt, az = altaz_from_array(zenith[ok], azimuth[ok], frame_rotation_deg)
        ra[ok], dec[ok] = _altaz_to_icrs_valid(alt, az, time_mjd[ok],
                                               location if location is not None else site_location(),
                                               pressure, interpolation_s)
    return ra, dec


# --------------------------------------------------------------------------------------------
# public transforms
# --------------------------------------------------------------------------------------------

def to_icrs(zenith, azimuth, time_mjd, frame_rotation_deg=0.0, location=None, pressure=0.0,
            astrom_interpolation_s=ASTROM_INTERPOLATION_S):
    """Array-frame arrival directions -> equatorial ICRS coordinates.

    One astropy transform for the whole array (no loop over events).

    Parameters
    ----------
    zenith, azimuth : array_like (...) [rad]   arrival direction in the array frame
    time_mjd : array_like (...) [MJD, UTC]     event times (broadcast against the directions);
        non-finite or negative (−1 = unknown) times give NaN
    frame_rotation_deg : float [deg]           array +x axis counter-clockwise from East [M: 0]
    location : EarthLocation, optional         default :func:`site_location` (LHAASO)
    pressure : float [hPa] or Quantity         0 = no refraction (default; showers are not
        refracted light)
    astrom_interpolation_s : float or None     see the module docstring (None: exact)

    Returns
    -------
    ra, dec : ndarray (...) [deg]; NaN where the direction or the time is invalid.
    """
    return _icrs(zenith, azimuth, time_mjd, frame_rotation_deg, location, pressure,
                 astrom_interpolation_s)


def _galactic_from_icrs(ra, dec):
    import astropy.units as u
    from astropy.coordinates import SkyCoord

    ra, dec = np.asarray(ra, np.float64), np.asarray(dec, np.float64)
    l = np.full(ra.shape, np.nan)
    b = np.full(ra.shape, np.nan)
    ok = np.isfinite(ra) & np.isfinite(dec)
    if ok.any():
        g = SkyCoord(ra=ra[ok] * u.deg, dec=dec[ok] * u.deg, frame="icrs").galactic
        l[ok], b[ok] = g.l.deg, g.b.deg
    return l, b


def to_galactic(zenith, azimuth, time_mjd, frame_rotation_deg=0.0, location=None, pressure=0.0,
                astrom_interpolation_s=ASTROM_INTERPOLATION_S):
    """As :func:`to_icrs`, returning Galactic (l, b) [deg] (l in [0, 360))."""
    ra, dec = to_icrs(zenith, azimuth, time_mjd, frame_rotation_deg, location, pressure,
                      astrom_interpolation_s)
    return _galactic_from_icrs(ra, dec)


def from_icrs(ra_deg, dec_deg, time_mjd, frame_rotation_deg=0.0, location=None, pressure=0.0,
              astrom_interpolation_s=ASTROM_INTERPOLATION_S):
    """ICRS position(s) at the given times -> arrival direction in the array frame.

    Parameters
    ----------
    ra_deg, dec_deg : array_like (...) [deg]   e.g. a point source (scalars broadcast)
    time_mjd : array_like (...) [MJD, UTC]
    other parameters as :func:`to_icrs`.

    Returns
    -------
    zenith, azimuth : ndarray (...) [rad], azimuth in [0, 2π); zenith > π/2 below the horizon.
    NaN where the input or the time is invalid.
    """
    import astropy.units as u
    from astropy.coordinates import AltAz, SkyCoord
    from astropy.time import Time

    ra, dec, t = _broadcast(ra_deg, dec_deg, time_mjd)
    zen = np.full(ra.shape, np.nan)
    azi = np.full(ra.shape, np.nan)
    ok = np.isfinite(ra) & np.isfinite(dec) & _valid_time(t)
    if not ok.any():
        return zen, azi
    loc = location if location is not None else site_location()
    r, d, tt = ra[ok], dec[ok], t[ok]

    def fn():
        frame = AltAz(obstime=Time(tt, format="mjd", scale="utc"), location=loc,
                      pressure=_pressure(pressure))
        c = SkyCoord(ra=r * u.deg, dec=d * u.deg, frame="icrs").transform_to(frame)
        return c.alt.rad, c.az.rad

    alt, az = _run_transform(fn, astrom_interpolation_s, tt)
    zen[ok], azi[ok] = array_from_altaz(alt, az, frame_rotation_deg)
    return zen, azi


# --------------------------------------------------------------------------------------------
# error propagation
# --------------------------------------------------------------------------------------------

def _radec_and_jacobian(zenith, azimuth, time_mjd, frame_rotation_deg, location, pressure,
                        step, interpolation_s):
    """(ra, dec) [deg] and J = ∂(ra, dec)/∂(zenith, azimuth) [deg/rad], shape (..., 2, 2),
    from ONE transform of 5 points per event (centre, θ±h, φ±h)."""
    zenith, azimuth, time_mjd = _broadcast(zenith, azimuth, time_mjd)
    h = float(step)
    z_hi = zenith + h
    z_lo = np.maximum(zenith - h, 0.0)  # one-sided at the zenith (alt must stay <= 90°)
    zz = np.stack([zenith, z_hi, z_lo, zenith, zenith])
    aa = np.stack([azimuth, azimuth, azimuth, azimuth + h, azimuth - h])
    tt = np.broadcast_to(time_mjd, zz.shape)
    ra, dec = _icrs(zz, aa, tt, frame_rotation_deg, location, pressure, interpolation_s)
    dz = z_hi - z_lo

    def dra(a, b):  # RA difference a − b wrapped to (−180, 180]
        return np.mod(a - b + 180.0, 360.0) - 180.0

    jac = np.empty(zenith.shape + (2, 2))
    jac[..., 0, 0] = dra(ra[1], ra[2]) / dz
    jac[..., 1, 0] = (dec[1] - dec[2]) / dz
    jac[..., 0, 1] = dra(ra[3], ra[4]) / (2.0 * h)
    jac[..., 1, 1] = (dec[3] - dec[4]) / (2.0 * h)
    return ra[0], dec[0], jac


def radec_jacobian(zenith, azimuth, time_mjd, frame_rotation_deg=0.0, location=None,
                   pressure=0.0, step=JACOBIAN_STEP_RAD,
                   astrom_interpolation_s=ASTROM_INTERPOLATION_S):
    """Jacobian ∂(ra, dec)/∂(zenith, azimuth), shape (..., 2, 2) [deg/rad]: rows (ra, dec),
    columns (zenith, azimuth). Central finite differences with ``step`` [rad] (one-sided in
    zenith within ``step`` of the zenith), RA differences wrapped at 0/360."""
    return _radec_and_jacobian(zenith, azimuth, time_mjd, frame_rotation_deg, location,
                               pressure, step, astrom_interpolation_s)[2]


def _propagate(jac, cov_zz, cov_za, cov_aa):
    cov = np.empty(jac.shape)
    cov[..., 0, 0] = cov_zz
    cov[..., 0, 1] = cov_za
    cov[..., 1, 0] = cov_za
    cov[..., 1, 1] = cov_aa
    out = np.einsum("...ij,...jk,...lk->...il", jac, cov, jac)
    return out[..., 0, 0], out[..., 0, 1], out[..., 1, 1]


def radec_covariance(zenith, azimuth, cov_zz, cov_za, cov_aa, time_mjd, frame_rotation_deg=0.0,
                     location=None, pressure=0.0, step=JACOBIAN_STEP_RAD,
                     astrom_interpolation_s=ASTROM_INTERPOLATION_S):
    """Propagate the (zenith, azimuth) covariance to (ra, dec): C' = J C Jᵀ.

    Parameters
    ----------
    zenith, azimuth : (...) [rad]; cov_zz, cov_za, cov_aa : (...) [rad²]; time_mjd : (...) [MJD]

    Returns
    -------
    cov_ra_ra, cov_ra_dec, cov_dec_dec : (...) [deg²]; ``cov_ra_ra`` in (degrees of RA)²
    (not multiplied by cos²δ).
    """
    jac = radec_jacobian(zenith, azimuth, time_mjd, frame_rotation_deg, location, pressure, step,
                         astrom_interpolation_s)
    return _propagate(jac, *_broadcast(cov_zz, cov_za, cov_aa))


def ra_dec_err(cov_ra_ra, cov_dec_dec, dec_deg):
    """1-D error radius [deg]: sqrt((cos²δ·σ_α² + σ_δ²) / 2), the rms angular error per axis of
    the tangent plane (σ per axis for a circular Gaussian)."""
    c = np.cos(np.deg2rad(np.asarray(dec_deg, np.float64)))
    return np.sqrt(0.5 * (c * c * np.asarray(cov_ra_ra) + np.asarray(cov_dec_dec)))


def direction_covariance(covariance, zenith_index=None, azimuth_index=None, n_fields=None):
    """(cov_zz, cov_za, cov_aa) [rad²] from a fit covariance of shape (..., n, n) or flattened
    (..., n²), with n = ``n_fields`` (default ``len(FIELDS)`` = 8; indices default to the
    ``detectors.shower.FIELDS`` order: zenith 2, azimuth 3)."""
    from detectors.shower import FIELDS

    zenith_index = FIELDS.index("zenith") if zenith_index is None else zenith_index
    azimuth_index = FIELDS.index("azimuth") if azimuth_index is None else azimuth_index
    n = len(FIELDS) if n_fields is None else int(n_fields)
    c = np.asarray(covariance, np.float64)
    if c.shape[-1] == n * n:
        c = c.reshape(c.shape[:-1] + (n, n))
    return (c[..., zenith_index, zenith_index], c[..., zenith_index, azimuth_index],
            c[..., azimuth_index, azimuth_index])


# --------------------------------------------------------------------------------------------
# output columns and the user-facing table
# --------------------------------------------------------------------------------------------

def sky_columns(reco: dict, time_mjd, frame_rotation_deg=0.0, location=None, pressure=0.0,
                astrom_interpolation_s=ASTROM_INTERPOLATION_S) -> dict:
    """Sky output columns of a reconstruction output.

    Parameters
    ----------
    reco : dict with ``reco_zenith``, ``reco_azimuth`` (B,) [rad] and ``reco_covariance``
        (B, 64) (flattened 8×8 in ``FIELDS`` order; optional: without it ``ra_dec_err`` is NaN)
    time_mjd : (B,) or scalar [MJD, UTC]; negative (−1 = unknown) or NaN -> NaN columns

    Returns
    -------
    dict of (B,) float64 arrays [deg]: ``ra``, ``dec``, ``ra_dec_err``, ``glon``, ``glat``.
    NaN where the direction or time is NaN/unknown; ``ra_dec_err`` also NaN where the
    covariance is not finite.
    """
    zen = np.asarray(reco["reco_zenith"], np.float64)
    azi = np.asarray(reco["reco_azimuth"], np.float64)
    t = np.broadcast_to(np.asarray(time_mjd, np.float64), zen.shape)
    ra, dec, jac = _radec_and_jacobian(zen, azi, t, frame_rotation_deg, location, pressure,
                                       JACOBIAN_STEP_RAD, astrom_interpolation_s)
    if "reco_covariance" in reco:
        czz, cza, caa = direction_covariance(reco["reco_covariance"])
        crr, _, cdd = _propagate(jac, czz, cza, caa)
        err = ra_dec_err(crr, cdd, dec)
    else:
        err = np.full(zen.shape, np.nan)
    glon, glat = _galactic_from_icrs(ra, dec)
    return {"ra": ra, "dec": dec, "ra_dec_err": err, "glon": glon, "glat": glat}


#: Units shown in :func:`events_table` instead of the declared (canonical) unit: angles in deg.
DISPLAY_UNITS = {"rad": "deg"}

#: Descriptions of the table columns that are not ``reco`` branches
TABLE_ONLY = {"time": "event time (UTC; masked where unknown), from time_mjd",
              "energy": "primary energy 10^reco_log10_energy GeV, shown in TeV"}


def _quantity(value, column):
    """``value`` as a Quantity in the declared unit of ``column`` (shown in DISPLAY_UNITS);
    integer columns keep their integer dtype."""
    import astropy.units as u

    a = np.asarray(value)
    unit = u.Unit(column.unit)
    if a.dtype.kind in "iub":
        return u.Quantity(a, unit, dtype=a.dtype)
    q = u.Quantity(a.astype(np.float64), unit)
    shown = DISPLAY_UNITS.get(column.unit)
    return q.to(shown) if shown is not None else q


def events_table(reco: dict, time_mjd=None, frame_rotation_deg=0.0, location=None, pressure=0.0,
                 astrom_interpolation_s=ASTROM_INTERPOLATION_S):
    """User-facing :class:`astropy.table.QTable` of a reconstruction output.

    Every column carries the unit and the description declared in :mod:`joint.io.columns`
    (dimensionless ones as dimensionless Quantities, integer columns keeping their dtype;
    ``reco`` must hold declared columns only: a ValueError names any other), except:

    * angles (declared in rad) are shown in deg: ``reco_zenith``, ``reco_azimuth`` and their
      ``_err``/``seed_``/``true_`` versions, ``hillas_x``, ``hillas_psi``, ...;
    * ``reco_covariance`` (mixed units) is a plain column reshaped to (B, 8, 8) (canonical units:
      m, rad, log10(E/GeV), g/cm², ns; ``FIELDS`` order);
    * ``reco_log10_energy`` stays log10(E/GeV) and ``energy`` = 10^x GeV is added in TeV;
    * with times (``time_mjd`` argument, else ``reco["time_mjd"]`` if present): ``time`` (astropy
      Time, UTC; masked where unknown) instead of ``time_mjd``, and the :func:`sky_columns`
      ``ra``, ``dec``, ``ra_dec_err``, ``glon``, ``glat`` in deg (recomputed).
    ``meta`` records the site, ``frame_rotation_deg`` and the field order.
    """
    import astropy.units as u
    from astropy.table import QTable
    from astropy.time import Time

    from joint.io.columns import FIELDS, check, lookup

    check(reco, "events_table")
    n = len(np.asarray(reco["reco_zenith"]))
    if time_mjd is None and "time_mjd" in reco:
        time_mjd = reco["time_mjd"]
    tab = QTable()
    if time_mjd is not None:
        t = np.broadcast_to(np.asarray(time_mjd, np.float64), (n,))
        good = _valid_time(t)
        tab["time"] = Time(np.ma.masked_array(np.where(good, t, 0.0), mask=~good), format="mjd",
                           scale="utc")
        tab["time"].info.description = TABLE_ONLY["time"]
    sky = {} if time_mjd is None else sky_columns(reco, time_mjd, frame_rotation_deg, location,
                                                  pressure, astrom_interpolation_s)
    for name, val in reco.items():
        if name == "time_mjd" or name in sky:
            continue
        col = lookup(name)
        val = np.asarray(val)
        if col.unit is None:  # reco_covariance: mixed units
            k = len(FIELDS)
            tab[name] = val.reshape(n, k, k) if val.size == n * k * k else val
        else:
            tab[name] = _quantity(val, col)
        tab[name].info.description = col.description
        if name == "reco_log10_energy":
            tab["energy"] = (10.0 ** val.astype(np.float64) * u.GeV).to(u.TeV)
            tab["energy"].info.description = TABLE_ONLY["energy"]
    for name, val in sky.items():
        tab[name] = _quantity(val, lookup(name))
        tab[name].info.description = lookup(name).description
    loc = location if location is not None else site_location()
    tab.meta.update({"frame_rotation_deg": float(frame_rotation_deg),
                     "site_lon_deg": float(loc.lon.deg), "site_lat_deg": float(loc.lat.deg),
                     "site_height_m": float(loc.height.to_value(u.m)),
                     "fields": list(FIELDS), "refraction_pressure_hPa":
                         float(_pressure(pressure).to_value(u.hPa))})
    return tab
