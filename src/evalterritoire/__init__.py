"""evalterritoire: maturity-adapted evaluation reports from survey waves on territorial co-construction.

The package turns raw survey exports into validated typed data (``ingest``), design-based
estimates (``design``, ``estimates``), maturity stages (``maturity``), survey-aware models
(``models``) and one evaluation report per territory (``context``, ``render``). ``pipeline``
chains the steps; ``cli`` is the command line. Nothing is imported eagerly here: import the
module you need (``from evalterritoire.codebook import load_codebook``).
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("evalterritoire")
except PackageNotFoundError:  # pragma: no cover - running from a source tree without install
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
