"""Shared vocabulary of the maturity modules: the response columns they need and :class:`MaturityWarning`.

The columns are those of the codebook's roles (``territory``, ``territory_name``,
``respondent_type``, ``respondent_role``, ``respondent_id``, ``declared_stage``): the maturity
modules never name a column of the instrument. Owns nothing else, so that every maturity module
can import it without a cycle.
"""

from __future__ import annotations

import pandas as pd

from evalterritoire.codebook import Codebook
from evalterritoire.errors import MaturityError


class MaturityWarning(UserWarning):
    """A maturity result needs care (unreliable dimension, imputed profile...)."""


def territory_column(codebook: Codebook, responses: pd.DataFrame) -> str:
    """The territory column (codebook role ``territory``), checked against the responses.

    Raises
    ------
    MaturityError
        When the codebook has no territory role or the responses lack its column.
    """
    column = codebook.column("territory")
    if column is None:
        raise MaturityError(
            f"codebook '{codebook.name}' declares no territory column (role 'territory'): "
            "territory profiles need one"
        )
    if column not in responses.columns:
        raise MaturityError(f"responses have no territory column '{column}'")
    return column


def present_column(codebook: Codebook, role: str, responses: pd.DataFrame) -> str | None:
    """The column playing ``role`` when the codebook declares it and the responses hold it."""
    column = codebook.column(role)
    return column if column is not None and column in responses.columns else None
