"""Bearer tokens with roles: pilot, user, operator, ddm, analyst, admin.

A token is 32 random bytes (URL-safe text) shown once when created; the
database keeps only its SHA-256, so a stolen database gives no token. A
token names its holder (a pilot's token name is the owner recorded on the
jobs it takes) and carries one role. :func:`authenticate` is on every
write's path, so verified tokens are remembered per process for a few
seconds (a revocation takes effect within :data:`CACHE_S`).

Which role may do what is declared route by route in the API
(``netbroker.web.auth``); ``admin`` may do everything.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy.engine import Engine

from netbroker.common.enums import utcnow
from netbroker.common.errors import NetbrokerError, UnknownToken
from netbroker.db import begin_immediate, database_key
from netbroker.db.auth import AuthDB

__all__ = ["ROLES", "Principal", "authenticate", "cached_principal", "create_token",
           "list_tokens", "revoke_token"]

ROLES = ("pilot", "user", "operator", "ddm", "analyst", "admin")
CACHE_S = 10.0
_cache: dict[tuple[str, str], tuple[float, Principal | None]] = {}


@dataclass(frozen=True)
class Principal:
    """Who is calling: the token's name and role."""

    name: str
    role: str

    def may(self, roles: tuple[str, ...]) -> bool:
        """Whether this role is among ``roles`` (admin always is).

        >>> Principal("p1", "pilot").may(("pilot",)), Principal("a", "admin").may(("ddm",))
        (True, True)
        """
        return self.role == "admin" or self.role in roles


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_token(engine: Engine, name: str, role: str) -> str:
    """Store a new token for ``name`` with ``role``; returns the token (shown once).

    Raises ``NetbrokerError`` for an unknown role, a bad name or a name in use.
    """
    if role not in ROLES:
        raise NetbrokerError(f"role {role!r} is not one of {', '.join(ROLES)}")
    if not re.fullmatch(r"[A-Za-z0-9_.@:-]{1,64}", name):
        raise NetbrokerError(f"token name {name!r}: 1-64 letters, digits or _.@:-")
    token = "nb_" + secrets.token_urlsafe(32)
    with begin_immediate(engine) as conn:
        db = AuthDB(conn)
        if db.token_exists(name):
            raise NetbrokerError(f"a token named {name!r} exists: revoke it first")
        db.add_token(name, role, _digest(token), utcnow())
    return token


def cached_principal(engine: Engine, token: str) -> tuple[bool, Principal | None]:
    """``(True, holder or None)`` when :func:`authenticate` remembers the token, else
    ``(False, None)``. No I/O: the API checks it on the event loop first."""
    hit = _cache.get((database_key(engine), token))
    if hit is None or time.monotonic() - hit[0] >= CACHE_S:
        return False, None
    return True, hit[1]


def authenticate(engine: Engine, token: str) -> Principal | None:
    """The holder of a valid, unrevoked token, or None."""
    known, principal = cached_principal(engine, token)
    if known:
        return principal
    key = (database_key(engine), token)
    with engine.connect() as conn:
        row = AuthDB(conn).holder(_digest(token))
    principal = Principal(*row) if row is not None else None
    if len(_cache) > 10_000:
        _cache.clear()
    _cache[key] = (time.monotonic(), principal)
    return principal


def list_tokens(engine: Engine) -> list[dict[str, Any]]:
    """Every token's name, role and dates (never the token)."""
    with engine.connect() as conn:
        return AuthDB(conn).list_tokens()


def revoke_token(engine: Engine, name: str) -> None:
    """Revoke a token by name (its row stays, for the record). Raises ``UnknownToken``."""
    with begin_immediate(engine) as conn:
        done = AuthDB(conn).revoke_token(name, utcnow())
    if done != 1:
        raise UnknownToken(name)
    _cache.clear()
