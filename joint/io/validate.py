"""Whole-file validation of input event files before any fitting (issue 15).

:func:`validate_inputs` reads every input file once, in slices of ``entries_per_read`` events
(memory stays bounded for large files), and

- raises the first :class:`~joint.io.errors.EventFileError` (one line naming the file, the
  branch and the entry counted from the start of the file): a missing, truncated or corrupt
  file, a missing tree or branch, an empty tree, mismatched jagged lengths, NaN hit times or
  charges, fractional or negative ids, ids outside the layouts (when given);
- returns one :class:`FileReport` per file with the counts of suspicious but readable content,
  whose :meth:`FileReport.warnings` are one line each: events without any hit, events repeating
  an earlier (run, event_id) of the same file, hits with negative charge.

Everything is vectorised over the events and hits (numpy/awkward), no Python loop per event.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping

import numpy as np

from joint.io import file_kind, num_entries
from joint.io.errors import EventFileError

__all__ = ["FileReport", "validate_file", "validate_inputs", "num_entries", "EventFileError"]

#: entries listed in a warning ("entries 4, 7, 9, ...")
MAX_LISTED = 10


@dataclass(frozen=True)
class FileReport:
    """What :func:`validate_file` found in one readable event file.

    path : the file as given; kind : "own" (``joint.io.schema``) or "lhevent" (G4KM2A);
    n_events : entries in the file;
    n_zero_hit : events without any hit in any hit group of the file;
    n_duplicate_ids : events whose (run, event_id) appeared in an earlier entry of the file;
    n_negative_charge : hits with charge (``*_pe``) < 0; n_negative_charge_events : events with
    at least one;
    zero_hit_entries : the first (up to MAX_LISTED) entries without hits;
    first_duplicate : (entry, the earlier entry it repeats) of the first duplicate, or None;
    first_negative_charge : (entry, branch) of the first hit with negative charge, or None.
    Entries are counted from the start of the file.
    """

    path: str
    kind: str
    n_events: int
    n_zero_hit: int = 0
    n_duplicate_ids: int = 0
    n_negative_charge: int = 0
    n_negative_charge_events: int = 0
    zero_hit_entries: tuple = ()
    first_duplicate: tuple | None = None
    first_negative_charge: tuple | None = None

    def warnings(self) -> list[str]:
        """One line per kind of problem found, naming the file and the count; [] when none."""
        out = []
        if self.n_zero_hit:
            ents = list(self.zero_hit_entries)
            listed = ", ".join(str(e) for e in ents) + (", ..." if self.n_zero_hit > len(ents)
                                                        else "")
            out.append(f"{self.path}: {_n(self.n_zero_hit, 'event')} "
                       f"{'has' if self.n_zero_hit == 1 else 'have'} no hits "
                       f"({'entry' if self.n_zero_hit == 1 else 'entries'} {listed})")
        if self.n_duplicate_ids:
            e, first = self.first_duplicate
            out.append(f"{self.path}: {self.n_duplicate_ids} duplicated (run, event_id) "
                       f"(first: entry {e} repeats entry {first})")
        if self.n_negative_charge:
            e, branch = self.first_negative_charge
            out.append(f"{self.path}: {_n(self.n_negative_charge, 'hit')} with negative charge "
                       f"in {_n(self.n_negative_charge_events, 'event')} "
                       f"(first: entry {e}, branch {branch})")
        return out


def _n(k: int, what: str) -> str:
    return f"{k} {what}" + ("" if k == 1 else "s")


class _Counts:
    """Accumulates the FileReport counts over the slices of a file."""

    def __init__(self):
        self.n = 0
        self.runs, self.event_ids = [], []
        self.n_zero, self.zero_entries = 0, []
        self.n_neg, self.n_neg_events, self.first_neg = 0, 0, None

    def add(self, records: Mapping, offset: int, branch_name=lambda b: b) -> None:
        import awkward as ak

        from joint.io.schema import groups_present

        n = len(records["run"])
        self.n += n
        self.runs.append(np.asarray(records["run"], np.int64))
        self.event_ids.append(np.asarray(records["event_id"], np.int64))
        n_hits = np.zeros(n, np.int64)
        neg_events = np.zeros(n, bool)
        first = None  # (entry, branch) in this slice
        for g in groups_present(records):
            pe = records[f"{g}_pe"]
            n_hits += ak.to_numpy(ak.num(pe, axis=1))
            neg = pe < 0
            k = int(ak.sum(neg))
            if k:
                self.n_neg += k
                ev = ak.to_numpy(ak.any(neg, axis=1))
                neg_events |= ev
                e = int(np.flatnonzero(ev)[0]) + offset
                if first is None or e < first[0]:
                    first = (e, branch_name(f"{g}_pe"))
        zero = np.flatnonzero(n_hits == 0)
        self.n_zero += zero.size
        room = MAX_LISTED - len(self.zero_entries)
        if room > 0:
            self.zero_entries.extend(int(e) + offset for e in zero[:room])
        self.n_neg_events += int(neg_events.sum())
        if self.first_neg is None and first is not None:
            self.first_neg = first

    def report(self, path, kind: str) -> FileReport:
        n_dup, first_dup = _duplicates(np.concatenate(self.runs) if self.runs else np.zeros(0),
                                       np.concatenate(self.event_ids) if self.event_ids
                                       else np.zeros(0))
        return FileReport(path=str(path), kind=kind, n_events=self.n, n_zero_hit=self.n_zero,
                          n_duplicate_ids=n_dup, n_negative_charge=self.n_neg,
                          n_negative_charge_events=self.n_neg_events,
                          zero_hit_entries=tuple(self.zero_entries), first_duplicate=first_dup,
                          first_negative_charge=self.first_neg)


def _duplicates(run: np.ndarray, event_id: np.ndarray) -> tuple:
    """(number of entries whose (run, event_id) appeared earlier, (first such entry, the entry
    it repeats) or None); one sort."""
    n = run.size
    if n < 2:
        return 0, None
    order = np.lexsort((np.arange(n), event_id, run))  # by run, event_id, then entry
    r, e = run[order], event_id[order]
    same = (r[1:] == r[:-1]) & (e[1:] == e[:-1])
    if not same.any():
        return 0, None
    starts = np.r_[True, ~same]                       # first element of each (run, event_id)
    group_first = order[np.flatnonzero(starts)][np.cumsum(starts) - 1]
    dup_pos = np.flatnonzero(np.r_[False, same])      # sorted positions of the repeats
    k = dup_pos[np.argmin(order[dup_pos])]            # the repeat earliest in the file
    return int(same.sum()), (int(order[k]), int(group_first[k]))


def validate_file(path, layouts: Mapping | None = None, entries_per_read: int = 20000
                  ) -> FileReport:
    """Read a whole event file (own schema or G4KM2A), raising the first EventFileError, and
    count its warnings (:class:`FileReport`).

    Own-schema files are read with :func:`joint.io.schema.read_events` in slices of
    ``entries_per_read`` entries, so every error names the entry counted from the start of the
    file and memory stays bounded; G4KM2A files are read whole
    (:func:`joint.io.lhevent.read_lhevent`). ``layouts`` ({detector: layout}, e.g. from
    ``joint.config.detector_setup``): hit ids are checked against them.
    """
    from joint.io.lhevent import lhevent_name, read_lhevent
    from joint.io.schema import read_events

    if int(entries_per_read) < 1:
        raise ValueError(f"entries_per_read must be a positive integer, got {entries_per_read}")
    step = int(entries_per_read)
    layouts = {k: v for k, v in dict(layouts or {}).items() if v is not None}
    kind = file_kind(path)
    counts = _Counts()
    if kind == "own":
        n = num_entries(path)
        for start in range(0, n, step):
            rec = read_events(path, layouts, entry_start=start, entry_stop=min(n, start + step))
            counts.add(rec, start)
    else:
        rec = read_lhevent(path, km2a=layouts.get("km2a"), wcda=layouts.get("wcda"))
        counts.add(rec, 0, branch_name=lhevent_name)
    return counts.report(path, kind)


def validate_inputs(paths: Iterable, layouts: Mapping | None = None, progress: bool = False,
                    entries_per_read: int = 20000) -> list[FileReport]:
    """:func:`validate_file` on every input file, in order; raises the first EventFileError.
    Called by the runner before its first fit. ``progress``: a tqdm bar over the files."""
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    paths = [Path(p) for p in paths]
    if progress:
        from tqdm import tqdm

        paths_iter = tqdm(paths, unit="file", desc="validate inputs")
    else:
        paths_iter = paths
    reports = []
    for p in paths_iter:
        reports.append(validate_file(p, layouts, entries_per_read=entries_per_read))
    return reports

