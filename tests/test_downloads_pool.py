"""Downloads written on a pool of processes: the same files, byte for byte, as one process."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from _synthetic_reports import make_artefacts, make_config

from evalterritoire.render import downloads
from evalterritoire.render.downloads import write_all_downloads
from evalterritoire.report.build import build_contexts

SPECIAL = [{"key": "nsp", "code": -1, "label": "Ne sait pas", "kind": "dont_know"}]


@pytest.fixture(scope="module")
def items(codebook, tmp_path_factory):
    config = make_config(tmp_path_factory.mktemp("downloads"))
    contexts = build_contexts(config, codebook, make_artefacts(codebook))
    return [(c, "national" if c.is_national else c.territory) for c in contexts]


def _tree(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def test_a_pool_writes_the_bytes_one_process_writes(items, tmp_path, monkeypatch):
    monkeypatch.setattr(downloads, "MIN_CONTEXTS_FOR_POOL", 2)
    one = write_all_downloads(items, tmp_path / "one", special_codes=SPECIAL, workers=1)
    two = write_all_downloads(items, tmp_path / "two", special_codes=SPECIAL, workers=2)
    assert len(items) >= 3
    assert [p.relative_to(tmp_path / "one") for p in one] == [
        p.relative_to(tmp_path / "two") for p in two
    ]
    assert _tree(tmp_path / "one") == _tree(tmp_path / "two")
    assert {p.parent.name for p in two} == {stem for _, stem in items}
    assert not [p for p in (tmp_path / "two").rglob("*") if p.name.startswith(".")]


def test_a_failing_context_stops_the_pool_with_its_error(items, tmp_path, monkeypatch):
    monkeypatch.setattr(downloads, "MIN_CONTEXTS_FOR_POOL", 2)
    bad = [*items[:1], (items[0][0], "bad\0name"), *items[1:]]  # a stem no file system takes
    with pytest.raises(ValueError, match="null"):
        write_all_downloads(bad, tmp_path / "out", workers=2)


def test_downloads_are_flushed_once_not_file_by_file(items, tmp_path, monkeypatch):
    """Each file is atomic but not fsync-ed; the filesystem is flushed once, at the end."""
    from evalterritoire import artefacts

    fsyncs: list[int] = []
    flushes: list[Path] = []
    real_fsync = artefacts.os.fsync
    monkeypatch.setattr(artefacts.os, "fsync", lambda fd: (fsyncs.append(fd), real_fsync(fd)))
    real_sync = artefacts.sync_filesystem
    monkeypatch.setattr(
        artefacts, "sync_filesystem", lambda path: (flushes.append(Path(path)), real_sync(path))
    )
    written = write_all_downloads(items, tmp_path / "out", special_codes=SPECIAL, workers=1)
    assert len(written) > 10
    assert fsyncs == []
    assert flushes == [tmp_path / "out"]
    # one territory written alone is durable file by file, as before
    ctx, stem = items[-1]
    downloads.write_downloads(ctx, tmp_path / "alone", stem=stem, special_codes=SPECIAL)
    assert len(fsyncs) >= 2


def test_sync_filesystem_flushes_a_real_folder(tmp_path):
    from evalterritoire.artefacts import sync_filesystem, write_bytes_atomic

    path = write_bytes_atomic(tmp_path / "a.csv", b"x;y\n", durable=False)
    sync_filesystem(tmp_path)
    sync_filesystem(path)  # a file names its filesystem too
    assert path.read_bytes() == b"x;y\n"
