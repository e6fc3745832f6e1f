"""Small synthetic artefact tables for the report tests: one territory per maturity stage.

Territory ``T1`` is emerging, ``T2`` structuring (between two stages, leaning towards
consolidation), ``T3`` consolidated, ``T4`` disseminating (24 respondents, so its verdicts are
shown) and ``T5`` disseminating with 3 respondents (indicative: no verdict, no quote). Item
levels rise with the stage so that the stage-specific content differs visibly. ``T1``'s name
and free-text comments carry HTML to test escaping.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

from evalterritoire.codebook import Codebook
from evalterritoire.config import StudyConfig, load_study
from evalterritoire.report.context import StudyArtefacts

__all__ = [
    "EVIL_COMMENT",
    "EVIL_NAME",
    "HIDDEN_COMMENT",
    "STAGES",
    "differing_figures",
    "draw_report_figures",
    "make_artefacts",
    "make_config",
    "rename_codes",
    "savefig_finish",
]

EVIL_NAME = "Vallée <script>alert(1)</script> & <b>« Saint-Ouen »</b>"
#: Free text of one T1 respondent (T1 has ≥ min_n respondents: its comments are quoted).
EVIL_COMMENT = "<script>alert(1)</script> on avance <img src=x onerror=alert(2)>"
#: Free text of a T5 respondent (T5 has fewer than min_n respondents: never quoted).
HIDDEN_COMMENT = "Seule la maire de Lumière-le-Petit pense cela"
NAMES = {
    "T1": EVIL_NAME,
    "T2": "Pays des Deux Rives",
    "T3": "Communauté du Haut-Val",
    "T4": "Bassin de Lumière",
    "T5": "Hameaux du Plateau",
}
#: Stage of each territory (0 = Émergence … 3 = Essaimage).
STAGES = {"T1": 0, "T2": 1, "T3": 2, "T4": 3, "T5": 3}
SMALL = ("T5",)
TYPES = ["elu_maire", "agent_collectivite", "association", "entreprise", "catalyseur", "citoyen"]
WAVE = 2025


def make_config(
    tmp_path: Path,
    *,
    templates_dir: Path | None = None,
    context: pd.DataFrame | None = None,
    per_wave: bool = False,
    report: str = "",
    maturity: str = "",
) -> StudyConfig:
    """A minimal study file (one dummy export) in ``tmp_path``.

    ``templates_dir`` adds a ``[report]`` table, ``context`` is written as the study's context
    file, ``per_wave`` puts the outputs in ``build/<wave>`` and ``reports/<wave>``; ``report``
    and ``maturity`` are extra lines of the ``[report]`` and ``[maturity]`` tables.
    """
    (tmp_path / "export.csv").write_text("id_repondant\n1\n", encoding="utf-8")
    suffix = "/{wave}" if per_wave else ""
    text = (
        f'[study]\nname = "Étude test"\nwave = {WAVE}\nexports = ["export.csv"]\n'
        "random_state = 7\nmin_n = 10\n"
        f'build_dir = "build{suffix}"\nreports_dir = "reports{suffix}"\n'
    )
    if context is not None:
        context.to_csv(tmp_path / "contexte.csv", index=False)
        text += 'context = "contexte.csv"\n'
    if maturity:
        text += f"\n[maturity]\n{maturity}\n"
    if templates_dir is not None:
        report += f'\nformats = ["html"]\ntemplates_dir = "{templates_dir.as_posix()}"'
    if report:
        text += f"\n[report]\n{report.strip()}\n"
    study = tmp_path / "study.toml"
    study.write_text(text, encoding="utf-8")
    return load_study(study)


def _responses(codebook: Codebook, rng: np.random.Generator, n_per: int) -> pd.DataFrame:
    rows = []
    for code in sorted(NAMES):
        level = STAGES[code] / 3  # 0 .. 1
        n = 3 if code in SMALL else n_per
        for i in range(n):
            rows.append(
                {
                    "id_repondant": f"{code}-{i:03d}",
                    "id_territoire_code": code,
                    "id_territoire_nom": NAMES[code],
                    "id_territoire_niveau": "epci",
                    "id_region_code": "84",
                    "id_region_nom": "Auvergne-Rhône-Alpes",
                    "id_type_repondant": TYPES[i % len(TYPES)],
                    "id_poids": float(1 + (i % 3)),
                    "_level": level,
                }
            )
    frame = pd.DataFrame(rows)
    m = len(frame)
    level = frame.pop("_level").to_numpy()
    for var in codebook.of_type():
        if var.block == "identification" or var.type in {"date", "text"}:
            continue
        values = None
        if var.type == "likert":
            codes = sorted(codebook.scales[var.scale].values)
            lo, hi = codes[0], codes[-1]
            centre = lo + (hi - lo) * (0.25 + 0.6 * level)
            values = np.clip(np.rint(centre + rng.normal(0, 0.8, m)), lo, hi)
        elif var.type == "rating":
            values = np.clip(np.rint(3 + 5 * level + rng.normal(0, 1.5, m)), 0, 10)
        elif var.type == "binary":
            values = (rng.random(m) < 0.15 + 0.75 * level).astype(float)
        elif var.type == "ordinal":
            codes = sorted(codebook.scales[var.scale].values)
            idx = np.clip(
                np.rint(level * (len(codes) - 1) + rng.normal(0, 0.5, m)), 0, len(codes) - 1
            )
            values = np.asarray(codes, dtype=float)[idx.astype(int)]
        elif var.type == "count":
            lo = codebook.value_range(var.id)[0] or 0
            values = lo + rng.poisson(2 + 10 * level, m).astype(float)
            if var.scale == "annee":
                values = 2024 - rng.integers(0, 2 + int(6 * level.max()), m).astype(float)
        elif var.type == "decimal":
            values = np.round(rng.gamma(2, 0.5, m), 2)
        elif var.type == "categorical":
            frame[var.id] = pd.array(rng.choice(list(var.options), m), dtype="string")
        elif var.type == "multi_select":
            for col in var.option_cols():
                frame[col] = pd.array(
                    (rng.random(m) < 0.2 + 0.6 * level).astype(int), dtype="Int64"
                )
        if values is not None:
            is_int = var.type in {"likert", "rating", "binary", "ordinal", "count"}
            series = pd.Series(values).astype("Int64" if is_int else "Float64")
            special = pd.Series(pd.NA, index=frame.index, dtype="string")
            if var.special_codes and "nsp" in var.special_codes:
                nsp = rng.random(m) < 0.25 * (1 - level)  # emerging: many « ne sait pas »
                series[nsp] = pd.NA
                special[nsp] = "nsp"
            frame[var.id] = series
            if var.special_col:
                frame[var.special_col] = special
    comments = {
        "T1-001": EVIL_COMMENT,
        "T1-004": "On commence à peine à se connaître.",
        "T1-000": "  Les élus  sont\nlà. ",
        "T1-010": "On commence à peine à se connaître.",  # a duplicate is quoted once
        "T1-020": "Quatrième commentaire : au-delà des trois extraits retenus.",
        "T2-003": "x" * 400,  # cut to a short excerpt
        "T5-000": HIDDEN_COMMENT,
    }
    frame["stade_commentaire"] = pd.array(
        [comments.get(i) for i in frame["id_repondant"]], dtype="string"
    )
    return frame


def _maturity(
    codebook: Codebook, rng: np.random.Generator, wave: int, shift: float
) -> pd.DataFrame:
    names = ["Émergence", "Structuration", "Consolidation", "Essaimage"]
    rows = []
    for code in sorted(NAMES):
        stage = STAGES[code]
        small = code in SMALL
        row = {
            "wave": wave,
            "territory": code,
            "territory_name": NAMES[code],
            "stage": stage,
            "stage_label": names[stage],
            "stage_probability": 0.55 if code == "T2" else 0.9,
            "stage_robustness": 0.7 if code == "T3" else 0.98,
            "nsp_share": 0.3 - 0.07 * stage,
            "n": 3 if small else 24,
            "is_indicative": small,
            "stage_declared": min(stage + (1 if code == "T1" else 0), 3),
        }
        lean = 0.3 if code == "T2" else 0.0  # T2 lies between structuring and consolidation
        for i, dim in enumerate(codebook.dimensions):
            row[f"score_{dim}"] = float(
                np.clip(
                    1.6 + 0.95 * stage + lean + 0.15 * (i % 3) - shift + rng.normal(0, 0.1), 1, 5
                )
            )
            row[f"se_{dim}"] = 0.12 + 0.02 * (i % 2)
            row[f"n_{dim}"] = row["n"]
        rows.append(row)
    return pd.DataFrame(rows)


def make_artefacts(codebook: Codebook, *, n_per: int = 24, seed: int = 3) -> StudyArtefacts:
    """Synthetic artefacts of one wave (estimates left out: contexts fall back to descriptives)."""
    rng = np.random.default_rng(seed)
    responses = _responses(codebook, rng, n_per)
    maturity = _maturity(codebook, rng, WAVE, 0.0)
    previous = _maturity(codebook, rng, WAVE - 1, 0.3)
    previous.loc[previous["territory"] == "T3", "stage"] = 1
    transitions = pd.DataFrame(
        {
            "territory": sorted(NAMES),
            "from_wave": WAVE - 1,
            "to_wave": WAVE,
            "from_stage": previous["stage"].to_numpy(),
            "to_stage": maturity["stage"].to_numpy(),
        }
    )
    transitions["changed"] = transitions["from_stage"] != transitions["to_stage"]
    models = pd.DataFrame(
        {
            "model": ["moteurs"] * 3,
            "kind": ["linear"] * 3,
            "term": ["Intercept", "C(id_type_repondant)[T.citoyen]", "ctx_densite"],
            "label": ["Constante", "Habitant (réf. : maire)", "Densité"],
            "estimate": [3.1, -0.42, 0.05],
            "se": [0.1, 0.11, 0.02],
            "ci_low": [2.9, -0.64, 0.01],
            "ci_high": [3.3, -0.2, 0.09],
            "p_value": [0.0, 0.0004, 0.012],
            "odds_ratio": [np.nan] * 3,
            "n": [75] * 3,
            "n_psu": [4] * 3,
            "df": [3] * 3,
            "flags": ["", "", "peu de PSU"],
        }
    )
    reliability = pd.DataFrame(
        {"dimension": list(codebook.dimensions), "alpha": np.linspace(0.62, 0.88, 9), "n_items": 3}
    )
    context = pd.DataFrame(
        {
            "id_territoire_code": sorted(NAMES),
            "ctx_population": [12500, 48000, 103250, 8700, 2300],
            "ctx_taux_pauvrete": [18.2, 14.1, 12.5, 9.9, 11.0],
            "ctx_taux_chomage": [9.1, 8.2, 7.4, 6.3, 5.8],
        }
    )
    return StudyArtefacts(
        responses=responses,
        estimates=None,
        maturity=maturity,
        transitions=transitions,
        models=models,
        reliability=reliability,
        ingestion={
            "rows_read": len(responses) + 2,
            "rows_valid": len(responses),
            "rows_quarantined": 2,
        },
        context=context,
        profiles=pd.concat([previous, maturity], ignore_index=True),
    )


def rename_codes(artefacts: StudyArtefacts, mapping: Mapping[str, str]) -> StudyArtefacts:
    """The same artefacts with territory codes replaced (e.g. by hostile codes like ``../x``)."""

    def swap(frame: pd.DataFrame | None) -> pd.DataFrame | None:
        if frame is None:
            return None
        frame = frame.copy()
        for col in ("territory", "id_territoire_code"):
            if col in frame.columns:
                frame[col] = frame[col].astype(str).replace(dict(mapping))
        return frame

    return replace(
        artefacts,
        responses=swap(artefacts.responses),
        maturity=swap(artefacts.maturity),
        transitions=swap(artefacts.transitions),
        context=swap(artefacts.context),
        profiles=swap(artefacts.profiles),
    )


def draw_report_figures(
    contexts: Sequence, variants: Callable[[object], Sequence] = lambda ctx: [ctx]
) -> dict[str, bytes]:
    """Every report figure's PNG, named by territory, variant, drawing order and figure key.

    A territory's ``variants(ctx)`` (default: the context alone) each get every chart and the
    fragility figure; the national context gets the annual study's figures.
    """
    from evalterritoire.report import figures

    pngs: dict[str, bytes] = {}
    for ctx in contexts:
        if ctx.is_national:
            builders = [figures.build_stage_distribution_figure, figures.build_stage_profiles_figure,
                        figures.build_headline_figure]  # fmt: skip
            drawn_for = [ctx]
        else:
            builders = [*figures.CHARTS.values(), figures.build_fragilities_figure]
            drawn_for = variants(ctx)
        for v, variant in enumerate(drawn_for):
            for build in builders:
                drawn = build(variant)
                pngs[f"{ctx.territory}/{v}/{len(pngs)}/{drawn.key}"] = drawn.png
    return pngs


def differing_figures(got: dict[str, bytes], expected: dict[str, bytes]) -> list[str]:
    """The figures whose bytes differ (a readable failure instead of two byte dumps)."""
    assert list(got) == list(expected)
    return [name for name, png in got.items() if png != expected[name]]


def savefig_finish(key: str, fig, alt: str, caption: str):
    """A figure finished by matplotlib's own canvas and ``savefig`` (the drawing before any cache).

    Patched over ``figures._finish``, it gives the reference bytes of the figure tests.
    """
    import io

    from matplotlib.backends.backend_agg import FigureCanvasAgg

    from evalterritoire.report import figures

    FigureCanvasAgg(fig)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=figures.DPI, metadata={"Software": None})
    return figures.ReportFigure(key=key, png=buffer.getvalue(), alt=alt, caption=caption)
