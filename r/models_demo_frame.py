"""Write the demo study's 2025 model frame for r/models_demo_reference.R.

    make report                                   # builds build/2025 (maturity gives the stages)
    .venv/bin/python r/models_demo_frame.py       # → tests/fixtures/r/models_demo/frame.csv
    Rscript r/models_demo_reference.R             # → tests/fixtures/r/models_demo/*.csv

The frame is what ``run_models`` fits: responses, respondent scores, the territory's stage and
the context indicators, with the design columns; numbers with 17 significant digits.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from evalterritoire.config import load_study
from evalterritoire.pipeline import _merge_context, _responses, _with_stage, load_study_codebook

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "tests" / "fixtures" / "r" / "models_demo"
COLUMNS = [
    "id_strate",
    "id_psu",
    "id_fpc",
    "id_poids",
    "id_region_code",
    "id_type_repondant",
    "stage",
    "score_global",
    "dyn_animateur_existe",
    "dyn_statut",
    "ctx_taux_chomage",
    "ctx_presence_qpv",
    "ctx_taux_pauvrete",
]


def main() -> None:
    """Write frame.csv and margins.csv."""
    config = load_study(ROOT / "surveys" / "2025" / "study.toml")
    codebook = load_study_codebook(config)
    frame = _with_stage(config, _responses(config), codebook)
    frame = _merge_context(frame, config.context, codebook)
    OUT.mkdir(parents=True, exist_ok=True)
    frame[COLUMNS].to_csv(OUT / "frame.csv", index=False, float_format="%.17g")
    shutil.copyfile(config.path.parent / "marges_2025.csv", OUT / "margins.csv")
    print(f"{len(frame)} rows → {OUT / 'frame.csv'}")


if __name__ == "__main__":
    main()
