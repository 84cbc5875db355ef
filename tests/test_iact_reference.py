"""Readers of the CORSIKA-IACT / sim_telarray reference files (joint.io.iact) against the files
themselves: shapes, units and the conventions documented in joint/io/iact.py.

Data: ../shared/data/iact (fixture ``shared_data``); each test skips when its file is absent.
"""
from __future__ import annotations

import math

import numpy as np
import pytest

from joint.io.errors import EventFileError
from joint.io.iact import (photon_density_at_core, read_iact_photons, read_mc_shower_npy,
                           read_simtel_profiles)


def _file(shared_data, name):
    p = shared_data / "iact" / name
    if not p.is_file():
        pytest.skip(f"reference file {p} not present")
    return p


@pytest.fixture(scope="module")
def gamma100(shared_data):
    pytest.importorskip("eventio")
    return read_iact_photons(_file(shared_data, "gamma_100gev_1216.eventio"))


@pytest.fixture(scope="module")
def two_tel(shared_data):
    pytest.importorskip("eventio")
    return read_iact_photons(_file(shared_data, "two_telescopes.dat"))


@pytest.fixture(scope="module")
def profiles(shared_data):
    return read_simtel_profiles(_file(shared_data, "simtel_mcshower_profiles.json"))


# ------------------------------------------------------------------ eventio: gamma_100gev_1216

def test_gamma100_header_units(gamma100):
    assert gamma100["run"]["observation_level_m"] == pytest.approx(2200.0)
    assert len(gamma100["events"]) == 1
    ev = gamma100["events"][0]
    assert ev["energy_gev"] == pytest.approx(100.0)
    assert ev["particle_id"] == 1
    assert ev["observation_level_m"] == pytest.approx(2200.0)
    assert ev["zenith_rad"] < math.radians(1.0)           # THETAP 0 1 (degrees) -> radians
    px, py, pz = ev["momentum_gev"]
    assert math.atan2(py, px) == pytest.approx(ev["azimuth_rad"], abs=1e-5)
    assert math.atan(math.hypot(px, py) / pz) == pytest.approx(ev["zenith_rad"], abs=1e-5)
    assert 10e3 < ev["first_interaction_height_m"] < 60e3  # cm -> m, sign of TSTART removed
    assert ev["tracking_started_at_top"]
    assert (ev["core_x_m"], ev["core_y_m"]) == (0.0, 0.0)  # CSCAT 1 0 0
    assert ev["cherenkov_wavelength_range_nm"] == (290.0, 900.0)
    # reference time: primary at c from the top of atmprof8 (120 km) to the observation level
    top = gamma100["atmosphere"]["top_m"]
    assert top == pytest.approx(120e3)
    t_ref = (top - 2200.0) / 0.299792458 / math.cos(ev["zenith_rad"])
    assert ev["time_offset_ns"] == pytest.approx(t_ref, abs=2.0)


def test_gamma100_telescope_and_bunches(gamma100):
    tel = gamma100["telescopes"]
    np.testing.assert_allclose([tel["x_m"][0], tel["y_m"][0], tel["z_m"][0], tel["r_m"][0]],
                               [0.0, 0.0, 5.0, 5.0])
    t = gamma100["events"][0]["telescopes"][0]
    n = t["n_bunches"]
    assert n == 918
    for k in ("x_m", "y_m", "cx", "cy", "time_ns", "zem_m", "photons", "wavelength_raw"):
        assert t[k].shape == (n,), k
    assert t["photons"].sum() == pytest.approx(t["n_photons"], rel=1e-5)
    # positions relative to the telescope centre, within its 5 m sphere (metres, not cm)
    assert np.all(np.hypot(t["x_m"], t["y_m"]) <= 5.0 + 1e-3)
    assert np.all(t["core_distance_m"] <= 5.0 + 1e-3)
    # emission heights a.s.l., above the observation level, from the shower's altitude range
    assert np.all(t["zem_m"] > 2200.0)
    assert 5e3 < np.average(t["zem_m"], weights=t["photons"]) < 20e3
    assert np.all(np.abs(t["cx"]) < 0.05) and np.all(np.abs(t["cy"]) < 0.05)
    assert np.all((t["photons"] > 0) & (t["photons"] <= 1.0 + 1e-6))   # CERSIZ 1
    assert np.all(t["wavelength_raw"] == 0) and np.all(np.isnan(t["wavelength_nm"]))
    assert np.ptp(t["time_ns"]) < 50.0


def test_photon_density_at_core(gamma100):
    res = photon_density_at_core(gamma100)
    # data README: ≈ 11.6 photons/m² at the core; measured 914.72 photons / (π·5²) = 11.65
    assert res["density_m2"] == pytest.approx(11.6, rel=0.15)
    assert res["density_m2"] == pytest.approx(914.72 / (math.pi * 25.0), rel=1e-3)
    assert res["method"] == "sphere" and res["core_distance_m"] == 0.0
    assert res["stat_error_m2"] == pytest.approx(math.sqrt(918) / (math.pi * 25.0), rel=0.05)
    assert res["wavelength_range_nm"] == (290.0, 900.0)
    assert 8e3 < res["mean_emission_height_m"] < 14e3
    assert res["mean_emission_height_above_obs_m"] == pytest.approx(
        res["mean_emission_height_m"] - 2200.0)
    # a disc around the core inside the sphere gives the same density within statistics
    for r in (3.0, 4.0, 5.0):
        disc = photon_density_at_core(gamma100, radius_m=r)
        assert disc["method"] == "disc"
        assert abs(disc["density_m2"] - res["density_m2"]) < 3 * disc["stat_error_m2"]
    with pytest.raises(ValueError, match="not inside"):
        photon_density_at_core(gamma100, radius_m=6.0)


def test_density_accepts_a_path(shared_data):
    pytest.importorskip("eventio")
    res = photon_density_at_core(_file(shared_data, "gamma_100gev_1216.eventio"))
    assert res["density_m2"] == pytest.approx(11.65, abs=0.01)


# ------------------------------------------------------------------ eventio: two_telescopes

def test_two_telescopes_core_frame(two_tel):
    np.testing.assert_allclose(two_tel["telescopes"]["x_m"], [0.0, 50.0])
    assert len(two_tel["events"]) == 2
    dists = []
    for ev in two_tel["events"]:
        assert ev["energy_gev"] == pytest.approx(200.0)
        assert ev["observation_level_m"] == pytest.approx(2200.0)
        for t in ev["telescopes"]:
            dists.append(t["tel_core_distance_m"])
            # bunches lie on the telescope's 5 m disc, core distances around its centre's
            assert np.all(np.abs(t["core_distance_m"] - t["tel_core_distance_m"]) <= 5.0 + 1e-3)
            assert np.all(t["zem_m"] > 2200.0)
            lam = t["wavelength_nm"]                      # stored negative, |λ| in CWAVLG
            assert np.all(t["wavelength_raw"] < 0)
            assert np.all((lam >= 290.0) & (lam <= 700.0))
    # data README: "photon bunches at 31-126 m from the core"
    assert min(dists) == pytest.approx(31.3, abs=0.5)
    assert max(dists) == pytest.approx(125.0, abs=1.0)
    with pytest.raises(ValueError, match="no telescope sphere covers the core"):
        photon_density_at_core(two_tel)
    off = photon_density_at_core(two_tel, event=0, telescope=0)
    assert off["core_distance_m"] == pytest.approx(31.3, abs=0.5)
    assert off["wavelength_source"] == "bunches"


# ------------------------------------------------------------------ simtel profiles

def test_simtel_profiles_shapes(profiles):
    n = 59
    for k in ("energy_tev", "azimuth_rad", "altitude_rad", "xmax_g_cm2", "hmax_m",
              "h_first_int_m", "primary_id", "step_g_cm2", "n_steps"):
        assert profiles[k].shape == (n,), k
    m = profiles["depth_g_cm2"].shape[1]
    for k in ("charged", "electrons", "cherenkov", "cherenkov_per_g_cm2"):
        assert profiles[k].shape == (n, m), k
    assert set(np.unique(profiles["step_g_cm2"])) <= {10.0, 20.0}
    for i in range(n):
        ns = profiles["n_steps"][i]
        d = profiles["depth_g_cm2"][i]
        assert np.all(np.isfinite(d[:ns])) and np.all(np.isnan(d[ns:]))
        np.testing.assert_allclose(np.diff(d[:ns]), profiles["step_g_cm2"][i])
    assert np.all((profiles["energy_tev"] > 5e-5) & (profiles["energy_tev"] < 2.0))
    assert np.all((profiles["zenith_rad"] >= -1e-6) & (profiles["zenith_rad"] < math.radians(40)))
    assert np.all(profiles["obs_height_m"] >= 1800) and np.all(profiles["obs_height_m"] <= 2200)
    gam = profiles["primary_id"] == 0
    assert gam.sum() == 24 and (profiles["primary_id"] == 101).sum() == 29
    # sentinel -20 ("no maximum") became NaN: 5 muon showers without e±; the 0.1 GeV gamma without
    # Cherenkov light
    assert np.isnan(profiles["emax_g_cm2"]).sum() == 5
    assert np.isnan(profiles["cmax_g_cm2"]).sum() == 1


def _parabola_vertex(depth, y):
    i = int(np.nanargmax(y))
    step = depth[1] - depth[0]
    if 0 < i and np.isfinite(y[i + 1]):
        den = y[i - 1] - 2 * y[i] + y[i + 1]
        off = 0.5 * (y[i - 1] - y[i + 1]) / den if den != 0 else 0.0
    else:
        off = 0.0
    return depth[i] + off * step


def test_simtel_xmax_is_the_charged_profile_peak(profiles):
    """xmax, emax, cmax: vertex of the parabola through the samples around each profile's
    maximum, with sample i at depth start + i·step (vertical depth)."""
    for i in range(len(profiles["energy_tev"])):
        d = profiles["depth_g_cm2"][i]
        ch = profiles["charged"][i]
        peak = d[int(np.nanargmax(ch))]
        assert abs(peak - profiles["xmax_g_cm2"][i]) <= 50.0
        assert _parabola_vertex(d, ch) == pytest.approx(profiles["xmax_g_cm2"][i], abs=0.05)
        if np.isfinite(profiles["cmax_g_cm2"][i]):
            assert _parabola_vertex(d, profiles["cherenkov"][i]) == pytest.approx(
                profiles["cmax_g_cm2"][i], abs=0.05)


def test_simtel_cherenkov_shape_follows_charged(profiles):
    """Cherenkov photons per depth step ∝ charged particles above threshold: same shape."""
    good = (profiles["primary_id"] == 0) & (np.nanmax(profiles["charged"], axis=1) >= 20)
    assert good.sum() == 17
    for i in np.nonzero(good)[0]:
        ns = profiles["n_steps"][i]
        ch, ck = profiles["charged"][i, :ns], profiles["cherenkov"][i, :ns]
        d = profiles["depth_g_cm2"][i, :ns]
        assert np.corrcoef(ch, ck)[0, 1] > 0.98
        mean_ch = np.sum(d * ch) / ch.sum()
        mean_ck = np.sum(d * ck) / ck.sum()
        assert abs(mean_ch - mean_ck) < 15.0
        assert abs(profiles["cmax_g_cm2"][i] - profiles["xmax_g_cm2"][i]) < 50.0
        # photons per step, not per metre: ~1e5 photons per GeV over the whole profile
        per_gev = ck.sum() / profiles["energy_gev"][i]
        assert 2e4 < per_gev < 3e5


# ------------------------------------------------------------------ gamma_test_mc_shower.npy

def test_mc_shower_npy(shared_data):
    t = read_mc_shower_npy(_file(shared_data, "gamma_test_mc_shower.npy"))
    for k in ("energy_tev", "energy_gev", "h_first_int_m", "xmax_g_cm2"):
        assert t[k].shape == (122,), k
    assert t["energy_gev"].min() == pytest.approx(3.0, abs=0.1)
    assert t["energy_tev"].max() == pytest.approx(0.628, abs=0.001)
    assert np.all((t["h_first_int_m"] > 5e3) & (t["h_first_int_m"] < 1e5))
    assert np.all((t["xmax_g_cm2"] > 20) & (t["xmax_g_cm2"] < 600))
    # elongation: deeper maxima for higher energies
    assert np.corrcoef(np.log10(t["energy_tev"]), t["xmax_g_cm2"])[0, 1] > 0.3


# ------------------------------------------------------------------ errors

def test_missing_and_unreadable_files(tmp_path):
    missing = tmp_path / "nope.eventio"
    for reader in (read_iact_photons, read_simtel_profiles, read_mc_shower_npy,
                   photon_density_at_core):
        with pytest.raises(EventFileError, match="nope.eventio: file does not exist"):
            reader(missing)
    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"\x00\x01not an eventio file" * 50)
    pytest.importorskip("eventio")
    with pytest.raises(EventFileError, match="junk.bin: cannot be read as CORSIKA-IACT eventio"):
        read_iact_photons(junk)
    with pytest.raises(EventFileError, match="junk.bin: is not readable JSON"):
        read_simtel_profiles(junk)
    with pytest.raises(EventFileError, match="junk.bin: is not a readable .npy"):
        read_mc_shower_npy(junk)
    bad = tmp_path / "bad.json"
    bad.write_text('[{"source_file": "x", "showers": [{"shower": 1}]}]')
    with pytest.raises(EventFileError, match=r"field '\[0\]\.showers\[0\]\.primary_id_simtel'"):
        read_simtel_profiles(bad)


def test_truncated_eventio(shared_data, tmp_path):
    pytest.importorskip("eventio")
    src = _file(shared_data, "gamma_100gev_1216.eventio").read_bytes()
    cut = tmp_path / "cut.eventio"
    cut.write_bytes(src[:20000])
    with pytest.raises(EventFileError, match="cut.eventio: cannot be read"):
        read_iact_photons(cut)
