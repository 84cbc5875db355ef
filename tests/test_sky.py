"""Sky coordinates (joint/sky.py): conventions, agreement with a direct astropy transform,
round trips, the Crab at culmination, and the propagation of direction errors."""
import numpy as np
import pytest

astropy = pytest.importorskip("astropy")
import astropy.units as u  # noqa: E402
from astropy.coordinates import AltAz, EarthLocation, SkyCoord  # noqa: E402
from astropy.time import Time  # noqa: E402

from joint import sky  # noqa: E402

CRAB_RA, CRAB_DEC = 83.6331, 22.0145
LAT, LON, HEIGHT = 29.35767, 100.13879, 4410.0


def _site():
    return EarthLocation.from_geodetic(lon=LON * u.deg, lat=LAT * u.deg, height=HEIGHT * u.m)


def _direct_icrs(alt_deg, az_deg, mjd):
    """Independent reference: astropy AltAz (no refraction) -> ICRS, written out here."""
    frame = AltAz(obstime=Time(mjd, format="mjd", scale="utc"), location=_site(),
                  pressure=0 * u.hPa)
    c = SkyCoord(alt=alt_deg * u.deg, az=az_deg * u.deg, frame=frame).icrs
    return c


def _random_events(n, seed, mjd_lo=59000.0, mjd_hi=60500.0):
    rng = np.random.default_rng(seed)
    zen = np.arccos(rng.uniform(np.cos(np.radians(60.0)), 1.0, n))
    azi = rng.uniform(0.0, 2 * np.pi, n)
    mjd = rng.uniform(mjd_lo, mjd_hi, n)
    return zen, azi, mjd


def test_site():
    loc = sky.site_location()
    assert loc.lat.deg == pytest.approx(LAT, abs=1e-9)
    assert loc.lon.deg == pytest.approx(LON, abs=1e-9)
    assert loc.height.to_value(u.m) == pytest.approx(HEIGHT, abs=1e-6)


@pytest.mark.parametrize("rho", [0.0, 29.45, -90.0, 200.0])
def test_frame_rotation_convention(rho):
    # due North at alt 60°: φ = 90° − ρ; due East: φ = −ρ; due South: φ = −90° − ρ
    for az_astropy, phi in ((0.0, 90.0 - rho), (90.0, -rho), (180.0, -90.0 - rho)):
        alt, az = sky.altaz_from_array(np.radians(30.0), np.radians(phi), rho)
        assert np.degrees(alt) == pytest.approx(60.0, abs=1e-12)
        d = (np.degrees(az) - az_astropy + 180.0) % 360.0 - 180.0
        assert d == pytest.approx(0.0, abs=1e-9)
        z, a = sky.array_from_altaz(alt, az, rho)
        assert np.degrees(z) == pytest.approx(30.0, abs=1e-12)
        assert np.degrees(a) == pytest.approx(phi % 360.0, abs=1e-9)
    # through astropy: the array direction due North at alt 60° equals AltAz(az=0, alt=60)
    mjd = 60000.3
    ra, dec = sky.to_icrs(np.radians(30.0), np.radians(90.0 - rho), mjd, frame_rotation_deg=rho)
    ref = _direct_icrs(60.0, 0.0, mjd)
    assert SkyCoord(ra * u.deg, dec * u.deg).separation(ref).arcsec < 1e-3


def test_zenith_outside_range_is_the_same_direction():
    zen, azi = np.array([0.2, 1.0]), np.array([0.5, 4.0])
    alt, az = sky.altaz_from_array(zen, azi)
    alt2, az2 = sky.altaz_from_array(-zen, azi + np.pi)
    np.testing.assert_allclose(alt2, alt, atol=1e-12)
    np.testing.assert_allclose(np.cos(az2 - az), 1.0, atol=1e-12)


def test_celestial_pole_is_north_at_latitude():
    # the pole is due North at altitude = latitude (ICRS pole vs the pole of date: < 0.2°)
    ra, dec = sky.to_icrs(np.radians(90.0 - LAT), np.radians(90.0), 60000.0)
    assert dec > 89.8


def test_icrs_and_galactic_agree_with_direct_astropy():
    zen, azi, mjd = _random_events(100, seed=1)
    ra, dec = sky.to_icrs(zen, azi, mjd)
    alt_deg = 90.0 - np.degrees(zen)
    az_deg = (90.0 - np.degrees(azi)) % 360.0  # ρ = 0: +x = East, +y = North
    ref = _direct_icrs(alt_deg, az_deg, mjd)
    sep = SkyCoord(ra * u.deg, dec * u.deg).separation(ref).arcsec
    assert sep.max() < 1.0
    l, b = sky.to_galactic(zen, azi, mjd)
    sep_g = SkyCoord(l * u.deg, b * u.deg, frame="galactic").separation(ref.galactic).arcsec
    assert sep_g.max() < 1.0
    # with a frame rotation
    ra_r, dec_r = sky.to_icrs(zen, azi, mjd, frame_rotation_deg=29.45)
    ref_r = _direct_icrs(alt_deg, (az_deg - 29.45) % 360.0, mjd)
    assert SkyCoord(ra_r * u.deg, dec_r * u.deg).separation(ref_r).arcsec.max() < 1.0


def test_interpolated_transform_matches_exact():
    # 500 events in one night: the ErfaAstromInterpolator path is taken; compare with exact
    zen, azi, mjd = _random_events(500, seed=2, mjd_lo=60300.5, mjd_hi=60300.8)
    ra_i, dec_i = sky.to_icrs(zen, azi, mjd)
    ra_e, dec_e = sky.to_icrs(zen, azi, mjd, astrom_interpolation_s=None)
    sep = SkyCoord(ra_i * u.deg, dec_i * u.deg).separation(SkyCoord(ra_e * u.deg, dec_e * u.deg))
    assert sep.arcsec.max() < 1e-3


def test_round_trip_from_icrs_to_icrs():
    rng = np.random.default_rng(3)
    n = 200
    ra = rng.uniform(0.0, 360.0, n)
    dec = rng.uniform(-10.0, 80.0, n)
    mjd = rng.uniform(59000.0, 60500.0, n)
    for rho in (0.0, 29.45):
        zen, azi = sky.from_icrs(ra, dec, mjd, frame_rotation_deg=rho)
        assert np.all((azi >= 0) & (azi < 2 * np.pi))
        ra2, dec2 = sky.to_icrs(zen, azi, mjd, frame_rotation_deg=rho)
        sep = SkyCoord(ra * u.deg, dec * u.deg).separation(SkyCoord(ra2 * u.deg, dec2 * u.deg))
        assert sep.arcsec.max() < 0.01


def test_crab_at_culmination():
    from scipy.optimize import minimize_scalar

    day = 60300.0  # 2023-12-21: the Crab culminates near local midnight
    zen_of = lambda t: float(sky.from_icrs(CRAB_RA, CRAB_DEC, t)[0])
    grid = day + np.linspace(0.0, 1.0, 97)
    zen_grid, _ = sky.from_icrs(CRAB_RA, CRAB_DEC, grid)
    t0 = grid[np.argmin(zen_grid)]
    res = minimize_scalar(zen_of, bracket=(t0 - 0.01, t0, t0 + 0.01), tol=1e-10)
    t_cul = res.x
    zen, azi = sky.from_icrs(CRAB_RA, CRAB_DEC, t_cul)
    assert np.degrees(zen) == pytest.approx(abs(LAT - CRAB_DEC), abs=0.03)  # 7.343°
    alt, az = sky.altaz_from_array(zen, azi)
    assert np.degrees(az) == pytest.approx(180.0, abs=0.2)  # due South
    # independently: culmination = local apparent sidereal time equals the apparent RA of date
    tt = Time(t_cul, format="mjd", scale="utc")
    lst = tt.sidereal_time("apparent", longitude=LON * u.deg).deg
    from astropy.coordinates import TETE

    ra_app = SkyCoord(CRAB_RA * u.deg, CRAB_DEC * u.deg).transform_to(TETE(obstime=tt)).ra.deg
    ha_deg = (lst - ra_app + 180.0) % 360.0 - 180.0
    assert abs(ha_deg) < 0.05  # 12 s of time
    # and back to the Crab
    ra, dec = sky.to_icrs(zen, azi, t_cul)
    assert SkyCoord(ra * u.deg, dec * u.deg).separation(
        SkyCoord(CRAB_RA * u.deg, CRAB_DEC * u.deg)).arcsec < 0.01


def test_nan_and_unknown_times():
    zen = np.radians([10.0, np.nan, 20.0, 20.0])
    azi = np.radians([30.0, 30.0, 40.0, 40.0])
    mjd = np.array([60000.0, 60000.0, -1.0, np.nan])
    ra, dec = sky.to_icrs(zen, azi, mjd)
    assert np.isfinite(ra[0]) and np.isfinite(dec[0])
    assert np.all(np.isnan(ra[1:])) and np.all(np.isnan(dec[1:]))
    z, a = sky.from_icrs(np.array([10.0, np.nan]), 20.0, 60000.0)
    assert np.isfinite(z[0]) and np.isnan(z[1]) and np.isnan(a[1])


def _cov(sig_z, sig_a, rho_za):
    return sig_z ** 2, rho_za * sig_z * sig_a, sig_a ** 2


def test_covariance_against_monte_carlo():
    rng = np.random.default_rng(4)
    mjd = 60300.7
    for zen0, azi0, sz, sa, r in ((np.radians(30.0), 1.0, np.radians(0.5), np.radians(0.8), 0.4),
                                  (np.radians(12.0), 4.0, np.radians(0.3), np.radians(2.0), -0.3)):
        czz, cza, caa = _cov(sz, sa, r)
        crr, crd, cdd = sky.radec_covariance(zen0, azi0, czz, cza, caa, mjd)
        n = 20000
        d = rng.multivariate_normal([0.0, 0.0], [[czz, cza], [cza, caa]], size=n)
        ra, dec = sky.to_icrs(zen0 + d[:, 0], azi0 + d[:, 1], np.full(n, mjd))
        ra0, _ = sky.to_icrs(zen0, azi0, mjd)
        dra = (ra - ra0 + 180.0) % 360.0 - 180.0
        sample = np.cov(np.stack([dra, dec]))
        assert float(crr) == pytest.approx(sample[0, 0], rel=0.05)
        assert float(cdd) == pytest.approx(sample[1, 1], rel=0.05)
        assert float(crd) == pytest.approx(sample[0, 1], abs=0.05 * np.sqrt(sample[0, 0] * sample[1, 1]))


def test_error_radius_is_rotation_invariant():
    # trace invariance: cos²δ σ_α² + σ_δ² = σ_θ² + sin²θ σ_φ² (deg²), for any direction/time
    zen, azi, mjd = _random_events(300, seed=5)
    rng = np.random.default_rng(6)
    sz = np.radians(rng.uniform(0.1, 1.0, zen.size))
    sa = np.radians(rng.uniform(0.1, 3.0, zen.size))
    r = rng.uniform(-0.8, 0.8, zen.size)
    czz, cza, caa = _cov(sz, sa, r)
    crr, _, cdd = sky.radec_covariance(zen, azi, czz, cza, caa, mjd)
    _, dec = sky.to_icrs(zen, azi, mjd)
    err = sky.ra_dec_err(crr, cdd, dec)
    expect = np.degrees(np.sqrt(0.5 * (czz + np.sin(zen) ** 2 * caa)))
    # up to the distortion of annual aberration (v/c ≈ 1e-4)
    np.testing.assert_allclose(err, expect, rtol=3e-4)
    assert np.median(np.abs(err / expect - 1.0)) < 1e-4


def test_jacobian_near_zenith_and_ra_wrap():
    # within a step of the zenith: one-sided differences, finite, and the invariant holds
    czz, cza, caa = _cov(np.radians(0.5), np.radians(5.0), 0.0)
    for zen0 in (0.0, 3e-7, 1e-3):
        crr, _, cdd = sky.radec_covariance(zen0, 1.0, czz, cza, caa, 60000.0)
        _, dec = sky.to_icrs(zen0, 1.0, 60000.0)
        err = sky.ra_dec_err(crr, cdd, dec)
        expect = np.degrees(np.sqrt(0.5 * (czz + np.sin(zen0) ** 2 * caa)))
        assert err == pytest.approx(expect, rel=1e-3)
    # a direction at RA = 0 (wrap-around between the finite-difference points)
    mjd = 60000.2
    zen, azi = sky.from_icrs(1e-9, 25.0, mjd)
    j0 = sky.radec_jacobian(zen, azi, mjd)
    j1 = sky.radec_jacobian(zen, azi, mjd + 1.0 / 86400.0)  # RA moves off the wrap by ~0.004°
    assert np.all(np.isfinite(j0))
    np.testing.assert_allclose(j0, j1, rtol=1e-3, atol=1e-3)


def test_direction_covariance_from_fit_covariance():
    from detectors.shower import FIELDS

    rng = np.random.default_rng(7)
    b = 5
    a = rng.normal(size=(b, 8, 8))
    cov = a @ np.swapaxes(a, 1, 2)
    iz, ia = FIELDS.index("zenith"), FIELDS.index("azimuth")
    for c in (cov, cov.reshape(b, 64)):
        czz, cza, caa = sky.direction_covariance(c)
        np.testing.assert_array_equal(czz, cov[:, iz, iz])
        np.testing.assert_array_equal(cza, cov[:, iz, ia])
        np.testing.assert_array_equal(caa, cov[:, ia, ia])


def _fake_reco():
    from detectors.shower import FIELDS

    zen = np.radians([10.0, 25.0, np.nan, 30.0, 20.0])
    azi = np.radians([45.0, 200.0, 10.0, 300.0, 100.0])
    cov = np.zeros((5, 8, 8))
    iz, ia = FIELDS.index("zenith"), FIELDS.index("azimuth")
    cov[:, iz, iz] = np.radians(0.4) ** 2
    cov[:, ia, ia] = np.radians(1.0) ** 2
    cov[3] = np.nan  # failed covariance
    return {"reco_zenith": zen, "reco_azimuth": azi, "reco_covariance": cov.reshape(5, 64),
            "reco_log10_energy": np.array([4.5, 5.0, 5.5, 4.8, 5.2]),
            "reco_xmax": np.full(5, 500.0), "reco_core_x": np.arange(5.0),
            "reco_core_y": np.zeros(5), "reco_zenith_err": np.full(5, 0.01),
            "status": np.zeros(5, np.int32)}


def test_sky_columns():
    reco = _fake_reco()
    mjd = np.array([60000.1, 60000.2, 60000.3, 60000.4, -1.0])
    out = sky.sky_columns(reco, mjd)
    assert set(out) == {"ra", "dec", "ra_dec_err", "glon", "glat"}
    for k, v in out.items():
        assert v.shape == (5,)
        assert np.all(np.isfinite(v[:2])), k
        assert np.isnan(v[2]) and np.isnan(v[4]), k  # NaN direction, unknown time
    assert np.isfinite(out["ra"][3]) and np.isnan(out["ra_dec_err"][3])
    ra, dec = sky.to_icrs(reco["reco_zenith"], reco["reco_azimuth"], mjd)
    np.testing.assert_allclose(out["ra"][:2], ra[:2], atol=1e-9)
    expect = np.degrees(np.sqrt(0.5 * (np.radians(0.4) ** 2
                                       + np.sin(reco["reco_zenith"][:2]) ** 2 * np.radians(1.0) ** 2)))
    np.testing.assert_allclose(out["ra_dec_err"][:2], expect, rtol=3e-4)


def test_events_table_units():
    reco = _fake_reco()
    mjd = np.array([60000.1, 60000.2, 60000.3, 60000.4, -1.0])
    tab = sky.events_table(reco, mjd)
    assert tab["reco_zenith"].unit == u.deg
    assert tab["reco_zenith"][0].to_value(u.deg) == pytest.approx(10.0)
    assert tab["reco_zenith_err"][0].to_value(u.rad) == pytest.approx(0.01)
    assert tab["energy"][1].to_value(u.TeV) == pytest.approx(100.0)
    assert tab["reco_xmax"].unit == u.g / u.cm ** 2
    assert tab["reco_core_x"].unit == u.m
    assert tab["ra"].unit == u.deg and tab["ra_dec_err"].unit == u.deg
    assert isinstance(tab["time"], Time) and bool(tab["time"].mask[4])
    assert float(tab["time"][0].unmasked.mjd) == pytest.approx(60000.1)
    assert tab["reco_covariance"].shape == (5, 8, 8)
    assert tab.meta["frame_rotation_deg"] == 0.0
    np.testing.assert_array_equal(tab["status"], reco["status"])


def test_offline_stale_iers_falls_back_with_a_warning():
    # times beyond the bundled IERS tables, downloads off: degraded values and a warning,
    # not an exception (the error is < 1 s of UT1, far below the angular resolution)
    from astropy.utils import iers

    with iers.conf.set_temp("auto_download", False), pytest.warns(RuntimeWarning, match="IERS"):
        ra, dec = sky.to_icrs(0.3, 1.0, np.array([62500.0, 62500.5]))
    assert np.all(np.isfinite(ra)) and np.all(np.isfinite(dec))
