"""Typed errors. The CLI turns every :class:`EvalTerritoireError` into one message and an exit code."""

from __future__ import annotations

from typing import Any

__all__ = [
    "ArtefactError",
    "BuildLockedError",
    "CodebookError",
    "DesignError",
    "EstimationError",
    "EvalTerritoireError",
    "FileRejectedError",
    "GridError",
    "IngestError",
    "MaturityError",
    "ModelError",
    "RenderError",
    "ReportSpecError",
    "ReproduceError",
    "StaleArtefactError",
    "StudyConfigError",
]


class EvalTerritoireError(Exception):
    """Base class of every error the package raises on purpose.

    Parameters
    ----------
    message : str
        One clear, user-facing sentence (French data values may appear in it).
    exit_code : int, optional
        Exit status the CLI uses for this error (2 by default: usage or rejected input).
    """

    exit_code: int = 2

    def __init__(self, message: str, *, exit_code: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        if exit_code is not None:
            self.exit_code = exit_code

    def __str__(self) -> str:
        return self.message

    def __reduce__(self) -> tuple[Any, ...]:
        # pickled with its attributes (``exit_code``, ``step``…), not its constructor's
        # arguments, so that it crosses from a worker process to the CLI unchanged
        return (_rebuild, (type(self), dict(self.__dict__)))


def _rebuild(cls: type[EvalTerritoireError], state: dict[str, Any]) -> EvalTerritoireError:
    """An error of class ``cls`` with the attributes ``state`` (see ``__reduce__``)."""
    error = cls.__new__(cls)
    Exception.__init__(error, state.get("message", ""))
    error.__dict__.update(state)
    return error


class CodebookError(EvalTerritoireError):
    """A codebook file is malformed (the message names the key and the problem)."""


class StudyConfigError(EvalTerritoireError):
    """A study file (``study.toml``) is malformed or points to missing files."""


class IngestError(EvalTerritoireError):
    """Ingestion failed for a reason other than a rejected file (e.g. unreadable path)."""


class FileRejectedError(IngestError):
    """A whole export file is rejected: its meaning is uncertain (encoding, headers, format)."""


class DesignError(EvalTerritoireError):
    """The survey design is invalid (weights, strata/PSU nesting, lonely PSU, fpc)."""


class EstimationError(EvalTerritoireError):
    """An estimate cannot be computed as asked (unknown column, empty domain...)."""


class MaturityError(EvalTerritoireError):
    """Maturity scoring or clustering cannot proceed."""


class ModelError(EvalTerritoireError):
    """A model specification or fit is invalid."""


class RenderError(EvalTerritoireError):
    """A report cannot be rendered."""


class GridError(EvalTerritoireError):
    """An evaluation grid file is malformed (the message names the file, key and problem)."""


class ReportSpecError(EvalTerritoireError):
    """A report spec file is malformed or names an item the codebook lacks (file, key, problem)."""


class ReproduceError(EvalTerritoireError):
    """A manifest cannot be reproduced (missing inputs, malformed manifest)."""


class ArtefactError(EvalTerritoireError):
    """An artefact of an earlier step is missing or unreadable (the message names the step)."""


class StaleArtefactError(ArtefactError):
    """An artefact is stale or comes from another run than the artefacts beside it.

    Parameters
    ----------
    message : str
        What is stale, why, and the command to re-run.
    step : str
        The pipeline step whose outputs are stale (``ingest``, ``maturity``, ``estimates``,
        ``models``, ``contexts``).
    build_dir : str
        The build folder of that step.
    """

    def __init__(self, message: str, *, step: str, build_dir: str) -> None:
        super().__init__(message)
        self.step = step
        self.build_dir = build_dir


class BuildLockedError(EvalTerritoireError):
    """A build folder is being written by another run (or cannot be locked)."""
