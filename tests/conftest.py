"""Shared test fixtures (module-specific fixtures live in their own test files)."""

from __future__ import annotations

from pathlib import Path

import pytest

from evalterritoire.codebook import Codebook, load_codebook

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"


@pytest.fixture(scope="session")
def codebook() -> Codebook:
    """The default codebook shipped with the package."""
    return load_codebook()


@pytest.fixture(scope="session")
def project_root() -> Path:
    """The repository root."""
    return ROOT
