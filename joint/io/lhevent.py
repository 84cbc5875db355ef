"""Reader for G4KM2A ``LHEvent`` files (LHAASO's Geant4 KM2A simulation).

The file has a tree ``event`` with one split branch ``Event`` (class LHEvent). Used members:
``ev_n``, ``mjd``, truth ``E`` [GeV], ``Id`` (CORSIKA particle id), ``Theta``, ``Phi`` [rad],
``Corex``, ``Corey`` [m], and the hit collections ``HitsE`` (ED), ``HitsM`` (MD), ``HitsW``
(WCDA) with members ``id``, ``time`` [ns], ``pe`` [PE], ``np`` (true particles; −1 on noise
pulses; read only for ``hit_labels``).

Mapping into the project's conventions (records of ``joint.io.schema``):

- ``true_log10_energy = log10(E / GeV)``; ``true_zenith = Theta``;
- ``true_azimuth = (Phi + π) mod 2π``: CORSIKA's Phi is the direction the shower TRAVELS, ours is
  where it comes from, counted from +x towards +y in the array frame. Verified on
  ``KM2AMCTest.root`` (``tests/test_io.py``): a plane fit to the ED hit times of the largest
  events, with ED positions x = column 3, y = −column 2 of ED_pos_all.txt, gives directions within
  a few degrees of (Theta, Phi + π); Phi itself is 180° off. So G4KM2A's x/y are the array frame.
- ``azimuth_offset_deg`` (default 0) is added to that azimuth. On ``KM2AMCTest.root`` the
  reconstructed directions of the converged events sit +1.4° in azimuth from Phi + π, i.e. at
  exactly 180° + 180°: the sample looks generated at a round geographic azimuth with Phi written
  in CORSIKA's magnetic frame: 178.571° = 180° − 1.429°, IGRF-13's declination at the site on
  2019-12-31 (PHYSICS.md's −1.17° is IGRF's 2015 value; docs/g4km2a.md). Pass
  ``azimuth_offset_deg=1.429`` for that convention; not applied by default (traced by the
  number, not by G4KM2A's code); ``benchmarks/g4km2a_table.py`` reports both (BENCHMARKS.md).
  The sample simulates the 3/4 array (every hit ED is in ED_pos_3978_Data.txt): read it with
  ``km2a_layout("3/4")``;
- ``true_core_x = Corex``, ``true_core_y = Corey`` (the charge centroid of the largest ED signals
  lies within a few metres of it in the same frame);
- ``true_mass_number`` from Id: 1 (gamma) -> 0, 14 (proton) -> 1, CORSIKA nuclei A·100 + Z -> A
  (402 -> 4, 1206 -> 12, 1407 -> 14, 5626 -> 56);
- ``true_xmax``, ``true_log_muon_scale``, ``true_t0`` are not in the file: NaN;
- ``run`` is not in the file: 0 (or the ``run`` argument); ``event_id = ev_n``;
  ``time_mjd = mjd`` (−1 in simulation);
- WCDA hits (``HitsW``) become the ``wcda_*`` group only when the file has at least one;
- ``hit_labels=True`` adds the truth of every pulse: ``km2a_ed_signal`` and ``km2a_md_signal``,
  int8 jagged arrays aligned with ``km2a_ed_id`` / ``km2a_md_id`` (one entry per pulse, like the
  other hit fields): 1 for a shower pulse (``np`` ≥ 0: the ED's true particle count, ≥ 1 on every
  shower pulse of KM2AMCTest.root), 0 for a noise pulse (``np`` = −1). ``np`` is per ED (the same
  on all its pulses; docs/g4km2a.md §3). The reader keeps every pulse; ``to_event_batch`` keeps
  the largest-charge pulse per channel, and ``analysis.noise.dense_labels`` gives the label of
  that kept pulse. The same two names as ``joint.simulation.simulate_records(hit_labels=True)``.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from joint.io.errors import EventFileError, open_tree, read_arrays, reading
from joint.io.schema import check_ids, validate_records

TREE = "event"
_SCALARS = ("ev_n", "mjd", "E", "Id", "Theta", "Phi", "Corex", "Corey")
_HITS = {"HitsE": "km2a_ed", "HitsM": "km2a_md", "HitsW": "wcda"}
_HIT_FIELDS = {"id": "id", "time": "time", "pe": "pe"}
#: per-pulse truth labels of ``hit_labels=True``: LHEvent collection -> record field
_LABELS = {"HitsE": "km2a_ed_signal", "HitsM": "km2a_md_signal"}


def mass_number_from_corsika_id(pid) -> np.ndarray:
    """CORSIKA particle id -> mass number A (0 for gammas, 1 for protons, A for A·100+Z nuclei).

    Unknown ids (other than 1, 13 (neutron -> 1), 14, and ≥ 100) give NaN.
    """
    pid = np.asarray(pid, np.int64)
    out = np.full(pid.shape, np.nan)
    out[pid == 1] = 0.0
    out[(pid == 14) | (pid == 13)] = 1.0
    nuc = pid >= 100
    out[nuc] = pid[nuc] // 100
    return out


def read_lhevent(path, km2a=None, wcda=None, run: int = 0, azimuth_offset_deg: float = 0.0,
                 hit_labels: bool = False) -> dict:
    """Read a G4KM2A LHEvent file into the records dict of ``joint.io.schema``.

    ``hit_labels``: also return ``km2a_ed_signal`` / ``km2a_md_signal`` (int8, jagged like
    ``km2a_ed_id`` / ``km2a_md_id``: 1 shower pulse, 0 noise pulse, from ``np``; module doc).

    Raises EventFileError (naming the file and the field) for a missing, truncated or corrupt
    file (one line), a missing tree or member, an empty tree, NaN hit times, mismatched hit
    arrays, negative ids, and (when layouts are given) ids outside them.
    """
    import awkward as ak

    path = Path(path)
    fin, tree = open_tree(path, TREE)
    with fin:
        leaf = {}
        with reading(path):
            for k in tree.keys(recursive=True):
                leaf.setdefault(k.split("/")[-1], k)
        wanted = list(_SCALARS) + [f"{h}.{f}" for h in _HITS for f in _HIT_FIELDS]
        if hit_labels:
            wanted += [f"{h}.np" for h in _LABELS]
        for name in wanted:
            if name not in leaf:
                raise EventFileError(path, f"Event/{name}", "is missing")
        arrays = read_arrays(path, tree, [leaf[w] for w in wanted])
    get = {w: arrays[leaf[w]] if leaf[w] in arrays.fields else arrays[w] for w in wanted}

    records = {
        "run": np.full(len(arrays), run, np.int32),
        "event_id": ak.to_numpy(get["ev_n"]).astype(np.int64),
        "time_mjd": ak.to_numpy(get["mjd"]).astype(np.float64),
        "true_core_x": ak.to_numpy(get["Corex"]).astype(np.float64),
        "true_core_y": ak.to_numpy(get["Corey"]).astype(np.float64),
        "true_zenith": ak.to_numpy(get["Theta"]).astype(np.float64),
        "true_azimuth": np.mod(ak.to_numpy(get["Phi"]).astype(np.float64) + np.pi
                               + np.radians(azimuth_offset_deg), 2 * np.pi),
        "true_log10_energy": np.log10(ak.to_numpy(get["E"]).astype(np.float64)),
        "true_xmax": np.full(len(arrays), np.nan),
        "true_log_muon_scale": np.full(len(arrays), np.nan),
        "true_t0": np.full(len(arrays), np.nan),
        "true_mass_number": mass_number_from_corsika_id(ak.to_numpy(get["Id"])),
    }
    for hits, group in _HITS.items():
        if group == "wcda" and ak.sum(ak.num(get[f"{hits}.id"], axis=1)) == 0:
            continue
        for f, ours in _HIT_FIELDS.items():
            arr = get[f"{hits}.{f}"]
            dt = {"id": np.int32, "time": np.float64, "pe": np.float32}[ours]
            records[f"{group}_{ours}"] = ak.values_astype(arr, dt)
    if hit_labels:
        for hits, name in _LABELS.items():
            records[name] = ak.values_astype(get[f"{hits}.np"] >= 0, np.int8)
    # validation names the LHEvent member, not our branch name
    try:
        validate_records(records, source=path)
    except EventFileError as err:
        raise EventFileError(path, lhevent_name(err.field), err.problem) from None
    try:
        check_ids(records, path, km2a=km2a, wcda=wcda)
    except EventFileError as err:
        raise EventFileError(path, lhevent_name(err.field), err.problem) from None
    return records


def lhevent_name(field: str) -> str:
    for hits, group in _HITS.items():
        for f, ours in _HIT_FIELDS.items():
            if field == f"{group}_{ours}":
                return f"{hits}.{f}"
    return field
