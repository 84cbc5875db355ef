"""The project's own ROOT event schema (uproot), and conversion of records to dense Events.

File layout: one TTree ``events``, one entry per event.

=====================  ==========  =====================================================
branch                 type        meaning
=====================  ==========  =====================================================
run                    int32       run number
event_id               int64       event number
time_mjd               float64     event time [MJD] (−1 when unknown, e.g. G4KM2A MC)
true_core_x, _y        float64     [m, array frame]            (simulation only)
true_zenith            float64     [rad] arrival direction      (simulation only)
true_azimuth           float64     [rad] from +x towards +y, where the shower comes from
true_log10_energy      float64     log10(E / GeV)
true_xmax              float64     [g/cm²] (NaN when unknown)
true_log_muon_scale    float64     ln(Nmu / Nmu,proton) (NaN when unknown)
true_t0                float64     [ns] core time (NaN when unknown)
true_mass_number       float64     A of the primary; 0 for gammas
km2a_ed_id/time/pe     jagged      int32 / float64 [ns] / float32 [PE], counter nkm2a_ed
km2a_md_id/time/pe     jagged      same, counter nkm2a_md
wcda_id/time/pe        jagged      same, counter nwcda
wfcta_tel/pix/pe       jagged      int16 / int16 / float32 [PE], counter nwfcta
wfcta_time             jagged      float64 [ns], optional
present_km2a/_wcda/    int8        optional: 0 when that detector did not take part in the
  _wfcta                           event (no trigger, not running); its channels are then
                                   invalid for the event (the likelihood has no term for it)
=====================  ==========  =====================================================

A detector group is present in a file when its branches are; an absent group means the detector
did not take part (its Event block is None). Truth branches are all present (simulation) or all
absent (data).

Records: the in-memory form returned by the readers (this module and ``joint.io.lhevent``) is a
dict ``{branch name: array}``; scalar branches are numpy arrays (n_events,), hit branches are
awkward arrays (n_events, var).
"""
from __future__ import annotations

from pathlib import Path
from typing import Mapping

import numpy as np

from joint.event import Event, build_block, stack_events
from joint.io.errors import EventFileError, open_tree

TREE = "events"
SCALARS = {"run": np.int32, "event_id": np.int64, "time_mjd": np.float64}
TRUTH = ("true_core_x", "true_core_y", "true_zenith", "true_azimuth", "true_log10_energy",
         "true_xmax", "true_log_muon_scale", "true_t0", "true_mass_number")
#: hit groups: group -> {field: dtype}; the branch is f"{group}_{field}"
GROUPS = {
    "km2a_ed": {"id": np.int32, "time": np.float64, "pe": np.float32},
    "km2a_md": {"id": np.int32, "time": np.float64, "pe": np.float32},
    "wcda": {"id": np.int32, "time": np.float64, "pe": np.float32},
    "wfcta": {"tel": np.int16, "pix": np.int16, "pe": np.float32},
}
OPTIONAL_FIELDS = {"wfcta": {"time": np.float64}}
#: optional per-event presence flags: branch -> the hit groups it masks
PRESENCE = {"present_km2a": ("km2a_ed", "km2a_md"), "present_wcda": ("wcda",),
            "present_wfcta": ("wfcta",)}


def _ak():
    import awkward as ak
    return ak


def groups_present(records: Mapping) -> list[str]:
    """Hit groups with at least one branch in ``records``."""
    return [g for g in GROUPS if any(f"{g}_{f}" in records for f in GROUPS[g])]


def _check_group(records: Mapping, group: str, source, n: int) -> None:
    """All fields of a present group exist, have n entries and equal jagged lengths; no NaN."""
    ak = _ak()
    fields = list(GROUPS[group]) + [f for f in OPTIONAL_FIELDS.get(group, {})
                                    if f"{group}_{f}" in records]
    ref_name, ref_counts = None, None
    for f in fields:
        name = f"{group}_{f}"
        if name not in records:
            raise EventFileError(source, name, "is missing (the other branches of "
                                 f"group '{group}' are present)")
        arr = ak.Array(records[name]) if not isinstance(records[name], ak.Array) else records[name]
        if arr.ndim != 2:
            raise EventFileError(source, name, f"must be jagged (n_events, var), got {arr.type}")
        if len(arr) != n:
            raise EventFileError(source, name, f"has {len(arr)} entries, expected {n}")
        counts = ak.to_numpy(ak.num(arr, axis=1))
        if ref_counts is None:
            ref_name, ref_counts = name, counts
        elif not np.array_equal(counts, ref_counts):
            bad = int(np.flatnonzero(counts != ref_counts)[0])
            raise EventFileError(source, name, f"has {counts[bad]} hits in entry {bad} but "
                                 f"'{ref_name}' has {ref_counts[bad]}")
        if f in ("time", "pe"):
            flat = ak.to_numpy(ak.flatten(arr)).astype(np.float64)
            finite = np.isfinite(flat)
            if not finite.all():
                hit = int(np.flatnonzero(~finite)[0])
                entry = int(np.searchsorted(np.cumsum(counts), hit, side="right"))
                what = "NaN" if np.isnan(flat[hit]) else "a non-finite value"
                raise EventFileError(source, name, f"has {what} in entry {entry}")


def validate_records(records: Mapping, source="<records>") -> int:
    """Check a records dict against the schema; return the number of events.

    Raises EventFileError (naming ``source`` and the field) for a missing scalar branch,
    inconsistent lengths, partial truth, mismatched jagged lengths or non-finite hit times/charges.
    """
    for name in SCALARS:
        if name not in records:
            raise EventFileError(source, name, "is missing")
    n = len(records["run"])
    for name in SCALARS:
        if len(records[name]) != n:
            raise EventFileError(source, name, f"has {len(records[name])} entries, expected {n}")
    have_truth = [t for t in TRUTH if t in records]
    if have_truth and len(have_truth) != len(TRUTH):
        missing = [t for t in TRUTH if t not in records][0]
        raise EventFileError(source, missing, "is missing (other true_* branches are present)")
    for t in have_truth:
        if len(records[t]) != n:
            raise EventFileError(source, t, f"has {len(records[t])} entries, expected {n}")
    for p in PRESENCE:
        if p in records and len(records[p]) != n:
            raise EventFileError(source, p, f"has {len(records[p])} entries, expected {n}")
    for g in groups_present(records):
        _check_group(records, g, source, n)
    return n


def check_ids(records: Mapping, source="<records>", km2a=None, wcda=None, wfcta=None) -> None:
    """Raise EventFileError if a hit id is not a channel of the given layouts."""
    ak = _ak()
    checks = []
    if km2a is not None:
        checks += [("km2a_ed_id", km2a.ed_index_of), ("km2a_md_id", km2a.md_index_of)]
    if wcda is not None:
        checks += [("wcda_id", wcda.index_of)]
    for name, fn in checks:
        if name not in records:
            continue
        arr = records[name]
        flat = ak.to_numpy(ak.flatten(arr)).astype(np.int64)
        try:
            fn(flat)
        except ValueError as err:
            counts = ak.to_numpy(ak.num(arr, axis=1))
            bad = _first_bad(flat, fn)
            entry = int(np.searchsorted(np.cumsum(counts), bad, side="right"))
            raise EventFileError(source, name, f"has an id outside the layout in entry {entry} "
                                 f"({err})") from None
    if wfcta is not None and "wfcta_tel" in records:
        tel = ak.to_numpy(ak.flatten(records["wfcta_tel"])).astype(np.int64)
        pix = ak.to_numpy(ak.flatten(records["wfcta_pix"])).astype(np.int64)
        try:
            wfcta.index_of(tel, pix)
        except ValueError as err:
            which = "wfcta_tel" if not np.isin(tel, wfcta.tel_id).all() else "wfcta_pix"
            raise EventFileError(source, which, f"has an id outside the layout ({err})") from None


def _first_bad(flat, fn) -> int:
    for i, v in enumerate(flat):
        try:
            fn(np.array([v]))
        except ValueError:
            return i
    return 0


# --------------------------------------------------------------------------------------------
# write / read
# --------------------------------------------------------------------------------------------
def write_events(path, records: Mapping) -> None:
    """Write records to ``path`` as the ``events`` TTree (overwrites the file).

    Scalars are cast to the schema dtypes; each hit group is written as one awkward record array
    so its branches share one counter (``n<group>``). Validated first (EventFileError naming
    ``path`` and the field, e.g. mismatched jagged id/time/pe lengths).
    """
    import uproot
    ak = _ak()
    path = Path(path)
    n = validate_records(records, source=path)
    data = {}
    for name, dt in SCALARS.items():
        data[name] = np.asarray(records[name]).astype(dt)
    for t in TRUTH:
        if t in records:
            data[t] = np.asarray(records[t], dtype=np.float64)
    for p in PRESENCE:
        if p in records:
            data[p] = np.asarray(records[p]).astype(np.int8)
    for g in groups_present(records):
        fields = dict(GROUPS[g])
        fields.update({f: dt for f, dt in OPTIONAL_FIELDS.get(g, {}).items()
                       if f"{g}_{f}" in records})
        data[g] = ak.zip({f: ak.values_astype(ak.Array(records[f"{g}_{f}"]), dt)
                          for f, dt in fields.items()})
    types = {k: (v.type.content if isinstance(v, ak.Array) else v.dtype) for k, v in data.items()}
    with uproot.recreate(path) as fout:
        tree = fout.mktree(TREE, types)
        if n:
            tree.extend(data)


def read_events(path, km2a=None, wcda=None, wfcta=None, entry_start=None, entry_stop=None) -> dict:
    """Read a file of the own schema into a records dict (see module docstring).

    ``entry_start``/``entry_stop`` read a slice of events (streaming large files in chunks).

    Validation (EventFileError naming the file and the field): missing tree, missing scalar
    branch, a hit group with a missing branch, 0 entries, mismatched jagged lengths, NaN hit
    times or charges, and (when layouts are given) hit ids outside the layouts.
    """
    ak = _ak()
    path = Path(path)
    fin, tree = open_tree(path, TREE)
    with fin:
        keys = set(tree.keys())
        for name in SCALARS:
            if name not in keys:
                raise EventFileError(path, name, "is missing")
        wanted = [k for k in keys if k in SCALARS or k in TRUTH or k in PRESENCE
                  or any(k.startswith(g + "_") for g in GROUPS)]
        arrays = tree.arrays(wanted, library="ak", entry_start=entry_start, entry_stop=entry_stop)
    records = {}
    for k in wanted:
        if k in SCALARS or k in TRUTH or k in PRESENCE:
            records[k] = ak.to_numpy(arrays[k])
        else:
            records[k] = arrays[k]
    validate_records(records, source=path)
    check_ids(records, path, km2a=km2a, wcda=wcda, wfcta=wfcta)
    return records


# --------------------------------------------------------------------------------------------
# records -> dense Events
# --------------------------------------------------------------------------------------------
def to_events(records: Mapping, km2a=None, wcda=None, wfcta=None, source="<records>",
              valid: Mapping | None = None) -> list[Event]:
    """Dense per-event Events from records; a detector block is built only when its layout is
    given AND its group is in the records (otherwise None).

    ``valid`` optionally maps a block name ("km2a_ed", "km2a_md", "wcda", "wfcta") to a
    (n_channels,) bool mask of live channels. Unknown ids raise EventFileError naming ``source``.
    """
    ak = _ak()
    n = validate_records(records, source)
    check_ids(records, source, km2a=km2a, wcda=wcda, wfcta=wfcta)
    valid = dict(valid or {})
    present = set(groups_present(records))
    specs = _specs(km2a, wcda, wfcta)
    lists = {}
    for g, (n_ch, fn, key) in specs.items():
        if g not in present:
            continue
        counts = ak.to_numpy(ak.num(records[f"{g}_{key}"], axis=1))
        split = np.cumsum(counts)[:-1]
        pe = np.split(ak.to_numpy(ak.flatten(records[f"{g}_pe"])).astype(np.float64), split)
        if f"{g}_time" in records:
            tm = np.split(ak.to_numpy(ak.flatten(records[f"{g}_time"])).astype(np.float64), split)
        else:
            tm = [np.zeros(c) for c in counts]
        if g == "wfcta":
            tel = ak.to_numpy(ak.flatten(records["wfcta_tel"])).astype(np.int64)
            pix = ak.to_numpy(ak.flatten(records["wfcta_pix"])).astype(np.int64)
            idx = np.split(wfcta.index_of(tel, pix), split)
        else:
            idx = np.split(fn(ak.to_numpy(ak.flatten(records[f"{g}_{key}"])).astype(np.int64)),
                           split)
        lists[g] = [_mask_absent(build_block(idx[i], tm[i], pe[i], n_ch, None, valid.get(g)),
                                 records, g, i) for i in range(n)]
    have_truth = all(t in records for t in TRUTH)
    events = []
    for i in range(n):
        truth = ({t: np.float64(records[t][i]) for t in TRUTH} if have_truth else None)
        events.append(Event(
            km2a_ed=lists.get("km2a_ed", [None] * n)[i], km2a_md=lists.get("km2a_md", [None] * n)[i],
            wcda=lists.get("wcda", [None] * n)[i], wfcta=lists.get("wfcta", [None] * n)[i],
            run=np.int32(records["run"][i]), event_id=np.int64(records["event_id"][i]),
            time_mjd=np.float64(records["time_mjd"][i]), truth=truth))
    return events


def to_event_batch(records: Mapping, km2a=None, wcda=None, wfcta=None, source="<records>",
                   valid: Mapping | None = None, as_jax: bool = True) -> Event:
    """Batched dense Event (leading axis n_events) from records, vectorised over the events (no
    Python loop per event); the same blocks as ``stack_events(to_events(...))``."""
    import jax.numpy as jnp

    from joint.event import ChannelBlock, build_batch_block

    ak = _ak()
    n = validate_records(records, source)
    check_ids(records, source, km2a=km2a, wcda=wcda, wfcta=wfcta)
    valid = dict(valid or {})
    present = set(groups_present(records))
    blocks = {}
    for g, (n_ch, fn, key) in _specs(km2a, wcda, wfcta).items():
        if g not in present:
            continue
        counts = ak.to_numpy(ak.num(records[f"{g}_{key}"], axis=1))
        rows = np.repeat(np.arange(n), counts)
        pe = ak.to_numpy(ak.flatten(records[f"{g}_pe"])).astype(np.float64)
        tm = (ak.to_numpy(ak.flatten(records[f"{g}_time"])).astype(np.float64)
              if f"{g}_time" in records else np.zeros(pe.size))
        if g == "wfcta":
            idx = wfcta.index_of(ak.to_numpy(ak.flatten(records["wfcta_tel"])).astype(np.int64),
                                 ak.to_numpy(ak.flatten(records["wfcta_pix"])).astype(np.int64))
        else:
            idx = fn(ak.to_numpy(ak.flatten(records[f"{g}_{key}"])).astype(np.int64))
        blocks[g] = build_batch_block(rows, idx, tm, pe, n, n_ch, valid.get(g))
        blocks[g] = _mask_absent(blocks[g], records, g)
    conv = (lambda x: jnp.asarray(x)) if as_jax else (lambda x: x)
    have_truth = all(t in records for t in TRUTH)
    return Event(
        **{g: (ChannelBlock(*[conv(x) for x in blocks[g]]) if g in blocks else None)
           for g in ("km2a_ed", "km2a_md", "wcda", "wfcta")},
        run=conv(np.asarray(records["run"], np.int32)),
        event_id=conv(np.asarray(records["event_id"], np.int64)),
        time_mjd=conv(np.asarray(records["time_mjd"], np.float64)),
        truth=({t: conv(np.asarray(records[t], np.float64)) for t in TRUTH} if have_truth else None))


def _mask_absent(block, records: Mapping, group: str, entry=None):
    """Invalidate the channels of ``block`` in events whose presence flag for ``group``'s
    detector is 0 (all events of a batch block, or event ``entry`` of a single block)."""
    for flag, groups in PRESENCE.items():
        if group in groups and flag in records:
            present = np.asarray(records[flag]).astype(bool)
            present = present[:, None] if entry is None else present[entry]
            valid = np.asarray(block.valid) & present
            return block._replace(valid=valid, hit=np.asarray(block.hit) & valid)
    return block


def _specs(km2a, wcda, wfcta) -> dict:
    specs = {}
    if km2a is not None:
        specs["km2a_ed"] = (km2a.n_ed, km2a.ed_index_of, "id")
        specs["km2a_md"] = (km2a.n_md, km2a.md_index_of, "id")
    if wcda is not None:
        specs["wcda"] = (wcda.n_cells, wcda.index_of, "id")
    if wfcta is not None:
        specs["wfcta"] = (wfcta.n_tel * wfcta.n_pix, None, "tel")
    return specs
