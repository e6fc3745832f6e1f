"""The side files of a wave: calibration margins, ``study.toml``, CSV writer and README.

Owns :func:`_margins` (known population totals by respondent type and region, drawn around the
weighted sample totals), the minimal TOML writer and :func:`_study_toml` (the wave's study file:
design columns, raking, maturity stages, the study models), :func:`_write_csv` and
:func:`_fmt_ctx` (margins, context and stages CSV files), :func:`_geometry` (synthetic territory
outlines, GeoJSON, declared as ``[report] geometry``) and the ``README.md`` template of the
output directory.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from evalterritoire.codebook import Codebook
from evalterritoire.config import DEFAULT_STAGE_NAMES
from evalterritoire.simulate.answers import _Wave
from evalterritoire.simulate.population import _Population


# --------------------------------------------------------------------------- side files
def _margins(
    rng: np.random.Generator, wv: _Wave, pop: _Population, cb: Codebook
) -> list[tuple[str, str, int]]:
    rtype_var = cb.role("respondent_type")
    type_keys = list(rtype_var.options) if rtype_var else sorted(set(wv.rtype))
    by_type = np.array([wv.weight[wv.rtype == k].sum() for k in type_keys])
    by_type = by_type * np.exp(rng.normal(0, 0.04, len(by_type)))  # true totals ≠ HT sums
    grand = float(np.round(by_type.sum(), -1))
    type_tot = _round_to_total(by_type, grand)
    regions = np.array(pop.region)[wv.territory]
    reg_keys = sorted(set(regions))
    by_reg = np.array([wv.weight[regions == r].sum() for r in reg_keys])
    by_reg = by_reg * np.exp(rng.normal(0, 0.04, len(by_reg)))
    reg_tot = _round_to_total(by_reg, grand)
    rows = [("id_type_repondant", k, int(v)) for k, v in zip(type_keys, type_tot, strict=True)]
    rows += [("id_region_code", k, int(v)) for k, v in zip(reg_keys, reg_tot, strict=True)]
    return rows


def _round_to_total(values: np.ndarray, total: float) -> np.ndarray:
    scaled = values / values.sum() * total
    out = np.maximum(np.floor(scaled), 1)
    out[np.argmax(scaled - out)] += total - out.sum()
    return out


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    raise TypeError(type(value))


def _study_toml(
    wave: int,
    waves: Sequence[int],
    export_name: str,
    tool: str,
    seed: int,
    specs: Sequence[Mapping[str, Any]],
) -> str:
    previous = [f"../{w}/study.toml" for w in sorted((w for w in waves if w < wave), reverse=True)]
    lines = [
        "# SYNTHETIC demo study written by `evalterritoire simulate` — not real survey data.",
        "[study]",
        f"name = {_toml(f'Étude de démonstration (données synthétiques) — vague {wave}')}",
        f"wave = {wave}",
        'codebook = "default"',
        f"exports = {_toml([export_name])}",
        'context = "contexte_territoires.csv"',
        f"previous_waves = {_toml(previous)}",
        f"random_state = {seed}",
        "min_n = 30",
        'build_dir = "../../build/{wave}"',
        'reports_dir = "../../reports/{wave}"',
        "",
        "[ingest]",
        f"profile = {_toml(tool)}",
        "",
        "[design]",
        'weight = "id_poids"',
        'strata = "id_strate"',
        'psu = "id_psu"',
        'fpc = "id_fpc"',
        'lonely_psu = "fail"',
        "",
        "[calibration]",
        'method = "rake"',
        f"margins = {_toml(f'marges_{wave}.csv')}",
        "",
        "[maturity]",
        "n_stages = 4",
        f"stage_names = {_toml(list(DEFAULT_STAGE_NAMES))}",
        'method = "kmeans"',
        f"reference_wave = {min(waves)}",
    ]
    for spec in specs:
        lines += [
            "",
            "[[models]]",
            f"name = {_toml(spec['name'])}",
            f"kind = {_toml(spec['kind'])}",
        ]
        lines.append(f"formula = {_toml(spec['formula'])}")
        if "groups" in spec:
            lines.append(f"groups = {_toml(spec['groups'])}")
        lines.append(f"description = {_toml(spec['description'])}")
        lines.append("superpopulation = true")
        lines.append("small_sample = true")
    lines += ["", "[report]", 'formats = ["html"]', 'geometry = "territoires.geojson"', ""]
    return "\n".join(lines)


def _write_csv(path: Path, header: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    import csv
    import io

    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    path.write_bytes(buffer.getvalue().encode("utf-8"))


def _fmt_ctx(value: Any) -> str:
    if isinstance(value, float | np.floating):
        return f"{float(value):.2f}".rstrip("0").rstrip(".")
    return str(int(value))


_README = """# Demo study — SYNTHETIC data

**Every file under this directory is synthetic.** It was generated by the package's simulator
(`src/evalterritoire/simulate.py`); no real territory, person or organisation is described, and
territory names and codes are invented. Regenerate it byte for byte with:

```
{command}
```

(`make demo-data` runs exactly this.)

## Files

- `<wave>/export_<tool>_<wave>.csv` — the raw export of the wave, as a survey tool would write
  it: `{first}` looks like a Sphinx export (Windows-1252, CRLF, French headers for the
  identification columns, "NSP", typographic apostrophes), later waves like a LimeSurvey export
  (UTF-8 with BOM, item-id headers, "Ne sait pas"). Both use `;`, decimal commas, French answer
  labels, multi-select answers joined with ", " in one cell, `dd/mm/yyyy` dates and blank cells
  for unanswered or routed-out questions.
- `<wave>/study.toml` — the study file of the wave (design columns, raking to the margins,
  4 maturity stages with the first wave as reference, four models: linear, logistic, ordinal,
  mixed).
- `<wave>/marges_<wave>.csv` — known population totals (`variable,level,total`) by respondent
  type and by region, used for raking.
- `<wave>/contexte_territoires.csv` — territory-level public-data-like context (`ctx_*`
  variables of the codebook), one row per territory, UTF-8, `,` and decimal points.
- `ground_truth/truth.json`, `ground_truth/stages.csv` — what the simulator knows and the
  pipeline must recover: true stage of each territory in each wave (0 = Émergence … 3 =
  Essaimage), the coefficients that generated the model outcomes (with their formulas), the
  fragility ↔ context links, the design, the seed and all parameters. The pipeline never reads
  this directory; tests and evaluations do.

## Design

{n_territories} territories in {n_strata} strata (region group × urban/rural); the primary sampling
units are clusters of 2–6 per territory (`id_psu`, nested in territories and strata); `id_fpc` is
the number of PSUs in the stratum's population; `id_poids` is the inverse inclusion probability
with a mild non-response adjustment by stratum × respondent type. About {n_respondents} respondents
per wave, all eleven respondent types.
"""


def _geometry(codes: Sequence[str], names: Sequence[str], region: Sequence[str], seed: int) -> str:
    """Synthetic territory outlines (GeoJSON text): a jittered grid, territories of a region adjacent.

    The outlines are invented (a tessellation of a rectangle over mainland France's longitudes and
    latitudes), drawn from their own generator so that the other simulated files do not change.
    Each feature's ``id`` is the territory code.
    """
    import math

    order = sorted(range(len(codes)), key=lambda t: (region[t], codes[t]))
    n_cols = max(1, math.ceil(math.sqrt(len(codes) * 1.2)))
    n_rows = math.ceil(len(codes) / n_cols)
    rng = np.random.default_rng([seed, 4326])
    jitter = rng.uniform(-0.3, 0.3, size=(n_rows + 1, n_cols + 1, 2))
    jitter[[0, -1], :, :] = 0.0
    jitter[:, [0, -1], :] = 0.0
    lon0, lat1 = -4.5, 51.0
    dx, dy = 12.5 / n_cols, 9.0 / n_rows

    def corner(r: int, c: int) -> list[float]:
        return [
            round(lon0 + (c + jitter[r, c, 0]) * dx, 4),
            round(lat1 - (r + jitter[r, c, 1]) * dy, 4),
        ]

    features = []
    for k, t in enumerate(order):
        r, c = divmod(k, n_cols)
        ring = [corner(r, c), corner(r, c + 1), corner(r + 1, c + 1), corner(r + 1, c)]
        features.append(
            {
                "type": "Feature",
                "id": codes[t],
                "properties": {"code": codes[t], "nom": names[t]},
                "geometry": {"type": "Polygon", "coordinates": [[*ring, ring[0]]]},
            }
        )
    features.sort(key=lambda f: f["id"])
    return (
        json.dumps({"type": "FeatureCollection", "features": features}, ensure_ascii=False) + "\n"
    )
