"""``manifest._published``: one walk of a folder gives the files a ``rglob`` scan gave."""

from __future__ import annotations

import os
from pathlib import Path

from evalterritoire.manifest import _published


def _rglob_published(folder: Path, suffixes: set[str]) -> list[Path]:
    """The former scan, kept as the reference."""
    return sorted(
        p
        for p in folder.rglob("*")
        if p.is_file()
        and p.suffix in suffixes
        and not any(part.startswith(".") for part in p.relative_to(folder).parts)
    )


def test_published_files_are_those_of_a_recursive_scan(tmp_path):
    root = tmp_path / "reports"
    files = [
        "2025/index.html",
        "2025/synthese.html",
        "2025/territoires/200000172.html",
        "2025/territoires/200000172.pdf",
        "2025/territoires/a.b.html",
        "2025/territoires/sans_suffixe",
        "2025/territoires/x.",
        "2025/.render_status.json",
        "2025/.cache/hidden.html",
        "2025/territoires/.hidden.html",
        "2025/donnees/200000172/profil.csv",
        "2025/donnees/200000172/datapackage.json",
        "2025/donnees/200000172/200000172.xlsx",
        "2025/donnees/national/national.xlsx",
        "manifest.json",
        "deep/er/still/page.HTML",
    ]
    for name in files:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("x", encoding="utf-8")
    (root / "2025" / "dossier.html").mkdir()  # a folder named like a page is not a file
    os.symlink(root / "2025" / "territoires", root / "lien")  # a linked folder is not entered
    os.symlink(root / "absent.html", root / "2025" / "cassé.html")  # a dangling link is not
    for suffixes in (
        {".html"},
        {".html", ".pdf", ".docx"},
        {".parquet", ".json", ".csv"},
        {".xlsx"},
    ):
        got = _published(root, suffixes)
        assert got == _rglob_published(root, suffixes), suffixes
        assert got  # each case finds something
