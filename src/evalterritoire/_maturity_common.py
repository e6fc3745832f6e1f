"""Shared vocabulary of the maturity modules: response column names and :class:`MaturityWarning`.

Owns nothing else, so that every ``_maturity_*`` module can import it without a cycle. The
public home of these names is :mod:`evalterritoire.maturity`.
"""

from __future__ import annotations

#: Public module of the maturity API: the moved classes keep it as ``__module__`` (pickles,
#: reprs and warning filters name ``evalterritoire.maturity.<Class>`` as before the split).
PUBLIC_MODULE = "evalterritoire.maturity"

TERRITORY_COL = "id_territoire_code"
NAME_COL = "id_territoire_nom"
TYPE_COL = "id_type_repondant"
ROLE_COL = "prof_role_demarche"
DECLARED_COL = "stade_auto"


class MaturityWarning(UserWarning):
    """A maturity result needs care (unreliable dimension, imputed profile...)."""


MaturityWarning.__module__ = PUBLIC_MODULE
