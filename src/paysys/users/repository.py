"""Queries of the users service: flush, never commit."""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from paysys.users.models import User


async def add(session: AsyncSession, user: User) -> User:
    session.add(user)
    await session.flush()
    await session.refresh(user)
    return user


async def by_email_index(session: AsyncSession, email_index: str) -> User | None:
    return (
        await session.execute(select(User).where(User.email_index == email_index))
    ).scalar_one_or_none()


async def by_id(session: AsyncSession, user_id: uuid.UUID) -> User | None:
    return await session.get(User, user_id)
