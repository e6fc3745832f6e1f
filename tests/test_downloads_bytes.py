"""The downloads written without pandas are the bytes the former pandas + openpyxl path wrote.

The former path (tables as DataFrames, ``artefacts.write_csv``, ``DataFrame.to_excel`` with
openpyxl then a re-zip with fixed dates) is kept below, verbatim, as the reference; every file
:func:`write_downloads` writes is compared with it, byte for byte: on the synthetic study's
contexts, and on contexts holding every edge case of the values (missing values, NaN and
infinities, booleans, large integers, formulas, Excel's error codes, control characters,
spaces to keep, numpy scalars, lists, suppressed rows, many columns, no table at all).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import io
import json
import math
import re
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from _synthetic_reports import make_artefacts, make_config
from openpyxl.utils.exceptions import IllegalCharacterError

from evalterritoire.artefacts import neutralise_cell, write_bytes_atomic, write_csv
from evalterritoire.artefacts import write_text_atomic as write_text
from evalterritoire.render import downloads
from evalterritoire.render.downloads import DOWNLOAD_TITLES, write_downloads
from evalterritoire.render.spreadsheet import plain_column, xlsx_bytes
from evalterritoire.report.build import build_contexts

SPECIAL = [
    {"key": "nsp", "code": -1, "label": "Ne sait pas", "kind": "dont_know"},
    {"key": "nr", "code": -2, "label": "Non-réponse", "kind": "missing"},
]


# --------------------------------------------------------------------------- former path
def _ref_suppress(frame):
    if "status" not in frame.columns:
        return frame
    mask = frame["status"].astype("string").eq("suppressed").fillna(False).to_numpy(bool)
    if not mask.any():
        return frame
    out = frame.astype(object)
    for column in out.columns:
        if column not in downloads._KEEP_WHEN_SUPPRESSED:
            out.loc[mask, column] = None
    return out


def _ref_tables(ctx):
    tables = {}
    for name, rows, columns in downloads._download_rows(ctx):
        frame = pd.DataFrame([{c: r.get(c) for c in columns} for r in rows], columns=columns)
        tables[name] = _ref_suppress(frame)
    return tables


def _ref_fr_number(value):
    if isinstance(value, bool) or value is None:
        return "oui" if value is True else ("non" if value is False else None)
    if isinstance(value, float):
        if not math.isfinite(value):
            return None
        if value == int(value) and abs(value) < 1e15:
            return str(int(value))
        return f"{value:.6f}".rstrip("0").rstrip(".").replace(".", ",")
    return value


def _ref_csv_frame(frame):
    out = frame.astype(object).where(frame.notna(), None)
    for column in out.columns:
        out[column] = [_ref_fr_number(v) for v in out[column]]
    return out


def _ref_xlsx_bytes(tables):
    buffer = io.BytesIO()
    with pd.ExcelWriter(buffer, engine="openpyxl") as writer:
        for name, frame in tables.items():
            out = frame.astype(object).where(frame.notna(), None)
            out = out.map(lambda v: neutralise_cell(v) if isinstance(v, str) else v)
            out.to_excel(writer, sheet_name=name[:31], index=False)
        props = writer.book.properties
        props.created = props.modified = dt.datetime(2000, 1, 1)
        props.creator = "evalterritoire"
    return _ref_fixed_zip_times(buffer.getvalue())


def _ref_fixed_zip_times(data):
    src = zipfile.ZipFile(io.BytesIO(data))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            member = zipfile.ZipInfo(info.filename, date_time=(1980, 1, 1, 0, 0, 0))
            member.compress_type = zipfile.ZIP_DEFLATED
            content = src.read(info.filename)
            if info.filename == "docProps/core.xml":
                content = re.sub(
                    rb"(<dcterms:(?:created|modified)[^>]*>)[^<]*",
                    rb"\g<1>2000-01-01T00:00:00Z",
                    content,
                )
            dst.writestr(member, content)
    return out.getvalue()


def _ref_field(name, series, labels):
    kind = "string"
    values = [v for v in series if v is not None and not (isinstance(v, float) and math.isnan(v))]
    if not values:
        kind = "any"
    elif all(isinstance(v, bool) for v in values):
        kind = "string"
    elif values and all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        kind = "integer"
    elif values and all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
        kind = "number"
    spec = {"name": name, "type": kind, "title": downloads._FIELD_TITLES.get(name, name)}
    if kind == "number":
        spec["decimalChar"] = ","
    if name == "variable" and labels:
        spec["categories"] = [{"value": k, "label": v} for k, v in sorted(labels.items())]
    return spec


def _ref_datapackage(stem, title, tables, special_codes):
    titles = {name: t for name, t in DOWNLOAD_TITLES.values()}
    resources = []
    for name, frame in tables.items():
        labels = {}
        if {"variable", "label"} <= set(frame.columns):
            for var, label in zip(frame["variable"], frame["label"], strict=True):
                if isinstance(var, str) and isinstance(label, str):
                    labels.setdefault(var, label)
        resources.append(
            {
                "name": name,
                "title": titles.get(name, name),
                "path": f"{name}.csv",
                "format": "csv",
                "mediatype": "text/csv",
                "encoding": "utf-8-sig",
                "dialect": {"delimiter": ";", "header": True},
                "schema": {
                    "fields": [_ref_field(c, frame[c], labels) for c in frame.columns],
                    "missingValues": [""],
                },
            }
        )
    return {
        "name": stem.lower().replace("_", "-"),
        "title": title,
        "description": (
            "Données des tableaux et graphiques du rapport. Les valeurs dont le statut est "
            "« suppressed » sont laissées vides (secret statistique)."
        ),
        "specialCodes": [dict(c) for c in special_codes],
        "resources": resources,
    }


def _ref_write_downloads(ctx, out_dir, *, stem, special_codes=()):
    folder = Path(out_dir) / stem
    tables = _ref_tables(ctx)
    written = [
        write_csv(_ref_csv_frame(frame), folder / f"{name}.csv", sep=";", encoding="utf-8-sig")
        for name, frame in tables.items()
    ]
    if tables:
        written.append(write_bytes_atomic(folder / f"{stem}.xlsx", _ref_xlsx_bytes(tables)))
    package = _ref_datapackage(stem, ctx.territory_name, tables, special_codes)
    text = json.dumps(package, ensure_ascii=False, indent=2) + "\n"
    written.append(write_text(folder / "datapackage.json", text))
    return sorted(written)


# --------------------------------------------------------------------------- comparison
def _files(folder: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }


def _assert_same_downloads(ctx, tmp_path, stem="T"):
    """Both writers on ``ctx``: the same files, the same bytes (the differing file is named)."""
    before = _ref_write_downloads(ctx, tmp_path / "ref", stem=stem, special_codes=SPECIAL)
    after = write_downloads(ctx, tmp_path / "new", stem=stem, special_codes=SPECIAL)
    ref, new = _files(tmp_path / "ref"), _files(tmp_path / "new")
    assert list(new) == list(ref)
    assert [p.relative_to(tmp_path / "new") for p in after] == [
        p.relative_to(tmp_path / "ref") for p in before
    ]
    for name in ref:
        assert new[name] == ref[name], name
    return ref


@pytest.fixture(scope="module")
def contexts(codebook, tmp_path_factory):
    config = make_config(tmp_path_factory.mktemp("bytes"))
    return build_contexts(config, codebook, make_artefacts(codebook))


def test_the_synthetic_study_downloads_are_the_former_bytes(contexts, tmp_path):
    checked = 0
    for i, ctx in enumerate(contexts):
        files = _assert_same_downloads(ctx, tmp_path / str(i))
        checked += sum(name.endswith(".xlsx") for name in files)
    assert checked == len(contexts)
    assert any(c.is_national for c in contexts)


# --------------------------------------------------------------------------- edge cases
def _territory(contexts):
    return next(c for c in contexts if not c.is_national)


def _edge_rows():
    """Records whose columns hold every kind of value, mixed as contexts may mix them."""
    big = 2**63 + 5
    columns = {
        "ints_gap": [1, None, 3, 2**53 + 1],
        "ints_big_gap": [big, None, 7, 1],
        "ints_signed_huge": [-1, big, None, 4],
        "ints_beyond": [10**30, None, 1, 2],
        "ints_floats": [1, 2.5, -3, 10**17],
        "uint_floats": [2**64 - 1, 0.5, 1, 2],
        "ints": [5, -7, 2**62, 0],
        "floats": [0.1, -0.0, 1e-7, -1e-7],
        "large_floats": [1e15, 1e16 + 2, 123456789012.125, -9.99e20],
        "special_floats": [math.nan, math.inf, -math.inf, 2.0],
        "bools": [True, False, True, False],
        "bools_gap": [True, None, False, None],
        "bools_ints": [True, 1, 0, False],
        "bools_floats": [True, 1.5, math.nan, None],
        "empty": [None, None, None, None],
        "nan_only": [math.nan, math.nan, None, math.nan],
        "numpy": [np.int64(3), np.float64(2.5), np.bool_(True), None],
        "numpy_ints": [np.int64(3), np.int64(-4), np.int64(5), np.int64(6)],
        "formulas": ["=1+2", "+33 6 12 34 56 78", "-1,5", "@SUM(A1)"],
        "starts": ["\tx", "\ry", "-2e3", "+"],
        "errors": ["#N/A", "#DIV/0!", "#REF", "="],
        "spaces": [" lead", "trail ", "   ", "a\xa0"],
        "quotes": ['say "hi"', "a;b", "line\nbreak", "crlf\r\nend"],
        "markup": ["<b>&amp;</b>", "x > y", "Saint-Étienne « ville »", "😀 émoji"],
        "mixed": ["text", 4, 2.5, True],
        "other": [[1, 2], {"a": 1}, "x", None],
    }
    rows = [{k: v[i] for k, v in columns.items()} for i in range(4)]
    for i, row in enumerate(rows):
        row.update(label=f"Item {i}", variable=f"v{i}", status="publishable", dimension="d")
    rows[1]["other"] = (1, 2)
    return rows


def _suppressed_rows():
    """Rows of which some are ``suppressed``: their values blanked, integers beside gaps."""
    rows = []
    for i, status in enumerate(["suppressed", "publishable", "suppressed", "fragile"]):
        rows.append(
            {
                "variable": f"v{i}",
                "label": f"Item {i}",
                "status": status,
                "n": [12, 7, 2**63 + 5, 2**53 + 1][i],
                "n_small": 3 + i,
                "estimate": 0.1 * (i + 1),
                "flag": bool(i % 2),
                "huge": [10**30, 2, 3, 4][i],
                "type": "association",
                "text": f"=x{i}",
            }
        )
    return rows


def test_edge_values_give_the_former_bytes(contexts, tmp_path):
    ctx = _territory(contexts)
    wide = {f"col_{i:02d}": i * 1.25 for i in range(30)}
    ctx = dataclasses.replace(
        ctx,
        profile=tuple(_edge_rows()),
        partnership=tuple(_suppressed_rows()),
        identity={"level": "=cmd|' /C calc'!A0", "n": 3, "empty": None, "ratio": 2.0},
        freins=({"label": ""}, {"label": None}, {"label": "x"}),
        nsp=({"status": "suppressed", "n": 4},),
        respondents=({"status": 1, "n": 3}, {"status": None, "n": None}),
        by_type=(wide, {**wide, "col_29": None}),
        composition=({"=formula_name": 1, "#N/A": "a", " spaced": True},),
    )
    files = _assert_same_downloads(ctx, tmp_path)
    assert "7.0" in files["T/partenariats.csv"].decode("utf-8-sig")  # pandas' float column
    package = json.loads(files["T/datapackage.json"])
    assert {r["name"] for r in package["resources"]} >= {
        "profil",
        "partenariats",
        "par_type_acteur",
    }


def test_a_context_without_tables_gives_the_former_package(contexts, tmp_path):
    ctx = _territory(contexts)
    empty = {
        f.name: ()
        for f in dataclasses.fields(ctx)
        if f.name in DOWNLOAD_TITLES and f.name != "identity"
    }
    ctx = dataclasses.replace(ctx, identity={}, **empty)
    files = _assert_same_downloads(ctx, tmp_path)
    assert list(files) == ["T/datapackage.json"]


def test_long_texts_are_cut_with_the_former_warning(contexts, tmp_path):
    ctx = _territory(contexts)
    ctx = dataclasses.replace(ctx, profile=({"label": "x" * 40000 + "\x01", "n": 1},))
    with pytest.warns(UserWarning, match="truncated to 32767"):
        _assert_same_downloads(ctx, tmp_path)


def test_a_control_character_fails_as_before_after_the_same_csv_files(contexts, tmp_path):
    ctx = _territory(contexts)
    ctx = dataclasses.replace(ctx, profile=({"label": "bell\x07", "n": 1},))
    with pytest.raises(IllegalCharacterError):
        _ref_write_downloads(ctx, tmp_path / "ref", stem="T")
    with pytest.raises(IllegalCharacterError, match="cannot be used in worksheets"):
        write_downloads(ctx, tmp_path / "new", stem="T")
    ref, new = _files(tmp_path / "ref"), _files(tmp_path / "new")
    assert "T/profil.csv" in new
    assert not [n for n in new if n.endswith((".xlsx", ".json"))]
    assert new == ref


def test_the_workbook_alone_cuts_sheet_names_and_writes_the_former_bytes():
    long = "a_resource_name_longer_than_thirty_one_characters"
    rows = _edge_rows()
    columns = list(dict.fromkeys(k for r in rows for k in r))
    frame = pd.DataFrame([{c: r.get(c) for c in columns} for r in rows], columns=columns)
    plain = downloads._xlsx_table({c: plain_column([r.get(c) for r in rows]) for c in columns})
    ref = _ref_xlsx_bytes({long: frame, "b": frame.iloc[:1]})
    new = xlsx_bytes({long: plain, "b": {c: v[:1] for c, v in plain.items()}})
    assert new == ref
    book = zipfile.ZipFile(io.BytesIO(new)).read("xl/workbook.xml").decode()
    assert f'name="{long[:31]}"' in book
