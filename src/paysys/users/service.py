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
from paysys.kit.crypto import FieldCipher
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


def view(user: User, cipher: FieldCipher) -> UserOut:
    """The user as the API shows it: the sealed fields opened."""
    return UserOut(
        id=user.id,
        email=cipher.open(user.email_sealed, user.key_id, f"users.email:{user.id}"),
        full_name=cipher.open(user.full_name_sealed, user.key_id, f"users.full_name:{user.id}"),
        account_type=user.account_type,
        created_at=user.created_at,
    )


def seal(user: User, email: str, full_name: str, cipher: FieldCipher) -> None:
    """Sets the user's sealed fields (and the email's blind index) under the current key."""
    user.email_index = cipher.blind_index(email)
    user.email_sealed = cipher.seal(email, f"users.email:{user.id}")
    user.full_name_sealed = cipher.seal(full_name, f"users.full_name:{user.id}")
    user.key_id = cipher.current


async def register(
    session: AsyncSession, outbox: Outbox, data: RegisterIn, cipher: FieldCipher
) -> User:
    email = str(data.email)
    if await repository.by_email_index(session, cipher.blind_index(email)) is not None:
        raise EmailTaken("An account with this email already exists.")
    user = User(
        id=uuid.uuid4(),
        password_hash=await hash_password(data.password),
        account_type=data.account_type,
    )
    seal(user, email, data.full_name, cipher)
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
            "email": email,
            "full_name": data.full_name,
            "account_type": user.account_type,
        },
    )
    return user


async def authenticate(
    session: AsyncSession, email: str, password: str, cipher: FieldCipher
) -> User:
    user = await repository.by_email_index(session, cipher.blind_index(email))
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
        user=view(user, settings.cipher),
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
