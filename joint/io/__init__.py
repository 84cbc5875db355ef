"""Event-file I/O: the project's own ROOT schema and G4KM2A ``LHEvent`` files.

:func:`read_file` opens either kind (it looks at the tree names) and returns the records dict of
:mod:`joint.io.schema`; :func:`joint.io.schema.to_event_batch` turns records into dense Events.
:func:`joint.io.validate.validate_inputs` checks whole input files before any fitting.
"""
from __future__ import annotations

from pathlib import Path

from joint.io.errors import EventFileError, open_root, reading

__all__ = ["read_file", "file_kind", "num_entries", "EventFileError"]


def file_kind(path) -> str:
    """'own' for the project's schema (tree ``events``), 'lhevent' for G4KM2A (tree ``event``).

    Raises EventFileError naming the file when it does not exist, is not ROOT, is truncated or
    corrupt (one line: ``cannot be read: the file is truncated or corrupt (...)``), or has
    neither tree.
    """
    path = Path(path)
    fin = open_root(path)
    with fin, reading(path):
        keys = {k.split(";")[0] for k in fin.keys()}
    if "events" in keys:
        return "own"
    if "event" in keys:
        return "lhevent"
    raise EventFileError(path, "events", "tree not found (expected 'events' or G4KM2A 'event')",
                         kind="tree")


def num_entries(path) -> int:
    """Number of events in an event file of either kind, from the tree header (no basket is
    read). EventFileError as :func:`file_kind`, and for a tree with 0 entries."""
    from joint.io.errors import open_tree

    kind = file_kind(path)
    fin, tree = open_tree(path, "events" if kind == "own" else "event")
    with fin:
        return int(tree.num_entries)


def read_file(path, km2a=None, wcda=None, wfcta=None, run: int = 0, **lhevent_kwargs) -> dict:
    """Read an event file of either kind into records (see :mod:`joint.io.schema`);
    ``lhevent_kwargs`` go to :func:`joint.io.lhevent.read_lhevent` (e.g. azimuth_offset_deg)."""
    from joint.io import lhevent, schema

    kind = file_kind(path)
    if kind == "own":
        return schema.read_events(path, km2a=km2a, wcda=wcda, wfcta=wfcta)
    return lhevent.read_lhevent(path, km2a=km2a, wcda=wcda, run=run, **lhevent_kwargs)
