"""Provenance of the build artefacts: what each step's outputs were built from.

After writing its outputs, every step of the pipeline writes a record
``build/<wave>/.provenance/<step>.json`` (atomically, after the outputs)::

    {
      "format": 1,
      "step": "estimates",
      "settings": "<sha256 of the study settings this step reads>",
      "inputs": [
        {"build": ".", "name": "responses.parquet", "sha256": "…"},
        {"build": ".", "name": "maturity.parquet", "sha256": "…"},
        {"file": "../../surveys/2025/export_2025.csv", "sha256": "…"}
      ],
      "outputs": {"estimates.parquet": "…"}
    }

``inputs`` lists the artefacts the step read (``build``: their build folder, ``name``: their
path inside it; ``sha256`` is ``null`` for an optional artefact that was absent) and the other
files it read (exports, codebook, context file, grid, report spec; a file shipped with the
package is written ``evalterritoire:data/…``). Every path is relative to the record's build
folder, so a build tree can be moved as a whole. ``outputs`` are the files the step wrote, with
their sha256.

Before reading an artefact a step checks it (:meth:`Provenance.check`), and, recursively, the
artefacts it was built from: the outputs of its step must still be the recorded ones (a run
killed between two writes, a concurrent run or an edit by hand is caught), every recorded input
must still have its recorded content, and the study settings the step reads must be unchanged.
The first problem found upstream is reported with the command to re-run
(:class:`~evalterritoire.errors.StaleArtefactError`). An artefact no record lists (made by hand,
or by a version without records) is taken as it is: only the steps that read it check it
afterwards.

Reading: :meth:`StepRecorder.table` gives a checked Parquet artefact as a DataFrame; with
``lean=True`` (the estimate step's responses) it is decoded a few columns at a time
(:func:`read_table_lean`), so the memory peak is the frame plus one group of columns instead
of the whole Arrow table plus its pandas copy, and the string columns it names (the
special-code columns) come back as ``category``.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from evalterritoire.artefacts import (
    json_bytes,
    parquet_bytes,
    sha256_bytes,
    sha256_file,
    write_bytes_atomic,
)
from evalterritoire.config import StudyConfig, load_study
from evalterritoire.errors import ArtefactError, EvalTerritoireError, StaleArtefactError

__all__ = [
    "COMMANDS",
    "RECORD_DIR",
    "Provenance",
    "StepRecorder",
    "read_table_lean",
    "step_settings",
]

#: Folder of the records inside a build folder.
RECORD_DIR = ".provenance"
RECORD_FORMAT = 1
#: The command that re-runs each step.
COMMANDS: dict[str, str] = {
    "ingest": "validate",
    "maturity": "cluster",
    "estimates": "estimate",
    "models": "model",
    "contexts": "report",
}
#: Which step writes an artefact (for the message about a missing one).
PRODUCED_BY: dict[str, str] = {
    "responses.parquet": "ingest",
    "quarantine.csv": "ingest",
    "ingestion.json": "ingest",
    "maturity.parquet": "maturity",
    "transitions.parquet": "maturity",
    "profiles.parquet": "maturity",
    "reliability.parquet": "maturity",
    "maturity_diagnostics.json": "maturity",
    "estimates.parquet": "estimates",
    "models.parquet": "models",
    "models_diagnostics.json": "models",
}
_PACKAGE_PREFIX = "evalterritoire:"
#: ``[report]`` keys that only say how to render (they never change an artefact).
_RENDERING_KEYS = frozenset(
    {
        "territory_template",
        "study_template",
        "templates_dir",
        "formats",
        "engine",
        "workers",
        "territories",
        "timeout",
        "retries",
        "max_reports_per_kernel",
        "max_kernel_memory_mb",
    }
)


# --------------------------------------------------------------------------- settings
def _plain(value: Any, base: Path) -> Any:
    """JSON-ready copy of a settings value; paths relative to ``base`` (the study folder)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name), base) for f in dataclasses.fields(value)}
    if isinstance(value, Path):
        return Path(os.path.relpath(value, base)).as_posix()
    if isinstance(value, Mapping):
        return {str(k): _plain(v, base) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v, base) for v in value]
    return value


def _previous_settings(config: StudyConfig) -> list[Any]:
    """Design and calibration of the earlier waves (the maturity step builds their designs)."""
    out = []
    for path in config.previous_waves:
        try:
            previous = load_study(path)
        except EvalTerritoireError:
            out.append({"study": _plain(path, config.study_dir), "unreadable": True})
            continue
        out.append(
            {
                "wave": previous.wave,
                "design": _plain(previous.design, previous.study_dir),
                "calibration": _plain(previous.calibration, previous.study_dir),
            }
        )
    return out


def step_settings(config: StudyConfig, step: str) -> str:
    """sha256 of the study settings a step reads.

    ``ingest``: the exports, codebook and ``[ingest]``; ``maturity``: ``[maturity]``, the
    design, calibration, seed, ``min_n`` and earlier waves (their design and calibration too);
    ``estimates``: design, calibration and ``min_n``; ``models``: the ``[[models]]``, design,
    calibration and context file; ``contexts``: every setting except the rendering options of
    ``[report]`` (templates, formats, engine, workers, time limits). Paths are taken relative to
    the study folder.
    """
    base = config.study_dir
    fields = {f.name: getattr(config, f.name) for f in dataclasses.fields(config)}
    weights = ("design", "calibration")
    picks = {
        "ingest": ("wave", "codebook", "exports", "ingest"),
        "maturity": ("wave", "previous_waves", "random_state", "min_n", "maturity", *weights),
        "estimates": ("wave", "min_n", *weights),
        "models": ("wave", "context", "models", *weights),
    }
    if step in picks:
        settings = {key: _plain(fields[key], base) for key in picks[step]}
    else:
        settings = {
            key: _plain(value, base)
            for key, value in fields.items()
            if key not in {"path", "build_dir", "reports_dir", "report"}
        }
        report = _plain(config.report, base)
        settings["report"] = {k: v for k, v in report.items() if k not in _RENDERING_KEYS}
    if step == "maturity":
        settings["previous"] = _previous_settings(config)
    text = json.dumps(settings, sort_keys=True, ensure_ascii=False, default=str)
    return sha256_bytes(text.encode("utf-8"))


# --------------------------------------------------------------------------- paths
def _package_root() -> Path:
    import evalterritoire

    return Path(evalterritoire.__file__).resolve().parent


def _relative(path: Path, build_dir: Path) -> str:
    """How a record names a file: relative to its build folder, or inside the package."""
    path = Path(path).resolve()
    root = _package_root()
    if path.is_relative_to(root):
        return _PACKAGE_PREFIX + path.relative_to(root).as_posix()
    return Path(os.path.relpath(path, build_dir)).as_posix()


def _resolve(name: str, build_dir: Path) -> Path:
    if name.startswith(_PACKAGE_PREFIX):
        return _package_root() / name[len(_PACKAGE_PREFIX) :]
    return (build_dir / name).resolve()


def _shown(path: Path) -> str:
    """A path as a message shows it (relative to the working directory when inside it)."""
    try:
        return Path(os.path.relpath(path)).as_posix() if path.is_absolute() else str(path)
    except ValueError:  # pragma: no cover - another drive
        return str(path)


# --------------------------------------------------------------------------- checks
class Provenance:
    """Check artefacts against the records of the steps that wrote them.

    Parameters
    ----------
    configs : iterable of StudyConfig
        The studies whose build folders may be met (their settings are checked, and messages
        name their study file); other build folders are checked without settings.

    Notes
    -----
    Hashes are cached by file identity (inode, size, modification time) for the life of the
    object, so a step that checks several artefacts built from the same export hashes it once.
    """

    def __init__(self, configs: Iterable[StudyConfig] = ()) -> None:
        self._configs: dict[Path, StudyConfig] = {}
        for config in configs:
            self.add(config)
        self._records: dict[Path, list[dict[str, Any]] | None] = {}
        self._checked: dict[tuple[Path, str], None] = {}
        self._active: set[tuple[Path, str]] = set()
        self._hashes: dict[tuple[Path, int, int, int], str] = {}

    def add(self, config: StudyConfig) -> None:
        """Register a study (its settings are then checked)."""
        self._configs[config.build_dir.resolve()] = config

    # ----------------------------------------------------------------- files
    def sha(self, path: Path) -> str | None:
        """sha256 of a file, ``None`` when it does not exist (cached by file identity)."""
        try:
            st = os.stat(path)
        except OSError:
            return None
        key = (Path(path), st.st_ino, st.st_size, st.st_mtime_ns)
        if key not in self._hashes:
            self._hashes[key] = sha256_file(path)
        return self._hashes[key]

    def forget(self, build_dir: Path) -> None:
        """Drop what is cached about a build folder (after a step rewrote it)."""
        build_dir = Path(build_dir).resolve()
        self._records.pop(build_dir, None)
        self._checked = {k: v for k, v in self._checked.items() if k[0] != build_dir}

    def records(self, build_dir: Path) -> list[dict[str, Any]]:
        """The records of a build folder (unreadable ones count as records of no output)."""
        build_dir = Path(build_dir).resolve()
        if self._records.get(build_dir) is None:
            records = []
            folder = build_dir / RECORD_DIR
            for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
                try:
                    record = json.loads(path.read_text(encoding="utf-8"))
                    if record.get("format") != RECORD_FORMAT:
                        raise ValueError
                except (OSError, ValueError, AttributeError):
                    record = {"step": path.stem, "broken": True, "outputs": {}, "inputs": []}
                records.append(record)
            self._records[build_dir] = records
        return self._records[build_dir] or []

    def producer(self, build_dir: Path, name: str) -> dict[str, Any] | None:
        """The record that lists ``name`` among its outputs, if any."""
        for record in self.records(build_dir):
            if name in record.get("outputs", {}):
                return record
        return None

    # ----------------------------------------------------------------- messages
    def _rerun(self, build_dir: Path, step: str) -> str:
        config = self._configs.get(build_dir)
        study = _shown(config.path) if config is not None else f"<the study of {build_dir}>"
        command = f"`evalterritoire {COMMANDS.get(step, 'study')} {study}`"
        if step == "contexts":
            return f"re-run {command} (it rebuilds them)"
        return (
            f"re-run {command} and the steps after it "
            f"(`evalterritoire study {study}` runs them all)"
        )

    def _stale(self, build_dir: Path, step: str, problem: str) -> StaleArtefactError:
        where = _shown(build_dir)
        return StaleArtefactError(
            f"{where}: the outputs of step '{step}' are stale: {problem}; "
            f"{self._rerun(build_dir, step)}",
            step=step,
            build_dir=str(build_dir),
        )

    # ----------------------------------------------------------------- checks
    def check(self, build_dir: Path, name: str, *, optional: bool = False) -> str | None:
        """Check an artefact (and what it was built from); its sha256.

        Parameters
        ----------
        build_dir : Path
            Its build folder.
        name : str
            Its path inside the build folder (``contexts/national.json``).
        optional : bool
            Return ``None`` for a missing artefact no record lists instead of raising.

        Raises
        ------
        StaleArtefactError
            When the artefact, or one it was built from, is stale (the message says which
            step to re-run).
        ArtefactError
            When a required artefact is missing.
        """
        build_dir = Path(build_dir).resolve()
        record = self.producer(build_dir, name)
        if record is not None:
            self.check_step(build_dir, record)
        sha = self.sha(build_dir / name)
        if sha is None and not optional:
            step = record["step"] if record else PRODUCED_BY.get(name, "study")
            raise ArtefactError(
                f"{_shown(build_dir / name)} does not exist: {self._rerun(build_dir, step)}"
            )
        return sha

    def check_step(self, build_dir: Path, record: Mapping[str, Any]) -> None:
        """Check one record: its inputs (recursively), then its settings, then its outputs."""
        step = str(record.get("step"))
        key = (build_dir, step)
        if key in self._checked or key in self._active:
            return
        if record.get("broken"):
            raise self._stale(build_dir, step, "its provenance record is unreadable")
        self._active.add(key)  # a record naming itself (by hand) must not loop
        try:
            inputs = [self._current(build_dir, entry) for entry in record.get("inputs", [])]
        finally:
            self._active.discard(key)
        for entry, (path, now) in zip(record.get("inputs", []), inputs, strict=True):
            self._compare_input(build_dir, step, entry, path, now)
        config = self._configs.get(build_dir)
        if config is not None and record.get("settings") != step_settings(config, step):
            raise self._stale(
                build_dir, step, f"the settings of {_shown(config.path)} it reads have changed"
            )
        for name, sha in sorted(record.get("outputs", {}).items()):
            now = self.sha(build_dir / name)
            if now != sha:
                what = "is missing" if now is None else "is not the file that step wrote"
                raise self._stale(
                    build_dir,
                    step,
                    f"{_shown(build_dir / name)} {what} (an interrupted or concurrent run, "
                    "or an edit by hand)",
                )
        self._checked[key] = None

    def _current(self, build_dir: Path, entry: Mapping[str, Any]) -> tuple[Path, str | None]:
        """An input's path and current sha256; an artefact input is checked first (upstream)."""
        if "file" in entry:
            path = _resolve(str(entry["file"]), build_dir)
            return path, self.sha(path)
        source = (build_dir / str(entry.get("build", "."))).resolve()
        name = str(entry.get("name"))
        return source / name, self.check(source, name, optional=True)

    def _compare_input(
        self,
        build_dir: Path,
        step: str,
        entry: Mapping[str, Any],
        path: Path,
        now: str | None,
    ) -> None:
        recorded = entry.get("sha256")
        if now == recorded:
            return
        if recorded is None:
            problem = f"{_shown(path)} did not exist when it ran and exists now"
        elif now is None:
            problem = f"{_shown(path)}, one of its inputs, is gone"
        else:
            problem = f"{_shown(path)} changed after it was read"
        raise self._stale(build_dir, step, problem)


# --------------------------------------------------------------------------- reading
#: Columns decoded at once by :func:`read_table_lean`.
LEAN_COLUMNS = 32


def read_table_lean(data: bytes, *, categorical: Callable[[str], bool] | None = None):
    """Parquet bytes as a DataFrame, decoded a few columns at a time (small memory peak).

    ``pd.read_parquet`` decodes the whole Arrow table, then copies it into pandas: both are
    held at once (about twice the frame). A file with a stored index is read whole. Here :data:`LEAN_COLUMNS` columns are decoded at a
    time and converted with ``self_destruct`` (each Arrow buffer freed once converted), so the
    peak is the frame plus one group of columns. Values, dtypes, column order and index are
    those of ``pd.read_parquet``; the columns are left as one block each (``split_blocks``).

    Parameters
    ----------
    data : bytes
        The Parquet file.
    categorical : callable, optional
        ``categorical(column)`` true: a string column read dictionary-encoded, as a pandas
        ``category`` (the same values; ``.astype("string")`` gives the plain column).

    Returns
    -------
    DataFrame
    """
    import io

    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pq.ParquetFile(io.BytesIO(data)).schema_arrow
    stored = (schema.pandas_metadata or {}).get("index_columns", [])
    if any(isinstance(index, str) for index in stored):  # a stored index: read whole
        return pd.read_parquet(io.BytesIO(data))
    strings = {
        f.name for f in schema if pa.types.is_string(f.type) or pa.types.is_large_string(f.type)
    }
    columns = schema.names
    wanted = [c for c in columns if categorical is not None and c in strings and categorical(c)]
    parts = []
    options = {"self_destruct": True, "split_blocks": True}
    for start in range(0, len(columns), LEAN_COLUMNS):
        group = columns[start : start + LEAN_COLUMNS]
        parts.append(
            pd.read_parquet(
                io.BytesIO(data),
                columns=group,
                read_dictionary=[c for c in group if c in wanted] or None,
                to_pandas_kwargs=options,
            )
        )
        pa.default_memory_pool().release_unused()  # the decoded group, back to the system
    if not parts:
        return pd.read_parquet(io.BytesIO(data))
    frame = parts[0] if len(parts) == 1 else pd.concat(parts, axis=1)
    return frame


# --------------------------------------------------------------------------- recording
class StepRecorder:
    """What one step reads and writes, recorded as it goes; :meth:`commit` writes the record.

    Parameters
    ----------
    provenance : Provenance
        The checker (shared by the steps of one run).
    config : StudyConfig
        The study whose build folder the step writes.
    step : str
        The step (``ingest``, ``maturity``, ``estimates``, ``models``, ``contexts``).
    """

    def __init__(self, provenance: Provenance, config: StudyConfig, step: str) -> None:
        self.provenance = provenance
        self.config = config
        self.step = step
        self.build_dir = config.build_dir.resolve()
        self.inputs: dict[str, dict[str, Any]] = {}
        self.outputs: dict[str, str] = {}

    # ----------------------------------------------------------------- reading
    def read(
        self, name: str, *, build_dir: Path | None = None, optional: bool = False
    ) -> bytes | None:
        """The bytes of a checked artefact, recorded as an input (``None``: absent, optional)."""
        source = (build_dir or self.build_dir).resolve()
        sha = self.provenance.check(source, name, optional=optional)
        data = None
        if sha is not None:
            try:
                data = (source / name).read_bytes()
            except OSError as exc:
                raise ArtefactError(
                    f"{_shown(source / name)} cannot be read ({exc.strerror})"
                ) from None
            sha = sha256_bytes(data)
        rel = Path(os.path.relpath(source, self.build_dir)).as_posix()
        self.inputs[f"{rel}/{name}"] = {"build": rel, "name": name, "sha256": sha}
        return data

    def table(
        self,
        name: str,
        *,
        build_dir: Path | None = None,
        optional: bool = False,
        lean: bool = False,
        categorical: Callable[[str], bool] | None = None,
    ):
        """A checked Parquet artefact as a DataFrame (``None`` when absent and optional).

        Parameters
        ----------
        name : str
            The artefact's path inside its build folder.
        build_dir : Path, optional
            Its build folder (default: the step's).
        optional : bool
            Return ``None`` for a missing artefact no record lists instead of raising.
        lean : bool
            Read with a small memory peak (:func:`read_table_lean`: a few columns decoded
            at a time, each freed as soon as converted); same values and dtypes, but the
            frame's columns are not consolidated into 2-D blocks.
        categorical : callable, optional
            With ``lean``: the string columns whose name it accepts are read as
            ``category`` (dictionary-encoded: one small code a row instead of a string).
        """
        import io

        import pandas as pd

        data = self.read(name, build_dir=build_dir, optional=optional)
        if data is None:
            return None
        try:
            if lean:
                return read_table_lean(data, categorical=categorical)
            return pd.read_parquet(io.BytesIO(data))
        except Exception as exc:  # pyarrow raises ArrowInvalid, OSError, ValueError…
            source = (build_dir or self.build_dir).resolve()
            step = PRODUCED_BY.get(name, "study")
            raise ArtefactError(
                f"{_shown(source / name)} is not a readable table ({type(exc).__name__}: "
                f"{str(exc)[:120]}); {self.provenance._rerun(source, step)}"
            ) from None

    def file(self, path: Path | None) -> None:
        """Record a file the step read that no step wrote (export, codebook, context…)."""
        if path is None:
            return
        name = _relative(Path(path), self.build_dir)
        self.inputs[name] = {"file": name, "sha256": self.provenance.sha(Path(path).resolve())}

    # ----------------------------------------------------------------- writing
    def write_bytes(self, name: str, data: bytes) -> Path:
        """Write an output atomically and record its sha256."""
        path = write_bytes_atomic(self.build_dir / name, data)
        self.outputs[name] = sha256_bytes(data)
        return path

    def write_parquet(self, frame: Any, name: str) -> Path:
        """Write a table (see :func:`evalterritoire.artefacts.write_parquet`) and record it."""
        return self.write_bytes(name, parquet_bytes(frame))

    def write_json(self, obj: Any, name: str) -> Path:
        """Write a JSON document (see :func:`evalterritoire.artefacts.write_json`)."""
        return self.write_bytes(name, json_bytes(obj))

    def output(self, name: str) -> None:
        """Record an output written by someone else (hashed from the file)."""
        sha = sha256_file(self.build_dir / name)
        self.outputs[name] = sha

    def commit(self) -> Path:
        """Write the record (after every output: a run killed before leaves the old record)."""
        record = {
            "format": RECORD_FORMAT,
            "step": self.step,
            "settings": step_settings(self.config, self.step),
            "inputs": [self.inputs[k] for k in sorted(self.inputs)],
            "outputs": dict(sorted(self.outputs.items())),
        }
        path = write_bytes_atomic(
            self.build_dir / RECORD_DIR / f"{self.step}.json", json_bytes(record)
        )
        self.provenance.forget(self.build_dir)
        return path
