"""The report scan finds each defect of the « publishable numbers » issue, and only those."""

from __future__ import annotations

from evalterritoire.report.display import render_estimate
from evalterritoire.report.scan import scan_report, scan_reports

NB = "\u00a0"


def _kinds(page: str, min_cell: int = 5) -> list[str]:
    return sorted(f.kind for f in scan_report(page, min_cell=min_cell))


def test_text_defects_of_the_issue_are_found():
    assert _kinds(f"<td>2,0/5 [0,5{NB}; 3,5]</td>") == ["outside_range"]
    assert _kinds(f"<td>5,5/10 [0,4{NB}; 10,6]</td>") == ["outside_range"]
    assert _kinds(f"<td>3,4 [−7,5{NB}; 14,2]</td>") == ["negative_bound"]
    assert _kinds(f"<td>4,0 [4,0{NB}; 4,0]</td>") == ["collapsed"]
    assert _kinds(f"<td>97{NB}% [60{NB}%{NB}; 101{NB}%]</td>") == ["outside_range"]
    assert _kinds(f"<p>Maire : 3,0 (n{NB}={NB}1)</p>") == ["below_min_cell"]
    # alt texts are read too, and the thousands separator does not split a number
    assert _kinds('<img alt="Autre : bénéfices 3,0 (n = 2)" src="x.png">') == ["below_min_cell"]
    assert _kinds(f"<p>n{NB}={NB}1\u202f250 ; 3,4 [3,1{NB}; 3,7]</p>") == []


def test_respondent_tables_and_model_tables():
    types = (
        "<table><caption>Répondants par type (n = 24)</caption><tbody>"
        "<tr><td>Maire</td><td class=num>1</td><td>4 %</td></tr>"
        "<tr><td>Association</td><td class=num>23</td><td>96 %</td></tr></tbody></table>"
    )
    assert _kinds(types) == ["below_min_cell"]
    assert _kinds(types, min_cell=1) == []
    # a model coefficient may be negative: the model tables are not scanned
    models = f"<table><thead><tr><th>Terme</th></tr></thead><td>−0,30 [−0,5{NB}; −0,1]</td></table>"
    assert _kinds(models) == []


def test_judged_figures_are_checked_against_their_attributes():
    share = {"status": "publishable", "estimate": 0.4, "ci_low": 0.3, "ci_high": 0.5, "n": 40,
             "interval": "korn_graubard", "quantity": "share", "estimator": "direct"}  # fmt: skip
    assert _kinds(f"<td>{render_estimate(share, percent=True, base=0)}</td>") == []
    assert _kinds(f"<td>{render_estimate({**share, 'n': 3}, percent=True)}</td>") == [
        "below_min_cell"
    ]
    mean = {**share, "quantity": "bounded_mean", "range_low": 1.0, "range_high": 5.0,
            "estimate": 1.2, "ci_low": 0.9, "ci_high": 1.6}  # fmt: skip
    assert _kinds(f"<td>{render_estimate(mean)}</td>") == ["outside_range"]
    hidden = render_estimate({**share, "status": "suppressed", "n": 3})
    assert _kinds(f"<td>{hidden}</td>") == []
    leak = hidden.replace(">s</abbr>", ">40 %</abbr>")
    assert _kinds(f"<td>{leak}</td>") == ["no_status"]


def test_scan_reports_reads_pages_and_downloads(tmp_path):
    (tmp_path / "territoires").mkdir()
    (tmp_path / "territoires" / "a.html").write_text(f"<td>4,0 [4,0{NB}; 4,0]</td>")
    (tmp_path / "index.html").write_text("<p>ok</p>")
    (tmp_path / "d.csv").write_text("variable,n,estimate\nx,3,0.5\ny,3,\nz,12,0.4\n")
    found = scan_reports(tmp_path)
    assert sorted(found) == ["d.csv", "index.html", "territoires/a.html"]
    assert [f.kind for f in found["territoires/a.html"]] == ["collapsed"]
    assert [f.kind for f in found["d.csv"]] == ["below_min_cell"]
    assert found["index.html"] == []
