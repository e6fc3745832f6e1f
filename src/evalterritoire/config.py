"""Study configuration: ``surveys/<wave>/study.toml`` → frozen :class:`StudyConfig`.

Every path in a study file is resolved relative to the study file itself, so a study can be moved
or re-run years later from any working directory. ``{wave}`` in a path is replaced by the wave.

Example
-------
.. code-block:: toml

    [study]
    name = "Étude annuelle de la co-construction territoriale"
    wave = 2025
    codebook = "default"              # or a path to a codebook YAML
    exports = ["export_2025.csv"]     # one or more raw exports
    context = "contexte_territoires.csv"   # optional territory-level public data
    previous_waves = ["../2024/study.toml", "../2023/study.toml"]
    random_state = 2025
    min_n = 30
    build_dir = "../../build/{wave}"
    reports_dir = "../../reports/{wave}"

    [design]                          # columns default to the codebook's roles
    lonely_psu = "fail"               # fail | remove | adjust | certainty

    [calibration]
    method = "rake"                   # none | poststratify | rake | linear
    margins = "marges_2025.csv"       # columns: variable, level, total

    [maturity]
    n_stages = 4
    stage_names = ["Émergence", "Structuration", "Consolidation", "Essaimage"]
    method = "kmeans"
    reference_wave = 2023

    [[models]]
    name = "moteurs_coconstruction"
    kind = "linear"                   # linear | logistic | ordinal | mixed | quasipoisson (alias: family)
    formula = "score_global ~ C(type_acteur) + taux_chomage"
    superpopulation = true            # variance without fpc: model parameters, not census values
    small_sample = true               # working-model bias correction and Satterthwaite df

    [publication]                     # every key optional; defaults and sources below
    min_cell = 5                      # confidentiality: nothing on fewer respondents is shown
    smallarea_covariates = "auto"     # or a list of columns of the context file

    [report]
    territory_template = "territory_report"
    study_template = "annual_study"
    formats = ["html"]
    timeout = 600                     # seconds per report (a late report fails, the batch goes on)
    retries = 1                       # after a kernel death or start failure
    max_reports_per_kernel = 1000     # recycle a warm kernel after this many reports…
    max_kernel_memory_mb = 1024       # …or above this resident memory
    grid = "default"                  # or the study's evaluation grid (YAML)
    report_spec = "default"           # or the study's report spec (YAML)
    geometry = "territoires.geojson"  # optional: territory outlines → a map on the index
    docx_reference = "modele.docx"    # optional: the observatory's reference DOCX (pandoc)
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from evalterritoire.errors import StudyConfigError

__all__ = [
    "DEFAULT_STAGE_NAMES",
    "CalibrationConfig",
    "DesignConfig",
    "IngestConfig",
    "MaturityConfig",
    "ModelSpec",
    "PublicationConfig",
    "ReportConfig",
    "StudyConfig",
    "load_study",
]

DEFAULT_STAGE_NAMES: tuple[str, ...] = ("Émergence", "Structuration", "Consolidation", "Essaimage")
LONELY_PSU_RULES = ("fail", "remove", "adjust", "certainty")
CALIBRATION_METHODS = ("none", "poststratify", "rake", "linear")
CLUSTER_METHODS = ("kmeans", "gmm", "ward")
MODEL_KINDS = ("linear", "logistic", "ordinal", "mixed", "quasipoisson")
REPORT_FORMATS = ("html", "pdf", "docx", "ipynb")
REPORT_ENGINES = ("warm", "papermill", "quarto")


@dataclass(frozen=True)
class IngestConfig:
    """How to read the exports (``[ingest]``)."""

    profile: str = "auto"
    sheet: str | None = None
    header_row: int | None = None
    encoding: str | None = None
    delimiter: str | None = None
    #: Column-mapping CSV (``source,variable``) added to the codebook's ``columns: map:``.
    column_map: Path | None = None


@dataclass(frozen=True)
class DesignConfig:
    """Design columns (``[design]``); names refer to typed response columns.

    In a study file a key left out takes the codebook's column of the same role (``weight``,
    ``stratum``, ``psu``, ``fpc``); ``""`` says the design has none.
    """

    weight: str | None = None
    strata: str | None = None
    psu: str | None = None
    fpc: str | None = None
    lonely_psu: str = "fail"


@dataclass(frozen=True)
class CalibrationConfig:
    """Calibration of the design weights to known population margins (``[calibration]``).

    ``margins`` maps a variable id to ``{level: population total}``; it is read either inline
    from the study file or from a CSV with columns ``variable, level, total``.
    """

    method: str = "none"
    margins: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    max_iter: int = 100
    tol: float = 1e-8
    trim_lower: float | None = None
    trim_upper: float | None = None


@dataclass(frozen=True)
class MaturityConfig:
    """Maturity stages (``[maturity]``)."""

    n_stages: int | str = 4
    stage_names: tuple[str, ...] = DEFAULT_STAGE_NAMES
    method: str = "kmeans"
    reference_wave: int | None = None
    refit: bool = False
    n_bootstrap: int = 50


@dataclass(frozen=True)
class ModelSpec:
    """One model of the study (``[[models]]``).

    ``superpopulation = true`` computes the variance without the finite population corrections
    (first stage with replacement): the intervals then cover the parameters of the process that
    generated the population (analytic inference, Graubard & Korn 2002) rather than the values a
    census of the finite population would give (R ``svyglm`` on a design with ``fpc``).

    In the study file ``family`` is accepted as another name for ``kind`` (same values:
    ``linear``, ``logistic``, ``ordinal``, ``mixed``, ``quasipoisson``); giving both with different values is an
    error. ``maxiter`` caps the iterations of the iterative fits (logistic IRLS, ordinal
    optimiser and Newton steps, mixed-model optimiser; the linear model is solved exactly);
    without it each algorithm keeps its default.

    ``small_sample = true`` corrects the sandwich for a small or unbalanced number of PSUs
    (:mod:`evalterritoire.design.sandwich`: variance rescaled to be unbiased under a working model of
    independent errors, Kott 1994; per-coefficient Satterthwaite degrees of freedom, Bell &
    McCaffrey 2002). Off by default: the default intervals are R ``svyglm``'s.
    """

    name: str
    formula: str
    kind: str = "linear"
    groups: str | None = None
    description: str = ""
    superpopulation: bool = False
    maxiter: int | None = None
    small_sample: bool = False

    @property
    def family(self) -> str:
        """The model family, the issue's name for :attr:`kind`."""
        return self.kind


@dataclass(frozen=True)
class ReportConfig:
    """Report rendering (``[report]``)."""

    territory_template: str = "territory_report"
    study_template: str = "annual_study"
    templates_dir: Path | None = None
    formats: tuple[str, ...] = ("html",)
    engine: str = "warm"
    workers: int | None = None
    territories: tuple[str, ...] = ()
    #: Time limit of one report (seconds); ``None``: the renderer's default (600).
    timeout: float | None = None
    #: Retries of a report after a kernel failure; ``None``: the renderer's default (1).
    retries: int | None = None
    #: Recycle a warm kernel after this many reports; ``None``: the renderer's default (1000).
    max_reports_per_kernel: int | None = None
    #: Recycle a warm kernel above this resident memory (MiB); ``None``: default (1024).
    max_kernel_memory_mb: float | None = None
    #: Evaluation grid (YAML): ``"default"`` (shipped with the package) or a file.
    grid: str | Path = "default"
    #: Report spec (YAML, which items feed which section): ``"default"`` or a file.
    report_spec: str | Path = "default"
    #: Territory outlines (GeoJSON, feature ``id`` = territory code): the index draws a map.
    geometry: Path | None = None
    #: The observatory's reference DOCX (styles, headers) for DOCX output (pandoc).
    docx_reference: Path | None = None


@dataclass(frozen=True)
class PublicationConfig:
    """Publication rules (``[publication]``): when an estimate is publishable, fragile or suppressed.

    The defaults are published standards; each threshold can be changed per study.

    * ``min_cell`` (5): **confidentiality**. No figure resting on fewer respondents is shown
      anywhere (tables, charts, alt texts, downloads); actor-type breakdowns merge the smaller
      types, and a free-text answer is quoted only from a pool of at least ``min_cell``
      respondents of the territory: one threshold for numbers and quotes (5 is the usual
      small-cell threshold of published frequency tables; a study may raise it).
    * Shares (``share_*``, ``min_df``): the **NCHS data presentation standards for proportions**
      (Parker et al. 2017, Vital Health Stat 2(175)), on the Korn–Graubard interval: suppressed
      when the effective sample size ``min(n, p(1-p)/var)`` is below ``share_min_effective_n``
      (30), when the interval is at least ``share_max_width`` wide (0.30), or wider than
      ``share_small_width`` (0.05) with a relative width above ``share_max_relative_width``
      (130 %); fragile (NCHS « statistical review ») when ``df < min_df`` (8), when the
      complementary share has a relative width above 130 %, or at 0 % / 100 %.
    * Bounded means (Likert, ratings, ordinal codes; ``mean_*``): suppressed below
      ``mean_min_n`` respondents (10, the sample size of the NCHS data presentation standards
      for rates; see « Evaluation of the NCHS Data Presentation Standards for Rates from Vital
      Statistics and Sample Surveys », stacks.cdc.gov/view/cdc/123462) or when the interval covers
      ``mean_max_scale_width`` (0.30) of the scale or more (the NCHS absolute width, on the
      mean rescaled to [0, 1]: a 0/1 item's share is that rescaled mean); fragile when
      ``df < min_df``.
    * Counts, totals and other non-negative means (``count_*``): suppressed below
      ``mean_min_n`` respondents or when the interval is wider than
      ``count_max_relative_width`` (160 %) of the estimate (NCHS rates); fragile when the
      coefficient of variation reaches ``count_max_cv`` (0.30, NCHS's historical relative
      standard error rule) or ``df < min_df``.
    * Any estimate whose interval cannot be estimated (one PSU, no variance) is fragile, and
      the report says so in words.
    * ``smallarea`` (true): a Fay–Herriot estimate (« estimation modélisée ») is computed for
      every territory estimate, with ``smallarea_covariates`` from the study's context file
      (``"auto"``: forward selection by BIC, at most ``smallarea_max_covariates``), and shown
      where the direct estimate is not publishable and the modelled one is.
    """

    min_cell: int = 5
    min_df: int = 8
    share_min_effective_n: float = 30.0
    share_max_width: float = 0.30
    share_small_width: float = 0.05
    share_max_relative_width: float = 1.30
    mean_min_n: int = 10
    mean_max_scale_width: float = 0.30
    count_max_relative_width: float = 1.60
    count_max_cv: float = 0.30
    smallarea: bool = True
    smallarea_covariates: tuple[str, ...] | str = "auto"
    smallarea_max_covariates: int = 3


@dataclass(frozen=True)
class StudyConfig:
    """A study wave, fully resolved (immutable). Build it with :func:`load_study`."""

    path: Path
    name: str
    wave: int
    codebook: str | Path
    exports: tuple[Path, ...]
    context: Path | None
    previous_waves: tuple[Path, ...]
    random_state: int
    min_n: int
    build_dir: Path
    reports_dir: Path
    ingest: IngestConfig = IngestConfig()
    design: DesignConfig = DesignConfig()
    calibration: CalibrationConfig = CalibrationConfig()
    maturity: MaturityConfig = MaturityConfig()
    models: tuple[ModelSpec, ...] = ()
    report: ReportConfig = ReportConfig()
    publication: PublicationConfig = PublicationConfig()
    #: Items whose change between codebook versions the study acknowledges (``[study]
    #: acknowledged_changes``): their trends across waves are drawn despite the change.
    acknowledged_changes: tuple[str, ...] = ()

    @property
    def study_dir(self) -> Path:
        """Directory holding the study file."""
        return self.path.parent

    def artefact(self, name: str) -> Path:
        """Path of a derived artefact of this wave, e.g. ``artefact("responses.parquet")``."""
        return self.build_dir / name

    def with_overrides(self, **changes: Any) -> StudyConfig:
        """Return a copy with top-level fields replaced (used by the CLI's options)."""
        return replace(self, **changes)


# --------------------------------------------------------------------------- parsing helpers
def _fail(path: Path, key: str, problem: str) -> StudyConfigError:
    return StudyConfigError(f"{path}: [{key}] {problem}")


def _table(raw: Mapping[str, Any], key: str, path: Path) -> Mapping[str, Any]:
    value = raw.get(key, {})
    if not isinstance(value, Mapping):
        raise _fail(path, key, f"must be a table, got {type(value).__name__}")
    return value


def _check_keys(table: Mapping[str, Any], allowed: set[str], key: str, path: Path) -> None:
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise _fail(
            path, key, f"unknown key(s) {', '.join(unknown)}; allowed: {', '.join(sorted(allowed))}"
        )


def _typed(
    table: Mapping[str, Any],
    name: str,
    kind: type | tuple[type, ...],
    key: str,
    path: Path,
    default: Any = None,
) -> Any:
    value = table.get(name, default)
    if value is None:
        return None
    if (
        isinstance(value, bool)
        and kind is not bool
        and bool not in (kind if isinstance(kind, tuple) else (kind,))
    ):
        raise _fail(path, f"{key}.{name}", f"must be {_kind_name(kind)}, got a boolean")
    if not isinstance(value, kind):
        raise _fail(path, f"{key}.{name}", f"must be {_kind_name(kind)}, got {value!r}")
    return value


def _kind_name(kind: type | tuple[type, ...]) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    names = {
        str: "a string",
        int: "an integer",
        float: "a number",
        bool: "true or false",
        list: "a list",
        dict: "a table",
    }
    return " or ".join(names.get(k, k.__name__) for k in kinds)


def _choice(value: Any, choices: tuple[str, ...], key: str, path: Path) -> str:
    if value not in choices:
        raise _fail(path, key, f"must be one of {', '.join(choices)}, got {value!r}")
    return value


def _resolve(base: Path, value: str, wave: int) -> Path:
    return (base / value.replace("{wave}", str(wave))).resolve()


def _str_list(value: Any, key: str, path: Path) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise _fail(path, key, f"must be a string or a list of strings, got {value!r}")
    return tuple(value)


def _load_margins_csv(csv_path: Path, path: Path) -> dict[str, dict[str, float]]:
    import csv

    if not csv_path.is_file():
        raise _fail(path, "calibration.margins", f"margins file not found: {csv_path}")
    margins: dict[str, dict[str, float]] = {}
    with csv_path.open(encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle)
        missing = {"variable", "level", "total"} - set(reader.fieldnames or [])
        if missing:
            raise _fail(
                path,
                "calibration.margins",
                f"{csv_path.name} lacks column(s) {', '.join(sorted(missing))}",
            )
        for line, row in enumerate(reader, start=2):
            try:
                total = float(row["total"])
            except (TypeError, ValueError):
                raise _fail(
                    path,
                    "calibration.margins",
                    f"{csv_path.name} line {line}: total {row['total']!r} is not a number",
                ) from None
            if total <= 0:
                raise _fail(
                    path,
                    "calibration.margins",
                    f"{csv_path.name} line {line}: total must be > 0, got {total}",
                )
            margins.setdefault(row["variable"], {})[row["level"]] = total
    return margins


def _parse_margins(value: Any, base: Path, wave: int, path: Path) -> dict[str, dict[str, float]]:
    if value is None:
        return {}
    if isinstance(value, str):
        return _load_margins_csv(_resolve(base, value, wave), path)
    if not isinstance(value, Mapping):
        raise _fail(path, "calibration.margins", "must be a file name or a table of tables")
    margins: dict[str, dict[str, float]] = {}
    for var, levels in value.items():
        if not isinstance(levels, Mapping) or not levels:
            raise _fail(
                path, f"calibration.margins.{var}", "must be a non-empty table level = total"
            )
        out: dict[str, float] = {}
        for level, total in levels.items():
            if isinstance(total, bool) or not isinstance(total, int | float) or total <= 0:
                raise _fail(
                    path,
                    f"calibration.margins.{var}.{level}",
                    f"must be a positive number, got {total!r}",
                )
            out[str(level)] = float(total)
        margins[str(var)] = out
    return margins


# --------------------------------------------------------------------------- sections
_STUDY_KEYS = {
    "name", "wave", "codebook", "exports", "context", "previous_waves", "random_state", "min_n",
    "acknowledged_changes",
    "build_dir", "reports_dir",
}  # fmt: skip
_REPORT_KEYS = {
    "territory_template", "study_template", "templates_dir", "formats", "engine", "workers",
    "territories", "timeout", "retries", "max_reports_per_kernel", "max_kernel_memory_mb",
    "grid", "report_spec", "geometry", "docx_reference",
}  # fmt: skip
#: ``[design]`` key → the codebook role it defaults to.
_DESIGN_ROLES = {"weight": "weight", "strata": "stratum", "psu": "psu", "fpc": "fpc"}


def _read_toml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise StudyConfigError(f"study file not found: {path}")
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise StudyConfigError(f"{path}: not valid TOML ({exc})") from None
    except UnicodeDecodeError:
        raise StudyConfigError(f"{path}: not UTF-8 text") from None


def _data_file(value: str | None, key: str, base: Path, wave: int, path: Path) -> str | Path:
    """``"default"`` (the package's file) or an existing file relative to the study file."""
    if value is None or value == "default":
        return "default"
    resolved = _resolve(base, value, wave)
    if not resolved.is_file():
        raise _fail(path, key, f"file not found: {resolved}")
    return resolved


def _parse_study(raw: Mapping[str, Any], path: Path) -> dict[str, Any]:
    """The ``[study]`` table: wave, inputs, seeds, folders."""
    study = _table(raw, "study", path)
    _check_keys(study, _STUDY_KEYS, "study", path)
    base = path.parent
    wave = _typed(study, "wave", int, "study", path)
    if wave is None:
        raise _fail(path, "study.wave", "is required (the survey year, e.g. 2025)")
    codebook = _data_file(
        _typed(study, "codebook", str, "study", path), "study.codebook", base, wave, path
    )
    export_names = _str_list(study.get("exports"), "study.exports", path)
    if not export_names:
        raise _fail(path, "study.exports", "is required: the raw export file(s) of the wave")
    exports = tuple(_resolve(base, e, wave) for e in export_names)
    for export in exports:
        if not export.is_file():
            raise _fail(path, "study.exports", f"export file not found: {export}")
    context_name = _typed(study, "context", str, "study", path)
    context = _resolve(base, context_name, wave) if context_name else None
    if context is not None and not context.is_file():
        raise _fail(path, "study.context", f"context file not found: {context}")
    min_n = _typed(study, "min_n", int, "study", path, default=30)
    if min_n < 1:
        raise _fail(path, "study.min_n", f"must be ≥ 1, got {min_n}")
    folders = {
        key: _resolve(base, _typed(study, key, str, "study", path, default=default), wave)
        for key, default in (
            ("build_dir", "../../build/{wave}"),
            ("reports_dir", "../../reports/{wave}"),
        )
    }
    return {
        "name": _typed(study, "name", str, "study", path, default=f"Étude {wave}"),
        "wave": wave,
        "codebook": codebook,
        "exports": exports,
        "context": context,
        "previous_waves": tuple(
            _resolve(base, p, wave)
            for p in _str_list(study.get("previous_waves"), "study.previous_waves", path)
        ),
        "random_state": _seed(study, path),
        "min_n": min_n,
        "acknowledged_changes": tuple(
            _str_list(study.get("acknowledged_changes"), "study.acknowledged_changes", path)
        ),
        **folders,
    }


#: Largest seed: numpy and scikit-learn take seeds in 0 … 2**32 - 1.
MAX_SEED = 2**32 - 1


def _seed(study: Mapping[str, Any], path: Path) -> int:
    """``[study] random_state``: an integer in 0 … 2**32 − 1 (what numpy and scikit-learn take)."""
    seed = _typed(study, "random_state", int, "study", path, default=0)
    if not 0 <= seed <= MAX_SEED:
        raise _fail(
            path, "study.random_state", f"must be an integer from 0 to {MAX_SEED}, got {seed}"
        )
    return seed


def _parse_ingest(raw: Mapping[str, Any], path: Path, wave: int) -> IngestConfig:
    ing = _table(raw, "ingest", path)
    _check_keys(
        ing,
        {"profile", "sheet", "header_row", "encoding", "delimiter", "column_map"},
        "ingest",
        path,
    )
    return IngestConfig(
        profile=_choice(
            ing.get("profile", "auto"),
            ("auto", "limesurvey", "sphinx", "kobo", "qualtrics", "google-forms"),
            "ingest.profile",
            path,
        ),
        sheet=_typed(ing, "sheet", str, "ingest", path),
        header_row=_typed(ing, "header_row", int, "ingest", path),
        encoding=_typed(ing, "encoding", str, "ingest", path),
        delimiter=_typed(ing, "delimiter", str, "ingest", path),
        column_map=_parse_column_map(ing, path, wave),
    )


def _parse_column_map(ing: Mapping[str, Any], path: Path, wave: int) -> Path | None:
    """``[ingest] column_map``: an existing CSV (``source,variable``) relative to the study."""
    name = _typed(ing, "column_map", str, "ingest", path)
    if not name:
        return None
    resolved = _resolve(path.parent, name, wave)
    if not resolved.is_file():
        raise _fail(path, "ingest.column_map", f"file not found: {resolved}")
    return resolved


def _parse_design(raw: Mapping[str, Any], path: Path, codebook: str | Path) -> DesignConfig:
    """``[design]``: a column given (``""`` for none) or, when absent, the codebook's role."""
    des = _table(raw, "design", path)
    _check_keys(des, {*_DESIGN_ROLES, "lonely_psu"}, "design", path)
    columns: dict[str, str | None] = {}
    loaded = None
    for key, role in _DESIGN_ROLES.items():
        if key in des:
            columns[key] = _typed(des, key, str, "design", path) or None
            continue
        if loaded is None:
            from evalterritoire.codebook import load_codebook

            loaded = load_codebook(codebook)
        columns[key] = loaded.column(role)
    return DesignConfig(
        **columns,
        lonely_psu=_choice(
            des.get("lonely_psu", "fail"), LONELY_PSU_RULES, "design.lonely_psu", path
        ),
    )


def _parse_calibration(raw: Mapping[str, Any], path: Path, wave: int) -> CalibrationConfig:
    cal = _table(raw, "calibration", path)
    _check_keys(
        cal,
        {"method", "margins", "max_iter", "tol", "trim_lower", "trim_upper"},
        "calibration",
        path,
    )
    method = _choice(cal.get("method", "none"), CALIBRATION_METHODS, "calibration.method", path)
    margins = _parse_margins(cal.get("margins"), path.parent, wave, path)
    if method != "none" and not margins:
        raise _fail(path, "calibration.margins", f"method '{method}' needs margins")
    return CalibrationConfig(
        method=method,
        margins=margins,
        max_iter=_typed(cal, "max_iter", int, "calibration", path, default=100),
        tol=float(_typed(cal, "tol", (int, float), "calibration", path, default=1e-8)),
        trim_lower=_typed(cal, "trim_lower", (int, float), "calibration", path),
        trim_upper=_typed(cal, "trim_upper", (int, float), "calibration", path),
    )


def _parse_maturity(raw: Mapping[str, Any], path: Path) -> MaturityConfig:
    mat = _table(raw, "maturity", path)
    _check_keys(
        mat,
        {"n_stages", "stage_names", "method", "reference_wave", "refit", "n_bootstrap"},
        "maturity",
        path,
    )
    n_stages = mat.get("n_stages", 4)
    if not (
        n_stages == "auto"
        or (isinstance(n_stages, int) and not isinstance(n_stages, bool) and 2 <= n_stages <= 8)
    ):
        raise _fail(
            path, "maturity.n_stages", f'must be an integer 2–8 or "auto", got {n_stages!r}'
        )
    stage_names = (
        _str_list(mat.get("stage_names"), "maturity.stage_names", path) or DEFAULT_STAGE_NAMES
    )
    if isinstance(n_stages, int) and len(stage_names) != n_stages:
        raise _fail(
            path, "maturity.stage_names", f"{len(stage_names)} names given for {n_stages} stages"
        )
    return MaturityConfig(
        n_stages=n_stages,
        stage_names=stage_names,
        method=_choice(mat.get("method", "kmeans"), CLUSTER_METHODS, "maturity.method", path),
        reference_wave=_typed(mat, "reference_wave", int, "maturity", path),
        refit=bool(_typed(mat, "refit", bool, "maturity", path, default=False)),
        n_bootstrap=_typed(mat, "n_bootstrap", int, "maturity", path, default=50),
    )


def _parse_model(m: Any, key: str, path: Path) -> ModelSpec:
    if not isinstance(m, Mapping):
        raise _fail(path, key, "must be a table")
    _check_keys(
        m,
        {"name", "formula", "kind", "family", "groups", "description", "superpopulation"}
        | {"maxiter", "small_sample"},
        key,
        path,
    )
    mname = _typed(m, "name", str, key, path)
    formula = _typed(m, "formula", str, key, path)
    if not mname or not formula or "~" not in formula:
        raise _fail(path, key, "needs a name and a formula of the form 'y ~ x1 + x2'")
    if "kind" in m and "family" in m and m["kind"] != m["family"]:
        raise _fail(path, key, f"kind {m['kind']!r} and family {m['family']!r} disagree")
    kind_key = "family" if "family" in m else "kind"
    kind = _choice(m.get(kind_key, "linear"), MODEL_KINDS, f"{key}.{kind_key}", path)
    maxiter = _typed(m, "maxiter", int, key, path)
    if maxiter is not None and maxiter < 1:
        raise _fail(path, f"{key}.maxiter", f"must be ≥ 1, got {maxiter}")
    groups = _typed(m, "groups", str, key, path)
    if kind == "mixed" and not groups:
        raise _fail(path, f"{key}.groups", "a mixed model needs a grouping column")
    return ModelSpec(
        name=mname,
        formula=formula,
        kind=kind,
        groups=groups,
        description=_typed(m, "description", str, key, path, default=""),
        superpopulation=_typed(m, "superpopulation", bool, key, path, default=False),
        maxiter=maxiter,
        small_sample=_typed(m, "small_sample", bool, key, path, default=False),
    )


def _parse_models(raw: Mapping[str, Any], path: Path) -> tuple[ModelSpec, ...]:
    models_raw = raw.get("models", [])
    if not isinstance(models_raw, list):
        raise _fail(path, "models", "must be an array of tables ([[models]])")
    models = [_parse_model(m, f"models[{i}]", path) for i, m in enumerate(models_raw)]
    seen: set[str] = set()
    for i, spec in enumerate(models):
        if spec.name in seen:
            raise _fail(path, f"models[{i}]", f"duplicate model name '{spec.name}'")
        seen.add(spec.name)
    return tuple(models)


def _report_limits(rep: Mapping[str, Any], path: Path) -> dict[str, Any]:
    limits: dict[str, Any] = {}
    for key, kind, minimum in (
        ("timeout", (int, float), 0),
        ("retries", int, -1),
        ("max_reports_per_kernel", int, 0),
        ("max_kernel_memory_mb", (int, float), 0),
    ):
        value = _typed(rep, key, kind, "report", path)
        if value is not None and value <= minimum:
            raise _fail(path, f"report.{key}", f"must be greater than {minimum}, got {value!r}")
        limits[key] = value
    for key in ("timeout", "max_kernel_memory_mb"):
        if limits[key] is not None:
            limits[key] = float(limits[key])
    return limits


def _parse_report(raw: Mapping[str, Any], path: Path, wave: int) -> ReportConfig:
    rep = _table(raw, "report", path)
    _check_keys(rep, _REPORT_KEYS, "report", path)
    base = path.parent
    formats = _str_list(rep.get("formats"), "report.formats", path) or ("html",)
    for f in formats:
        _choice(f, REPORT_FORMATS, "report.formats", path)
    templates_dir = _typed(rep, "templates_dir", str, "report", path)
    return ReportConfig(
        territory_template=_typed(
            rep, "territory_template", str, "report", path, default="territory_report"
        ),
        study_template=_typed(rep, "study_template", str, "report", path, default="annual_study"),
        templates_dir=_resolve(base, templates_dir, wave) if templates_dir else None,
        formats=formats,
        engine=_choice(rep.get("engine", "warm"), REPORT_ENGINES, "report.engine", path),
        workers=_typed(rep, "workers", int, "report", path),
        territories=_str_list(rep.get("territories"), "report.territories", path),
        grid=_data_file(_typed(rep, "grid", str, "report", path), "report.grid", base, wave, path),
        report_spec=_data_file(
            _typed(rep, "report_spec", str, "report", path), "report.report_spec", base, wave, path
        ),
        **_report_limits(rep, path),
        **_report_files(rep, path, wave),
    )


_PUBLICATION_NUMBERS = {
    "share_min_effective_n": 1.0,
    "share_max_width": 0.0,
    "share_small_width": 0.0,
    "share_max_relative_width": 0.0,
    "mean_max_scale_width": 0.0,
    "count_max_relative_width": 0.0,
    "count_max_cv": 0.0,
}
_PUBLICATION_INTEGERS = {"min_cell": 1, "min_df": 0, "mean_min_n": 1, "smallarea_max_covariates": 0}


def _parse_publication(raw: Mapping[str, Any], path: Path) -> PublicationConfig:
    """``[publication]``: publication rules (every key optional, see :class:`PublicationConfig`)."""
    pub = _table(raw, "publication", path)
    allowed = {*_PUBLICATION_NUMBERS, *_PUBLICATION_INTEGERS, "smallarea", "smallarea_covariates"}
    _check_keys(pub, allowed, "publication", path)
    values: dict[str, Any] = {}
    for key, minimum in _PUBLICATION_INTEGERS.items():
        value = _typed(pub, key, int, "publication", path)
        if value is not None:
            if value < minimum:
                raise _fail(path, f"publication.{key}", f"must be ≥ {minimum}, got {value}")
            values[key] = value
    for key, minimum in _PUBLICATION_NUMBERS.items():
        value = _typed(pub, key, (int, float), "publication", path)
        if value is not None:
            if value < minimum:
                raise _fail(path, f"publication.{key}", f"must be ≥ {minimum}, got {value}")
            values[key] = float(value)
    smallarea = _typed(pub, "smallarea", bool, "publication", path)
    if smallarea is not None:
        values["smallarea"] = smallarea
    covariates = pub.get("smallarea_covariates")
    if covariates is not None:
        values["smallarea_covariates"] = (
            "auto"
            if covariates == "auto"
            else _str_list(covariates, "publication.smallarea_covariates", path)
        )
    return PublicationConfig(**values)


def _report_files(rep: Mapping[str, Any], path: Path, wave: int) -> dict[str, Path | None]:
    """``geometry`` and ``docx_reference``: optional files beside the study, which must exist."""
    files: dict[str, Path | None] = {}
    for key in ("geometry", "docx_reference"):
        value = _typed(rep, key, str, "report", path)
        resolved = _resolve(path.parent, value, wave) if value else None
        if resolved is not None and not resolved.is_file():
            raise _fail(path, f"report.{key}", f"file not found: {resolved}")
        files[key] = resolved
    return files


# --------------------------------------------------------------------------- loader
def load_study(path: str | Path) -> StudyConfig:
    """Read and validate a study file.

    Parameters
    ----------
    path : str or Path
        The ``study.toml`` file.

    Returns
    -------
    StudyConfig
        Frozen configuration with every path resolved relative to the study file; design
        columns not given in ``[design]`` are the codebook's (its ``weight``, ``stratum``,
        ``psu`` and ``fpc`` roles).

    Raises
    ------
    StudyConfigError
        When the file is missing, is not valid TOML, or a key is unknown, missing or invalid;
        the message names the file, the key and the problem.
    """
    path = Path(path).resolve()
    raw = _read_toml(path)
    _check_keys(
        raw,
        {"study", "ingest", "design", "calibration", "maturity", "models", "report", "publication"},
        "top level",
        path,
    )
    study = _parse_study(raw, path)
    wave = study["wave"]
    return StudyConfig(
        path=path,
        **study,
        ingest=_parse_ingest(raw, path, wave),
        design=_parse_design(raw, path, study["codebook"]),
        calibration=_parse_calibration(raw, path, wave),
        maturity=_parse_maturity(raw, path),
        models=_parse_models(raw, path),
        report=_parse_report(raw, path, wave),
        publication=_parse_publication(raw, path),
    )
