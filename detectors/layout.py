"""Static detector layouts of LHAASO: KM2A (ED + MD), WCDA cells, WFCTA telescopes and cameras.

All positions are in the **array frame** (see ``detectors/shower.py``): origin at the KM2A centre,
x and y as in the G4KM2A simulation, z up, lengths in metres, heights relative to the KM2A
reference altitude 4400 m a.s.l. (``zeroZ`` of the KM2A layout files). Azimuths are counted from +x
towards +y. The layouts are loaded from the package data in ``detectors/data`` (provenance in
``detectors/data/README.md``).

KM2A frame mapping (verified against the true cores and arrival times of the G4KM2A sample, see
``tests/test_io.py``): ``x = column 3``, ``y = -column 2``, ``z = column 4 - zeroZ`` of the files.

Everything here is numpy: the layouts are static configuration, converted to jax arrays by the
detector modules that use them.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Sequence

import numpy as np

DATA_DIR = Path(__file__).resolve().parent / "data"

#: KM2A reference altitude [m a.s.l.] (``zeroZ`` of the layout files).
KM2A_ZERO_Z = 4400.0

_KM2A_FILES = {
    "full": ("ED_pos_all.txt", "MD_pos_all.txt"),
    "3/4": ("ED_pos_3978_Data.txt", "MD_pos_917.txt"),
}


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------
def _index_of(all_ids: np.ndarray, ids, what: str) -> np.ndarray:
    """Dense indices of channel ``ids`` in ``all_ids``; ValueError listing unknown ids."""
    ids = np.asarray(ids, dtype=np.int64)
    order = np.argsort(all_ids)
    sorted_ids = all_ids[order]
    pos = np.searchsorted(sorted_ids, ids)
    pos_c = np.clip(pos, 0, len(sorted_ids) - 1)
    ok = sorted_ids[pos_c] == ids if len(sorted_ids) else np.zeros(ids.shape, bool)
    if not np.all(ok):
        bad = np.unique(ids[~ok])
        shown = ", ".join(str(b) for b in bad[:20]) + (" ..." if len(bad) > 20 else "")
        raise ValueError(f"{len(bad)} unknown {what} id(s) not in the layout: {shown}")
    return order[pos_c]


def _read_km2a_file(name: str) -> tuple[np.ndarray, np.ndarray]:
    """Read a KM2A layout file -> (ids (n,), positions (n, 3) [m, array frame])."""
    path = DATA_DIR / name
    with open(path) as fh:
        header = fh.readline().split()
    if "zeroZ" not in header:
        raise ValueError(f"{path}: header has no 'zeroZ' field: {' '.join(header)}")
    zero_z = float(header[header.index("zeroZ") + 1])
    table = np.loadtxt(path, skiprows=1)
    ids = table[:, 0].astype(np.int64)
    pos = np.stack([table[:, 2], -table[:, 1], table[:, 3] - zero_z], axis=1)
    return ids, pos


# --------------------------------------------------------------------------------------------
# KM2A
# --------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True, eq=False)
class KM2ALayout:
    """KM2A electromagnetic (ED) and muon (MD) detectors.

    Attributes
    ----------
    ed_id : (n_ed,) int64 — channel ids as in the G4KM2A / data files.
    ed_pos : (n_ed, 3) float64 [m] — array frame, z relative to 4400 m a.s.l.
    md_id : (n_md,) int64
    md_pos : (n_md, 3) float64 [m]
    ed_area : float [m²] — 1 m² scintillator.
    md_area : float [m²] — 36 m² water-Cherenkov tank.
    name : str — the configuration ("full" or "3/4").
    """

    ed_id: np.ndarray
    ed_pos: np.ndarray
    md_id: np.ndarray
    md_pos: np.ndarray
    ed_area: float = 1.0
    md_area: float = 36.0
    name: str = "full"

    @property
    def n_ed(self) -> int:
        return int(self.ed_id.shape[0])

    @property
    def n_md(self) -> int:
        return int(self.md_id.shape[0])

    def ed_index_of(self, ids) -> np.ndarray:
        """Dense ED indices (same shape as ``ids``); ValueError listing unknown ids."""
        return _index_of(self.ed_id, ids, "KM2A ED")

    def md_index_of(self, ids) -> np.ndarray:
        """Dense MD indices; ValueError listing unknown ids."""
        return _index_of(self.md_id, ids, "KM2A MD")

    def index_of(self, ids, kind: str = "ed") -> np.ndarray:
        """Dense indices of channel ids of ``kind`` ("ed" or "md")."""
        if kind == "ed":
            return self.ed_index_of(ids)
        if kind == "md":
            return self.md_index_of(ids)
        raise ValueError(f"kind must be 'ed' or 'md', got {kind!r}")


def km2a_layout(config: str = "full") -> KM2ALayout:
    """Load the KM2A layout.

    Parameters
    ----------
    config : "full" (5216 ED + 1188 MD, from July 2021) or "3/4" (3978 ED + 917 MD, the
        2020–2021 data period).
    """
    if config not in _KM2A_FILES:
        raise ValueError(f"unknown KM2A config {config!r}; choose one of {sorted(_KM2A_FILES)}")
    ed_file, md_file = _KM2A_FILES[config]
    ed_id, ed_pos = _read_km2a_file(ed_file)
    md_id, md_pos = _read_km2a_file(md_file)
    return KM2ALayout(ed_id=ed_id, ed_pos=ed_pos, md_id=md_id, md_pos=md_pos, name=config)


# --------------------------------------------------------------------------------------------
# WCDA
# --------------------------------------------------------------------------------------------
#: PMT types per pond [M]: (large PMT, small PMT) diameters in inches (PHYSICS.md §3).
WCDA_PMT_TYPES = {
    1: {"large": "8-inch", "small": "1.5-inch", "large_inch": 8.0, "small_inch": 1.5},
    2: {"large": "20-inch MCP-PMT", "small": "3-inch", "large_inch": 20.0, "small_inch": 3.0},
    3: {"large": "20-inch MCP-PMT", "small": "3-inch", "large_inch": 20.0, "small_inch": 3.0},
}

#: Default placement of ponds 2 and 3 [M]: centre offsets in the pond-1 local frame [m] and the
#: number of cells along local (x, y). An ASSUMPTION (see wcda_layout).
WCDA_DEFAULT_POND_OFFSETS = {2: (0.0, 155.0), 3: (135.0, 77.5)}
WCDA_POND_SHAPES = {1: (30, 30), 2: (30, 30), 3: (22, 60)}


@dataclasses.dataclass(frozen=True, eq=False)
class WCDALayout:
    """WCDA cells (one 5 m × 5 m cell = one channel; the large PMT's position).

    Attributes
    ----------
    cell_id : (n_cell,) int64 — dense global cell id; pond 1 keeps the ids of the csv (0..899),
        pond 2 follows with 900.., pond 3 with 1800.. (when all ponds are present).
    cell_pos : (n_cell, 3) float64 [m] — PMT positions, array frame, z relative to 4400 m.
    pond : (n_cell,) int64 — pond number 1, 2 or 3.
    cell_size : float [m] — 5 m.
    rotation_deg : float — rotation of the pond-1 local frame (local +x axis at this angle from
        array +x, counted towards +y).
    pond1_centre : (2,) [m] — pond-1 centre in the array frame.
    pmt_types : dict pond -> PMT description [M].
    water_depth : float [m] — 4.3 m [U].
    """

    cell_id: np.ndarray
    cell_pos: np.ndarray
    pond: np.ndarray
    cell_size: float
    rotation_deg: float
    pond1_centre: tuple
    pmt_types: dict
    water_depth: float = 4.3

    @property
    def n_cells(self) -> int:
        return int(self.cell_id.shape[0])

    def index_of(self, ids) -> np.ndarray:
        """Dense cell indices of cell ids; ValueError listing unknown ids."""
        return _index_of(self.cell_id, ids, "WCDA cell")

    def to_local(self, xy) -> np.ndarray:
        """Array-frame (…, 2) [m] -> pond-1 local frame (…, 2) [m]."""
        a = np.radians(self.rotation_deg)
        d = np.asarray(xy, float) - np.asarray(self.pond1_centre)
        return np.stack([d[..., 0] * np.cos(a) + d[..., 1] * np.sin(a),
                         -d[..., 0] * np.sin(a) + d[..., 1] * np.cos(a)], axis=-1)


def _local_to_array(xy_local: np.ndarray, rotation_deg: float, centre) -> np.ndarray:
    a = np.radians(rotation_deg)
    x, y = xy_local[..., 0], xy_local[..., 1]
    return np.stack([centre[0] + x * np.cos(a) - y * np.sin(a),
                     centre[1] + x * np.sin(a) + y * np.cos(a)], axis=-1)


def _regular_pond(nx: int, ny: int, cell: float) -> np.ndarray:
    """Cell centres (nx*ny, 2) of a regular grid centred on 0, x fastest... row-major in x."""
    xs = (np.arange(nx) - (nx - 1) / 2) * cell
    ys = (np.arange(ny) - (ny - 1) / 2) * cell
    gx, gy = np.meshgrid(xs, ys, indexing="ij")
    return np.stack([gx.ravel(), gy.ravel()], axis=1)


#: Offset [m] from the frame of the unofficial LHAASO reconstruction code (WFCTAMap.cpp, WFCTA.txt)
#: to the G4KM2A array frame [D]. That code puts the WCDA-1 centre at (-47.5, -80) m; taken
#: literally in the G4KM2A frame, pond 1 would cover 31 EDs. Shifting by this offset puts pond 1
#: at (-2, -89) m, the position that maximises the clearance (2.7 m) between the three ponds and
#: every ED and MD of the real KM2A layout (grid search, ``docs/geometry.md``); the WFCTA
#: telescopes of the same code then stand 5 m outside the corner of pond 1, as in the real site.
LHAASO_CODE_FRAME_OFFSET = (45.5, -9.0)


def wcda_layout(pond1_rotation_deg: float = 29.36,
                pond1_centre: Sequence[float] = (-47.5 + LHAASO_CODE_FRAME_OFFSET[0],
                                                 -80.0 + LHAASO_CODE_FRAME_OFFSET[1]),
                ponds: Sequence[int] = (1, 2, 3),
                pond_offsets: dict | None = None,
                pond_floor_altitude: float = 4372.07,
                cell_size: float = 5.0) -> WCDALayout:
    """Build the WCDA cell layout.

    Pond 1 (WCDA-1) comes from the measured PMT positions (``wcda_pond1_igcell_pmt_positions.csv``,
    pond-1 local frame, ±72.4 m). Local -> array frame [U, ``LHAASORec_AllDetector`` WFCTAMap.cpp]::

        x = cx + x_l cos(a) - y_l sin(a),   y = cy + x_l sin(a) + y_l cos(a)

    i.e. the local +x axis points at azimuth ``a`` = +29.36° in the array frame (the inverse of that
    code's array -> WCDA-1 transform). This sign is the one for which the ED-free region of the
    KM2A layout is a rectangle aligned with the local axes (≈ 275 m × 311 m, matching 260 m ×
    300 m of water plus margins).

    Ponds 2 and 3 are a documented ASSUMPTION [M] (PHYSICS.md §3: as built 3 ponds, two of 150 m ×
    150 m with 30 × 30 cells and one of 300 m × 110 m with 60 × 22 cells): regular 5 m grids whose
    centres sit at ``pond_offsets[p]`` (x_l, y_l) in the pond-1 local frame. Defaults: pond 2 at
    (0, +155) (second square beside pond 1 along local y, 5 m wall), pond 3 at (+135, +77.5)
    (22 cells along local x, 60 along local y, beside both squares), so that the three ponds fill
    the 260 m × 300 m ED-free rectangle of the KM2A layout. Override with your own offsets.

    Parameters
    ----------
    pond1_rotation_deg : [deg] rotation of pond-1 local frame (29.36° [U]; 29.45° in another code).
    pond1_centre : (2,) [m] pond-1 centre in the array frame: (-2, -89) m by default, i.e. the
        [U] value (-47.5, -80) of WFCTAMap.cpp shifted by :data:`LHAASO_CODE_FRAME_OFFSET` [D].
    ponds : which ponds to include.
    pond_offsets : {pond: (x_l, y_l)} [m] centre offsets of ponds 2/3 in the pond-1 local frame.
    pond_floor_altitude : [m a.s.l.] altitude of the pond floor, the csv z origin [U].
    cell_size : [m] cell side.
    """
    offsets = dict(WCDA_DEFAULT_POND_OFFSETS)
    if pond_offsets:
        offsets.update(pond_offsets)
    ponds = tuple(sorted(set(int(p) for p in ponds)))
    if not set(ponds) <= {1, 2, 3}:
        raise ValueError(f"ponds must be a subset of (1, 2, 3), got {ponds}")
    z0 = pond_floor_altitude - KM2A_ZERO_Z
    centre = np.asarray(pond1_centre, float)
    ids, pos, pond = [], [], []
    for p in ponds:
        if p == 1:
            table = np.loadtxt(DATA_DIR / "wcda_pond1_igcell_pmt_positions.csv", delimiter=",",
                               skiprows=1)
            local = table[:, 1:3]
            z = table[:, 3] + z0
            cid = table[:, 0].astype(np.int64)
        else:
            nx, ny = WCDA_POND_SHAPES[p]
            local = _regular_pond(nx, ny, cell_size) + np.asarray(offsets[p], float)
            z = np.full(nx * ny, z0 + 0.5)
            cid = np.arange(nx * ny, dtype=np.int64) + (900 if p == 2 else 1800)
        xy = _local_to_array(local, pond1_rotation_deg, centre)
        ids.append(cid)
        pos.append(np.column_stack([xy, z]))
        pond.append(np.full(len(cid), p, np.int64))
    return WCDALayout(cell_id=np.concatenate(ids), cell_pos=np.concatenate(pos),
                      pond=np.concatenate(pond), cell_size=cell_size,
                      rotation_deg=float(pond1_rotation_deg), pond1_centre=tuple(centre),
                      pmt_types={p: WCDA_PMT_TYPES[p] for p in ponds},
                      water_depth=4.3)


def wcda_cell_efficiency() -> np.ndarray:
    """Relative efficiencies (900,) of the pond-1 cells, ordered by cell id 0..899 [dimensionless]."""
    table = np.loadtxt(DATA_DIR / "water_eff_0110.txt")
    eff = np.empty(900)
    eff[table[:, 0].astype(int)] = table[:, 1]
    return eff


# --------------------------------------------------------------------------------------------
# WFCTA
# --------------------------------------------------------------------------------------------
WFCTA_FOCAL_LENGTH = 2.870  # m [U]
WFCTA_N_PIX_SIDE = 32
WFCTA_PIXEL_PITCH = 25.8e-3  # m, Winston-cone exit [U]
WFCTA_GAP = 1.0e-3  # m after every 4 pixels [U]


@dataclasses.dataclass(frozen=True, eq=False)
class WFCTALayout:
    """WFCTA telescopes and their (identical) cameras.

    Attributes
    ----------
    tel_id : (n_tel,) int64
    tel_pos : (n_tel, 3) float64 [m] — array frame; z = ``tel_z`` (0 by default: the telescope
        height relative to 4400 m is not public; an assumption [M]).
    azimuth : (n_tel,) [rad] — optical-axis azimuth (``TelA``), ASSUMED counted like the array-frame
        azimuth (from +x towards +y), as the unofficial code uses it with cos/sin in x/y.
    zenith : (n_tel,) [rad] — optical-axis zenith angle (``TelZ``).
    focal_length : float [m] — 2.870 m.
    pixel_xy : (1024, 2) [m] — pixel centres in the focal plane; pixel k = row i·32 + column j,
        x grows with j (towards increasing azimuth), y decreases with i (row 0 at the top, i.e.
        highest elevation); a 1 mm gap after every 4 pixels in both directions.
    pixel_pitch : float [m] — 25.8 mm.
    """

    tel_id: np.ndarray
    tel_pos: np.ndarray
    azimuth: np.ndarray
    zenith: np.ndarray
    focal_length: float
    pixel_xy: np.ndarray
    pixel_pitch: float = WFCTA_PIXEL_PITCH

    @property
    def n_tel(self) -> int:
        return int(self.tel_id.shape[0])

    @property
    def n_pix(self) -> int:
        return int(self.pixel_xy.shape[0])

    @property
    def pixel_angle(self) -> np.ndarray:
        """(1024, 2) [rad] pixel centres as tangent-plane angles (x/f, y/f)."""
        return self.pixel_xy / self.focal_length

    @property
    def pixel_angular_size(self) -> float:
        """[rad] angular pitch of a pixel (25.8 mm / 2870 mm = 0.515°)."""
        return self.pixel_pitch / self.focal_length

    @property
    def field_of_view(self) -> float:
        """[rad] full side of the camera: (32·pitch + 7 gaps) / f ≈ 16.6°."""
        side = WFCTA_N_PIX_SIDE * self.pixel_pitch + (WFCTA_N_PIX_SIDE // 4 - 1) * WFCTA_GAP
        return side / self.focal_length

    def index_of(self, tel, pix) -> np.ndarray:
        """Dense channel index tel_index·1024 + pix for telescope ids and pixel numbers."""
        tel_idx = _index_of(self.tel_id, tel, "WFCTA telescope")
        pix = np.asarray(pix, np.int64)
        bad = (pix < 0) | (pix >= self.n_pix)
        if np.any(bad):
            raise ValueError(f"unknown WFCTA pixel number(s): {np.unique(pix[bad])[:20].tolist()}")
        return tel_idx * self.n_pix + pix


def camera_pixel_xy(pitch: float = WFCTA_PIXEL_PITCH, gap: float = WFCTA_GAP,
                    n_side: int = WFCTA_N_PIX_SIDE, group: int = 4) -> np.ndarray:
    """Pixel centres (n_side², 2) [m] of the WFCTA SiPM camera, centred on the optical axis.

    Pixel k = i·n_side + j (row i, column j): x = (j − 15.5)·pitch + gap·(j//4 − 3.5),
    y = −[(i − 15.5)·pitch + gap·(i//4 − 3.5)]. The unofficial code (``WFCTAMap.cpp``) also shifts
    odd rows by half a pitch "in simulation" and uses a slightly off-centre origin; neither is
    applied here (square SiPM grid).
    """
    k = np.arange(n_side * n_side)
    i, j = k // n_side, k % n_side
    half = (n_side - 1) / 2
    ghalf = (n_side // group - 1) / 2
    x = (j - half) * pitch + gap * (j // group - ghalf)
    y = -((i - half) * pitch + gap * (i // group - ghalf))
    return np.stack([x, y], axis=1)


def wfcta_layout(tel_ids: Sequence[int] | None = None, telescopes=None,
                 tel_z: float = 0.0, focal_length: float = WFCTA_FOCAL_LENGTH,
                 frame_offset: Sequence[float] = LHAASO_CODE_FRAME_OFFSET) -> WFCTALayout:
    """Load the WFCTA telescopes.

    Parameters
    ----------
    tel_ids : optional subset of the public telescope ids (1..6) of ``WFCTA.txt``.
    telescopes : optional user list of up to 18 telescopes, rows of
        (tel_id, x [m], y [m], azimuth [deg], zenith [deg]) in the array frame; replaces the file.
    tel_z : [m] telescope height relative to 4400 m (not public; 0 by default) [M].
    focal_length : [m] 2.870 m [U].
    frame_offset : (2,) [m] added to the positions read from ``WFCTA.txt`` (the unofficial code's
        frame -> G4KM2A array frame, :data:`LHAASO_CODE_FRAME_OFFSET` [D]); not applied to a
        user-supplied ``telescopes`` list, which must already be in the array frame.
    """
    if telescopes is not None:
        table = np.atleast_2d(np.asarray(telescopes, float))
        if table.shape[1] < 5:
            raise ValueError("telescopes rows must be (tel_id, x, y, azimuth_deg, zenith_deg)")
        if len(table) > 18:
            raise ValueError(f"at most 18 WFCTA telescopes, got {len(table)}")
    else:
        table = np.loadtxt(DATA_DIR / "WFCTA.txt", skiprows=1, comments="#")
        table[:, 1:3] += np.asarray(frame_offset, float)
    tid = table[:, 0].astype(np.int64)
    if tel_ids is not None:
        keep = _index_of(tid, tel_ids, "WFCTA telescope")
        table, tid = table[keep], tid[keep]
    pos = np.column_stack([table[:, 1], table[:, 2], np.full(len(table), tel_z)])
    return WFCTALayout(tel_id=tid, tel_pos=pos, azimuth=np.radians(table[:, 3]),
                       zenith=np.radians(table[:, 4]), focal_length=float(focal_length),
                       pixel_xy=camera_pixel_xy())


def pixel_directions(layout: WFCTALayout) -> np.ndarray:
    """Unit vectors (n_tel, 1024, 3) of the sky direction seen by each pixel centre (array frame).

    Gnomonic (tangent-plane) inverse projection around the optical axis, as ``slaDtp2s`` in the
    unofficial code: ξ = x/f towards increasing azimuth, η = y/f towards increasing elevation.
    The axis a = (sin z cos A, sin z sin A, cos z); the direction is normalise(a + ξ e_A + η e_h)
    with e_A = (−sin A, cos A, 0) and e_h = (−cos z cos A, −cos z sin A, sin z).
    """
    az = layout.azimuth[:, None]
    ze = layout.zenith[:, None]
    xi = layout.pixel_angle[None, :, 0]
    eta = layout.pixel_angle[None, :, 1]
    axis = np.stack([np.sin(ze) * np.cos(az), np.sin(ze) * np.sin(az), np.cos(ze)], -1)
    e_az = np.stack([-np.sin(az), np.cos(az), np.zeros_like(az)], -1)
    e_el = np.stack([-np.cos(ze) * np.cos(az), -np.cos(ze) * np.sin(az), np.sin(ze)], -1)
    v = axis + xi[..., None] * e_az + eta[..., None] * e_el
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def wfcta_optics_table(name: str) -> np.ndarray:
    """Raw optics table: "filter" (wavelength nm, transmission at 0..35°), "mirror" (nm,
    reflectivity) or "qe" (nm, correction; meaning unconfirmed)."""
    files = {"filter": "filter_transparency_quartz.txt",
             "mirror": "mirror_reflection_efficiency.txt", "qe": "QE_correction.txt"}
    if name not in files:
        raise ValueError(f"unknown optics table {name!r}; choose one of {sorted(files)}")
    return np.loadtxt(DATA_DIR / files[name])
