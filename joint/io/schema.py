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

import os
from pathlib import Path
from typing import Mapping

import numpy as np

from detectors import registry
from detectors.block import ChannelBlock
from joint.event import Event, build_batch_block
from joint.io.errors import EventFileError, open_tree, read_arrays, reading

TREE = "events"
SCALARS = {"run": np.int32, "event_id": np.int64, "time_mjd": np.float64}
TRUTH = ("true_core_x", "true_core_y", "true_zenith", "true_azimuth", "true_log10_energy",
         "true_xmax", "true_log_muon_scale", "true_t0", "true_mass_number")


def groups() -> dict:
    """Hit groups of the registered detectors: {block name: {field: dtype}} (the branch is
    f"{group}_{field}"; ``detectors.registry``)."""
    return {b.name: dict(b.fields) for s in registry.specs() for b in s.blocks}


def optional_fields() -> dict:
    return {b.name: dict(b.optional) for s in registry.specs() for b in s.blocks if b.optional}


def presence() -> dict:
    """Optional per-event presence flags: branch -> the hit groups it masks."""
    return {s.presence: s.block_names for s in registry.specs()}


def _ak():
    import awkward as ak
    return ak


def groups_present(records: Mapping) -> list[str]:
    """Hit groups with at least one branch in ``records``."""
    return [g for g, fs in groups().items() if any(f"{g}_{f}" in records for f in fs)]


def _entry_of_hit(counts: np.ndarray, hit: int, entry_offset: int = 0) -> int:
    """Entry (counted in the file: ``entry_offset`` + index in the records) of flat hit ``hit``."""
    return int(np.searchsorted(np.cumsum(counts), hit, side="right")) + int(entry_offset)


def _id_problem(flat: np.ndarray, dtype, arr_type) -> tuple | None:
    """(index of the first bad hit, what is wrong with it) for a flat array of hit ids, or None.

    Ids are channel numbers: integers (a float branch must hold integral values), not negative,
    and within the range of the schema's integer dtype (``write_events`` casts to it)."""
    if flat.dtype.kind not in "iuf":
        return 0, f"must hold integer ids, got {arr_type}"
    if not flat.size:
        return None
    if flat.dtype.kind == "f":
        finite = np.isfinite(flat)
        if not finite.all():
            i = int(np.flatnonzero(~finite)[0])
            return i, f"has a non-finite id {float(flat[i])!r}"
        frac = flat != np.floor(flat)
        if frac.any():
            i = int(np.flatnonzero(frac)[0])
            return i, f"has a fractional id {float(flat[i])!r}"
    neg = flat < 0
    if neg.any():
        i = int(np.flatnonzero(neg)[0])
        return i, f"has a negative id {_num(flat[i])}"
    top = np.iinfo(dtype).max
    big = flat > top
    if big.any():
        i = int(np.flatnonzero(big)[0])
        return i, f"has id {_num(flat[i])}, beyond the {np.dtype(dtype).name} range of the schema"
    return None


def _num(x) -> str:
    x = float(x)
    return str(int(x)) if x.is_integer() else repr(x)


def _check_group(records: Mapping, group: str, source, n: int, entry_offset: int = 0) -> None:
    """All fields of a present group exist, have n entries and equal jagged lengths; no NaN
    time/charge; ids integral, not negative, within the schema dtype. Entries in messages are
    counted in the file (``entry_offset`` = the file entry of the first record)."""
    ak = _ak()
    dtypes = dict(groups()[group])
    dtypes.update(optional_fields().get(group, {}))
    fields = list(groups()[group]) + [f for f in optional_fields().get(group, {})
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
            raise EventFileError(source, name, f"has {counts[bad]} hits in entry "
                                 f"{bad + entry_offset} but '{ref_name}' has {ref_counts[bad]}")
        try:
            flat = ak.to_numpy(ak.flatten(arr))
        except ValueError:  # strings, records: no flat numpy array
            raise EventFileError(source, name, f"must hold numbers, got {arr.type}") from None
        if f in ("time", "pe"):
            if flat.dtype.kind not in "iuf":
                raise EventFileError(source, name, f"must hold numbers, got {arr.type}")
            finite = np.isfinite(flat)
            if not finite.all():
                hit = int(np.flatnonzero(~finite)[0])
                entry = _entry_of_hit(counts, hit, entry_offset)
                what = "NaN" if np.isnan(flat[hit]) else "a non-finite value"
                raise EventFileError(source, name, f"has {what} in entry {entry}")
        else:
            bad = _id_problem(flat, dtypes[f], arr.type)
            if bad is not None:
                hit, what = bad
                where = f" in entry {_entry_of_hit(counts, hit, entry_offset)}" if flat.size else ""
                raise EventFileError(source, name, what + where)


def validate_records(records: Mapping, source="<records>", entry_offset: int = 0) -> int:
    """Check a records dict against the schema; return the number of events.

    Raises EventFileError (naming ``source`` and the field) for a missing scalar branch,
    inconsistent lengths, partial truth, mismatched jagged lengths, non-finite hit times/charges,
    and hit ids (every hit field but time/pe) that are fractional, non-finite, negative or beyond
    the schema's integer dtype. Entries in the messages are counted in the file: record ``i`` is
    entry ``entry_offset + i`` (a slice read from ``entry_start`` passes that).
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
    for p in presence():
        if p in records and len(records[p]) != n:
            raise EventFileError(source, p, f"has {len(records[p])} entries, expected {n}")
    for g in groups_present(records):
        _check_group(records, g, source, n, entry_offset)
    return n


def check_ids(records: Mapping, source="<records>", layouts: Mapping | None = None,
              entry_offset: int = 0, **named_layouts) -> None:
    """Raise EventFileError if a hit id is not a channel of the given layouts
    ({detector: layout}, or as keywords ``km2a=..., wcda=...``), naming the entry counted in the
    file (``entry_offset`` + the index in the records)."""
    ak = _ak()
    layouts = _layouts(layouts, named_layouts)
    for spec in registry.specs(layouts):
        lay = layouts[spec.name]
        for b in spec.blocks:
            if f"{b.name}_{b.key}" not in records:
                continue
            ids = {f: ak.to_numpy(ak.flatten(records[f"{b.name}_{f}"])).astype(np.int64)
                   for f in b.fields if f not in ("time", "pe")}
            try:
                b.index(lay, ids)
            except ValueError as err:
                counts = ak.to_numpy(ak.num(records[f"{b.name}_{b.key}"], axis=1))
                bad, which = _first_bad(ids, lambda h: b.index(lay, h))
                entry = _entry_of_hit(counts, bad, entry_offset)
                raise EventFileError(source, f"{b.name}_{which}", "has an id outside the layout "
                                     f"in entry {entry} ({err})") from None


def _layouts(layouts, named) -> dict:
    out = {k: v for k, v in dict(layouts or {}).items() if v is not None}
    out.update({k: v for k, v in named.items() if v is not None})
    for k in out:
        registry.get(k)
    return out


def _first_bad(ids: dict, fn) -> tuple:
    """(index of the first hit whose ids ``fn`` rejects, the id field that is wrong).

    ``fn`` raises ValueError for a set of hits holding a bad one; bisection over prefixes (about
    log2(n_hits) calls, each vectorised), not one call per hit."""
    n = len(next(iter(ids.values())))

    def ok(k):
        try:
            fn({f: v[:k] for f, v in ids.items()})
        except ValueError:
            return False
        return True

    lo, hi = 0, n  # the first lo hits are fine; the first hi hits hold a bad one
    if ok(n):
        return 0, next(iter(ids))
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if ok(mid):
            lo = mid
        else:
            hi = mid
    i = hi - 1
    try:
        fn({f: v[i:i + 1] for f, v in ids.items()})
    except ValueError as err:
        names = [f for f in ids if f in str(err).lower()]
        return i, (names[0] if len(ids) > 1 and names else next(iter(ids)))
    return i, next(iter(ids))


# --------------------------------------------------------------------------------------------
# write / read
# --------------------------------------------------------------------------------------------
#: events per basket written by write_events: a slice read (the runner's chunks, validation)
#: decompresses only the baskets it overlaps. One basket per branch for the whole file made a
#: 256-event read of a 20000-event file cost as much as reading all of it (0.8 s, 58 MB).
BASKET_ENTRIES = 1000


def write_events(path, records: Mapping, basket_entries: int = BASKET_ENTRIES) -> None:
    """Write records to ``path`` as the ``events`` TTree (replaces an existing file).

    Scalars are cast to the schema dtypes; each hit group is written as one awkward record array
    so its branches share one counter (``n<group>``), in baskets of ``basket_entries`` events.
    Validated first (EventFileError naming ``path`` and the field, e.g. mismatched jagged
    id/time/pe lengths, fractional ids).

    Atomic: written to ``<path>.part`` and renamed onto ``path`` when complete; on any error the
    ``.part`` is removed and an existing file at ``path`` is left as it was. An OS error (no
    space, no permission, a directory in the way) is an EventFileError naming ``path``.
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
    for p in presence():
        if p in records:
            data[p] = np.asarray(records[p]).astype(np.int8)
    for g in groups_present(records):
        fields = dict(groups()[g])
        fields.update({f: dt for f, dt in optional_fields().get(g, {}).items()
                       if f"{g}_{f}" in records})
        data[g] = ak.zip({f: ak.values_astype(ak.Array(records[f"{g}_{f}"]), dt)
                          for f, dt in fields.items()})
    types = {k: (v.type.content if isinstance(v, ak.Array) else v.dtype) for k, v in data.items()}
    part = path.with_name(path.name + ".part")
    try:
        with uproot.recreate(part) as fout:
            tree = fout.mktree(TREE, types)
            step = max(1, int(basket_entries))
            for start in range(0, n, step):
                tree.extend({k: v[start:start + step] for k, v in data.items()})
        os.replace(part, path)
    except BaseException as err:
        try:
            part.unlink()
        except OSError:
            pass
        if isinstance(err, OSError):
            raise EventFileError(path, "<file>", f"cannot be written ({err.strerror or err})",
                                 kind="file") from None
        raise


def _entry_offset(entry_start, n_entries: int) -> int:
    """The file entry of the first event that ``tree.arrays(entry_start=...)`` returns."""
    if entry_start is None:
        return 0
    start = int(entry_start)
    if start < 0:
        start += n_entries
    return min(max(start, 0), n_entries)


def read_events(path, layouts: Mapping | None = None, entry_start=None, entry_stop=None,
                **named_layouts) -> dict:
    """Read a file of the own schema into a records dict (see module docstring).

    ``entry_start``/``entry_stop`` read a slice of events (streaming large files in chunks);
    entries in error messages are still counted from the start of the file.

    Validation (EventFileError naming the file and the field): missing, truncated or corrupt
    file (one line), missing tree, missing scalar branch, a hit group with a missing branch,
    0 entries, mismatched jagged lengths, NaN hit times or charges, fractional or negative ids,
    and (when layouts are given) hit ids outside the layouts.
    """
    ak = _ak()
    path = Path(path)
    fin, tree = open_tree(path, TREE)
    with fin:
        with reading(path):
            keys = list(tree.keys())
        for name in SCALARS:
            if name not in keys:
                raise EventFileError(path, name, "is missing")
        wanted = [k for k in keys if k in SCALARS or k in TRUTH or k in presence()
                  or any(k.startswith(g + "_") for g in groups())]
        offset = _entry_offset(entry_start, tree.num_entries)
        arrays = read_arrays(path, tree, wanted, entry_start=entry_start, entry_stop=entry_stop)
    records = {}
    for k in wanted:
        if k in SCALARS or k in TRUTH or k in presence():
            records[k] = ak.to_numpy(arrays[k])
        else:
            records[k] = arrays[k]
    validate_records(records, source=path, entry_offset=offset)
    check_ids(records, path, _layouts(layouts, named_layouts), entry_offset=offset)
    return records


# --------------------------------------------------------------------------------------------
# records -> dense Events
# --------------------------------------------------------------------------------------------
def _hit_arrays(records: Mapping, spec, b, lay, present):
    """(counts per event, dense index, time, pe) of the flat hits of block ``b``."""
    ak = _ak()
    counts = ak.to_numpy(ak.num(records[f"{b.name}_{b.key}"], axis=1))
    pe = ak.to_numpy(ak.flatten(records[f"{b.name}_pe"])).astype(np.float64)
    tm = (ak.to_numpy(ak.flatten(records[f"{b.name}_time"])).astype(np.float64)
          if f"{b.name}_time" in records else np.zeros(pe.size))
    ids = {f: ak.to_numpy(ak.flatten(records[f"{b.name}_{f}"])).astype(np.int64)
           for f in b.fields if f not in ("time", "pe")}
    return counts, np.asarray(b.index(lay, ids), np.int64), tm, pe


def to_events(records: Mapping, layouts: Mapping | None = None, source="<records>",
              valid: Mapping | None = None, entry_offset: int = 0,
              **named_layouts) -> list[Event]:
    """Dense per-event Events from records; a detector block is built only when its layout is
    given ({detector: layout} or keywords ``km2a=...``) AND its group is in the records.

    ``valid`` optionally maps a block name ("km2a_ed", "km2a_md", "wcda", "wfcta") to a
    (n_channels,) bool mask of live channels. Unknown ids raise EventFileError naming ``source``.
    """
    batch = to_event_batch(records, layouts, source=source, valid=valid, as_jax=False,
                           entry_offset=entry_offset, **named_layouts)
    n = len(records["run"])
    return [jax_free_take(batch, i) for i in range(n)]


def jax_free_take(batch: Event, i: int) -> Event:
    """Event ``i`` of a numpy batch (numpy scalars and arrays)."""
    return Event(blocks={k: ChannelBlock(*[np.asarray(x)[i] for x in b])
                         for k, b in batch.blocks.items()},
                 run=np.int32(batch.run[i]), event_id=np.int64(batch.event_id[i]),
                 time_mjd=np.float64(batch.time_mjd[i]),
                 truth=None if batch.truth is None else
                 {t: np.float64(v[i]) for t, v in batch.truth.items()})


def to_event_batch(records: Mapping, layouts: Mapping | None = None, source="<records>",
                   valid: Mapping | None = None, as_jax: bool = True, entry_offset: int = 0,
                   **named_layouts) -> Event:
    """Batched dense Event (leading axis n_events) from records, vectorised over the events (no
    Python loop per event). ``layouts``: {detector: layout} (or keywords ``km2a=...``); a block
    is built when its detector's layout is given and its group is in the records.
    ``entry_offset``: the file entry of the first record (error messages count entries in the
    file when the records are a slice of it)."""
    import jax.numpy as jnp

    layouts = _layouts(layouts, named_layouts)
    n = validate_records(records, source, entry_offset=entry_offset)
    check_ids(records, source, layouts, entry_offset=entry_offset)
    valid = dict(valid or {})
    present = set(groups_present(records))
    blocks = {}
    for spec in registry.specs(layouts):
        lay = layouts[spec.name]
        for b in spec.blocks:
            if b.name not in present:
                continue
            counts, idx, tm, pe = _hit_arrays(records, spec, b, lay, present)
            rows = np.repeat(np.arange(n), counts)
            block = build_batch_block(rows, idx, tm, pe, n, b.n_channels(lay), valid.get(b.name))
            blocks[b.name] = _mask_absent(block, records, b.name)
    conv = (lambda x: jnp.asarray(x)) if as_jax else (lambda x: x)
    have_truth = all(t in records for t in TRUTH)
    return Event(
        blocks={g: ChannelBlock(*[conv(x) for x in blk]) for g, blk in blocks.items()},
        run=conv(np.asarray(records["run"], np.int32)),
        event_id=conv(np.asarray(records["event_id"], np.int64)),
        time_mjd=conv(np.asarray(records["time_mjd"], np.float64)),
        truth=({t: conv(np.asarray(records[t], np.float64)) for t in TRUTH} if have_truth else None))


def _mask_absent(block, records: Mapping, group: str, entry=None):
    """Invalidate the channels of ``block`` in events whose presence flag for ``group``'s
    detector is 0 (all events of a batch block, or event ``entry`` of a single block)."""
    for flag, grps in presence().items():
        if group in grps and flag in records:
            present = np.asarray(records[flag]).astype(bool)
            present = present[:, None] if entry is None else present[entry]
            valid = np.asarray(block.valid) & present
            return block._replace(valid=valid, hit=np.asarray(block.hit) & valid)
    return block
