"""The messy raw export of a wave, as a French survey tool would write it.

Owns the two tool profiles (``sphinx``: Windows-1252, CRLF, French headers for the
identification columns, full answer labels with typographic apostrophes, "NSP"; ``limesurvey``:
UTF-8 with BOM, item-id headers, answer codes, Y / N, "Ne sait pas"), the French number format
(decimal comma), the special-answer texts, multi-select cells joined with ``", "`` and
:func:`_write_export`. Formats only: every value comes from a :class:`_Wave`.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from evalterritoire.codebook import Codebook, Variable
from evalterritoire.simulate.answers import _NC, _NSP, _REFUS, _VALID, _Wave
from evalterritoire.simulate.population import _Population

# --------------------------------------------------------------------------- raw export
#: Survey tool imitated by each wave's export (first wave of a series: Sphinx, then LimeSurvey).
_TOOLS = ("sphinx", "limesurvey")
_HEADERS = {
    "sphinx": {
        "id_repondant": "N° répondant",
        "id_annee": "Année",
        "id_date_collecte": "Date de réponse",
        "id_territoire_code": "Code territoire",
        "id_territoire_nom": "Territoire",
        "id_type_repondant": "Type de répondant",
        "id_poids": "Pondération",
        "id_strate": "Strate",
        "id_psu": "Grappe",
    },
    "limesurvey": {
        "id_repondant": "Réponse ID",
        "id_date_collecte": "Date de soumission",
        "id_poids": "poids",
    },
}
_SPECIAL_TEXT = {
    "sphinx": {_NSP: "NSP", _REFUS: "Refus", _NC: "Non concerné"},
    "limesurvey": {_NSP: "Ne sait pas", _REFUS: "Ne souhaite pas répondre", _NC: "Sans objet"},
}
_MULTI_SEP = ", "


def _fr_number(values: np.ndarray, decimals: int) -> np.ndarray:
    text = np.char.mod(f"%.{decimals}f", np.asarray(values, dtype=float))
    return np.char.replace(text, ".", ",").astype(object)


def _label_cells(labels: Mapping[Any, str], values: np.ndarray, tool: str) -> np.ndarray:
    if tool == "sphinx":  # full answers; Excel FR turns ' into typographic apostrophes
        labels = {k: v.replace("'", "\u2019") for k, v in labels.items()}
    elif set(labels) == {0, 1}:  # LimeSurvey answer codes: yes/no questions export Y / N
        labels = {1: "Y", 0: "N"}
    else:  # LimeSurvey answer codes
        labels = {k: str(k) for k in labels}
    return pd.Series(values, dtype=object).map(dict(labels)).fillna("").to_numpy(dtype=object)


def _export_column(
    var: Variable, wv: _Wave, pop: _Population, cb: Codebook, tool: str
) -> np.ndarray:
    n = wv.n
    if var.type == "weight":
        return _fr_number(wv.weight, 4)
    if var.type == "stratum":
        return np.array(pop.stratum, dtype=object)[wv.territory]
    if var.type == "psu":
        return wv.psu.astype(object)
    if var.type == "fpc":
        return np.array([str(pop.fpc[h]) for h in pop.stratum], dtype=object)[wv.territory]
    if var.type == "respondent_type":
        return _label_cells(var.options, wv.rtype, tool)
    state = wv.state[var.id]
    value = wv.values[var.id]
    if var.type == "multi_select":
        labels = list(var.options.values()) if tool == "sphinx" else list(var.options)
        if tool == "sphinx":
            labels = [lab.replace("'", "\u2019") for lab in labels]
        ticked = wv.multi[var.id]
        cells = np.array(
            [
                _MULTI_SEP.join(lab for lab, on in zip(labels, row, strict=True) if on)
                for row in ticked
            ],
            dtype=object,
        )
    elif var.options:
        cells = _label_cells(var.options, value, tool)
    elif var.type in {"likert", "ordinal", "binary"} and var.scale in cb.scales:
        codes = np.nan_to_num(np.asarray(value, dtype=float)).astype(int)
        cells = _label_cells(cb.scales[var.scale].values, codes, tool)
    elif var.type in {"rating", "count"}:
        cells = np.char.mod("%d", np.nan_to_num(np.asarray(value, dtype=float))).astype(object)
    elif var.type == "decimal":
        cells = _fr_number(value, 1)
    else:
        cells = np.asarray(value, dtype=object)
    special = _SPECIAL_TEXT[tool]
    out = np.where(state == _VALID, cells, "").astype(object)
    for code, text in special.items():
        out[state == code] = text
    return out[:n]


def _write_export(path: Path, wv: _Wave, pop: _Population, cb: Codebook, tool: str) -> None:
    import csv
    import io

    variables = cb.of_type()
    headers = [_HEADERS[tool].get(v.id, v.id) for v in variables]
    columns = [_export_column(v, wv, pop, cb, tool) for v in variables]
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer, delimiter=";", lineterminator="\r\n" if tool == "sphinx" else "\n")
    writer.writerow(headers)
    writer.writerows(zip(*columns, strict=True))
    encoding = "cp1252" if tool == "sphinx" else "utf-8-sig"
    path.write_bytes(buffer.getvalue().encode(encoding))
