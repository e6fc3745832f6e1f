"""evalterritoire: maturity-adapted evaluation reports from survey waves on territorial co-construction.

The package follows the data flow, one subpackage per step::

    codebook → ingest → design → estimates / maturity / models → report → render

(``simulate`` writes synthetic waves for the demo and the benchmarks). ``pipeline`` chains the
steps as ``run_*`` functions, ``cli`` is the command line, ``config`` reads ``study.toml``,
``manifest`` records and compares runs, ``errors`` holds the typed errors.

The most used names are re-exported here (``from evalterritoire import SurveyDesign``) and
listed in ``docs/api.md``; each subpackage's ``__init__`` says what else it makes public.
Nothing heavy is imported with the package: a name is imported on first access.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from importlib.metadata import PackageNotFoundError, version
from typing import Any

try:
    __version__ = version("evalterritoire")
except PackageNotFoundError:  # pragma: no cover - running from a source tree without install
    __version__ = "0.0.0+unknown"

#: Public name → the module that defines it (imported on first access, PEP 562).
_PUBLIC: dict[str, str] = {
    "EvalTerritoireError": "evalterritoire.errors",
    "StudyConfig": "evalterritoire.config",
    "ModelSpec": "evalterritoire.config",
    "load_study": "evalterritoire.config",
    "Codebook": "evalterritoire.codebook",
    "load_codebook": "evalterritoire.codebook",
    "IngestResult": "evalterritoire.ingest",
    "ingest_file": "evalterritoire.ingest",
    "SurveyDesign": "evalterritoire.design",
    "build_design": "evalterritoire.design",
    "estimate_mean": "evalterritoire.estimates",
    "estimate_total": "evalterritoire.estimates",
    "estimate_ratio": "evalterritoire.estimates",
    "estimate_proportion": "evalterritoire.estimates",
    "compute_study_estimates": "evalterritoire.estimates",
    "MaturityScorer": "evalterritoire.maturity",
    "MaturityClustering": "evalterritoire.maturity",
    "compute_maturity": "evalterritoire.maturity",
    "fit_model": "evalterritoire.models",
    "fit_study_models": "evalterritoire.models",
    "ReportContext": "evalterritoire.report",
    "build_contexts": "evalterritoire.report",
    "RenderTask": "evalterritoire.render",
    "render_reports": "evalterritoire.render",
    "simulate_waves": "evalterritoire.simulate",
    "run_study": "evalterritoire.pipeline",
    "run_reproduce": "evalterritoire.pipeline",
}

__all__ = ["__version__", *sorted(_PUBLIC)]


def _lazy_exports(
    package: str, public: Mapping[str, str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """The ``__getattr__`` and ``__dir__`` of a package whose public names load on first use.

    ``public`` maps each name to the module defining it (PEP 562); the value is kept in the
    package's namespace once imported. Used here and by the ``report`` and ``render``
    subpackages, so that a report kernel imports only what its template uses.
    """
    namespace = sys.modules[package].__dict__

    def get_attribute(name: str) -> Any:
        module = public.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        namespace[name] = value
        return value

    def names() -> list[str]:
        return sorted({*namespace, *public})

    return get_attribute, names


__getattr__, __dir__ = _lazy_exports(__name__, _PUBLIC)
