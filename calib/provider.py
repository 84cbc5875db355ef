"""The calibration as a set-up provider for the file runner (``joint.runner.SetupProvider``):
each event is fitted with the entries of the calibration database valid at its time, per
detector, with that period's layout and dead channels. ``lhaaso_joint.api.reconstruct`` and the
CLI (``reconstruct --calib-db``) build one; ``joint`` itself never imports ``calib``.
"""
from __future__ import annotations

import json

import uproot

from calib.db import CalibrationDB, CalibrationDBError
from calib.periods import group_events, setups_for_events
from joint.io import file_kind
from joint.io.schema import TREE

__all__ = ["CalibrationProvider"]


class CalibrationProvider:
    """``joint.runner.SetupProvider`` of a calibration database.

    db : a :class:`calib.db.CalibrationDB` or its path
    missing : "raise" (events outside every entry stop the run before anything is fitted,
        naming the detector and the times) or "nominal" (they get the nominal Response)
    """

    def __init__(self, db, missing: str = "raise"):
        if missing not in ("raise", "nominal"):
            raise ValueError(f"missing must be 'raise' or 'nominal', got {missing!r}")
        self.db = db if isinstance(db, CalibrationDB) else CalibrationDB(db)
        self.missing = missing
        self._cache: dict = {}

    def check(self, inputs, detectors) -> None:
        """The database exists, and (``missing="raise"``) every event of the own-schema inputs
        has an entry for each detector — so a run does not stop half-way (G4KM2A files are
        checked chunk by chunk)."""
        if not self.db.index_path.exists():
            raise CalibrationDBError(self.db.index_path, "entries", "does not exist: no "
                                     "calibration database at this path (create one with "
                                     "lhaaso-joint calibrate)")
        if self.missing != "raise":
            return
        for path in inputs:
            if file_kind(path) != "own":
                continue
            with uproot.open(path) as f:
                t = f[TREE]["time_mjd"].array(library="np")
            try:
                group_events(self.db, t, sorted(detectors), "raise")
            except ValueError as err:
                raise ValueError(f"{path}: {err}") from None

    def setups(self, time_mjd, detectors, default_layouts) -> list:
        return setups_for_events(self.db, time_mjd, detectors, default_layouts,
                                 missing=self.missing, cache=self._cache)

    def entry_index(self, name) -> int:
        if name is None:
            return -1
        return [e.name for e in self.db.entries()].index(name)

    def metadata(self) -> str:
        """Which database entry each ``calib_<det>`` index is (JSON)."""
        return json.dumps({"database": str(self.db.index_path),
                           "entries": {str(i): {"name": e.name, "valid_from": e.valid_from.utc.isot,
                                                "valid_to": e.valid_to.utc.isot,
                                                "detectors": sorted(e.detectors)}
                                       for i, e in enumerate(self.db.entries())},
                           "nominal": -1})

    def describe(self) -> str:
        return str(self.db.index_path)
