"""The calibration as a set-up provider for the file runner (``joint.runner.SetupProvider``):
each event is fitted with the entries of the calibration database valid at its time, per
detector, with that period's layout and dead channels. ``lhaaso_joint.api.reconstruct`` and the
CLI (``reconstruct --calib-db``) build one; ``joint`` itself never imports ``calib``.

Its errors are :class:`calib.db.CalibrationDBError` (so ``lhaaso-joint`` prints them as one line
``lhaaso-joint: error: ...``) and name both spellings of the options, the command line's and the
Python API's: ``--calib-db`` / ``calib_db=`` and ``--calib-missing nominal`` /
``calib_missing='nominal'``.
"""
from __future__ import annotations

import json

import numpy as np
import uproot

from calib.db import DETECTORS, CalibrationDB, CalibrationDBError
from calib.periods import setups_for_events
from joint.io import file_kind
from joint.io.schema import TREE

__all__ = ["CalibrationProvider", "CalibrationSetupError", "DB_OPTION", "MISSING_OPTION"]

#: how the database is given, on the command line and in Python
DB_OPTION = "--calib-db / calib_db="
#: how events outside every entry are fitted nominal, on the command line and in Python
MISSING_OPTION = "--calib-missing nominal / calib_missing='nominal'"


class CalibrationSetupError(CalibrationDBError):
    """A calibrated run that cannot start: the database is missing or not a database, or events
    lie outside every entry. A :class:`calib.db.CalibrationDBError` (a ValueError) whose
    message is written out in full (``path``: the database or the input file)."""

    def __init__(self, path, field: str, message: str):
        self.path = str(path)
        self.field = str(field)
        self.problem = message
        ValueError.__init__(self, message)


class CalibrationProvider:
    """``joint.runner.SetupProvider`` of a calibration database.

    db : a :class:`calib.db.CalibrationDB` or its path
    missing : "raise" (events outside every entry stop the run before anything is fitted,
        naming the detector and the times) or "nominal" (they get the nominal Response)
    """

    def __init__(self, db, missing: str = "raise"):
        if missing not in ("raise", "nominal"):
            raise ValueError(f"calib_missing (--calib-missing) must be 'raise' or 'nominal', got "
                             f"{missing!r}")
        self.db = db if isinstance(db, CalibrationDB) else CalibrationDB(db)
        self.missing = missing
        self._cache: dict = {}

    def check(self, inputs, detectors) -> None:
        """The database exists, and (``missing="raise"``) every event of the own-schema inputs
        has an entry for each detector — so a run does not stop half-way (G4KM2A files are
        checked chunk by chunk)."""
        path = self.db.path
        if path.exists() and not path.is_dir():
            raise CalibrationSetupError(path, "<path>", f"{path} is a file, not a calibration "
                                        f"database ({DB_OPTION} takes the directory written by "
                                        "lhaaso-joint calibrate --db)")
        if not self.db.index_path.exists():
            raise CalibrationSetupError(self.db.index_path, "entries", f"{path}: no calibration "
                                        f"database here ({self.db.index_path} does not exist; "
                                        f"{DB_OPTION} takes the directory written by "
                                        "lhaaso-joint calibrate --db)")
        if self.missing != "raise":
            return
        for p in inputs:
            if file_kind(p) != "own":
                continue
            with uproot.open(p) as f:
                t = f[TREE]["time_mjd"].array(library="np")
            self._check_covered(t, detectors, p)

    def _check_covered(self, time_mjd, detectors, source=None) -> None:
        """CalibrationSetupError when an event of ``time_mjd`` has no entry for a detector."""
        t = np.asarray(time_mjd, np.float64).reshape(-1)
        for d in (d for d in DETECTORS if d in detectors):
            lost = self.db.for_times(t, d) < 0
            if np.any(lost):
                tl = t[lost][np.isfinite(t[lost])]
                span = f"MJD {tl.min():.6f} .. {tl.max():.6f}" if tl.size else "unknown times"
                where = f"{source}: " if source is not None else ""
                raise CalibrationSetupError(
                    source if source is not None else self.db.index_path, "time_mjd",
                    f"{where}{int(lost.sum())} of {t.size} event(s) have no {d.upper()} "
                    f"calibration in {self.db.index_path} ({span}); add an entry (lhaaso-joint "
                    f"calibrate) or fit them with the nominal response ({MISSING_OPTION})")

    def setups(self, time_mjd, detectors, default_layouts) -> list:
        if self.missing == "raise":
            self._check_covered(time_mjd, detectors)
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

