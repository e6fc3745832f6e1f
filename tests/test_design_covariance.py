"""The pair engine of design/covariance.py against the full covariance matrix.

``covariance_pairs`` takes two routes: a column met in many pairs (a nation compared with each
territory) is applied to the stage's quadratic form once (``Q y``), the other pairs use their
columns directly. Both must give the entries of ``covariance_of_totals`` on every kind of stage
(strata with fpc, two stages, Hartley–Rao PPS) and with calibration residuals.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import sparse

from evalterritoire.design.covariance import covariance_of_totals, covariance_pairs
from evalterritoire.design.survey import SurveyDesign

FIX = Path(__file__).parent / "fixtures" / "r" / "methods"


def _design(name: str) -> SurveyDesign:
    if name == "twostage":
        data = pd.read_csv(FIX / "twostage.csv")
        return SurveyDesign(
            data, weight="w", strata="h", psu="psu", fpc="fpc1", psu2="ssu", fpc2="fpc2"
        )
    if name == "hartley_rao":
        return SurveyDesign(pd.read_csv(FIX / "election_pps.csv"), fpc="p", pps="hartley_rao")
    data = pd.read_csv(FIX / "strat.csv")
    design = SurveyDesign(data, weight="w", strata="h", psu="psu", fpc="N")
    totals = (data.groupby("h")["w"].sum() * 1.1).to_dict()
    return design.calibrate({"h": totals}, {"x": float((data["w"] * data["x"]).sum() * 0.9)})


def _contributions(n: int, seed: int) -> sparse.csr_matrix:
    """Ten sparse domain-like columns and two dense whole-like columns."""
    rng = np.random.default_rng(seed)
    dom = rng.integers(0, 10, n)
    z = np.zeros((n, 12))
    z[np.arange(n), dom] = rng.normal(size=n)
    z[:, 10:] = rng.normal(size=(n, 2))
    return sparse.csr_matrix(z)


@pytest.mark.parametrize("name", ["twostage", "hartley_rao", "calibrated"])
def test_pairs_match_the_full_matrix(name: str) -> None:
    design = _design(name)
    z = _contributions(len(design.data), seed=len(name))
    full = covariance_of_totals(design, z)
    doms = np.arange(10)
    # each domain with each dense column (both orders), the dense ones together, and a few
    # domain pairs met once (the direct route)
    i = np.concatenate([doms, np.full(10, 10), doms, np.full(10, 11), [10, 11, 10], [0, 3, 7]])
    j = np.concatenate([np.full(10, 10), doms, np.full(10, 11), doms, [10, 11, 11], [1, 3, 2]])
    got = covariance_pairs(design, z, None, i, j)
    np.testing.assert_allclose(got, full[i, j], rtol=1e-11, atol=1e-12 * np.abs(full).max())
    dense = covariance_pairs(design, z.toarray(), None, i, j)
    np.testing.assert_allclose(dense, full[i, j], rtol=1e-11, atol=1e-12 * np.abs(full).max())
