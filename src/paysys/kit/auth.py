"""Token and credential checks shared by the services: user JWTs (PyJWT) and the
internal service credential that the gateway and the services present to each other."""

from __future__ import annotations

import hmac
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Annotated, Any

import jwt
from fastapi import Depends, Request

from paysys.kit.context import bind_user
from paysys.kit.errors import Forbidden, Unauthorized
from paysys.kit.events import utcnow
from paysys.kit.http import INTERNAL_TOKEN_HEADER, USER_ID_HEADER

JWT_ALGORITHM = "HS256"  # fixed on both sides: no "none", no algorithm confusion


@dataclass(frozen=True)
class AccessClaims:
    user_id: str
    session_id: str
    jti: str
    expires_at: int


def issue_access_token(
    *, secret: str, issuer: str, audience: str, user_id: str, session_id: str, ttl: timedelta
) -> tuple[str, AccessClaims]:
    now = utcnow()
    exp = int((now + ttl).timestamp())
    jti = str(uuid.uuid4())
    payload: dict[str, Any] = {
        "sub": user_id,
        "sid": session_id,
        "iat": int(now.timestamp()),
        "exp": exp,
        "jti": jti,
        "iss": issuer,
        "aud": audience,
        "typ": "access",
    }
    token = jwt.encode(payload, secret, algorithm=JWT_ALGORITHM)
    return token, AccessClaims(user_id, session_id, jti, exp)


def verify_access_token(token: str, *, secret: str, issuer: str, audience: str) -> AccessClaims:
    try:
        claims = jwt.decode(
            token,
            secret,
            algorithms=[JWT_ALGORITHM],
            audience=audience,
            issuer=issuer,
            options={"require": ["sub", "sid", "exp", "iat", "jti", "iss", "aud"]},
        )
    except jwt.PyJWTError:
        raise Unauthorized("The access token is missing, malformed, expired or revoked.") from None
    if claims.get("typ") != "access":
        raise Unauthorized("The access token is missing, malformed, expired or revoked.")
    return AccessClaims(str(claims["sub"]), str(claims["sid"]), str(claims["jti"]), claims["exp"])


def internal_token_ok(presented: str | None, expected: str) -> bool:
    # An empty expected token never matches (settings refuse one outside local and test).
    return (
        bool(presented)
        and bool(expected)
        and hmac.compare_digest(str(presented).encode(), expected.encode())
    )


def _expected_token(request: Request) -> str:
    return str(request.app.state.settings.internal_token)


async def require_internal(request: Request) -> None:
    """Only another paysys process (holding the internal credential) may call this route."""
    presented = request.headers.get(INTERNAL_TOKEN_HEADER)
    if presented is None:
        raise Unauthorized("This endpoint needs the internal service credential.")
    if not internal_token_ok(presented, _expected_token(request)):
        raise Forbidden("The internal service credential is not valid.")


async def current_user_id(request: Request) -> uuid.UUID:
    """The user the gateway authenticated. The header is trusted only together with the
    internal credential, which clients never have (the gateway strips both on the way in)."""
    await require_internal(request)
    raw = request.headers.get(USER_ID_HEADER)
    try:
        user_id = uuid.UUID(raw or "")
    except ValueError:
        raise Unauthorized("No authenticated user.") from None
    bind_user(str(user_id))
    return user_id


InternalOnly = Annotated[None, Depends(require_internal)]
CurrentUserId = Annotated[uuid.UUID, Depends(current_user_id)]


def session_key(session_id: str) -> str:
    """Redis key of a login session; shared knowledge of users (writes) and gateway (reads)."""
    return f"session:{session_id}"
