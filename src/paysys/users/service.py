"""Business rules of the users service. Takes a session; never commits."""

from __future__ import annotations

import asyncio
import os
import uuid
from datetime import timedelta

from pwdlib import PasswordHash
from pwdlib.hashers.argon2 import Argon2Hasher
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from paysys.kit.auth import issue_access_token
from paysys.kit.outbox import Outbox
from paysys.users import repository
from paysys.users.exceptions import EmailTaken, InvalidCredentials, InvalidRefreshToken
from paysys.users.models import User
from paysys.users.schemas import RegisterIn, TokensOut, UserOut
from paysys.users.sessions import REUSED, ROTATED, SessionStore
from paysys.users.settings import UsersSettings

hasher = PasswordHash((Argon2Hasher(),))  # Argon2id
# Verified against for unknown emails, so both failures cost the same time.
_DUMMY_HASH = hasher.hash("not-a-real-password-just-for-timing")


# Argon2id takes 64 MiB per hash in progress: as many at once as there are cores, so
# that a burst of logins queues instead of taking a gigabyte.
_HASHING = asyncio.Semaphore(os.cpu_count() or 2)


async def hash_password(password: str) -> str:
    async with _HASHING:
        return await asyncio.to_thread(hasher.hash, password)


async def verify_password(password: str, password_hash: str) -> bool:
    async with _HASHING:
        return await asyncio.to_thread(hasher.verify, password, password_hash)


async def register(session: AsyncSession, outbox: Outbox, data: RegisterIn) -> User:
    if await repository.by_email(session, data.email) is not None:
        raise EmailTaken("An account with this email already exists.")
    user = User(
        id=uuid.uuid4(),
        email=str(data.email),
        password_hash=await hash_password(data.password),
        full_name=data.full_name,
        account_type=data.account_type,
    )
    try:
        await repository.add(session, user)
    except IntegrityError:
        # Lost a race with a concurrent registration: the unique index decided.
        raise EmailTaken("An account with this email already exists.") from None
    await outbox.add(
        session,
        "user.registered",
        str(user.id),
        {
            "user_id": str(user.id),
            "email": user.email,
            "full_name": user.full_name,
            "account_type": user.account_type,
        },
    )
    return user


async def authenticate(session: AsyncSession, email: str, password: str) -> User:
    user = await repository.by_email(session, email)
    if user is None:
        await verify_password(password, _DUMMY_HASH)
        raise InvalidCredentials("The email or password is incorrect.")
    if not await verify_password(password, user.password_hash):
        raise InvalidCredentials("The email or password is incorrect.")
    return user


def _tokens(settings: UsersSettings, user: User, sid: str, refresh: str) -> TokensOut:
    access, _ = issue_access_token(
        secret=settings.jwt_secret,
        issuer=settings.jwt_issuer,
        audience=settings.jwt_audience,
        user_id=str(user.id),
        session_id=sid,
        ttl=timedelta(seconds=settings.access_token_ttl_seconds),
    )
    return TokensOut(
        access_token=access,
        refresh_token=refresh,
        expires_in=settings.access_token_ttl_seconds,
        user=UserOut.model_validate(user),
    )


async def start_session(settings: UsersSettings, sessions: SessionStore, user: User) -> TokensOut:
    sid, refresh = await sessions.create(str(user.id))
    return _tokens(settings, user, sid, refresh)


async def refresh(
    session: AsyncSession, settings: UsersSettings, sessions: SessionStore, token: str
) -> TokensOut:
    # Everything that can fail is done before the token is spent: if the database is
    # down, the client's retry with the same token still works (spending it first
    # would lose the new one, and the retry would look like reuse and end the session).
    owner = await sessions.owner(token)
    user = await repository.by_id(session, uuid.UUID(owner)) if owner else None
    rotation, sid = await sessions.rotate(token)
    if rotation.outcome == REUSED:
        raise InvalidRefreshToken("This refresh token was already used; the session is revoked.")
    if rotation.outcome != ROTATED or sid is None or rotation.refresh_token is None:
        raise InvalidRefreshToken("The refresh token is not valid.")
    if user is None or str(user.id) != rotation.user_id:
        await sessions.revoke(sid)
        raise InvalidRefreshToken("The refresh token is not valid.")
    return _tokens(settings, user, sid, rotation.refresh_token)
