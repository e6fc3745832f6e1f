"""Survey designs: weights, strata, PSUs, fpc, lonely-PSU rules, calibration and replicate weights.

:class:`SurveyDesign` is an immutable description of how the sample was drawn. Its one numerical
primitive is :meth:`SurveyDesign.variance_of_totals`, the design-based covariance of estimated
totals of per-row contributions (R ``survey::svyrecvar`` semantics), on which the estimators of
:mod:`evalterritoire.estimates` and the model sandwich of :mod:`evalterritoire.models` are
built.

Conventions (identical to R ``survey`` 4.x unless stated)
---------------------------------------------------------
* No ``psu``: every row is its own PSU. No ``strata``: one stratum. No ``weight``: weight 1.
* No ``fpc``: sampling with replacement at the first stage (``psu2`` is then ignored for the
  variance, i.e. the "ultimate cluster" approximation). ``fpc`` is either the population number of
  PSUs of the stratum (any value > 1) or the sampling fraction (all values ≤ 1); it must be
  constant within a stratum. ``fpc2`` (needed when ``psu2`` and ``fpc`` are given) is the population
  number of second-stage units of the PSU, or the second-stage sampling fraction.
* Stratum ``h`` with ``n_h`` PSUs contributes ``(1 - n_h/N_h) n_h/(n_h - 1) Σ (t_a - t̄_h)²``
  where ``t_a`` are PSU totals of the contributions; the second stage adds, for each PSU,
  ``(n_h/N_h) (1 - m_a/M_a) m_a/(m_a - 1) Σ (t_ab - t̄_a)²`` over its sampled second-stage units.
* Lonely PSU (a stratum with one sampled PSU, not a certainty stratum by its fpc): ``fail`` raises a
  :class:`DesignError` naming the stratum; ``remove`` and ``certainty`` give the stratum no variance
  (as in R 4.1, where both rules compute the same variance); ``adjust`` uses the PSU total's
  deviation from zero (R 4.1 does not centre a lonely PSU's total) scaled by its fpc. Lonely is a
  property of the full design: a domain whose members fall in one PSU of a stratum that has
  several is not lonely (R's default ``survey.adjust.domain.lonely = FALSE``). Tested against R
  for national and domain estimates under each rule, with and without fpc.
* Domains (:meth:`SurveyDesign.subset`, the ``by=`` of the estimators) keep the full design: the
  contributions are zero outside the domain, every PSU and stratum is kept, and the domain's
  degrees of freedom are the PSUs with members minus the strata with members (replicate designs:
  the rank of the domain rows' replicate weights − 1, R ``degf`` of the subset).
* Trimming (:meth:`trim_weights`) is R ``trimWeights``: additive, equal redistribution of the
  trimmed amount to the weights inside the bounds, once or (``strict``) until none is outside.
* Calibration (:meth:`poststratify`, :meth:`rake`, :meth:`calibrate_linear`) returns a new design
  whose variance uses the residuals of the contributions regressed on the calibration variables
  with the pre-calibration weights, multiplied by the calibrated weights: this is R
  ``calibrate()`` (and ``postStratify()``) exactly. For raking R's ``rake()`` instead approximates
  those residuals by ten rounds of back-fitting within each margin; the exact residuals used here
  agree with ``calibrate(..., calfun="raking")`` (tested to 1e-6) and differ from ``rake()``
  by about 0.2 % of the SE on ``apiclus1`` and 2.2 % on the 137-row test fixture.

Layout
------
This module holds :class:`SurveyDesign` (every method and property, with its documentation),
:func:`build_design` and :func:`compute_kish_effective_n`. The methods of the big groups are
thin: their work lives in the sibling modules ``common`` (option lists, grouping helpers, the
value types ``_Stage``, ``_CalStep``, ``_Replicates`` and :class:`LinearOperator`), ``taylor``
(construction of the stages with fpc and the lonely-PSU rule, the variance of totals,
:meth:`~SurveyDesign.without_fpc`, :meth:`~SurveyDesign.linear_operator`), ``replicates``
(replicate-weight designs), ``domains`` (subsets, domain degrees of freedom and the vectorised
domain variances) and ``calibration`` (post-stratification, raking, linear calibration,
trimming).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from evalterritoire.design import calibration as _design_calibration
from evalterritoire.design import domains as _design_domains
from evalterritoire.design import replicates as _design_replicates
from evalterritoire.design import taylor as _design_taylor
from evalterritoire.design.common import (
    CALIBRATION_METHODS,
    LinearOperator,
)
from evalterritoire.errors import DesignError

__all__ = ["SurveyDesign", "build_design", "compute_kish_effective_n"]


def compute_kish_effective_n(weights: Any) -> float:
    """Kish effective sample size ``(Σw)² / Σw²``.

    Parameters
    ----------
    weights : array-like
        Positive weights.

    Returns
    -------
    float
        The effective number of respondents (equals ``n`` for equal weights).
    """
    w = np.asarray(weights, dtype=float)
    if w.size == 0 or not np.all(np.isfinite(w)):
        raise DesignError("Kish effective n needs a non-empty set of finite weights")
    return float(w.sum() ** 2 / np.square(w).sum())


class SurveyDesign:
    """An immutable survey design (Taylor linearisation or replicate weights).

    Parameters
    ----------
    data : DataFrame
        One row per respondent; the design columns below refer to its columns.
    weight : str, optional
        Sampling (or already adjusted) weight column; strictly positive, no missing value.
        Without it the weights are ``N_h / n_h`` (× ``M_a / m_a`` at the second stage) when an
        fpc is given, as in R ``svydesign``, and 1 otherwise.
    strata : str, optional
        First-stage stratum column.
    psu : str, optional
        First-stage cluster column; PSUs must be nested in strata (a label used in two strata is
        an error, relabel the PSUs).
    fpc : str, optional
        Population number of PSUs in the stratum, or the sampling fraction when every value is
        ≤ 1. Without it the first stage is treated as with replacement.
    psu2 : str, optional
        Second-stage unit column (used for the variance only together with ``fpc``).
    fpc2 : str, optional
        Population number (or fraction) of second-stage units in the PSU.
    lonely_psu : {"fail", "remove", "adjust", "certainty"}
        Rule for strata with a single sampled PSU (see the module docstring).
    pps : {"brewer", "hartley_rao"}, optional
        PSUs drawn with probability proportional to size without replacement: ``fpc`` then
        holds each PSU's inclusion probability (≤ 1, constant within the PSU) and the variance
        uses Brewer's or Hartley–Rao's approximation of the joint inclusion probabilities (R
        ``pps="brewer"`` / ``pps=HR(sum(p^2)/n)``; see :mod:`evalterritoire.design.pps`).

    Raises
    ------
    DesignError
        Unknown column, missing or non-positive weights, PSUs not nested in strata, a lonely
        PSU under ``fail`` (the message names the stratum), an fpc smaller than the number of
        sampled PSUs or not constant within a stratum.
    """

    _frozen = False

    def __init__(
        self,
        data: pd.DataFrame,
        *,
        weight: str | None = None,
        strata: str | None = None,
        psu: str | None = None,
        fpc: str | None = None,
        psu2: str | None = None,
        fpc2: str | None = None,
        lonely_psu: str = "fail",
        pps: str | None = None,
    ) -> None:
        _design_taylor.init_design(
            self,
            data,
            weight=weight,
            strata=strata,
            psu=psu,
            fpc=fpc,
            psu2=psu2,
            fpc2=fpc2,
            lonely_psu=lonely_psu,
            pps=pps,
        )
        self._frozen = True

    def _copy(self, **changes: Any) -> SurveyDesign:
        new = object.__new__(SurveyDesign)
        object.__setattr__(new, "__dict__", dict(self.__dict__))
        for key, value in changes.items():
            new.__dict__[key] = value
        return new

    def __setattr__(self, name: str, value: Any) -> None:
        if self._frozen:
            raise AttributeError("SurveyDesign is immutable; methods return new designs")
        object.__setattr__(self, name, value)

    # ------------------------------------------------------------------ replicate designs
    @classmethod
    def from_replicate_weights(
        cls,
        data: pd.DataFrame,
        *,
        weight: str,
        replicate_weights: Sequence[str],
        type: str,
        scale: float | None = None,
        rscales: Sequence[float] | float | None = None,
        rho: float | None = None,
        mse: bool = False,
    ) -> SurveyDesign:
        """A design described by full-sample and (combined) replicate weights.

        Parameters
        ----------
        data : DataFrame
            Respondents.
        weight : str
            Full-sample weight column.
        replicate_weights : sequence of str
            Replicate weight columns (already multiplied by the full-sample weights, R's
            ``combined.weights=TRUE``).
        type : {"JK1", "JKn", "bootstrap", "BRR", "Fay", "other"}
            Replication method. Without ``scale`` the default is R ``svrepdesign``'s: JK1
            ``(R-1)/R``, bootstrap ``1/(R-1)``, JKn and other 1. BRR (``1/R``) and Fay
            (``1/(R (1-rho)²)``) have a fixed scale.
        scale : float, optional
            Overall variance multiplier (JK1, JKn, bootstrap, other). For BRR and Fay a
            ``scale`` that differs from the fixed one is an error (R warns and ignores it for
            BRR, silently ignores it for Fay): the variance would otherwise not be the one asked.
        rscales : float or sequence of float, optional
            Per-replicate multipliers: one value (recycled) or exactly one per replicate column;
            required for JKn (``(n_h - 1)/n_h`` of the replicate's stratum).
        rho : float, optional
            Fay's coefficient in ``[0, 1)``; required for ``type="Fay"``, an error otherwise.
        mse : bool
            Centre the replicates on the full-sample estimate (True) or on their mean (False,
            R's default).

        Returns
        -------
        SurveyDesign
            A replicate-weight design; the estimators use replicate re-estimation. Its degrees
            of freedom are the rank of the replicate weights − 1 (R ``degf``); a domain's are the
            rank of the replicate weights of its rows − 1 (R ``degf(subset(design, ...))``).

        Raises
        ------
        DesignError
            Unknown columns or type, replicate weights missing or negative, ``rscales`` of the
            wrong length, a conflicting ``scale`` for BRR/Fay, ``rho`` missing for Fay or given
            for another type, JKn without ``rscales``.
        """
        return _design_replicates.from_replicate_weights(
            cls,
            data,
            weight=weight,
            replicate_weights=replicate_weights,
            type=type,
            scale=scale,
            rscales=rscales,
            rho=rho,
            mse=mse,
        )

    def as_replicate(
        self,
        type: str,
        *,
        replicates: int = 50,
        rho: float | None = None,
        hadamard: Any = None,
        random_state: Any = None,
        mse: bool = False,
    ) -> SurveyDesign:
        """Replicate weights created from this design's strata, PSUs and fpc (R ``as.svrepdesign``).

        Parameters
        ----------
        type : {"JK1", "JKn", "bootstrap", "BRR", "Fay"}
            Delete-one-PSU jackknife (unstratified), stratified jackknife, Rao–Wu bootstrap
            (``n_h − 1`` PSUs drawn per stratum, R ``"subbootstrap"``), balanced repeated
            replication or Fay's variant (see :mod:`evalterritoire.design.resampling`).
        replicates : int
            Number of bootstrap replicates.
        rho : float, optional
            Fay's coefficient in (0, 1), required for ``Fay``.
        hadamard : array-like, optional
            Hadamard matrix for BRR/Fay (at least pairs + 1 rows; R's ``hadamard.matrix``);
            default: the smallest Sylvester or Paley matrix.
        random_state : int or numpy Generator, optional
            Seed of the bootstrap draws.
        mse : bool
            Centre the replicates on the full-sample estimate.

        Returns
        -------
        SurveyDesign
            A replicate-weight design (combined weights ``w × factor``) with R's scale and
            rscales; its df is the rank of the replicate weights − 1.

        Raises
        ------
        DesignError
            Unknown type, JK1 on a stratified design, JKn/BRR/Fay on an unstratified one,
            BRR/Fay strata without pairs, a calibrated or PPS design, ``rho`` misused.
        """
        from evalterritoire.design.resampling import as_replicate

        return as_replicate(
            self,
            type,
            replicates=replicates,
            rho=rho,
            hadamard=hadamard,
            random_state=random_state,
            mse=mse,
        )

    # ------------------------------------------------------------------ public properties
    @property
    def data(self) -> pd.DataFrame:
        """The respondents (all rows, also those outside a subset's domain)."""
        return self._data

    @property
    def weights(self) -> np.ndarray:
        """Analysis weights (after calibration/trimming), one per row of :attr:`data`."""
        return self._w

    @property
    def domain_mask(self) -> np.ndarray:
        """Boolean mask of the rows in the current domain (all True without a subset)."""
        if self._domain is None:
            return np.ones(len(self._data), dtype=bool)
        return self._domain

    @property
    def n_strata(self) -> int:
        """Number of first-stage strata (1 for replicate designs)."""
        return self._n_strata

    @property
    def n_psu(self) -> int:
        """Number of first-stage PSUs (replicate designs: degrees of freedom + 1)."""
        if self._rep is not None:
            return self.__dict__["_rep_df"] + 1
        return self._n_psu

    @property
    def lonely_units(self) -> tuple[str, ...]:
        """Strata (and PSUs at stage 2) with a single sampled unit, handled by ``lonely_psu``."""
        return tuple(self.__dict__.get("_lonely_units", ()))

    @property
    def is_replicate(self) -> bool:
        """Whether variances come from replicate weights."""
        return self._rep is not None

    @property
    def calibration(self) -> dict[str, Any]:
        """Report of the last calibration/trimming (method, iterations, converged, ...)."""
        return dict(self._calibration)

    @property
    def df(self) -> int:
        """Design degrees of freedom: PSUs − strata, counted among rows of the domain.

        Replicate designs: rank of the replicate weights − 1, of the domain's rows for a subset
        (R ``degf``).
        """
        if self._rep is not None:
            if self._domain is None:
                return int(self.__dict__["_rep_df"])
            return int(
                _design_replicates.replicate_domain_df(self, self._domain.astype(np.int64) - 1, 1)[
                    0
                ]
            )
        if self._domain is None:
            return self._n_psu - self._n_strata
        return int(
            np.unique(self._psu[self._domain]).size - np.unique(self._strata[self._domain]).size
        )

    def kish_effective_n(self) -> float:
        """Kish effective sample size of the rows in the domain."""
        return compute_kish_effective_n(self._w[self.domain_mask])

    def __repr__(self) -> str:
        kind = "replicate" if self._rep is not None else "Taylor"
        return (
            f"SurveyDesign({kind}, n={len(self._data)}, strata={self.n_strata}, "
            f"psu={self.n_psu}, calibration={self._calibration['method']!r})"
        )

    # ------------------------------------------------------------------ domains
    def subset(self, mask: Any) -> SurveyDesign:
        """Restrict estimation to a domain while keeping the full design (R ``subset``).

        Parameters
        ----------
        mask : array-like of bool
            One value per row of :attr:`data`; missing values count as False.

        Returns
        -------
        SurveyDesign
            The same design whose contributions are zero outside the domain.
        """
        return _design_domains.subset(self, mask)

    def domain_df(self, codes: np.ndarray, n_domains: int) -> np.ndarray:
        """Degrees of freedom of each domain: PSUs with members − strata with members.

        Parameters
        ----------
        codes : ndarray of int
            Domain code of each row (``-1`` = in no domain).
        n_domains : int
            Number of domains.

        Returns
        -------
        ndarray of int
            ``(n_domains,)`` degrees of freedom. Replicate designs: rank of the replicate weights
            of the domain's rows − 1, as R ``degf`` of the ``subset`` (a domain reached by fewer
            replicates has fewer degrees of freedom). Can be 0 (one PSU, or one pattern).
        """
        return _design_domains.domain_df(self, codes, n_domains)

    # ------------------------------------------------------------------ variance
    def variance_of_totals(self, z: Any) -> np.ndarray:
        """Design covariance of estimated totals of per-row contributions (R ``svyrecvar``).

        Parameters
        ----------
        z : array-like, shape (n,) or (n, p)
            Per-row contributions already multiplied by :attr:`weights` (e.g. ``w * y`` for a
            total, ``w * (y - ȳ) / N̂`` for a mean). Rows outside the design's domain are
            zeroed.

        Returns
        -------
        ndarray, shape (p, p)
            Covariance matrix: strata centring, PSU (and second-stage) sums, fpc, lonely-PSU
            rule, and calibration residuals when the design is calibrated. Replicate designs
            return the replicate variance of the totals ``Σ (w_r / w) z``.
        """
        z = np.asarray(z, dtype=float)
        if z.ndim == 1:
            z = z[:, None]
        if z.ndim != 2 or z.shape[0] != len(self._data):
            raise DesignError(f"z must have {len(self._data)} rows, got shape {z.shape}")
        if not np.all(np.isfinite(z)):
            raise DesignError("z contains missing or infinite values")
        if self._domain is not None:
            z = z * self._domain[:, None]
        if self._rep is not None:
            ratio = self._rep.weights / self._w[:, None]
            reps = ratio.T @ z  # (R, p)
            return _design_replicates.replicate_cov(self, reps, z.sum(axis=0))
        return _design_taylor.taylor_variance(self, z)

    def without_fpc(self) -> SurveyDesign:
        """The same design with the first stage treated as sampled with replacement.

        Drops the finite population corrections (and with them the second-stage term, as R
        does for a with-replacement first stage); weights and calibration are unchanged. This
        is the variance for *superpopulation* (model) parameters — the process that generated
        the finite population — rather than for its census values (Graubard & Korn, 2002,
        Statistical Science 17(1)). Strata with a single PSU then contribute no variance.

        Returns
        -------
        SurveyDesign
            A new design (``self`` when there is no fpc or the design uses replicates).
        """
        return _design_taylor.without_fpc(self)

    def linear_operator(self) -> LinearOperator:
        """The variance as a linear map: ``variance_of_totals(z) = τ'τ`` with ``τ = D(z)``.

        ``D`` residualises ``z`` on the calibration steps (``z ← z − E_s F_s' z`` in order), sums
        the rows within units (PSUs) and centres and scales the unit totals within their strata.
        Small-sample corrections of the model sandwich (:mod:`evalterritoire.design.sandwich`) need the
        pieces separately to compute the expectation of the variance estimator under a working
        model without forming ``n × n`` matrices.

        Returns
        -------
        LinearOperator
            ``unit`` (row → unit code), ``n_units``, ``deviations`` (unit totals → ``τ``) and
            the calibration steps as ``(E, F)`` pairs of ``(n, q)`` arrays.

        Raises
        ------
        DesignError
            For a replicate-weight design or a design with a second-stage variance term (take
            :meth:`without_fpc` first).
        """
        return _design_taylor.linear_operator(self)

    @property
    def replicate_weights(self) -> np.ndarray | None:
        """Combined replicate weights ``(n, R)`` (``None`` for a Taylor design)."""
        return None if self._rep is None else self._rep.weights

    def replicate_variance(self, replicates: Any, full: Any) -> np.ndarray:
        """Covariance of an estimator from its value under each replicate weight.

        Parameters
        ----------
        replicates : array-like, shape (R, p)
            The estimator recomputed with each replicate weight column.
        full : array-like, shape (p,)
            The full-sample estimate (the centre when ``mse=True``).

        Returns
        -------
        ndarray, shape (p, p)
            ``scale × Σ_r rscales_r (θ_r − c)(θ_r − c)'`` as R ``svrVar``.
        """
        if self._rep is None:
            raise DesignError("replicate_variance needs a replicate-weight design")
        reps = np.asarray(replicates, dtype=float)
        if reps.ndim == 1:
            reps = reps[:, None]
        return _design_replicates.replicate_cov(
            self, reps, np.asarray(full, dtype=float).reshape(-1)
        )

    def _domain_codes(self, codes: np.ndarray) -> np.ndarray:
        return _design_domains.domain_codes(self, codes)

    def _cells(self, codes: np.ndarray, n_domains: int) -> tuple[np.ndarray, np.ndarray]:
        """Finest sampling unit × domain cells: cell code of each kept row and the cell keys.

        ``codes`` must already be restricted to the design's domain (``-1`` = no domain); the
        cell code array has one entry per row with ``codes >= 0``; ``key = unit * G + domain``.
        """
        return _design_domains.domain_cells(self, codes, n_domains)

    def _cell_variances(
        self, t: np.ndarray, keys: np.ndarray, n_domains: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """Variances from totals ``t`` (cells, p) of finest-unit × domain cells.

        Returns the ``(n_domains, p)`` variances (sum over stages of
        ``coef_h Σ_a (t_a - t̄_h)²`` within group × domain) and the domain degrees of freedom.
        """
        return _design_domains.cell_variances(self, t, keys, n_domains)

    def _domain_variances(self, z: np.ndarray, codes: np.ndarray, n_domains: int) -> np.ndarray:
        """Variance of every domain total of every column, in one vectorised pass.

        ``z`` (n, p) holds contributions; column ``j`` of domain ``g`` is ``z[:, j]`` restricted
        to rows with ``codes == g`` (``-1`` = no domain). Returns ``(n_domains, p)`` variances,
        equal to ``diag(variance_of_totals(z_j * (codes == g)))`` for each pair.
        """
        return _design_domains.domain_variances(self, z, codes, n_domains)

    # ------------------------------------------------------------------ calibration
    def poststratify(self, margins: Mapping[str, Mapping[str, float]]) -> SurveyDesign:
        """Post-stratify to the population counts of one categorical variable (R ``postStratify``).

        Parameters
        ----------
        margins : mapping
            ``{variable: {level: population total}}`` with exactly one variable (levels are the
            string form of the column's typed values).

        Returns
        -------
        SurveyDesign
            New design with weights summing to each post-stratum's total.
        """
        return _design_calibration.poststratify(self, margins)

    def rake(
        self,
        margins: Mapping[str, Mapping[str, float]],
        *,
        max_iter: int = 100,
        tol: float = 1e-8,
    ) -> SurveyDesign:
        """Rake the weights to several margins by iterative proportional fitting.

        Parameters
        ----------
        margins : mapping
            ``{variable: {level: population total}}``.
        max_iter : int
            Maximum number of full cycles over the margins.
        tol : float
            Convergence when every margin's relative error is below ``tol``.

        Returns
        -------
        SurveyDesign
            New design; :attr:`calibration` reports ``iterations``, ``converged`` and
            ``max_relative_error``. The variance uses calibration residuals (see module notes).
        """
        return _design_calibration.rake(self, margins, max_iter=max_iter, tol=tol)

    def calibrate_linear(self, margins: Mapping[str, Mapping[str, float]]) -> SurveyDesign:
        """Linear (GREG) calibration to margin totals (R ``calibrate(calfun="linear")``).

        Parameters
        ----------
        margins : mapping
            ``{variable: {level: population total}}``.

        Returns
        -------
        SurveyDesign
            New design with ``w = w0 (1 + x'λ)`` reproducing every margin exactly (weights can
            become negative; :attr:`calibration` counts them).
        """
        return _design_calibration.calibrate_linear(self, margins)

    def calibrate(
        self,
        margins: Mapping[str, Mapping[str, float]] | None = None,
        totals: Mapping[str, float] | None = None,
        *,
        population: float | None = None,
        calfun: str = "linear",
        bounds: tuple[float, float] | None = None,
        max_iter: int = 50,
        tol: float = 1e-7,
        force: bool = False,
    ) -> SurveyDesign:
        """Calibrate to margins and totals of numeric auxiliaries (R ``calibrate``).

        The calibration variables are an intercept (population size), the levels of each
        categorical margin (R's treatment coding) and the numeric columns of ``totals``; the
        new weights are ``w g`` with ``g = 1 + F(x'η)`` hitting every total.

        Parameters
        ----------
        margins : mapping, optional
            ``{variable: {level: population count}}`` as :meth:`rake`.
        totals : mapping, optional
            ``{numeric column: population total}`` (GREG on continuous auxiliaries).
        population : float, optional
            Population size (the intercept's total); required without ``margins`` to keep an
            intercept, checked against the margins otherwise.
        calfun : {"linear", "raking", "logit"}
            Distance: linear (GREG; closed form without bounds, weights can be negative),
            raking (multiplicative, ``g = exp(x'η)``) or logit (``g`` kept inside ``bounds``).
        bounds : (float, float), optional
            Bounds ``(L, U)`` on ``g`` with ``L < 1 < U`` (R ``bounds=``; the ratio of new to old
            weights, not absolute weights); required by ``logit``. With ``linear`` or
            ``raking`` R truncates ``g`` at the bounds.
        max_iter, tol : int, float
            R ``maxit`` and ``epsilon``: stop when every ``|misfit| / (1 + |total|) < tol``.
        force : bool
            Keep a calibration that did not converge (R ``force=TRUE``) instead of raising.

        Returns
        -------
        SurveyDesign
            New design; its variance uses the residuals of the contributions on the calibration
            variables (R ``calibrate``). :attr:`calibration` reports ``calfun``, ``bounds``,
            ``iterations``, ``converged`` and ``max_relative_error``.

        Raises
        ------
        DesignError
            Unknown column or level, missing auxiliary values, bounds not around 1, logit
            without finite bounds, no convergence (unless ``force``), a replicate design.
        """
        return _design_calibration.calibrate(
            self,
            margins,
            totals,
            population=population,
            calfun=calfun,
            bounds=bounds,
            max_iter=max_iter,
            tol=tol,
            force=force,
        )

    def trim_weights(
        self,
        lower: float | None = None,
        upper: float | None = None,
        *,
        strict: bool = False,
        max_iter: int = 1000,
    ) -> SurveyDesign:
        """Trim weights into ``[lower, upper]`` keeping their sum (R ``trimWeights``).

        R's rule: weights strictly outside the bounds are set to the bound, and the total
        trimmed amount ``Σ (w - w_trimmed)`` is shared *additively and equally* among the
        weights that were inside the bounds (each gets ``+ Σ trimmings / n_inside``). With
        ``strict=False`` this is done once, so a weight close to a bound can end up slightly
        outside it; with ``strict=True`` the rule is repeated until no weight is outside
        (R's ``strict=TRUE`` recursion; weights sitting exactly on a bound count as inside and
        take their share).

        Parameters
        ----------
        lower, upper : float, optional
            Absolute bounds on the weights (``None``: no bound on that side).
        strict : bool
            Repeat until every weight is within the bounds.
        max_iter : int
            Maximum rounds with ``strict=True`` (a :class:`DesignError` if still outside).

        Returns
        -------
        SurveyDesign
            New design. The trimmed weights are treated as fixed: the variance uses them with the
            calibration residuals of earlier calibration steps unchanged, as R does (trimming a
            calibrated design keeps its calibration in ``svyrecvar``).
            :attr:`calibration` gains ``trim_lower``, ``trim_upper``, ``trim_strict``,
            ``trim_iterations`` and ``n_trimmed`` (weights outside the bounds at the first round).

        Raises
        ------
        DesignError
            Bounds in the wrong order, bounds that cannot keep the weight total, a replicate-weight
            design (R's replicate trimming is not reproduced), or ``strict`` not reached.
        """
        return _design_calibration.trim_weights(
            self, lower, upper, strict=strict, max_iter=max_iter
        )


def build_design(responses: pd.DataFrame, design_cfg: Any, calibration_cfg: Any) -> SurveyDesign:
    """Build the study's design from typed responses and the ``[design]``/``[calibration]`` tables.

    Parameters
    ----------
    responses : DataFrame
        Typed responses.
    design_cfg : DesignConfig
        Column names (``weight``, ``strata``, ``psu``, ``fpc``) and ``lonely_psu``. A named
        strata/psu/fpc column that is present but entirely empty (an optional column the export
        did not fill) is treated as absent; a named column missing from the data is an error.
    calibration_cfg : CalibrationConfig
        ``method`` (none | poststratify | rake | linear), ``margins``, ``max_iter``, ``tol`` and
        optional trimming bounds ``trim_lower``/``trim_upper`` (absolute weights), applied
        with R's ``trimWeights(strict=TRUE)`` rule so that the published weights respect them.

    Returns
    -------
    SurveyDesign
        The (calibrated, trimmed) design.

    Raises
    ------
    DesignError
        Invalid design or calibration (including raking that does not converge).
    """
    cols: dict[str, str | None] = {}
    for role in ("weight", "strata", "psu", "fpc"):
        col = getattr(design_cfg, role, None)
        if col is not None and col not in responses:
            raise DesignError(f"design column {role}='{col}' is not in the responses")
        if col is not None and role != "weight" and responses[col].isna().all():
            col = None
        cols[role] = col
    design = SurveyDesign(responses, lonely_psu=design_cfg.lonely_psu, **cols)
    method = getattr(calibration_cfg, "method", "none")
    if method not in CALIBRATION_METHODS:
        raise DesignError(
            f"calibration method must be one of {CALIBRATION_METHODS}, got {method!r}"
        )
    margins = getattr(calibration_cfg, "margins", {}) or {}
    if method == "poststratify":
        design = design.poststratify(margins)
    elif method == "rake":
        design = design.rake(margins, max_iter=calibration_cfg.max_iter, tol=calibration_cfg.tol)
        if not design.calibration["converged"]:
            info = design.calibration
            raise DesignError(
                f"raking did not converge in {info['iterations']} iterations "
                f"(max relative error {info['max_relative_error']:.3g})"
            )
    elif method == "linear":
        design = design.calibrate_linear(margins)
    lower = getattr(calibration_cfg, "trim_lower", None)
    upper = getattr(calibration_cfg, "trim_upper", None)
    if lower is not None or upper is not None:
        design = design.trim_weights(lower, upper, strict=True)
    return design
