"""Shared vocabulary of the maturity modules: response column names and :class:`MaturityWarning`.

Owns nothing else, so that every maturity module can import it without a cycle.
"""

from __future__ import annotations

TERRITORY_COL = "id_territoire_code"
NAME_COL = "id_territoire_nom"
TYPE_COL = "id_type_repondant"
ROLE_COL = "prof_role_demarche"
DECLARED_COL = "stade_auto"


class MaturityWarning(UserWarning):
    """A maturity result needs care (unreliable dimension, imputed profile...)."""
