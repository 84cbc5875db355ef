"""Layouts: counts, frames, ids, WCDA ponds, WFCTA cameras."""
import numpy as np
import pytest

from detectors.layout import (camera_pixel_xy, km2a_layout, pixel_directions, wcda_cell_efficiency,
                              wcda_layout, wfcta_layout, wfcta_optics_table)


def test_km2a_counts_and_frame():
    full = km2a_layout("full")
    assert (full.n_ed, full.n_md) == (5216, 1188)
    assert full.ed_pos.shape == (5216, 3) and full.md_pos.shape == (1188, 3)
    assert full.ed_area == 1.0 and full.md_area == 36.0
    assert len(np.unique(full.ed_id)) == 5216 and len(np.unique(full.md_id)) == 1188
    # first ED line of ED_pos_all.txt: "1 -154.294 296.766 4394.831" -> x=c3, y=-c2, z=c4-4400
    i = full.ed_index_of([1])[0]
    np.testing.assert_allclose(full.ed_pos[i], [296.766, 154.294, -5.169], atol=1e-9)
    # heights span ~35 m around the reference (PHYSICS.md §2 / DESIGN.md)
    assert -15 < full.ed_pos[:, 2].min() < -5 and 15 < full.ed_pos[:, 2].max() < 30
    r = np.hypot(full.ed_pos[:, 0], full.ed_pos[:, 1])
    assert np.sum(r < 575) == 4902


def test_km2a_three_quarter_is_subset():
    full, part = km2a_layout("full"), km2a_layout("3/4")
    assert (part.n_ed, part.n_md) == (3978, 917)
    idx = full.ed_index_of(part.ed_id)  # raises if an id of the 3/4 array is not in the full one
    np.testing.assert_allclose(full.ed_pos[idx, :2], part.ed_pos[:, :2])
    # the files agree except for the heights of 2 EDs (~7 m) and the x of 1 MD (6 m)
    dz = np.abs(full.ed_pos[idx, 2] - part.ed_pos[:, 2])
    assert np.sum(dz > 1e-6) == 2 and dz.max() < 7.5
    dmd = np.abs(full.md_pos[full.md_index_of(part.md_id)] - part.md_pos).max(axis=1)
    assert np.sum(dmd > 1e-6) == 1 and dmd.max() < 6.5


def test_index_of_unknown_ids_listed():
    lay = km2a_layout()
    ids = lay.ed_id[[5, 0, 17]]
    np.testing.assert_array_equal(lay.ed_index_of(ids), [5, 0, 17])
    with pytest.raises(ValueError, match="999999") as err:
        lay.ed_index_of([int(lay.ed_id[0]), 999999, -3])
    assert "-3" in str(err.value)
    with pytest.raises(ValueError):
        km2a_layout("half")


def test_wcda_cells_and_ponds():
    lay = wcda_layout()
    assert lay.n_cells == 3120 and lay.cell_pos.shape == (3120, 3)
    np.testing.assert_array_equal(np.bincount(lay.pond)[1:], [900, 900, 1320])
    assert len(np.unique(lay.cell_id)) == 3120
    # pond 1 round trip to the csv local frame and its centre
    p1 = lay.cell_pos[lay.pond == 1]
    local = lay.to_local(p1[:, :2])
    assert np.abs(local).max() < 73.0
    np.testing.assert_allclose(p1[:, :2].mean(0), (-2.0, -89.0), atol=1.0)
    # local +x axis points at +29.36 deg in the array frame (WFCTAMap.cpp convention)
    lx = np.array([[10.0, 0.0]])
    from detectors.layout import _local_to_array
    d = _local_to_array(lx, 29.36, (0.0, 0.0))[0]
    assert np.degrees(np.arctan2(d[1], d[0])) == pytest.approx(29.36)
    # ponds do not overlap: nearest-neighbour cell distance is the 5 m cell pitch
    from scipy.spatial import cKDTree
    dist, _ = cKDTree(lay.cell_pos[:, :2]).query(lay.cell_pos[:, :2], k=2)
    assert dist[:, 1].min() > 4.0
    # areas: 3120 cells x 25 m^2 = 78,000 m^2 (PHYSICS.md §3)
    assert lay.n_cells * lay.cell_size ** 2 == 78000
    assert lay.pmt_types[1]["large_inch"] == 8 and lay.pmt_types[2]["large_inch"] == 20
    only1 = wcda_layout(ponds=(1,))
    assert only1.n_cells == 900


def test_ponds_and_telescopes_clear_of_km2a_detectors():
    """Real geometry check: no ED or MD of the official layout lies inside a WCDA pond, and the
    WFCTA telescopes stand outside the ponds (the frame offset of the unofficial code)."""
    km2a, wcda, wfcta = km2a_layout(), wcda_layout(), wfcta_layout()
    from scipy.spatial import cKDTree
    tree = cKDTree(wcda.cell_pos[:, :2])
    # a point inside a pond is within half a cell diagonal (3.54 m) of a cell centre
    for pts in (km2a.ed_pos[:, :2], km2a.md_pos[:, :2], wfcta.tel_pos[:, :2]):
        d, _ = tree.query(pts)
        assert d.min() > 2.5 * np.sqrt(2)
    # the literal [U] centre in the G4KM2A frame would put EDs inside pond 1
    d, _ = cKDTree(wcda_layout(pond1_centre=(-47.5, -80.0)).cell_pos[:, :2]).query(km2a.ed_pos[:, :2])
    assert (d < 2.5).sum() > 10


def test_wcda_efficiency():
    eff = wcda_cell_efficiency()
    assert eff.shape == (900,)
    assert 0.9 < eff.min() and eff.max() < 1.5


def test_wfcta_telescopes_and_camera():
    lay = wfcta_layout()
    assert lay.n_tel == 6 and lay.n_pix == 1024
    assert lay.pixel_xy.shape == (1024, 2)
    np.testing.assert_allclose(np.degrees(lay.azimuth), [55, 29, 81, 107, 133, 160], atol=0.01)
    assert np.all(np.abs(np.degrees(lay.zenith) - 30.2) < 0.7)
    assert lay.focal_length == 2.870
    assert np.degrees(lay.pixel_angular_size) == pytest.approx(0.515, abs=1e-3)
    assert np.degrees(lay.field_of_view) == pytest.approx(16.6, abs=0.05)
    # pitch 25.8 mm inside a group of 4, 26.8 mm across a gap
    row0 = lay.pixel_xy[:32]
    steps = np.diff(row0[:, 0]) * 1e3
    np.testing.assert_allclose(steps[[0, 1, 2, 4]], 25.8)
    np.testing.assert_allclose(steps[[3, 7, 27]], 26.8)
    np.testing.assert_allclose(lay.pixel_xy.mean(0), 0.0, atol=1e-12)
    # row 0 is the top row
    assert lay.pixel_xy[0, 1] > lay.pixel_xy[32, 1]
    sub = wfcta_layout(tel_ids=[2, 5])
    np.testing.assert_array_equal(sub.tel_id, [2, 5])
    user = wfcta_layout(telescopes=[[i, 10.0 * i, 0.0, 20.0 * i, 30.0] for i in range(1, 19)])
    assert user.n_tel == 18
    with pytest.raises(ValueError):
        wfcta_layout(telescopes=[[i, 0, 0, 0, 30] for i in range(19)])


def test_pixel_directions():
    lay = wfcta_layout()
    d = pixel_directions(lay)
    assert d.shape == (6, 1024, 3)
    np.testing.assert_allclose(np.linalg.norm(d, axis=-1), 1.0)
    axis = np.stack([np.sin(lay.zenith) * np.cos(lay.azimuth),
                     np.sin(lay.zenith) * np.sin(lay.azimuth), np.cos(lay.zenith)], -1)
    ang = np.degrees(np.arccos(np.clip(np.einsum("tpk,tk->tp", d, axis), -1, 1)))
    # corner pixels are ~sqrt(2) * 8.3 deg / 2 off axis, centre pixels ~0.37 deg
    assert ang.max() == pytest.approx(np.degrees(np.arctan(np.hypot(*lay.pixel_angle[0]))),
                                      rel=1e-9)
    assert ang.min() < 0.4
    # adjacent pixels in a row (same tel) are one pixel angle apart
    sep = np.degrees(np.arccos(np.sum(d[0, 16 * 32 + 17] * d[0, 16 * 32 + 18])))
    assert sep == pytest.approx(np.degrees(lay.pixel_angular_size), rel=0.02)
    # the top row (row 0) looks higher (smaller zenith) than the bottom row
    assert d[0, :32, 2].mean() > d[0, -32:, 2].mean()


def test_camera_xy_custom_and_optics_tables():
    xy = camera_pixel_xy(pitch=1.0, gap=0.0)
    assert np.allclose(np.unique(np.round(xy[:, 0], 9)), np.arange(32) - 15.5)
    assert wfcta_optics_table("filter").shape[1] == 9
    assert wfcta_optics_table("mirror").shape[1] == 2
    with pytest.raises(ValueError):
        wfcta_optics_table("lens")
