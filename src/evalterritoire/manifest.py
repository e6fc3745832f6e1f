"""Reproducibility manifest: what went in, what came out, and how to check a re-run.

``reports/<wave>/manifest.json`` records the sha256 of every input (exports, codebook, study
file, context and calibration margins files, of the wave and of the earlier waves it reads, and
the report templates), package versions, the git commit when available, seeds and parameters,
and the sha256 of every result table and report. Paths are relative to the reports
directory and the manifest holds no timestamp, so two runs of an unchanged study write the same
manifest. :func:`compare_artefacts` checks another run's files against a manifest and names,
for each artefact, whether it is identical and where it first differs (the first differing
figure of a table, the first differing line of a text file); pointed at the manifest's own
folder, it checks that the published files are still those the run wrote.
:func:`compare_environment` names what differs between the recorded environment (Python and
package versions, git commit and uncommitted changes) and this one.

:func:`safe_filename` turns a territory code into a file name that cannot escape the reports
directory.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from evalterritoire.artefacts import sha256_file, write_bytes_atomic
from evalterritoire.config import StudyConfig
from evalterritoire.errors import RenderError, ReproduceError

__all__ = [
    "MANIFEST_VERSION",
    "ArtefactComparison",
    "build_manifest",
    "compare_artefacts",
    "compare_environment",
    "file_sha256",
    "format_comparisons",
    "load_manifest",
    "safe_filename",
    "write_manifest",
    "write_study_manifest",
]

MANIFEST_VERSION = 1
PACKAGES = (
    "evalterritoire",
    "numpy",
    "pandas",
    "pyarrow",
    "scipy",
    "scikit-learn",
    "statsmodels",
    "pandera",
    "matplotlib",
    "papermill",
    "nbconvert",
    "nbformat",
    "jupytext",
)
_SAFE = re.compile(r"[^A-Za-z0-9_-]")
_RESERVED = {"national", "index", "synthese", "manifest", "con", "prn", "aux", "nul"} | {
    f"{p}{i}" for p in ("com", "lpt") for i in range(10)
}


def safe_filename(code: str) -> str:
    """A file-name-safe version of a territory code (no separator, no dot, no traversal).

    Codes made of ASCII letters, digits, ``_`` and ``-`` are kept as they are; any other code
    (and a code equal to a reserved name such as ``national`` or ``index``) gets its unsafe
    characters replaced and a short hash appended, so that two distinct codes never share a
    file.

    Parameters
    ----------
    code : str
        Territory code.

    Returns
    -------
    str
        A name of at most 72 characters matching ``[A-Za-z0-9_-]+``.

    Raises
    ------
    RenderError
        For an empty code.

    Examples
    --------
    >>> safe_filename("200054781")
    '200054781'
    >>> safe_filename("../etc/passwd").startswith("___etc_passwd-")
    True
    """
    code = str(code)
    if not code.strip():
        raise RenderError("empty territory code: cannot name its report")
    clean = _SAFE.sub("_", code)[:60]
    if clean == code and code.lower() not in _RESERVED and not code.startswith("-"):
        return code
    digest = hashlib.sha256(code.encode("utf-8")).hexdigest()[:10]
    return f"{clean.lstrip('-') or 'x'}-{digest}"


def file_sha256(path: str | Path) -> str:
    """sha256 of a file's bytes (hex)."""
    return sha256_file(path)


def _rel(path: Path, base: Path) -> str:
    return Path(os.path.relpath(Path(path).resolve(), base.resolve())).as_posix()


def _entry(path: Path, base: Path, kind: str) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ReproduceError(f"{kind} file not found for the manifest: {path}")
    entry: dict[str, Any] = {
        "path": _rel(path, base),
        "kind": kind,
        "sha256": file_sha256(path),
        "bytes": path.stat().st_size,
    }
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        meta = pq.read_metadata(path)
        entry["rows"] = meta.num_rows
        entry["columns"] = meta.num_columns
    return entry


def _versions() -> dict[str, str]:
    out = {"python": ".".join(map(str, sys.version_info[:3]))}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "absent"
    return out


def _git(directory: Path) -> dict[str, Any] | None:
    try:
        commit = subprocess.run(
            ["git", "-C", str(directory), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        status = subprocess.run(
            ["git", "-C", str(directory), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return {"commit": commit, "dirty": bool(status.strip())}


def _margins_file(study_path: Path, wave: int) -> Path | None:
    """The calibration margins CSV a study file names (``[calibration] margins = "…csv"``).

    :class:`~evalterritoire.config.StudyConfig` keeps the margins' values, not their file, so
    the study file is read again here; inline margins (a TOML table) live in the study file,
    which is hashed anyway.
    """
    import tomllib

    try:
        raw = tomllib.loads(Path(study_path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return None
    calibration = raw.get("calibration")
    value = calibration.get("margins") if isinstance(calibration, dict) else None
    if not isinstance(value, str):
        return None
    return (Path(study_path).parent / value.replace("{wave}", str(wave))).resolve()


def _study_inputs(config: StudyConfig, prefix: str = "") -> list[tuple[Path, str]]:
    """Every file a study wave reads, with its role (study, export, codebook, context, margins)."""
    from evalterritoire.codebook import default_codebook_path

    out = [(Path(config.path), f"{prefix}study")]
    out += [(Path(p), f"{prefix}export") for p in config.exports]
    codebook = default_codebook_path() if config.codebook == "default" else Path(config.codebook)
    out.append((codebook, f"{prefix}codebook"))
    if config.context is not None:
        out.append((Path(config.context), f"{prefix}context"))
    margins = _margins_file(config.path, config.wave)
    if margins is not None:
        out.append((margins, f"{prefix}margins"))
    return out


def build_manifest(
    config: StudyConfig,
    *,
    inputs: Iterable[str | Path] = (),
    artefacts: Iterable[str | Path] = (),
    reports: Iterable[str | Path] = (),
    parameters: Mapping[str, Any] | None = None,
    previous: Iterable[StudyConfig] = (),
    templates: Iterable[str | Path] = (),
    rendering: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Describe a study run (inputs, environment, parameters, outputs) as a JSON-ready dict.

    Parameters
    ----------
    config : StudyConfig
        The study; its file, codebook, exports, context and calibration margins files are
        always recorded.
    inputs : iterable of path
        Further input files.
    artefacts : iterable of path
        Result tables (``build/<wave>/*.parquet``, contexts...).
    reports : iterable of path
        Rendered reports (HTML, index...).
    parameters : mapping, optional
        Extra notebook parameters of the run (``-p key=value``); must be JSON values.
    previous : iterable of StudyConfig
        The earlier waves the study reads (stages and transitions): their study file, exports,
        codebook, context and margins files are recorded as inputs too (role ``previous_*``).
    templates : iterable of path
        Report templates (the ``.py`` jupytext templates) the reports were rendered from.
    rendering : mapping, optional
        Rendering options that name what was produced (``engine``, ``formats``, template
        names). The worker count and the Dask scheduler are deliberately not recorded: they
        never change a result, and recording them would make the manifests of two runs of the
        same study differ.

    Returns
    -------
    dict
        The manifest; paths are relative to ``config.reports_dir`` and lists are sorted.

    Raises
    ------
    ReproduceError
        When a listed file does not exist.
    """
    base = config.reports_dir
    previous = sorted(previous, key=lambda c: c.wave)
    return {
        "manifest_version": MANIFEST_VERSION,
        "study": {"name": config.name, "wave": config.wave, "study_file": _rel(config.path, base)},
        "inputs": _input_entries(config, previous, templates, inputs),
        "artefacts": sorted(
            (_entry(Path(p), base, "artefact") for p in artefacts), key=lambda e: e["path"]
        ),
        "reports": sorted(
            (_entry(Path(p), base, "report") for p in reports), key=lambda e: e["path"]
        ),
        "parameters": _run_parameters(config, previous, rendering, parameters),
        "environment": {"packages": _versions(), "git": _git(Path(config.path).parent)},
    }


def _input_entries(
    config: StudyConfig,
    previous: Iterable[StudyConfig],
    templates: Iterable[str | Path],
    inputs: Iterable[str | Path],
) -> list[dict[str, Any]]:
    """One entry per input file with its role, sorted by path.

    A file read under several roles (a context file shared by two waves) is recorded once,
    under its first role; the codebook shipped with the package gets a path that names it in
    the package (``evalterritoire:data/codebook.yaml``), not in this installation.
    """
    from evalterritoire.codebook import default_codebook_path

    base = config.reports_dir
    candidates = _study_inputs(config)
    for cfg in previous:
        candidates += _study_inputs(cfg, prefix="previous_")
    candidates += [(Path(p), "template") for p in templates]
    candidates += [(Path(p), "input") for p in inputs]
    roles: dict[Path, str] = {}
    for path, role in candidates:
        roles.setdefault(Path(path).resolve(), role)  # first role wins (a shared context file)
    default_codebook = default_codebook_path().resolve()
    entries = []
    for path, role in roles.items():
        entry = _entry(path, base, "input")
        entry["role"] = role
        if path == default_codebook:
            entry["path"] = "evalterritoire:data/codebook.yaml"
        entries.append(entry)
    return sorted(entries, key=lambda e: e["path"])


def _run_parameters(
    config: StudyConfig,
    previous: Iterable[StudyConfig],
    rendering: Mapping[str, Any] | None,
    parameters: Mapping[str, Any] | None,
) -> dict[str, Any]:
    """What a re-run must use: the study's settings, the rendering options, extra parameters."""
    m = config.maturity
    c = config.calibration
    return {
        "wave": config.wave,
        "random_state": config.random_state,
        "min_n": config.min_n,
        "design": {
            "weight": config.design.weight,
            "strata": config.design.strata,
            "psu": config.design.psu,
            "fpc": config.design.fpc,
            "lonely_psu": config.design.lonely_psu,
        },
        "calibration": {
            "method": c.method,
            "max_iter": c.max_iter,
            "tol": c.tol,
            "trim_lower": c.trim_lower,
            "trim_upper": c.trim_upper,
        },
        "maturity": {
            "n_stages": m.n_stages,
            "stage_names": list(m.stage_names),
            "method": m.method,
            "reference_wave": m.reference_wave,
            "refit": m.refit,
            "n_bootstrap": m.n_bootstrap,
        },
        "models": [
            {"name": s.name, "kind": s.kind, "formula": s.formula, "groups": s.groups}
            for s in config.models
        ],
        "previous_waves": sorted(cfg.wave for cfg in previous),
        "rendering": {
            k: list(v) if isinstance(v, tuple) else v
            for k, v in sorted((rendering or {}).items())
            if k not in {"workers", "dask_scheduler"}
        },
        "extra": dict(parameters or {}),
    }


def write_manifest(manifest: Mapping[str, Any], path: str | Path) -> Path:
    """Write a manifest as sorted, indented UTF-8 JSON (atomically, umask permissions)."""
    text = json.dumps(manifest, ensure_ascii=False, indent=2, sort_keys=True) + "\n"
    return write_bytes_atomic(path, text.encode("utf-8"))


def _published(folder: Path, suffixes: set[str]) -> list[Path]:
    """The files of a folder with these suffixes, hidden files and folders left out.

    One walk of the folder (a national publication holds ~26,000 files): hidden folders are
    not entered, and only the names with a wanted suffix are checked to be files.
    """
    found = []
    for root, dirs, names in os.walk(folder):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        for name in names:
            if name.startswith(".") or Path(name).suffix not in suffixes:
                continue
            path = Path(root, name)
            if path.is_file():
                found.append(path)
    return sorted(found)


def write_study_manifest(
    config: StudyConfig,
    *,
    previous: Iterable[StudyConfig] = (),
    templates: Sequence[Path] = (),
    options: Mapping[str, Any],
    parameters: Mapping[str, Any] | None = None,
) -> Path:
    """Write ``reports/<wave>/manifest.json`` for a study run (see :func:`build_manifest`).

    Inputs: the wave's study file, exports, codebook, context and margins files, the same
    files of the earlier waves it reads (``previous``), and the report templates. Artefacts:
    the result tables of ``build/<wave>/`` (hidden bookkeeping — provenance records, lock,
    temporary files — left out). Reports: the HTML pages and the study's own PDF or DOCX
    formats (a PDF an evaluator rendered for one territory with ``report --format`` is not part
    of the study: its re-run would never produce it). Parameters: the study's, the rendering
    options that name the outputs (engine, formats, template names; not the worker count) and
    the extra notebook parameters.
    """
    rendering = {
        "engine": options["engine"],
        "formats": list(options["formats"]),
        "territory_template": config.report.territory_template,
        "study_template": config.report.study_template,
    }
    suffixes = {".html"} | {f".{f}" for f in config.report.formats if f in {"pdf", "docx"}}
    manifest = build_manifest(
        config,
        artefacts=_published(config.build_dir, {".parquet", ".json", ".csv"}),
        reports=_published(config.reports_dir, suffixes),
        previous=previous,
        templates=templates,
        rendering=rendering,
        parameters=parameters,
    )
    return write_manifest(manifest, config.reports_dir / "manifest.json")


def load_manifest(path: str | Path) -> dict[str, Any]:
    """Read a manifest written by :func:`write_manifest`.

    Raises
    ------
    ReproduceError
        When the file is missing or is not a manifest.
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ReproduceError(f"manifest {path} cannot be read ({exc.strerror})") from None
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise ReproduceError(f"{path} is not a JSON manifest") from None
    if not isinstance(data, dict) or data.get("manifest_version") != MANIFEST_VERSION:
        raise ReproduceError(
            f"{path} is not an evalterritoire manifest (version {MANIFEST_VERSION})"
        )
    return data


@dataclass(frozen=True)
class ArtefactComparison:
    """The comparison of one recorded file with its counterpart in another run.

    Attributes
    ----------
    path : str
        Path relative to the reports directory, as recorded.
    kind : str
        ``input``, ``artefact`` or ``report``.
    status : str
        ``identical``, ``different`` or ``missing``.
    detail : str
        Where the files first differ (empty when identical).
    """

    path: str
    kind: str
    status: str
    detail: str = ""

    @property
    def is_identical(self) -> bool:
        """True when the bytes are identical."""
        return self.status == "identical"

    def describe(self) -> str:
        """One line: status, path and detail."""
        text = f"{self.status:<9}  {self.path}"
        return f"{text}  ({self.detail})" if self.detail else text


def _py(value: Any) -> Any:
    """Python scalar from a numpy scalar (for readable messages)."""
    item = getattr(value, "item", None)
    return item() if callable(item) else value


def _first_table_difference(old: Path, new: Path) -> str:
    import pandas as pd

    a, b = pd.read_parquet(old), pd.read_parquet(new)
    if list(a.columns) != list(b.columns):
        gone = [c for c in a.columns if c not in b.columns]
        added = [c for c in b.columns if c not in a.columns]
        return f"columns differ: removed {gone}, added {added}"
    if len(a) != len(b):
        return f"{len(a)} rows recorded, {len(b)} rows now"
    keys = [c for c in a.columns if pd.api.types.is_string_dtype(a[c])][:3]
    for col in a.columns:
        x, y = a[col].reset_index(drop=True), b[col].reset_index(drop=True)
        both_na = x.isna() & y.isna()
        try:
            differs = ~(both_na | (x == y).fillna(False))
        except (TypeError, ValueError):
            differs = ~(both_na | (x.astype(str) == y.astype(str)))
        if differs.any():
            row = int(differs.to_numpy().nonzero()[0][0])
            where = ", ".join(f"{k}={_py(a.at[row, k])}" for k in keys if k != col)
            return (
                f"first difference at row {row}"
                + (f" ({where})" if where else "")
                + f", column '{col}': {_py(x.iloc[row])!r} recorded, {_py(y.iloc[row])!r} now"
            )
    return "same values, different bytes (metadata or encoding)"


def _first_text_difference(old: Path, new: Path) -> str:
    a = old.read_bytes().splitlines()
    b = new.read_bytes().splitlines()
    for i, (x, y) in enumerate(zip(a, b, strict=False), start=1):
        if x != y:
            return f"first difference at line {i}"
    return f"{len(a)} lines recorded, {len(b)} lines now"


def compare_artefacts(
    manifest: Mapping[str, Any] | str | Path,
    other_dir: str | Path,
    *,
    base_dir: str | Path | None = None,
    kinds: Iterable[str] = ("input", "artefact", "report"),
) -> list[ArtefactComparison]:
    """Compare the files recorded in a manifest with those of another run.

    Parameters
    ----------
    manifest : mapping or path
        A manifest (or the path of ``manifest.json``).
    other_dir : path
        The other run's reports directory: each recorded relative path is resolved from it.
    base_dir : path, optional
        The recorded run's reports directory, used to locate the recorded files and show where
        they first differ; defaults to the manifest's folder when ``manifest`` is a path.
    kinds : iterable of str
        Which entries to compare.

    Returns
    -------
    list of ArtefactComparison
        One per recorded file, in manifest order (inputs, artefacts, reports).
    """
    if isinstance(manifest, str | Path):
        base_dir = Path(manifest).parent if base_dir is None else base_dir
        manifest = load_manifest(manifest)
    other = Path(other_dir)
    wanted = set(kinds)
    results = []
    for section in ("inputs", "artefacts", "reports"):
        for entry in manifest.get(section, []):
            kind = entry.get("kind", section.rstrip("s"))
            if kind in wanted:
                results.append(_compare_entry(entry, kind, other, base_dir))
    return results


def _compare_entry(
    entry: Mapping[str, Any], kind: str, other: Path, base_dir: str | Path | None
) -> ArtefactComparison:
    """One recorded file against its counterpart under ``other`` (missing, identical or not)."""
    rel = entry["path"]
    if rel.startswith("evalterritoire:"):
        from evalterritoire.codebook import default_codebook_path

        new = default_codebook_path()
    else:
        new = other / rel
    if not new.is_file():
        return ArtefactComparison(rel, kind, "missing", "not produced")
    if file_sha256(new) == entry["sha256"]:
        return ArtefactComparison(rel, kind, "identical")
    detail = "sha256 differs"
    old = Path(base_dir) / rel if base_dir is not None else None
    if old is not None and old.is_file() and old.resolve() != new.resolve():
        detail = _first_difference(old, new)
    return ArtefactComparison(rel, kind, "different", detail)


def _first_difference(old: Path, new: Path) -> str:
    """Where two versions of a file first differ: a table's figure, a text's line."""
    try:
        if new.suffix == ".parquet":
            return _first_table_difference(old, new)
        return _first_text_difference(old, new)
    except Exception as exc:  # a corrupt file must not hide the verdict
        return f"sha256 differs (cannot read: {type(exc).__name__})"


def format_comparisons(comparisons: Iterable[ArtefactComparison]) -> str:
    """Printable report: one line per artefact and a final count."""
    items = list(comparisons)
    lines = [c.describe() for c in items]
    n_same = sum(c.is_identical for c in items)
    lines.append(f"{n_same}/{len(items)} identical")
    return "\n".join(lines)


def _commit(git: Mapping[str, Any] | None) -> str:
    if not git or not git.get("commit"):
        return "none (not a git checkout)"
    return str(git["commit"])[:12]


def compare_environment(manifest: Mapping[str, Any], directory: str | Path) -> list[str]:
    """What differs between a manifest's recorded environment and this one.

    Parameters
    ----------
    manifest : mapping
        A loaded manifest.
    directory : path
        Where to read the current git state (the study's folder, as when the manifest was
        written).

    Returns
    -------
    list of str
        One line per difference (a package or Python version, the commit, uncommitted
        changes); empty when the environments agree.
    """
    recorded = manifest.get("environment") or {}
    packages = recorded.get("packages") or {}
    now = _versions()
    lines = [
        f"{name}: {packages.get(name, 'absent')} recorded, {now.get(name, 'absent')} now"
        for name in sorted(set(packages) | set(now))
        if str(packages.get(name, "absent")) != str(now.get(name, "absent"))
    ]
    git, git_now = recorded.get("git"), _git(Path(directory))
    if _commit(git) != _commit(git_now):
        lines.append(f"commit: {_commit(git)} recorded, {_commit(git_now)} now")
    dirty, dirty_now = bool((git or {}).get("dirty")), bool((git_now or {}).get("dirty"))
    if git and git_now and dirty != dirty_now:
        state = {True: "uncommitted changes", False: "a clean checkout"}
        lines.append(f"working tree: {state[dirty]} recorded, {state[dirty_now]} now")
    return lines
