"""Calibration database: one entry per run period, with its validity interval and provenance.

Storage (format version 1, docs/calibration.md)
-----------------------------------------------
A directory::

    <path>/calib_db.json                 the index: format_version, entries and their metadata
    <path>/entries/<name>.<sha12>.npz    the arrays of one entry (numpy .npz, keys "<detector>.<field>")

The JSON index is the human-readable part: names, validity intervals (ISO UTC strings and MJD),
detector configurations (layout, dead channel ids), software version, input files, creation
date, and per stored array its shape, dtype and summary (mean, min, max); the ``.npz`` holds the
arrays and is named by its content hash (sha256, first 12 hex digits, full hash in the index) so
that a rewrite never touches a file the current index refers to. Writes are atomic: each file
is written to a temporary file in the same directory, flushed, and renamed over the target; the
index is renamed last, and unreferenced ``.npz`` files are removed only after that.

Validity intervals are half-open, [valid_from, valid_to), on the UTC scale; two entries that
share a detector may not overlap (``add(..., replace=True)`` removes the entries in the way).

The arrays of an entry are the Response fields that differ from the nominal Response of its
geometry (``Response.nominal(geometry)``), plus the learned fields (``calib.response.
LEARNED_FIELDS``), which are always stored; ``CalibrationDB.response`` rebuilds the Response as
``Response.nominal(geometry)._replace(**stored)``.

Not thread- or process-safe: one writer at a time. Which entries reconstruct which events of a
batch (grouping by run period) is ``calib.periods``.
"""
from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import re
import subprocess
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Iterable

import numpy as np

from joint.workdir import atomic_write_bytes

from calib.response import DETECTOR_MODULES, LEARNED_FIELDS
from detectors import registry

__all__ = ["CalibrationDB", "CalibrationEntry", "DetectorConfig", "CalibrationDBError",
           "is_entry_name", "make_entry", "software_version", "FORMAT_VERSION", "INDEX_NAME"]

#: Version of the on-disk format written by this module.
FORMAT_VERSION = 1
#: File name of the JSON index inside the database directory.
INDEX_NAME = "calib_db.json"
#: Sub-directory of the entries' array files.
ARRAY_DIR = "entries"
#: Detectors in canonical order.
DETECTORS = tuple(d for d in registry.BUILT if d in DETECTOR_MODULES)
#: Channel kinds of each detector (keys of ``DetectorConfig.dead``).
CHANNEL_KINDS = {d: tuple(registry.get(d).channel_kinds) for d in DETECTOR_MODULES}
#: Two MJDs closer than this [days] (about 9 ms) count as equal when the index is checked.
_MJD_TOLERANCE = 1e-7
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")


def is_entry_name(name) -> bool:
    """True when ``name`` can name an entry: letters, digits and ``_ . -``, starting with a
    letter or digit (it names the entry's array file)."""
    return isinstance(name, str) and bool(_NAME_RE.match(name))


class CalibrationDBError(ValueError):
    """A malformed calibration database. The message names the file and the field.

    Example: ``db/calib_db.json: field 'entries[2].valid_to' is not an ISO time ('2021-13-01')``.

    Attributes: path (the file), field (the JSON path or array key at fault), problem.
    """

    def __init__(self, path, field: str, problem: str):
        self.path = str(path)
        self.field = str(field)
        self.problem = problem
        super().__init__(f"{self.path}: field '{self.field}' {problem}")


# ---------------------------------------------------------------------------------------------
# provenance helpers
# ---------------------------------------------------------------------------------------------
def software_version() -> dict:
    """{"package": "lhaaso-joint", "version": installed version or "unknown",
    "git": ``git describe --always --dirty`` of the source checkout or None}."""
    from importlib import metadata

    try:
        version = metadata.version("lhaaso-joint")
    except metadata.PackageNotFoundError:
        version = "unknown"
    git = None
    try:
        out = subprocess.run(["git", "describe", "--always", "--dirty", "--tags"],
                             cwd=Path(__file__).resolve().parent, capture_output=True, text=True,
                             timeout=10)
        if out.returncode == 0 and out.stdout.strip():
            git = out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        pass
    return {"package": "lhaaso-joint", "version": version, "git": git}


def _as_time(value):
    """astropy Time (UTC) of a Time, an ISO string or an MJD number (UTC)."""
    from astropy.time import Time

    if isinstance(value, Time):
        return value.utc
    if isinstance(value, str):
        return Time(value, scale="utc")
    return Time(float(value), format="mjd", scale="utc")


def _iso(t) -> str:
    t = t.utc
    t.precision = 6
    return str(t.isot)


# ---------------------------------------------------------------------------------------------
# detector configuration of a run period
# ---------------------------------------------------------------------------------------------
@lru_cache(maxsize=16)
def _cached_layout(detector: str, layout: str, options_json: str):
    from detectors.layout import km2a_layout, wcda_layout, wfcta_layout

    options = json.loads(options_json)
    if detector == "km2a":
        return km2a_layout(layout, **options)
    if detector == "wcda":
        return wcda_layout(**options)
    return wfcta_layout(**options)


@dataclasses.dataclass(frozen=True)
class DetectorConfig:
    """Configuration of one detector in a run period.

    detector : "km2a", "wcda" or "wfcta"
    layout : KM2A: "full" or "3/4" (``detectors.layout.km2a_layout``); WCDA, WFCTA: "default"
    layout_options : keyword arguments of the layout function (JSON values), e.g. WFCTA
        ``{"tel_ids": [1, 2, 3]}``
    dead : channel ids that are dead in the period, per kind: KM2A {"ed": [...], "md": [...]}
        (G4KM2A channel ids), WCDA {"cell": [...]} (``WCDALayout.cell_id``), WFCTA
        {"pixel": [[tel_id, pixel], ...]} (pixel = row·32 + column); the active channels are
        the layout's channels minus these
    """

    detector: str
    layout: str = "default"
    layout_options: dict = dataclasses.field(default_factory=dict)
    dead: dict = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        if self.detector not in DETECTORS:
            raise ValueError(f"unknown detector {self.detector!r}; choose one of {DETECTORS}")
        layout = self.layout
        if self.detector == "km2a" and layout == "default":
            layout = "full"
        if self.detector == "km2a" and layout not in ("full", "3/4"):
            raise ValueError(f"KM2A layout must be 'full' or '3/4', got {layout!r}")
        if self.detector != "km2a" and layout != "default":
            raise ValueError(f"{self.detector.upper()} layout must be 'default' (options go in "
                             f"layout_options), got {layout!r}")
        object.__setattr__(self, "layout", layout)
        unknown = set(self.dead) - set(CHANNEL_KINDS[self.detector])
        if unknown:
            raise ValueError(f"{self.detector.upper()} dead-channel kinds must be among "
                             f"{CHANNEL_KINDS[self.detector]}, got {sorted(unknown)}")
        dead = {}
        for kind in CHANNEL_KINDS[self.detector]:
            ids = np.asarray(self.dead.get(kind, []), np.int64)
            if self.detector == "wfcta":
                ids = ids.reshape(-1, 2)
                dead[kind] = tuple(tuple(int(v) for v in row) for row in np.unique(ids, axis=0))
            else:
                dead[kind] = tuple(int(v) for v in np.unique(ids.reshape(-1)))
        object.__setattr__(self, "dead", dead)
        object.__setattr__(self, "layout_options", json.loads(json.dumps(self.layout_options)))

    # --- derived -----------------------------------------------------------------------------
    def layout_object(self):
        """The ``detectors.layout`` object (KM2ALayout, WCDALayout, WFCTALayout)."""
        return _cached_layout(self.detector, self.layout,
                              json.dumps(self.layout_options, sort_keys=True))

    def live_masks(self) -> dict:
        """Live masks per kind: KM2A {"ed": (n_ed,), "md": (n_md,)}, WCDA {"cell": (n,)},
        WFCTA {"pixel": (n_tel, 1024)}; ValueError for a dead id not in the layout."""
        lay = self.layout_object()
        if self.detector == "km2a":
            out = {}
            for kind, n in (("ed", lay.n_ed), ("md", lay.n_md)):
                live = np.ones(n, bool)
                if self.dead[kind]:
                    live[lay.index_of(list(self.dead[kind]), kind)] = False
                out[kind] = live
            return out
        if self.detector == "wcda":
            live = np.ones(lay.n_cells, bool)
            if self.dead["cell"]:
                live[lay.index_of(list(self.dead["cell"]))] = False
            return {"cell": live}
        n_pix = int(np.asarray(lay.pixel_xy).reshape(-1, 2).shape[0])
        live = np.ones((len(lay.tel_id), n_pix), bool)
        tel_index = {int(t): i for i, t in enumerate(lay.tel_id)}
        for tel, pix in self.dead["pixel"]:
            if tel not in tel_index or not 0 <= pix < n_pix:
                raise ValueError(f"WFCTA dead pixel (tel {tel}, pixel {pix}) is not in the layout "
                                 f"(telescopes {sorted(tel_index)}, pixels 0..{n_pix - 1})")
            live[tel_index[tel], pix] = False
        return {"pixel": live}

    def geometry(self):
        """The detector's Geometry of this period (the layout with the dead channels masked)."""
        module = DETECTOR_MODULES[self.detector]
        lay, live = self.layout_object(), self.live_masks()
        if self.detector == "km2a":
            return module.Geometry.from_layout(lay, ed_live=live["ed"], md_live=live["md"])
        if self.detector == "wcda":
            return module.Geometry.from_layout(lay, cell_live=live["cell"])
        return module.Geometry.from_layout(lay, pixel_live=live["pixel"])

    def active_channels(self) -> dict:
        """Active channel ids per kind (layout channels minus the dead ones); WFCTA: (n, 2)
        rows of (tel_id, pixel)."""
        lay, live = self.layout_object(), self.live_masks()
        if self.detector == "km2a":
            return {"ed": np.asarray(lay.ed_id)[live["ed"]], "md": np.asarray(lay.md_id)[live["md"]]}
        if self.detector == "wcda":
            return {"cell": np.asarray(lay.cell_id)[live["cell"]]}
        tel, pix = np.nonzero(live["pixel"])
        return {"pixel": np.column_stack([np.asarray(lay.tel_id)[tel], pix])}

    @classmethod
    def from_geometry(cls, detector: str, geometry, layout: str = "default",
                      layout_options: dict | None = None) -> "DetectorConfig":
        """Config whose dead lists are the channels ``geometry``'s live masks switch off (the
        geometry must come from the layout named by ``layout``/``layout_options``)."""
        cfg = cls(detector, layout, layout_options or {})
        lay = cfg.layout_object()
        if detector == "km2a":
            dead = {"ed": np.asarray(lay.ed_id)[~np.asarray(geometry.ed_live, bool)],
                    "md": np.asarray(lay.md_id)[~np.asarray(geometry.md_live, bool)]}
            if np.shape(geometry.ed_pos)[0] != lay.n_ed:
                raise ValueError(f"geometry has {np.shape(geometry.ed_pos)[0]} EDs, the "
                                 f"KM2A layout {cfg.layout!r} {lay.n_ed}")
        elif detector == "wcda":
            dead = {"cell": np.asarray(lay.cell_id)[~np.asarray(geometry.cell_live, bool)]}
        else:
            tel, pix = np.nonzero(~np.asarray(geometry.pixel_live, bool))
            dead = {"pixel": np.column_stack([np.asarray(lay.tel_id)[tel], pix])}
        return cls(detector, cfg.layout, cfg.layout_options, dead)

    def to_json(self) -> dict:
        return {"layout": self.layout, "layout_options": self.layout_options,
                "dead": {k: [list(v) if isinstance(v, tuple) else v for v in ids]
                         for k, ids in self.dead.items()}}


# ---------------------------------------------------------------------------------------------
# an entry
# ---------------------------------------------------------------------------------------------
class _LazyArrays(Mapping):
    """{detector: {field: array}} read from an entry's .npz on first access (checked against
    the index's sha256 and field list)."""

    def __init__(self, path: Path, sha256: str, fields: dict, where: str):
        self._path, self._sha, self._fields, self._where = path, sha256, fields, where
        self._data = None

    def _load(self) -> dict:
        if self._data is None:
            self._data = _read_arrays(self._path, self._sha, self._fields, self._where)
        return self._data

    def __getitem__(self, key):
        return self._load()[key]

    def __iter__(self):
        return iter(self._fields)

    def __len__(self):
        return len(self._fields)


@dataclasses.dataclass(frozen=True, eq=False)
class CalibrationEntry:
    """One run period's calibration.

    name : unique key, letters, digits and ``_ . -`` (it names the entry's array file)
    valid_from, valid_to : astropy Time; the entry is valid on [valid_from, valid_to) (UTC)
    detectors : {name: DetectorConfig} of the detectors it calibrates
    parameters : {detector: {Response field: np.ndarray}} — fields that differ from nominal plus
        the learned ones (arrays shaped as the Response fields of the period's geometry)
    input_files : the files the calibration was learned from
    software : {"package", "version", "git"} (:func:`software_version`)
    created : astropy Time of creation
    notes : free text
    """

    name: str
    valid_from: object
    valid_to: object
    detectors: dict
    parameters: Mapping
    input_files: tuple = ()
    software: dict = dataclasses.field(default_factory=software_version)
    created: object = None
    notes: str = ""

    def __post_init__(self):
        from astropy.time import Time

        if not isinstance(self.name, str) or not _NAME_RE.match(self.name):
            raise ValueError(f"entry name must match {_NAME_RE.pattern}, got {self.name!r}")
        object.__setattr__(self, "valid_from", _as_time(self.valid_from))
        object.__setattr__(self, "valid_to", _as_time(self.valid_to))
        if not self.valid_to.mjd > self.valid_from.mjd:
            raise ValueError(f"entry {self.name!r}: valid_to ({_iso(self.valid_to)}) must be after "
                             f"valid_from ({_iso(self.valid_from)})")
        dets = {}
        for key, cfg in dict(self.detectors).items():
            cfg = cfg if isinstance(cfg, DetectorConfig) else DetectorConfig(key, **dict(cfg))
            if cfg.detector != key:
                raise ValueError(f"entry {self.name!r}: detectors[{key!r}] configures {cfg.detector!r}")
            dets[key] = cfg
        if not dets:
            raise ValueError(f"entry {self.name!r}: no detectors")
        object.__setattr__(self, "detectors", {d: dets[d] for d in DETECTORS if d in dets})
        extra = set(self.parameters) - set(dets)
        if extra:
            raise ValueError(f"entry {self.name!r}: parameters for unconfigured detectors {sorted(extra)}")
        object.__setattr__(self, "input_files", tuple(str(f) for f in self.input_files))
        object.__setattr__(self, "created", Time.now().utc if self.created is None
                           else _as_time(self.created))

    @property
    def detector_set(self) -> frozenset:
        return frozenset(self.detectors)

    @property
    def mjd_range(self) -> tuple[float, float]:
        """(valid_from, valid_to) as UTC MJD floats."""
        return float(self.valid_from.mjd), float(self.valid_to.mjd)

    def contains(self, mjd) -> np.ndarray:
        """valid_from ≤ mjd < valid_to (elementwise)."""
        lo, hi = self.mjd_range
        t = np.asarray(mjd, np.float64)
        return (t >= lo) & (t < hi)

    def overlaps(self, other: "CalibrationEntry") -> bool:
        a0, a1 = self.mjd_range
        b0, b1 = other.mjd_range
        return a0 < b1 and b0 < a1

    def geometry(self, detector: str):
        """The period's Geometry of ``detector`` (its layout with the dead channels masked)."""
        return self._config(detector).geometry()

    def active_channels(self, detector: str) -> dict:
        """Active channel ids per kind of ``detector`` (see :meth:`DetectorConfig.active_channels`)."""
        return self._config(detector).active_channels()

    def _config(self, detector: str) -> DetectorConfig:
        if detector not in self.detectors:
            raise KeyError(f"entry {self.name!r} does not calibrate {detector!r} "
                           f"(it has {sorted(self.detectors)})")
        return self.detectors[detector]


def _differs(value, nominal) -> bool:
    a, b = np.asarray(value), np.asarray(nominal)
    return a.shape != b.shape or not np.array_equal(a, b)


def make_entry(name: str, valid_from, valid_to, responses: dict, configs: dict | None = None, *,
               input_files: Iterable = (), notes: str = "") -> CalibrationEntry:
    """Build an entry from learned Responses.

    Parameters
    ----------
    responses : {detector: Response} of the period (jax or numpy arrays)
    configs : {detector: DetectorConfig}; default: the "full"/"default" layout, nothing dead
    valid_from, valid_to : astropy Time, ISO string (UTC) or MJD (UTC)

    The stored arrays are the learned fields and every other Response field that differs from
    ``Response.nominal(config.geometry())``.
    """
    configs = dict(configs or {})
    params = {}
    for det, resp in responses.items():
        cfg = configs.setdefault(det, DetectorConfig(det))
        nominal = DETECTOR_MODULES[det].Response.nominal(cfg.geometry())
        if not isinstance(resp, type(nominal)):
            raise TypeError(f"responses[{det!r}] is a {type(resp).__name__} of "
                            f"{type(resp).__module__}, expected {type(nominal).__module__}.Response")
        params[det] = {f: np.asarray(getattr(resp, f)) for f in resp._fields
                       if f in LEARNED_FIELDS[det] or _differs(getattr(resp, f), getattr(nominal, f))}
    return CalibrationEntry(name=name, valid_from=valid_from, valid_to=valid_to, detectors=configs,
                            parameters=params, input_files=tuple(input_files), notes=notes)


# ---------------------------------------------------------------------------------------------
# array files
# ---------------------------------------------------------------------------------------------
def _array_key(det: str, field: str) -> str:
    return f"{det}.{field}"


def _summary(a: np.ndarray) -> dict:
    out = {"shape": list(a.shape), "dtype": str(a.dtype)}
    if a.size and np.issubdtype(a.dtype, np.number):
        out.update(mean=float(np.mean(a)), min=float(np.min(a)), max=float(np.max(a)))
    return out


#: write through a temporary file and a rename (the runner's, ``joint.workdir``)
atomic_write = atomic_write_bytes


def _dumps(obj, indent: str = "") -> str:
    """JSON with one key per line; lists of numbers/strings (or of such lists) and small flat
    objects (an array's shape, dtype and summary) on one line."""
    inner = indent + "  "
    flat = json.dumps(obj)
    if isinstance(obj, dict) and obj and len(flat) <= 100 and \
            not any(isinstance(v, dict) for v in obj.values()):
        return flat
    if isinstance(obj, dict) and obj:
        items = [f"{inner}{json.dumps(str(k))}: {_dumps(v, inner)}" for k, v in obj.items()]
        return "{\n" + ",\n".join(items) + "\n" + indent + "}"
    if isinstance(obj, list) and any(isinstance(v, dict) for v in obj):
        return "[\n" + ",\n".join(inner + _dumps(v, inner) for v in obj) + "\n" + indent + "]"
    return json.dumps(obj)


def _npz_bytes(parameters: Mapping) -> bytes:
    buf = io.BytesIO()
    arrays = {_array_key(det, f): np.asarray(v) for det, fields in parameters.items()
              for f, v in fields.items()}
    np.savez(buf, **arrays)
    return buf.getvalue()


def _read_arrays(path: Path, sha256: str, fields: dict, where: str) -> dict:
    if not path.is_file():
        raise CalibrationDBError(path, f"{where}.arrays.file", "does not exist")
    data = path.read_bytes()
    if hashlib.sha256(data).hexdigest() != sha256:
        raise CalibrationDBError(path, f"{where}.arrays.sha256",
                                 "does not match the file's content (file changed or corrupt)")
    try:
        npz = np.load(io.BytesIO(data), allow_pickle=False)
        out = {}
        for det, flds in fields.items():
            out[det] = {}
            for f, meta in flds.items():
                key = _array_key(det, f)
                if key not in npz.files:
                    raise CalibrationDBError(path, key, f"is missing (listed in {where}.arrays.fields)")
                arr = npz[key]
                if list(arr.shape) != list(meta["shape"]):
                    raise CalibrationDBError(path, key, f"has shape {list(arr.shape)}, the index "
                                             f"says {meta['shape']}")
                out[det][f] = arr
    except CalibrationDBError:
        raise
    except Exception as err:  # noqa: BLE001 - numpy raises several types for a bad zip
        raise CalibrationDBError(path, "<file>", f"is not a readable .npz ({err})") from None
    return out


# ---------------------------------------------------------------------------------------------
# the database
# ---------------------------------------------------------------------------------------------
class CalibrationDB:
    """A directory of calibration entries (see the module docstring for the format).

    ``CalibrationDB(path)`` opens the database at ``path`` (reading ``calib_db.json`` when it
    exists — malformed files raise :class:`CalibrationDBError` naming the file and the field),
    or starts an empty one that :meth:`save` creates. Entries are kept sorted by
    (valid_from, name); the indices returned by :meth:`for_times` refer to :meth:`entries`.
    """

    def __init__(self, path):
        self.path = Path(path)
        self.index_path = self.path / INDEX_NAME
        self._entries: list[CalibrationEntry] = []
        self._files: dict[str, tuple[str, str]] = {}  # entry name -> (file name, sha256) on disk
        if self.index_path.exists():
            self._read_index()

    # --- reading -----------------------------------------------------------------------------
    def _read_index(self) -> None:
        p = self.index_path
        try:
            doc = json.loads(p.read_text())
        except json.JSONDecodeError as err:
            raise CalibrationDBError(p, "<json>", f"is not valid JSON (line {err.lineno}, "
                                     f"column {err.colno}: {err.msg})") from None
        if not isinstance(doc, dict):
            raise CalibrationDBError(p, "<root>", "must be a JSON object")
        if "format_version" not in doc:
            raise CalibrationDBError(p, "format_version", "is missing")
        if doc["format_version"] != FORMAT_VERSION:
            raise CalibrationDBError(p, "format_version", f"is {doc['format_version']!r}; this "
                                     f"version of lhaaso-joint reads format {FORMAT_VERSION}")
        raw = doc.get("entries")
        if not isinstance(raw, list):
            raise CalibrationDBError(p, "entries", "is missing or not a list")
        entries = []
        for i, e in enumerate(raw):
            entries.append(self._parse_entry(e, f"entries[{i}]"))
        for a_i, a in enumerate(entries):
            for b in entries[a_i + 1:]:
                if a.name == b.name:
                    raise CalibrationDBError(p, "entries", f"has two entries named {a.name!r}")
                if a.detector_set & b.detector_set and a.overlaps(b):
                    raise CalibrationDBError(p, "entries", f"entries {a.name!r} and {b.name!r} "
                                             "overlap in time for "
                                             f"{sorted(a.detector_set & b.detector_set)}")
        self._entries = sorted(entries, key=lambda e: (e.mjd_range[0], e.name))

    def _parse_entry(self, e, where: str) -> CalibrationEntry:
        p = self.index_path

        def need(key, kind, obj=e, at=where):
            if not isinstance(obj, dict) or key not in obj:
                raise CalibrationDBError(p, f"{at}.{key}", "is missing")
            v = obj[key]
            if not isinstance(v, kind) or isinstance(v, bool) and kind is not bool:
                names = kind.__name__ if isinstance(kind, type) else "/".join(k.__name__ for k in kind)
                raise CalibrationDBError(p, f"{at}.{key}", f"must be a {names}, got {type(v).__name__}")
            return v

        if not isinstance(e, dict):
            raise CalibrationDBError(p, where, "must be a JSON object")
        name = need("name", str)
        times = {}
        for key in ("valid_from", "valid_to"):
            iso = need(key, str)
            mjd = need(f"{key}_mjd", (int, float))
            try:
                from astropy.time import Time

                t = Time(iso, format="isot", scale="utc")
            except ValueError as err:
                msg = str(err).splitlines()[0]
                raise CalibrationDBError(p, f"{where}.{key}", f"is not an ISO UTC time "
                                         f"'YYYY-MM-DDThh:mm:ss[.ffffff]' ({iso!r}: {msg})") from None
            if abs(float(t.mjd) - float(mjd)) > _MJD_TOLERANCE:
                raise CalibrationDBError(p, f"{where}.{key}_mjd", f"= {mjd} disagrees with "
                                         f"{where}.{key} = {iso} (MJD {float(t.mjd):.9f})")
            times[key] = t
        dets = need("detectors", dict)
        configs = {}
        for det, cfg in dets.items():
            at = f"{where}.detectors.{det}"
            if det not in DETECTORS:
                raise CalibrationDBError(p, at, f"is not a detector (choose among {DETECTORS})")
            if not isinstance(cfg, dict):
                raise CalibrationDBError(p, at, "must be a JSON object")
            try:
                configs[det] = DetectorConfig(det, layout=need("layout", str, cfg, at),
                                              layout_options=cfg.get("layout_options", {}),
                                              dead=need("dead", dict, cfg, at))
                configs[det].live_masks()       # the layout exists and knows the dead ids
            except (ValueError, TypeError) as err:
                raise CalibrationDBError(p, at, f"is invalid: {err}") from None
        arrays = need("arrays", dict)
        fname = need("file", str, arrays, f"{where}.arrays")
        sha = need("sha256", str, arrays, f"{where}.arrays")
        fields = need("fields", dict, arrays, f"{where}.arrays")
        for det, flds in fields.items():
            if det not in configs:
                raise CalibrationDBError(p, f"{where}.arrays.fields.{det}",
                                         "is not among the entry's detectors")
            if not isinstance(flds, dict):
                raise CalibrationDBError(p, f"{where}.arrays.fields.{det}", "must be a JSON object")
            known = DETECTOR_MODULES[det].Response._fields
            for f, meta in flds.items():
                if f not in known:
                    raise CalibrationDBError(p, f"{where}.arrays.fields.{det}.{f}",
                                             f"is not a field of {det}.Response")
                need("shape", list, meta, f"{where}.arrays.fields.{det}.{f}")
        if "/" in fname or "\\" in fname or fname.startswith("."):
            raise CalibrationDBError(p, f"{where}.arrays.file", f"must be a bare file name, got {fname!r}")
        npz = self.path / ARRAY_DIR / fname
        if not npz.is_file():
            raise CalibrationDBError(p, f"{where}.arrays.file", f"names {npz}, which does not exist")
        software = e.get("software", {})
        files = e.get("input_files", [])
        if not isinstance(files, list) or not all(isinstance(f, str) for f in files):
            raise CalibrationDBError(p, f"{where}.input_files", "must be a list of strings")
        try:
            entry = CalibrationEntry(
                name=name, valid_from=times["valid_from"], valid_to=times["valid_to"],
                detectors=configs, parameters=_LazyArrays(npz, sha, fields, where),
                input_files=tuple(files), software=dict(software),
                created=e.get("created") or None, notes=str(e.get("notes", "")))
        except ValueError as err:
            raise CalibrationDBError(p, where, f"is invalid: {err}") from None
        self._files[name] = (fname, sha)
        return entry

    # --- queries -----------------------------------------------------------------------------
    def entries(self) -> list[CalibrationEntry]:
        """The entries, sorted by (valid_from, name)."""
        return list(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def entry(self, key) -> CalibrationEntry:
        """An entry by index (into :meth:`entries`), by name, or the entry itself."""
        if isinstance(key, CalibrationEntry):
            return key
        if isinstance(key, (int, np.integer)):
            return self._entries[int(key)]
        for e in self._entries:
            if e.name == key:
                return e
        raise KeyError(f"{self.index_path}: no entry named {key!r}")

    def for_times(self, mjd, detector: str | None = None) -> np.ndarray:
        """Index (into :meth:`entries`) of the entry valid at each time, −1 where none.

        mjd : array of UTC MJD (float64; NaN or −1 for unknown times give −1) or astropy Time
        detector : consider only entries that calibrate this detector (they never overlap);
            None: all entries — a time covered by two entries (of disjoint detector sets) is
            ambiguous and raises ValueError (pass ``detector``)
        """
        t = np.asarray(mjd.utc.mjd if hasattr(mjd, "utc") else mjd, np.float64)
        idx = np.full(t.shape, -1, np.int64)
        count = np.zeros(t.shape, np.int32)
        for i, e in enumerate(self._entries):
            if detector is not None and detector not in e.detectors:
                continue
            inside = e.contains(t)
            idx[inside] = i
            count += inside
        if np.any(count > 1):
            bad = t[count > 1]
            raise ValueError(f"{self.index_path}: {bad.size} time(s) (first MJD {float(bad.flat[0]):.6f}) "
                             "lie in several entries of different detectors; pass detector=")
        return idx

    def for_time(self, mjd, detector: str | None = None) -> CalibrationEntry | None:
        """The entry valid at ``mjd`` (UTC MJD or astropy Time), None if there is none."""
        i = int(self.for_times(np.asarray([mjd.utc.mjd if hasattr(mjd, "utc") else mjd]),
                               detector)[0])
        return None if i < 0 else self._entries[i]

    def geometry(self, entry, detector: str):
        """The Geometry of ``detector`` in ``entry``'s period (layout and dead channels)."""
        return self.entry(entry).geometry(detector)

    def response(self, entry, detector: str, nominal_geometry=None):
        """``detector``'s Response of ``entry``: ``Response.nominal(geometry)`` with the stored
        fields replaced; ``nominal_geometry`` None uses :meth:`geometry`. The stored arrays must
        match the geometry's channel counts (CalibrationDBError otherwise)."""
        e = self.entry(entry)
        cfg = e._config(detector)
        module = DETECTOR_MODULES[detector]
        geometry = cfg.geometry() if nominal_geometry is None else nominal_geometry
        nominal = module.Response.nominal(geometry)
        stored = e.parameters.get(detector, {})
        npz = self.path / ARRAY_DIR / self._files[e.name][0] if e.name in self._files else self.path
        values = {}
        for f, arr in stored.items():
            ref = getattr(nominal, f)
            if np.shape(arr) != np.shape(ref):
                raise CalibrationDBError(npz, _array_key(detector, f),
                                         f"has shape {np.shape(arr)} but the geometry needs "
                                         f"{np.shape(ref)} (entry {e.name!r} was calibrated on the "
                                         f"{detector.upper()} layout {cfg.layout!r}; build the "
                                         f"geometry with db.geometry(entry, {detector!r}))")
            values[f] = _like(arr, ref)
        return nominal._replace(**values)

    # --- writing -----------------------------------------------------------------------------
    def add(self, entry: CalibrationEntry, replace: bool = False) -> None:
        """Add ``entry`` (in memory; :meth:`save` writes). Refused (ValueError) when its name is
        taken or its validity overlaps an entry sharing a detector, unless ``replace=True``,
        which removes those entries first. The arrays are checked against the period's geometry."""
        self._check_shapes(entry)
        clash = [e for e in self._entries if e.name == entry.name
                 or (e.detector_set & entry.detector_set and e.overlaps(entry))]
        if clash and not replace:
            e = clash[0]
            what = ("has the same name" if e.name == entry.name else
                    f"overlaps it for {sorted(e.detector_set & entry.detector_set)} "
                    f"([{_iso(e.valid_from)}, {_iso(e.valid_to)}))")
            raise ValueError(f"{self.index_path}: entry {entry.name!r} "
                             f"([{_iso(entry.valid_from)}, {_iso(entry.valid_to)})) refused: entry "
                             f"{e.name!r} {what}; use replace=True to replace it")
        for e in clash:
            self._entries.remove(e)
            self._files.pop(e.name, None)
        self._entries.append(entry)
        self._entries.sort(key=lambda e: (e.mjd_range[0], e.name))

    def remove(self, key) -> None:
        """Remove an entry (by index, name or object); :meth:`save` writes."""
        e = self.entry(key)
        self._entries.remove(e)
        self._files.pop(e.name, None)

    def _check_shapes(self, entry: CalibrationEntry) -> None:
        for det, fields in entry.parameters.items():
            nominal = DETECTOR_MODULES[det].Response.nominal(entry.geometry(det))
            for f, arr in fields.items():
                if f not in nominal._fields:
                    raise ValueError(f"entry {entry.name!r}: {f!r} is not a field of {det}.Response")
                if np.shape(arr) != np.shape(getattr(nominal, f)):
                    raise ValueError(f"entry {entry.name!r}: {det}.{f} has shape {np.shape(arr)}, "
                                     f"the period's geometry needs {np.shape(getattr(nominal, f))}")
                if not np.all(np.isfinite(np.asarray(arr, np.float64))):
                    raise ValueError(f"entry {entry.name!r}: {det}.{f} has non-finite values")

    def save(self) -> None:
        """Write the database: new array files, then the index (atomically), then remove array
        files the index no longer names."""
        array_dir = self.path / ARRAY_DIR
        records = []
        for e in self._entries:
            if e.name not in self._files:
                data = _npz_bytes(e.parameters)
                sha = hashlib.sha256(data).hexdigest()
                fname = f"{e.name}.{sha[:12]}.npz"
                atomic_write(array_dir / fname, data)
                self._files[e.name] = (fname, sha)
            fname, sha = self._files[e.name]
            records.append(self._entry_json(e, fname, sha))
        doc = {"format_version": FORMAT_VERSION,
               "description": "lhaaso-joint calibration database (docs/calibration.md): one "
                              "entry per run period, valid on [valid_from, valid_to) UTC; arrays "
                              f"in {ARRAY_DIR}/<file>.npz under keys '<detector>.<field>'",
               "time_scale": "utc",
               "entries": records}
        atomic_write(self.index_path, (_dumps(doc) + "\n").encode())
        keep = {f for f, _ in self._files.values()}
        if array_dir.is_dir():
            for f in array_dir.glob("*.npz"):
                if f.name not in keep:
                    f.unlink()

    @staticmethod
    def _entry_json(e: CalibrationEntry, fname: str, sha: str) -> dict:
        lo, hi = e.mjd_range
        params = e.parameters
        if isinstance(params, _LazyArrays):
            fields = params._fields
        else:
            fields = {det: {f: _summary(np.asarray(v)) for f, v in flds.items()}
                      for det, flds in params.items()}
        return {"name": e.name,
                "valid_from": _iso(e.valid_from), "valid_from_mjd": lo,
                "valid_to": _iso(e.valid_to), "valid_to_mjd": hi,
                "detectors": {d: c.to_json() for d, c in e.detectors.items()},
                "software": e.software, "input_files": list(e.input_files),
                "created": _iso(e.created), "notes": e.notes,
                "arrays": {"file": fname, "sha256": sha, "fields": fields}}


def _like(arr: np.ndarray, ref):
    """``arr`` in the Python/numpy type of the nominal field ``ref`` (tuple, float or array), so
    that the Response keeps the nominal pytree structure."""
    if isinstance(ref, tuple):
        return tuple(float(v) for v in np.asarray(arr).reshape(-1))
    if isinstance(ref, (float, int)) and not isinstance(ref, bool):
        return type(ref)(np.asarray(arr).reshape(()))
    return np.asarray(arr, dtype=np.asarray(ref).dtype)
