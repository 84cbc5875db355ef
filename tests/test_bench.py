"""Tiny run of the throughput benchmark (joint.bench): both fitters produce finite rates and
the batched fitter reaches the iminuit minimum on the same likelihood."""
import math

import numpy as np
import pytest

pytest.importorskip("iminuit", reason="iminuit is needed for the batched-vs-iminuit benchmark")


@pytest.fixture(scope="module")
def bench():
    from joint.bench import run_bench

    return run_bench(n_events=16, n_iminuit=4, batch_size=16, seed=5, out=None)


def test_rates_and_fractions(bench):
    for key in ("batched", "iminuit"):
        eps = bench[key]["events_per_s"]
        assert math.isfinite(eps) and eps > 0, (key, eps)
        assert 0.0 <= bench[key]["converged_fraction"] <= 1.0
    assert math.isfinite(bench["ratio"]) and bench["ratio"] > 0
    assert bench["batched"]["n_events"] == 16 and bench["iminuit"]["n_events"] == 4


def test_same_minimum(bench):
    a = bench["agreement"]
    both = np.asarray(a["both_converged"])
    assert both.any(), "no event converged in both fitters"
    dnll = np.asarray(a["nll_batched"])[both] - np.asarray(a["nll_iminuit"])[both]
    # iminuit may not find a point more than ~1 nll unit below the batched minimum
    assert np.all(np.isfinite(dnll))
    assert np.all(dnll < 1.0), dnll


def test_table_has_ratio_line():
    from joint.bench import format_table

    r = {"quality": {"angle68_deg": 0.1, "core68_m": 1.0, "dlog10e_std": 0.05}, "converged_fraction": 1.0,
         "n_events": 4, "events_per_s": 10.0, "first_call_s": 1.0, "fit_s": 0.4, "median_nfcn": 100,
         "median_ngrad": 10, "hesse_valid_fraction": 1.0}
    res = {"batched": dict(r, events_per_s=200.0), "batched_subset": dict(r, events_per_s=None),
           "iminuit": r, "n_events": 4, "batch_size": 4, "prepare_s": 0.1, "prepare_first_call_s": 1.0,
           "agreement": {"n_both": 4, "median_abs_dnll": 1e-4, "max_dnll": 1e-4}, "ratio": 20.0}
    assert "ratio: 20" in format_table(res).splitlines()[-1]
