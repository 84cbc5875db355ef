"""Photon density of the WFCTA Cherenkov model against CORSIKA-IACT at five points (the core of a
100 GeV photon; 31, 57, 80, 125 m from 200 GeV ones; 2200 m, atmprof8, 290–430 nm on both sides)
for the angular models and several lateral_fraction values. The reference numbers and the model
setup are those of ``tests/test_wfcta_physics.py`` (imported from there).

Usage: .venv/bin/python benchmarks/wfcta_cherenkov_lateral.py
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

import jax  # noqa: E402

jax.config.update("jax_enable_x64", True)

from benchmarks.common import machine  # noqa: E402
from detectors import atmosphere  # noqa: E402
from analysis import cherenkov_check as cc  # noqa: E402
import test_wfcta_physics as T  # noqa: E402

DATA = ROOT.parent / "shared" / "data" / "iact"


def main():
    atm = atmosphere.load_atmprof(DATA / "atmprof8.dat")
    points = [(f"{tel['tel_core_distance_m']:.0f} m" if tel["tel_core_distance_m"] > 0 else "core",
               ev, tel, ref) for _, ev, tel, ref in cc.reference_points(DATA)]
    print(f"# WFCTA Cherenkov lateral density vs CORSIKA, {time.strftime('%Y-%m-%d')}, {machine()}")
    print("# model / CORSIKA (290-430 nm)")
    print(f"{'model':10s} {'f_lat':>5s} " + " ".join(f"{p[0]:>7s}" for p in points))
    for model, flat in [("ads", 0.2), ("ads", 0.4), ("ads", 0.7), ("ads", 1.0),
                        ("nerling", 0.4), ("nerling", 1.0)]:
        phys = T.PHYSICS._replace(angular_model=model, lateral_fraction=flat)
        ratios = [T._model_disc_density(e, tel, atm, phys) / ref for _, e, tel, ref in points]
        print(f"{model:10s} {flat:5.1f} " + " ".join(f"{r:7.2f}" for r in ratios))


if __name__ == "__main__":
    main()
