"""Event-file I/O: the project's own ROOT schema and G4KM2A ``LHEvent`` files.

:func:`read_file` opens either kind (it looks at the tree names) and returns the records dict of
:mod:`joint.io.schema`; :func:`joint.io.schema.to_event_batch` turns records into dense Events.
"""
from __future__ import annotations

from pathlib import Path

from joint.io.errors import EventFileError

__all__ = ["read_file", "file_kind", "EventFileError"]


def file_kind(path) -> str:
    """'own' for the project's schema (tree ``events``), 'lhevent' for G4KM2A (tree ``event``).

    Raises EventFileError naming the file when it cannot be opened or has neither tree.
    """
    import uproot

    path = Path(path)
    try:
        with uproot.open(path) as f:
            keys = {k.split(";")[0] for k in f.keys()}
    except FileNotFoundError:
        raise EventFileError(path, "file", "file does not exist", kind="file") from None
    except Exception as exc:  # uproot raises several types for a non-ROOT file
        raise EventFileError(path, "file", f"not a readable ROOT file ({exc})", kind="file") from None
    if "events" in keys:
        return "own"
    if "event" in keys:
        return "lhevent"
    raise EventFileError(path, "events", "tree not found (expected 'events' or G4KM2A 'event')",
                         kind="tree")


def read_file(path, km2a=None, wcda=None, wfcta=None, run: int = 0, **lhevent_kwargs) -> dict:
    """Read an event file of either kind into records (see :mod:`joint.io.schema`);
    ``lhevent_kwargs`` go to :func:`joint.io.lhevent.read_lhevent` (e.g. azimuth_offset_deg)."""
    from joint.io import lhevent, schema

    kind = file_kind(path)
    if kind == "own":
        return schema.read_events(path, km2a=km2a, wcda=wcda, wfcta=wfcta)
    return lhevent.read_lhevent(path, km2a=km2a, wcda=wcda, run=run, **lhevent_kwargs)
