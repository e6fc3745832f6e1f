"""Tests of the synthetic-wave simulator (``evalterritoire.simulate.waves``)."""

from __future__ import annotations

import csv
import dataclasses
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.cluster import KMeans
from sklearn.metrics import adjusted_rand_score

from evalterritoire.codebook import Codebook, normalise_text
from evalterritoire.config import load_study
from evalterritoire.errors import StudyConfigError
from evalterritoire.simulate.waves import SimulationResult, simulate_waves

SMALL = {"n_territories": 8, "n_respondents": 400, "waves": [2023, 2024], "seed": 7}


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> SimulationResult:
    return simulate_waves(tmp_path_factory.mktemp("sim_small"), **SMALL)


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> SimulationResult:
    """Demo size (60 territories × 3,000 respondents), two waves to keep the test fast."""
    return simulate_waves(
        tmp_path_factory.mktemp("sim_demo"),
        n_territories=60,
        n_respondents=3000,
        waves=[2023, 2024],
        seed=2025,
    )


def read_export(path: Path, codebook: Codebook) -> pd.DataFrame:
    """Read a raw export as text and rename its headers to codebook ids."""
    raw = path.read_bytes()
    encoding = "utf-8-sig" if raw.startswith(b"\xef\xbb\xbf") else "cp1252"
    frame = pd.read_csv(
        path, sep=";", dtype=str, keep_default_na=False, encoding=encoding, na_filter=False
    )
    return frame.rename(columns=lambda h: codebook.header_lookup[normalise_text(h)])


def typed(frame: pd.DataFrame, codebook: Codebook, var_id: str) -> pd.Series:
    """Cells of a coded variable mapped to codebook codes (NaN for blanks and special codes)."""
    lookup = codebook.value_lookup(var_id)
    return frame[var_id].map(lambda c: lookup.get(normalise_text(c), np.nan)).astype(float)


def french_float(series: pd.Series) -> pd.Series:
    return series.str.replace(",", ".", regex=False).astype(float)


# --------------------------------------------------------------------------- reproducibility
def test_same_seed_gives_byte_identical_files(tmp_path: Path, small: SimulationResult) -> None:
    again = simulate_waves(tmp_path / small.out_dir.name, **SMALL)  # README quotes the dir name
    rel_a = sorted(p.relative_to(small.out_dir) for p in small.files)
    rel_b = sorted(p.relative_to(again.out_dir) for p in again.files)
    assert rel_a == rel_b
    for rel in rel_a:
        assert (small.out_dir / rel).read_bytes() == (again.out_dir / rel).read_bytes(), rel


def test_other_seed_gives_other_data(tmp_path: Path, small: SimulationResult) -> None:
    other = simulate_waves(tmp_path / "other", **{**SMALL, "seed": 8})
    assert other.exports[0].read_bytes() != small.exports[0].read_bytes()


def test_files_and_summary(small: SimulationResult) -> None:
    out = small.out_dir
    for wave in SMALL["waves"]:
        for name in ("study.toml", f"marges_{wave}.csv", "contexte_territoires.csv"):
            assert (out / str(wave) / name).is_file()
    assert small.exports[0].name == "export_sphinx_2023.csv"
    assert small.exports[1].name == "export_limesurvey_2024.csv"
    assert (out / "ground_truth" / "truth.json").is_file()
    assert (out / "ground_truth" / "stages.csv").is_file()
    assert "SYNTHETIC" in (out / "README.md").read_text(encoding="utf-8")
    text = small.summary()
    assert "SYNTHETIC" in text
    assert "2023" in text
    assert "2024" in text
    assert "8 territories" in text
    assert "400 respondents" in text


# --------------------------------------------------------------------------- export format
def test_export_encodings_and_separators(small: SimulationResult) -> None:
    sphinx, lime = (p.read_bytes() for p in small.exports)
    assert not sphinx.startswith(b"\xef\xbb\xbf")
    sphinx.decode("cp1252")
    with pytest.raises(UnicodeDecodeError):
        sphinx.decode("utf-8")  # Windows-1252 accents
    assert b"\r\n" in sphinx
    assert lime.startswith(b"\xef\xbb\xbf")
    lime.decode("utf-8")
    first = sphinx.split(b"\r\n", 1)[0].decode("cp1252")
    assert first.startswith("N° répondant;")
    assert "Pondération" in first


def test_export_columns_rows_and_cells(small: SimulationResult, codebook: Codebook) -> None:
    expected = [v.id for v in codebook.of_type()]
    for path in small.exports:
        frame = read_export(path, codebook)
        assert list(frame.columns) == expected
        assert len(frame) == SMALL["n_respondents"]
        assert frame["id_repondant"].is_unique
        for var in codebook.of_type():
            if var.required:
                assert (frame[var.id] != "").all(), var.id
        weights = french_float(frame["id_poids"])
        assert (weights > 0).all()
        given = frame["id_date_collecte"] != ""
        dates = pd.to_datetime(frame.loc[given, "id_date_collecte"], format="%d/%m/%Y")
        assert (dates.dt.year == int(frame["id_annee"].iloc[0])).all()
        assert given.mean() > 0.9
    sphinx = read_export(small.exports[0], codebook)
    cells = set(sphinx["mat_inter_qui_fait_quoi"])
    assert "Plutôt d\u2019accord" in cells
    assert "NSP" in cells
    assert "" in cells
    assert "Oui" in set(sphinx["dyn_animateur_existe"])
    multi = sphinx["res_fragilites_ciblees"]
    assert multi.str.contains(", ").any()


def test_every_cell_is_a_declared_value(small: SimulationResult, codebook: Codebook) -> None:
    """Coded cells are labels, codes or declared special codes of their own item."""
    for path in small.exports:
        frame = read_export(path, codebook)
        for var in codebook.of_type("likert", "ordinal", "binary", "categorical"):
            lookup = codebook.value_lookup(var.id)
            specials = {
                normalise_text(s)
                for key in var.special_codes
                for sc in [codebook.special_codes[key]]
                for s in (sc.key, sc.label_fr, str(sc.code), *sc.spellings)
            }
            for cell in set(frame[var.id]) - {""}:
                norm = normalise_text(cell)
                assert norm in lookup or norm in specials, (path.name, var.id, cell)
        for var in codebook.of_type("multi_select"):
            options = {normalise_text(k) for k in var.options} | {
                normalise_text(v) for v in var.options.values()
            }
            specials = codebook.special_lookup
            cells = [c for c in frame[var.id] if c and normalise_text(c) not in specials]
            for cell in cells:
                if path.name.startswith("export_limesurvey"):
                    parts = {normalise_text(p) for p in cell.split(", ")}
                    assert parts <= options, (var.id, cell)
                    if var.max_choices:
                        assert len(parts) <= var.max_choices


def split_labels(cell: str, labels: list[str]) -> list[str]:
    """Split a multi-select cell by longest match on the option labels (", " between them)."""
    found, rest = [], cell
    ordered = sorted(labels, key=len, reverse=True)
    while rest:
        match = next(lab for lab in ordered if rest.startswith(lab))
        found.append(match)
        rest = rest[len(match) :]
        assert rest == "" or rest.startswith(", "), cell
        rest = rest[2:]
    return found


def test_sphinx_multi_select_cells_hold_labels(small: SimulationResult, codebook: Codebook) -> None:
    frame = read_export(small.exports[0], codebook)
    for var in codebook.of_type("multi_select"):
        labels = [lab.replace("'", "\u2019") for lab in var.options.values()]
        cells = [c for c in frame[var.id] if c and normalise_text(c) not in codebook.special_lookup]
        assert cells, var.id
        for cell in cells:
            parts = split_labels(cell, labels)
            assert len(parts) == len(set(parts))
            if var.max_choices:
                assert len(parts) <= var.max_choices


def test_all_respondent_types_present(small: SimulationResult, codebook: Codebook) -> None:
    for path in small.exports:
        frame = read_export(path, codebook)
        types = frame["id_type_repondant"].map(
            lambda c: codebook.value_lookup("id_type_repondant")[normalise_text(c)]
        )
        assert set(types) == set(codebook["id_type_repondant"].options)


# --------------------------------------------------------------------------- design
def test_design_sanity(small: SimulationResult, codebook: Codebook) -> None:
    for path in small.exports:
        frame = read_export(path, codebook)
        psu_strata = frame.groupby("id_psu")["id_strate"].nunique()
        assert (psu_strata == 1).all(), "PSUs must be nested in strata"
        assert (frame.groupby("id_psu")["id_territoire_code"].nunique() == 1).all()
        fpc = french_float(frame["id_fpc"])
        assert (frame.assign(fpc=fpc).groupby("id_strate")["fpc"].nunique() == 1).all()
        sampled = frame.groupby("id_strate")["id_psu"].nunique()
        population = frame.assign(fpc=fpc).groupby("id_strate")["fpc"].first()
        assert (population >= sampled).all()
        assert (sampled >= 2).all(), "no lonely PSU"
        assert (frame.groupby("id_psu").size() >= 2).all()


def test_margins_match_codebook_levels(small: SimulationResult, codebook: Codebook) -> None:
    for wave, path in zip(SMALL["waves"], small.exports, strict=True):
        margins = pd.read_csv(
            small.out_dir / str(wave) / f"marges_{wave}.csv", dtype={"level": str}
        )
        assert list(margins.columns) == ["variable", "level", "total"]
        assert (margins["total"] > 0).all()
        by_var = margins.groupby("variable")["total"].sum()
        assert by_var["id_type_repondant"] == by_var["id_region_code"]
        types = set(margins.loc[margins["variable"] == "id_type_repondant", "level"])
        assert types == set(codebook["id_type_repondant"].options)
        frame = read_export(path, codebook)
        regions = set(margins.loc[margins["variable"] == "id_region_code", "level"])
        assert regions == set(frame["id_region_code"])


def test_context_file(small: SimulationResult, codebook: Codebook) -> None:
    ctx = pd.read_csv(
        small.out_dir / "2023" / "contexte_territoires.csv", dtype={"id_territoire_code": str}
    )
    territory_vars = [v.id for v in codebook.variables if v.level == "territory"]
    assert list(ctx.columns) == ["id_territoire_code", *territory_vars]
    assert len(ctx) == SMALL["n_territories"]
    assert ctx["id_territoire_code"].is_unique
    frame = read_export(small.exports[0], codebook)
    assert set(frame["id_territoire_code"]) == set(ctx["id_territoire_code"])


# --------------------------------------------------------------------------- ground truth
def test_ground_truth(small: SimulationResult) -> None:
    truth = json.loads(small.truth_path.read_text(encoding="utf-8"))
    assert truth["synthetic"] is True
    assert truth["seed"] == SMALL["seed"]
    assert truth["parameters"]["waves"] == SMALL["waves"]
    with (small.out_dir / "ground_truth" / "stages.csv").open(encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == SMALL["n_territories"] * len(SMALL["waves"])
    for row in rows:
        assert truth["stages"][row["wave"]][row["territory"]] == int(row["true_stage"])
    first = truth["stages"]["2023"]
    assert sorted(set(first.values())) == [0, 1, 2, 3]
    for code, stage in first.items():
        assert abs(truth["stages"]["2024"][code] - stage) <= 1
    kinds = {m["kind"]: m for m in truth["models"]}
    assert set(kinds) == {"linear", "logistic", "ordinal", "mixed"}
    assert kinds["mixed"]["groups"] == "id_territoire_code"
    assert kinds["linear"]["truth"]["ctx_taux_chomage"] < 0
    assert "C(stage)[T.3]" in kinds["logistic"]["truth"]
    assert truth["fragility_links"]["vieillissement"]["context"] == "ctx_part_75_plus"


def test_load_study_accepts_generated_files(small: SimulationResult) -> None:
    truth = json.loads(small.truth_path.read_text(encoding="utf-8"))
    for wave, study_path in zip(SMALL["waves"], small.study_files, strict=True):
        study = load_study(study_path)
        assert study.wave == wave
        assert study.min_n == 30
        assert study.exports == (small.exports[SMALL["waves"].index(wave)].resolve(),)
        assert study.context is not None
        assert study.context.is_file()
        assert study.calibration.method == "rake"
        assert set(study.calibration.margins) == {"id_type_repondant", "id_region_code"}
        assert study.design.weight == "id_poids"
        assert study.design.fpc == "id_fpc"
        assert study.maturity.n_stages == 4
        assert study.maturity.reference_wave == 2023
        assert [(m.name, m.formula) for m in study.models] == [
            (m["name"], m["formula"]) for m in truth["models"]
        ]
        assert len(study.previous_waves) == SMALL["waves"].index(wave)


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"n_territories": 3}, "at least 4 territories"),
        ({"n_respondents": 20}, "respondents per territory"),
        ({"waves": [2024, 2023]}, "increasing"),
        ({"waves": []}, "increasing"),
        ({"seed": -1}, "seed"),
    ],
)
def test_invalid_parameters(tmp_path: Path, changes: dict, match: str) -> None:
    with pytest.raises(StudyConfigError, match=match):
        simulate_waves(tmp_path, **{**SMALL, **changes})


# --------------------------------------------------------------------------- known structure
def territory_profiles(frame: pd.DataFrame, codebook: Codebook) -> tuple[pd.DataFrame, pd.Series]:
    """Weighted territory means of the dimension scores (items ≥ 2/3 answered)."""
    weights = french_float(frame["id_poids"])
    scores = {}
    for dim in codebook.dimensions:
        items = codebook.dimension_items(dim)
        values = pd.concat(
            [(6 - typed(frame, codebook, v.id)) if v.reverse_coded else typed(frame, codebook, v.id)
             for v in items],
            axis=1,
        )  # fmt: skip
        enough = values.notna().sum(axis=1) >= np.ceil(len(items) * 2 / 3)
        scores[dim] = values.mean(axis=1).where(enough)
    table = pd.DataFrame(scores)
    rows = {}
    for code, idx in frame.groupby("id_territoire_code").groups.items():
        sub, w = table.loc[idx], weights.loc[idx]
        rows[code] = {d: np.average(sub[d].dropna(), weights=w[sub[d].notna()]) for d in table}
    return pd.DataFrame(rows).T.sort_index(), weights


def test_stages_recoverable_by_kmeans_at_demo_size(
    demo: SimulationResult, codebook: Codebook
) -> None:
    truth = json.loads(demo.truth_path.read_text(encoding="utf-8"))
    for wave, path in zip(demo.waves, demo.exports, strict=True):
        frame = read_export(path, codebook)
        profiles, _ = territory_profiles(frame, codebook)
        labels = KMeans(4, n_init=20, random_state=0).fit_predict(profiles.to_numpy())
        true = [truth["stages"][str(wave)][code] for code in profiles.index]
        assert adjusted_rand_score(true, labels) >= 0.9, wave
        # stage means increase on every dimension (ordered profiles)
        means = profiles.groupby(np.array(true)).mean()
        assert (means.diff().iloc[1:] > 0).to_numpy().mean() >= 0.9


def test_known_links_at_demo_size(demo: SimulationResult, codebook: Codebook) -> None:
    truth = json.loads(demo.truth_path.read_text(encoding="utf-8"))
    frame = read_export(demo.exports[1], codebook)
    ctx = pd.read_csv(
        demo.out_dir / "2024" / "contexte_territoires.csv", dtype={"id_territoire_code": str}
    ).set_index("id_territoire_code")
    stage = frame["id_territoire_code"].map(truth["stages"]["2024"])
    # fragility priority follows the share of people aged 75+
    prio = pd.to_numeric(frame["frag_vieillissement_priorite"], errors="coerce")
    by_t = prio.groupby(frame["id_territoire_code"]).mean()
    assert by_t.corr(ctx.loc[by_t.index, "ctx_part_75_plus"]) > 0.5
    # self-declared stage: correlated with, but not equal to, the true stage
    declared = typed(frame, codebook, "stade_auto") - 1
    ok = declared.notna()
    agree = (declared[ok] == stage[ok]).mean()
    assert 0.5 < agree < 0.85
    assert declared[ok].corr(stage[ok]) > 0.6
    # reverse-coded burden item: agreement falls as maturity rises
    burden = typed(frame, codebook, "res_charge_excessive")
    assert burden.corr(stage) < -0.2
    # an emerging territory has more "ne sait pas" on governance
    nsp = frame["mat_gouv_decision_partagee"].map(normalise_text).eq("ne sait pas")
    asked = frame["mat_gouv_decision_partagee"] != ""
    nsp_by_stage = nsp[asked].groupby(stage[asked]).mean()
    assert nsp_by_stage[0] > 2 * nsp_by_stage[3]


def test_reverse_coded_dimension_item_is_honoured(tmp_path: Path, codebook: Codebook) -> None:
    """A reverse-coded maturity item is answered on the reversed scale."""
    reversed_id = "mat_gouv_ouverture"
    variables = tuple(
        dataclasses.replace(v, reverse_coded=True) if v.id == reversed_id else v
        for v in codebook.variables
    )
    custom = dataclasses.replace(codebook, variables=variables)
    result = simulate_waves(
        tmp_path, n_territories=20, n_respondents=1000, waves=[2024], seed=3, codebook=custom
    )
    frame = read_export(result.exports[0], custom)
    truth = json.loads(result.truth_path.read_text(encoding="utf-8"))
    stage = frame["id_territoire_code"].map(truth["stages"]["2024"])
    assert typed(frame, custom, reversed_id).corr(stage) < -0.3
    assert typed(frame, custom, "mat_gouv_roles_clairs").corr(stage) > 0.3


def test_exports_ingest_losslessly(small: SimulationResult, codebook: Codebook) -> None:
    """Every simulated row ingests as valid and its typed values are the simulated ones."""
    from evalterritoire.ingest.files import ingest_file
    from evalterritoire.simulate.waves import _generate

    data = _generate(codebook, SMALL["n_territories"], SMALL["n_respondents"], SMALL["waves"], 7)
    special_keys = {3: "nsp", 4: "refus", 5: "nc"}
    skip = {"weight", "stratum", "psu", "fpc", "respondent_type", "identifier", "date", "text"}
    for path, wv in zip(small.exports, data["waves"], strict=True):
        result = ingest_file(path, codebook)
        assert result.status == "ok", result.summary()
        assert result.report["rows_valid"] == SMALL["n_respondents"]
        valid = result.valid.assign(_i=lambda f: f["id_repondant"].astype(int) - 1)
        valid = valid.sort_values("_i").reset_index(drop=True)
        np.testing.assert_allclose(valid["id_poids"].astype(float), np.round(wv.weight, 4))
        for var in codebook.of_type():
            if var.type in skip or var.id.startswith("id_"):
                continue
            state = wv.state[var.id]
            if var.type == "multi_select":
                for j, key in enumerate(var.options):
                    got = valid[f"{var.id}__{key}"].astype(float).to_numpy(na_value=np.nan)
                    expected = np.where(state == 0, wv.multi[var.id][:, j], np.nan)
                    np.testing.assert_array_equal(got, expected, err_msg=f"{var.id}__{key}")
            else:
                got = valid[var.id].astype(object).where(valid[var.id].notna(), None)
                expected = np.where(state == 0, wv.values[var.id], None)
                for g, e in zip(got, expected, strict=True):
                    assert (g is None) == (e is None), var.id
                    if e is not None:
                        assert str(g) == str(e) or float(g) == float(e), (var.id, g, e)
            if var.special_codes:
                got_sp = valid[f"{var.id}__special"].astype(object)
                got_sp = got_sp.where(got_sp.notna(), None).tolist()
                assert got_sp == [special_keys.get(int(s)) for s in state], var.id


# --------------------------------------------------------------------------- command line
CLI_ARGS = ["--territories", "4", "--respondents", "40", "--waves", "2023,2024", "--seed", "11"]


def _cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    from evalterritoire.cli import main

    code = main(["simulate", *args])
    captured = capsys.readouterr()
    for text in (captured.out, captured.err):
        assert "Traceback" not in text
        assert "internal error" not in text
    return code, captured.out, captured.err


def _tree(root: Path) -> dict[Path, bytes]:
    return {p.relative_to(root): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_cli_flags_files_and_reproducibility(tmp_path: Path, capsys) -> None:
    out_a, out_b = tmp_path / "a" / "sim", tmp_path / "b" / "sim"  # README quotes the dir name
    code, stdout, _ = _cli(capsys, *CLI_ARGS, "--out", str(out_a))
    assert code == 0
    assert "SYNTHETIC" in stdout
    assert "4 territories, 40 respondents per wave, seed 11" in stdout
    files = _tree(out_a)
    assert sorted(map(str, files)) == [
        "2023/contexte_territoires.csv",
        "2023/export_sphinx_2023.csv",
        "2023/marges_2023.csv",
        "2023/study.toml",
        "2023/territoires.geojson",
        "2024/contexte_territoires.csv",
        "2024/export_limesurvey_2024.csv",
        "2024/marges_2024.csv",
        "2024/study.toml",
        "2024/territoires.geojson",
        "README.md",
        "ground_truth/stages.csv",
        "ground_truth/truth.json",
    ]
    truth = json.loads(files[Path("ground_truth/truth.json")])
    assert truth["seed"] == 11
    assert truth["parameters"]["waves"] == [2023, 2024]
    assert set(truth["stages"]["2023"]) == set(truth["stages"]["2024"])
    assert len(truth["stages"]["2023"]) == 4
    readme = files[Path("README.md")].decode("utf-8")
    assert "--territories 4 --respondents 40 --waves 2023,2024 --seed 11 --out sim" in readme
    # same flags, same bytes; the API gives the same files as the command line
    assert _cli(capsys, *CLI_ARGS, "--out", str(out_b))[0] == 0
    assert _tree(out_b) == files
    api = simulate_waves(
        tmp_path / "c" / "sim", n_territories=4, n_respondents=40, waves=[2023, 2024], seed=11
    )
    assert _tree(api.out_dir) == files
    # another seed, other data
    assert _cli(capsys, *CLI_ARGS[:-1], "12", "--out", str(tmp_path / "d" / "sim"))[0] == 0
    other = _tree(tmp_path / "d" / "sim")
    assert other[Path("2023/export_sphinx_2023.csv")] != files[Path("2023/export_sphinx_2023.csv")]


def test_cli_single_wave(tmp_path: Path, capsys) -> None:
    code, _, _ = _cli(
        capsys, "--territories", "4", "--respondents", "40", "--waves", "2025", "--seed", "0",
        "--out", str(tmp_path),
    )  # fmt: skip
    assert code == 0
    assert (tmp_path / "2025" / "export_limesurvey_2025.csv").is_file()
    assert load_study(tmp_path / "2025" / "study.toml").wave == 2025


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--waves", "2023,vingt"], "--waves must be comma-separated years, got '2023,vingt'"),
        (["--waves", "2024,2023"], "waves must be distinct increasing years, got [2024, 2023]"),
        (["--territories", "3"], "need at least 4 territories, got 3"),
        (["--respondents", "10"], "need at least 4 respondents per territory (16), got 10"),
        (["--seed", "-1"], "seed must be ≥ 0, got -1"),
    ],
)
def test_cli_invalid_flags_exit_2(tmp_path: Path, capsys, flags: list[str], message: str) -> None:
    args = {**dict(zip(CLI_ARGS[::2], CLI_ARGS[1::2], strict=True)), **dict([flags])}
    code, stdout, err = _cli(
        capsys, *[x for kv in args.items() for x in kv], "--out", str(tmp_path)
    )
    assert code == 2
    assert stdout == ""
    assert err == f"error: {message}\n"


@pytest.mark.parametrize("where", ["under_a_file", "the_file_itself"])
def test_cli_unwritable_out_exit_2(tmp_path: Path, capsys, where: str) -> None:
    blocker = tmp_path / "file.txt"
    blocker.write_text("a regular file", encoding="utf-8")
    out = blocker / "sim" if where == "under_a_file" else blocker
    code, stdout, err = _cli(capsys, *CLI_ARGS, "--out", str(out))
    assert code == 2
    assert stdout == ""
    assert err.startswith(f"error: --out {out}: cannot write {out}")
    assert err.rstrip().endswith(("(Not a directory)", "(File exists)"))
    assert err.count("\n") == 1
    assert blocker.read_text(encoding="utf-8") == "a regular file"
