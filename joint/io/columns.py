"""The declared schema of the reconstruction output tree ``reco``: name, dtype, unit and
description of every column that ``joint.runner.reconstruct_files`` writes.

One declaration feeds three consumers:

* the ROOT writer (``reconstruct_files``): :func:`check` rejects a column that is not declared
  or whose dtype kind / per-event shape disagrees, and :func:`branch_types` gives ``mktree`` the
  declared dtypes;
* the astropy table (``joint.sky.events_table``): every column gets its unit and description;
* ``docs/event_files.md``: the column table between the ``reco-columns`` markers is
  :func:`markdown_table` (``python -m joint.io.columns --write-docs docs/event_files.md``
  regenerates it; ``tests/test_columns.py`` fails when it is stale).

Adding an output column means declaring it here, nothing else.

Units are astropy-parsable strings ("m", "rad", "ns", "g / cm2", "deg", "d"); ``""`` is
dimensionless (charges in photoelectrons [PE] and particle counts included: astropy has no
photoelectron unit; the description says PE); ``None`` means mixed units (only
``reco_covariance``, whose elements carry the units of the Shower fields they pair).
``log10_energy`` columns are dimensionless numbers log10(E/GeV) (astropy's ``dex(GeV)`` would
make them function quantities, on which ``abs``, ``**`` and comparisons with plain numbers fail);
``joint.sky.events_table`` adds ``energy`` in TeV.

Per-detector columns are declared once, as patterns with ``{det}`` (``nll_{det}``), expanded
over :data:`DETECTORS`. Module imports: numpy only.
"""
from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from typing import Mapping

import numpy as np

__all__ = ["Column", "DETECTORS", "FIELDS", "FIELD_UNITS", "SKY", "COLUMNS", "lookup", "check",
           "branch_types", "expected_names", "example_columns", "markdown_table",
           "docs_section", "write_docs", "DOCS_BEGIN", "DOCS_END"]

#: Detectors that have per-detector columns (``{det}`` patterns): the built detectors of
#: ``detectors.registry.BUILT`` (tests/test_columns.py checks they agree).
DETECTORS = ("km2a", "wcda", "wfcta")

#: Shower fields (``detectors.shower.FIELDS``, same order; tests/test_columns.py checks it) with
#: the unit of their canonical quantity and a description.
FIELD_UNITS = {
    "core_x": ("m", "x of the shower core on the plane z = 0 (array frame)"),
    "core_y": ("m", "y of the shower core on the plane z = 0 (array frame)"),
    "zenith": ("rad", "zenith angle of the arrival direction"),
    "azimuth": ("rad", "azimuth of the arrival direction, from +x towards +y (array frame)"),
    "log10_energy": ("", "log10(E/GeV) of the primary energy"),
    "xmax": ("g / cm2", "slant depth of the shower maximum"),
    "log_muon_scale": ("", "ln(N_μ / N_μ of a proton of the same energy)"),
    "t0": ("ns", "time the shower plane crosses the core"),
}
FIELDS = tuple(FIELD_UNITS)

#: Sky columns of ``joint.sky.sky_columns``
SKY = ("ra", "dec", "ra_dec_err", "glon", "glat")

#: When a column is written (the ``when`` of :class:`Column`; also a detector name of
#: :data:`DETECTORS`: written when that detector is fitted)
WHEN = {
    "always": "every run",
    "fitted": "per fitted detector",
    "truth": "input has truth",
    "presence": "input has the flag",
    "calib": "`--calib-db`, per fitted detector",
    "classify": "`lhaaso-joint classify` (analysis/ml), its model present",
}

_KIND_NAMES = {"f": "float", "i": "signed integer", "u": "unsigned integer", "b": "bool",
               "c": "complex", "U": "string", "S": "bytes", "O": "object"}


@dataclass(frozen=True)
class Column:
    """One declared output column.

    name : the branch name; may contain ``{det}`` (one column per detector of :data:`DETECTORS`)
    dtype : numpy dtype the branch is written with
    unit : astropy unit string ("" dimensionless, None mixed units)
    description : one line; ``{det}``/``{DET}`` are replaced by the detector (lower/upper case)
    shape : per-event shape, None for a scalar per event; each entry an int (fixed) or a str
        naming a length that depends on the layout (e.g. "n_tel")
    when : which runs write it (a key of :data:`WHEN`, or a detector: when it is fitted)
    """

    name: str
    dtype: np.dtype
    unit: str | None
    description: str
    shape: tuple | None = None
    when: str = "always"

    def __post_init__(self):
        object.__setattr__(self, "dtype", np.dtype(self.dtype))
        if self.shape is not None:
            object.__setattr__(self, "shape", tuple(self.shape))
        if self.when not in WHEN and self.when not in DETECTORS:
            raise ValueError(f"column {self.name!r}: when={self.when!r} is not one of "
                             f"{list(WHEN) + list(DETECTORS)}")

    @property
    def is_pattern(self) -> bool:
        return "{det}" in self.name

    def expand(self, det: str) -> "Column":
        """The concrete column of detector ``det`` (``self`` when not a pattern)."""
        sub = lambda s: s.replace("{det}", det).replace("{DET}", det.upper())
        return Column(sub(self.name), self.dtype, self.unit, sub(self.description), self.shape,
                      self.when)

    @property
    def type_label(self) -> str:
        """``float64``, ``float64[64]``, ``float64[n_tel]``."""
        if self.shape is None:
            return self.dtype.name
        return self.dtype.name + "".join(f"[{d}]" for d in self.shape)


def _field_columns():
    out = []
    for f, (unit, desc) in FIELD_UNITS.items():
        out.append(Column(f"reco_{f}", np.float64, unit, f"fitted {desc}"))
    for f, (unit, desc) in FIELD_UNITS.items():
        out.append(Column(f"reco_{f}_err", np.float64, unit, f"error of `reco_{f}`: √ of the "
                          "covariance diagonal (0 for fixed fields)"))
    k = len(FIELDS)
    out.append(Column("reco_covariance", np.float64, None,
                      f"fit covariance, {k}×{k} in Shower field order (" + ", ".join(FIELDS)
                      + "), row-major; element (i, j) in unit_i · unit_j of the fields' units",
                      shape=(len(FIELDS) ** 2,)))
    for f, (unit, desc) in FIELD_UNITS.items():
        out.append(Column(f"seed_{f}", np.float64, unit, f"seed the fit started from: {desc}"))
    return out


def _truth_columns():
    out = [Column(f"true_{f}", np.float64, unit, f"simulated {desc} (NaN when unknown)",
                  when="truth") for f, (unit, desc) in FIELD_UNITS.items()]
    out.append(Column("true_mass_number", np.float64, "", "mass number A of the primary, 0 for "
                      "photons (copied from the input)", when="truth"))
    return out


#: Every column of the ``reco`` tree, in the order of the docs table.
COLUMNS: tuple = tuple([
    Column("run", np.int32, "", "run number (copied from the input)"),
    Column("event_id", np.int64, "", "event number within the run (copied from the input)"),
    Column("time_mjd", np.float64, "d", "event time, MJD (UTC); −1 when unknown (G4KM2A MC)"),
    *_field_columns(),
    Column("nll", np.float64, "", "total −ln L at the minimum (detectors + Xmax prior)"),
    Column("nll_{det}", np.float64, "", "−ln L of {DET} at the minimum (prior excluded); 0 when "
           "the event has no data from {DET}", when="fitted"),
    Column("status", np.int32, "", "fit status: 0 converged, 1 max_iter, 2 non_finite, "
           "3 out_of_bounds"),
    Column("n_iter", np.int32, "", "iterations used (first pass + straggler passes)"),
    Column("gof_{det}", np.float64, "", "goodness of fit of {DET}: z-score (D − E[D])/√Var[D] "
           "of the Poisson deviance of its charges in effective counts q/F over the channels "
           "with μ/F ≥ 1 (`detectors.channel.deviance_sums`); ≈ N(0, 1) when the model describes "
           "the detector; NaN when the event has no data from it", when="fitted"),
    Column("gof_{det}_dev", np.float64, "", "charge deviance of {DET} per channel used (NaN "
           "when none)", when="fitted"),
    Column("gof_{det}_n", np.int32, "", "number of channels of {DET} in `gof_{det}`",
           when="fitted"),
    Column("ra", np.float64, "deg", "right ascension (ICRS) of the fitted direction at the "
           "event time and the LHAASO site (`joint/sky.py`); NaN without a valid time"),
    Column("dec", np.float64, "deg", "declination (ICRS) of the fitted direction; NaN without a "
           "valid time"),
    Column("ra_dec_err", np.float64, "deg", "direction error radius sqrt((cos²δ σ_α² + σ_δ²)/2) "
           "from the fit covariance (`docs/sky.md`)"),
    Column("glon", np.float64, "deg", "galactic longitude of the fitted direction"),
    Column("glat", np.float64, "deg", "galactic latitude of the fitted direction"),
    Column("ne", np.float64, "", "ED particles (PE/gain) within [−30, +50] ns of the fitted "
           "front and 200 m of the core", when="km2a"),
    Column("nmu", np.float64, "", "MD muons (PE/gain) 40–200 m from the core within "
           "[−50, +100] ns of the front", when="km2a"),
    Column("age", np.float64, "", "lateral age of the fitted shower", when="km2a"),
    Column("core_edge_distance", np.float64, "m", "signed distance of the fitted core to the "
           "edge of the ED area (convex hull of the live EDs within 575 m); > 0 inside, < 0 "
           "outside (`analysis.observables.core_quality`)", when="km2a"),
    Column("core_ed_gap", np.float64, "m", "distance of the fitted core to the nearest live ED "
           "(large on the ED-free area around WCDA)", when="km2a"),
    Column("core_inside", np.int8, "", "1 when the core is inside the ED area and within 25 m "
           "of an ED (the containment selection), else 0", when="km2a"),
    Column("wcda_nhit", np.int32, "", "WCDA cells hit within [−30, +50] ns of the fitted front "
           "(slewing included)", when="wcda"),
    Column("wcda_npe", np.float64, "", "summed charge of those cells [PE]", when="wcda"),
    Column("compactness", np.float64, "", "N_hit / CxPE_45, charges in pond-1 PE "
           "(`docs/wcda.md`)", when="wcda"),
    Column("cxpe", np.float64, "", "largest charge beyond 45 m of the core [pond-1 PE]",
           when="wcda"),
    Column("pincness", np.float64, "", "HAWC PINCness (≈ 1 for a smooth shower)", when="wcda"),
    Column("hillas_size", np.float64, "", "per WFCTA telescope: total charge of the cleaned, "
           "background-subtracted image [PE]", shape=("n_tel",), when="wfcta"),
    Column("hillas_x", np.float64, "rad", "per telescope: image centroid ξ in the camera's "
           "tangent plane", shape=("n_tel",), when="wfcta"),
    Column("hillas_y", np.float64, "rad", "per telescope: image centroid η in the camera's "
           "tangent plane", shape=("n_tel",), when="wfcta"),
    Column("hillas_length", np.float64, "rad", "per telescope: rms length of the image along "
           "its major axis", shape=("n_tel",), when="wfcta"),
    Column("hillas_width", np.float64, "rad", "per telescope: rms width of the image",
           shape=("n_tel",), when="wfcta"),
    Column("hillas_psi", np.float64, "rad", "per telescope: orientation of the major axis from "
           "+ξ towards +η, in (−π/2, π/2]", shape=("n_tel",), when="wfcta"),
    Column("hillas_dist", np.float64, "rad", "per telescope: distance from the image centroid "
           "to the arrival direction in the camera", shape=("n_tel",), when="wfcta"),
    Column("hillas_alpha", np.float64, "rad", "per telescope: angle between the major axis and "
           "the centroid–direction line, in [0, π/2]", shape=("n_tel",), when="wfcta"),
    Column("hillas_x_dist", np.float64, "g / cm2", "per telescope: slant depth on the shower "
           "axis the image centroid points at (uncalibrated Dist estimator, "
           "`analysis/dist_xmax.py`)", shape=("n_tel",), when="wfcta"),
    Column("x_dist", np.float64, "g / cm2", "`hillas_x_dist` of the brightest telescope",
           when="wfcta"),
    Column("wfcta_size", np.float64, "", "total image charge of all telescopes [PE]",
           when="wfcta"),
    Column("calib_{det}", np.int32, "", "index of the calibration-database entry used for "
           "{DET} (−1 = nominal; the file's `calibration` string names the entries)",
           when="calib"),
    Column("gammaness", np.float64, "", "γ/hadron network's probability that the event is a "
           "photon (KM2A DGCNN, `docs/ml.md`); NaN when the fit did not converge",
           when="classify"),
    Column("p_light", np.float64, "", "composition network's probability that the primary is "
           "light (H or He) (`docs/ml.md`)", when="classify"),
    Column("ln_a", np.float64, "", "composition network's estimate of ln A of the primary "
           "(`docs/ml.md`)", when="classify"),
    *_truth_columns(),
    Column("present_{det}", np.int8, "", "0 when {DET} did not take part in the event (copied "
           "from the input)", when="presence"),
])


def _build_index(columns):
    index = {}
    for c in columns:
        for concrete in ([c.expand(d) for d in DETECTORS] if c.is_pattern else [c]):
            if concrete.name in index:
                raise ValueError(f"column {concrete.name!r} is declared twice")
            index[concrete.name] = concrete
    return index


_INDEX = _build_index(COLUMNS)


def lookup(name: str) -> Column:
    """The declared column ``name`` (patterns expanded: ``lookup("nll_wcda")``).

    Raises KeyError naming the column when it is not declared."""
    try:
        return _INDEX[name]
    except KeyError:
        raise KeyError(f"output column {name!r} is not declared in joint/io/columns.py "
                       "(declare its dtype, unit and description there)") from None


def _kind(dtype) -> str:
    return _KIND_NAMES.get(np.dtype(dtype).kind, np.dtype(dtype).kind)


def check(cols: Mapping, where: str) -> None:
    """Check output columns against the declaration: every name declared, the dtype of the
    declared kind (float/signed/unsigned integer; the width may differ: the writer casts), one
    row per event with the declared per-event shape, and every column with the same number of
    rows. Raises a one-line ValueError naming ``where`` and the column."""
    n_ref = None
    for name, value in cols.items():
        try:
            col = lookup(name)
        except KeyError:
            raise ValueError(f"{where}: output column {name!r} is not declared in "
                             "joint/io/columns.py (declare its dtype, unit and description "
                             "there)") from None
        a = np.asarray(value)
        if a.dtype.kind != col.dtype.kind:
            raise ValueError(f"{where}: output column {name!r} has dtype {a.dtype} "
                             f"({_kind(a.dtype)}), declared {col.dtype} ({_kind(col.dtype)})")
        want = () if col.shape is None else col.shape
        if a.ndim != 1 + len(want) or any(isinstance(w, int) and w != s
                                          for w, s in zip(want, a.shape[1:])):
            declared = ", ".join(["n_events"] + [str(w) for w in want])
            raise ValueError(f"{where}: output column {name!r} has shape {a.shape}, declared "
                             f"({declared})")
        if n_ref is None:
            n_ref = (name, a.shape[0])
        elif a.shape[0] != n_ref[1]:
            raise ValueError(f"{where}: output column {name!r} has {a.shape[0]} rows, "
                             f"{n_ref[0]!r} has {n_ref[1]}")


def branch_types(cols: Mapping, where: str = "reco tree") -> dict:
    """The ``{name: dtype or (dtype, shape)}`` that uproot's ``mktree`` wants for ``cols``, in
    the declared dtypes (per-event shapes from the data, checked by :func:`check` first)."""
    check(cols, where)
    out = {}
    for name, value in cols.items():
        col = lookup(name)
        out[name] = (col.dtype if col.shape is None
                     else (col.dtype, tuple(np.shape(value)[1:])))
    return out


def expected_names(detectors, truth: bool = False, presence=(), calib: bool = False) -> list:
    """Names of the columns a run writes: ``detectors`` fitted (any subset of
    :data:`DETECTORS`), with ``truth`` copied, the presence flags of the detectors in
    ``presence`` copied, ``calib`` (a calibration database: ``calib_<det>``)."""
    dets = [d for d in DETECTORS if d in detectors]
    unknown = set(detectors) - set(DETECTORS)
    if unknown:
        raise ValueError(f"unknown detectors {sorted(unknown)}; declared: {DETECTORS}")
    names = []
    for c in COLUMNS:
        if c.when == "always":
            names.append(c.name)
        elif c.when == "fitted":
            names += [c.expand(d).name for d in dets]
        elif c.when in DETECTORS:
            if c.when in dets:
                names.append(c.name)
        elif c.when == "truth":
            if truth:
                names.append(c.name)
        elif c.when == "presence":
            names += [c.expand(d).name for d in DETECTORS if d in presence]
        elif c.when == "calib":
            if calib:
                names += [c.expand(d).name for d in dets]
    return names


def example_columns(n: int, detectors, n_tel: int = 2, **kw) -> dict:
    """Zero-filled columns as a run with ``detectors`` writes them (declared dtypes and shapes;
    ``kw`` as :func:`expected_names`); for tests and empty outputs."""
    out = {}
    for name in expected_names(detectors, **kw):
        c = lookup(name)
        shape = () if c.shape is None else tuple(d if isinstance(d, int) else n_tel
                                                 for d in c.shape)
        out[name] = np.zeros((n,) + shape, c.dtype)
    return out


def _unit_label(unit):
    if unit is None:
        return "mixed"
    return "—" if unit == "" else f"`{unit}`"


def markdown_table() -> str:
    """The docs table of the ``reco`` tree (one row per declared column or pattern; a pattern's
    ``{det}`` shown as ``<det>``)."""
    rows = ["`<det>`: " + ", ".join(DETECTORS) + ". Units: astropy strings; — dimensionless.",
            "", "| branch | type | unit | written | meaning |", "|---|---|---|---|---|"]
    for c in COLUMNS:
        desc = (c.description.replace("{DET}", "the detector").replace("{det}", "<det>")
                .replace("|", "\\|"))
        when = WHEN.get(c.when) or f"{c.when.upper()} fitted"
        name = c.name.replace("{det}", "<det>")
        rows.append(f"| `{name}` | {c.type_label} | {_unit_label(c.unit)} | {when} | {desc} |")
    return "\n".join(rows) + "\n"


DOCS_BEGIN = ("<!-- reco-columns:begin (generated by python -m joint.io.columns --write-docs; "
              "do not edit) -->")
DOCS_END = "<!-- reco-columns:end -->"
_DOCS_RE = re.compile(re.escape(DOCS_BEGIN) + r"\n.*?" + re.escape(DOCS_END), re.S)


def docs_section(text: str) -> str:
    """The generated part of ``text`` (between the markers, without them)."""
    m = _DOCS_RE.search(text)
    if m is None:
        raise ValueError(f"the markers {DOCS_BEGIN!r} ... {DOCS_END!r} are missing")
    return m.group(0)[len(DOCS_BEGIN) + 1:-len(DOCS_END)]


def write_docs(path) -> bool:
    """Replace the table between the markers of ``path`` by :func:`markdown_table`; True when the
    file changed."""
    from pathlib import Path

    path = Path(path)
    text = path.read_text()
    docs_section(text)  # raises without the markers
    new = _DOCS_RE.sub(lambda _: DOCS_BEGIN + "\n" + markdown_table() + DOCS_END, text)
    if new != text:
        path.write_text(new)
    return new != text


def main(argv=None) -> int:
    import argparse

    p = argparse.ArgumentParser(prog="python -m joint.io.columns",
                                description="The declared columns of the reco tree.")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--write-docs", metavar="MD", help="regenerate the table in this file")
    g.add_argument("--check-docs", metavar="MD", help="exit 1 when the table in it is stale")
    args = p.parse_args(argv)
    if args.write_docs:
        changed = write_docs(args.write_docs)
        print(f"{args.write_docs}: {'updated' if changed else 'up to date'}")
    elif args.check_docs:
        from pathlib import Path

        if docs_section(Path(args.check_docs).read_text()) != markdown_table():
            print(f"{args.check_docs}: the reco column table is stale; run python -m "
                  f"joint.io.columns --write-docs {args.check_docs}", file=sys.stderr)
            return 1
        print(f"{args.check_docs}: up to date")
    else:
        sys.stdout.write(markdown_table())
    return 0


if __name__ == "__main__":
    sys.exit(main())
