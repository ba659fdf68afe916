"""The optional filters of the listing statements, in one place.

A listing takes filters that are each either a value or None (not given);
:func:`where_given` adds ``column == value`` for those given, so each DB
method names its filters once instead of a chain of ``if x is not None``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

import sqlalchemy as sa

__all__ = ["where_given"]

S = TypeVar("S", bound=sa.Select[Any])


def where_given(stmt: S, equal: Mapping[sa.ColumnElement[Any], Any]) -> S:
    """``stmt`` narrowed to ``column == value`` for every value given (not None)."""
    for column, value in equal.items():
        if value is not None:
            stmt = stmt.where(column == value)
    return stmt
