"""Small studies for the robustness tests: simulated exports, quick templates, CLI runs.

:func:`synthetic_study` writes the synthetic artefacts of the report tests into a build folder
(the quickest study whose contexts can be built).
:func:`make_study` simulates a one-wave study (8 territories) whose reports come from two
quick templates (they print the territory and its respondent count from the context file, so
a report changes when its context does); ``slow`` templates sleep instead, to keep a render
pool busy while a test signals it. :func:`cli` runs the ``evalterritoire`` console script in a
child process (the way a user, CI or systemd runs it).
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from _synthetic_reports import make_artefacts, make_config

from evalterritoire.codebook import Codebook
from evalterritoire.config import StudyConfig
from evalterritoire.simulate.waves import simulate_waves

__all__ = [
    "CLI",
    "cli",
    "drop_territory",
    "make_study",
    "read_export",
    "synthetic_study",
    "write_export",
    "write_templates",
]

CLI = str(Path(sys.executable).parent / "evalterritoire")
_HEADER = """# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% tags=["parameters"]
territory: str = ""
wave: int = 0
context_path: str = ""

"""
QUICK = """# %%
import json

with open(context_path, encoding="utf-8") as handle:
    context = json.load(handle)
print("territoire", territory or "national", "n =", context.get("n_respondents"))
"""
SLOW = """# %%
import time

time.sleep(300)
"""


def write_templates(folder: Path, body: str = QUICK, *, fail_for: str | None = None) -> Path:
    """The two report templates (``territory_report``, ``annual_study``) in ``folder``.

    ``fail_for`` makes the territory template raise for that territory code.
    """
    folder.mkdir(parents=True, exist_ok=True)
    failing = (
        f"# %%\nif territory == {fail_for!r}:\n    raise RuntimeError('broken on purpose')\n\n"
        if fail_for
        else ""
    )
    (folder / "territory_report.py").write_text(_HEADER + failing + body, encoding="utf-8")
    (folder / "annual_study.py").write_text(_HEADER + QUICK, encoding="utf-8")
    return folder


def make_study(
    root: Path,
    *,
    body: str = QUICK,
    models: bool = False,
    fail_for: str | None = None,
    seed: int = 11,
) -> Path:
    """A one-wave simulated study under ``root`` (8 territories, 320 respondents).

    The design keeps no lonely-PSU failure (``adjust``) and no calibration, so removing a
    territory leaves a valid design; ``models`` keeps the simulated ``[[models]]`` (left out
    otherwise: faster); maturity uses 10 bootstrap draws. Returns the study file.
    """
    simulate_waves(root / "surveys", n_territories=8, n_respondents=320, waves=[2025], seed=seed)
    study = root / "surveys" / "2025" / "study.toml"
    text = study.read_text(encoding="utf-8")
    text = re.sub(r"(?ms)^\[report\]\n.*?(?=^\[|\Z)", "", text)
    text = re.sub(r"(?ms)^\[calibration\]\n.*?(?=^\[|\Z)", "", text)
    text = text.replace('lonely_psu = "fail"', 'lonely_psu = "adjust"')
    text = re.sub(r"(?m)^reference_wave = .*$", "n_bootstrap = 10", text)
    if not models:
        text = re.sub(r"(?ms)^\[\[models\]\]\n.*?(?=^\[|\Z)", "", text)
    templates = write_templates(root / "templates", body, fail_for=fail_for)
    text += f'\n[report]\nformats = ["html"]\ntemplates_dir = "{templates.as_posix()}"\n'
    study.write_text(text, encoding="utf-8")
    return study


def synthetic_study(root: Path, codebook: Codebook, body: str = QUICK) -> StudyConfig:
    """A study whose build folder holds the synthetic artefacts of ``_synthetic_reports``
    (written by hand: no provenance record), with templates in ``root/templates``; no step has
    run. Quicker than :func:`make_study` (no ingestion, no fit)."""
    study_dir = root / "etude"
    study_dir.mkdir(parents=True)
    templates = write_templates(root / "templates", body)
    artefacts = make_artefacts(codebook)
    config = make_config(study_dir, templates_dir=templates, context=artefacts.context,
                         per_wave=True)  # fmt: skip
    config.build_dir.mkdir(parents=True)
    for name in ("responses", "maturity", "transitions", "models", "reliability", "profiles"):
        getattr(artefacts, name).to_parquet(config.artefact(f"{name}.parquet"), index=False)
    config.artefact("ingestion.json").write_text(json.dumps(dict(artefacts.ingestion)))
    return config


def read_export(study: Path) -> tuple[Path, list[str], list[list[str]]]:
    """The study's export: its path, header and rows (semicolon-separated, UTF-8 with BOM)."""
    export = next(study.parent.glob("export_*"))
    text = export.read_text(encoding="utf-8-sig")
    rows = list(csv.reader(io.StringIO(text), delimiter=";"))
    return export, rows[0], [r for r in rows[1:] if r]


def write_export(export: Path, header: list[str], rows: Sequence[list[str]]) -> None:
    """Write an export read by :func:`read_export` back (same dialect)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter=";", lineterminator="\r\n")
    writer.writerow(header)
    writer.writerows(rows)
    export.write_text("\ufeff" + buffer.getvalue(), encoding="utf-8")


def drop_territory(study: Path, keep: Callable[[str], bool] | None = None) -> str:
    """Remove one territory's rows from the export; its code (the last in sorted order)."""
    export, header, rows = read_export(study)
    column = header.index("id_territoire_code")
    codes = sorted({r[column] for r in rows})
    code = codes[-1] if keep is None else next(c for c in reversed(codes) if not keep(c))
    write_export(export, header, [r for r in rows if r[column] != code])
    return code


def cli(
    *args: str, env: dict[str, str] | None = None, timeout: float = 600, **kwargs
) -> subprocess.CompletedProcess:
    """Run ``evalterritoire *args`` in a child process (text output captured)."""
    return subprocess.run(
        [CLI, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        check=False,
        **kwargs,
    )
