"""HTTP routes of the users service: parse, call the service, shape the response."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse
from redis.exceptions import RedisError

from paysys.kit.auth import CurrentUserId, require_internal
from paysys.kit.deps import PROBLEM, get_runtime
from paysys.kit.errors import ServiceUnavailable
from paysys.kit.http import SESSION_ID_HEADER
from paysys.kit.metrics import LOGINS
from paysys.kit.runtime import Runtime
from paysys.users import repository, service
from paysys.users.exceptions import InvalidCredentials, UserNotFound
from paysys.users.schemas import LoginIn, RefreshIn, RegisterIn, TokensOut, UserOut
from paysys.users.sessions import SessionStore
from paysys.users.settings import UsersSettings

# Every route takes the internal credential: register, login and refresh carry no user
# token, but they too must come through the gateway (its rate limits, its view of the
# client's address for the audit trail), never straight from outside.
router = APIRouter(prefix="/users", tags=["users"], dependencies=[Depends(require_internal)])


async def get_sessions(request: Request) -> SessionStore:
    sessions: SessionStore = request.app.state.sessions
    return sessions


RT = Annotated[Runtime[UsersSettings], Depends(get_runtime)]
Sessions = Annotated[SessionStore, Depends(get_sessions)]


@router.post(
    "/register",
    status_code=201,
    response_model=UserOut,
    responses=PROBLEM,
    summary="Register a new user",
)
async def register(body: RegisterIn, rt: RT) -> UserOut:
    async with rt.db.uow() as session:
        user = await service.register(session, rt.outbox_or_fail, body, rt.settings.cipher)
        await rt.records_or_fail.audit(
            session, "user.registered", str(user.id), {"account_type": user.account_type}
        )
    return service.view(user, rt.settings.cipher)


@router.post("/login", response_model=TokensOut, responses=PROBLEM, summary="Log in")
async def login(body: LoginIn, rt: RT, sessions: Sessions) -> TokensOut:
    # No session store, no login, and the same answer whatever the password: answering
    # 401 to a wrong one and 503 to the right one would confirm a guess.
    try:
        await sessions.ping()
    except RedisError:
        raise ServiceUnavailable("Logging in is not possible right now; retry later.") from None
    try:
        async with rt.db.uow() as session:
            user = await service.authenticate(
                session, body.email, body.password, rt.settings.cipher
            )
    except InvalidCredentials:
        LOGINS.labels("failure").inc()
        async with rt.db.uow() as session:
            await rt.records_or_fail.audit(
                session,
                "user.login_failed",
                None,
                # Which account was tried, without the address itself: its blind index.
                {"email_index": rt.settings.cipher.blind_index(body.email)},
            )
        raise
    try:
        tokens = await service.start_session(rt.settings, sessions, user)
    except RedisError:
        raise ServiceUnavailable("Logging in is not possible right now; retry later.") from None
    LOGINS.labels("success").inc()
    async with rt.db.uow() as session:
        await rt.records_or_fail.audit(session, "user.login_succeeded", str(user.id))
    return tokens


@router.post(
    "/refresh",
    response_model=TokensOut,
    responses=PROBLEM,
    summary="Exchange a refresh token for a new token pair",
)
async def refresh(body: RefreshIn, rt: RT, sessions: Sessions) -> TokensOut:
    try:
        async with rt.db.uow() as session:
            return await service.refresh(session, rt.settings, sessions, body.refresh_token)
    except RedisError:
        raise ServiceUnavailable("Sessions cannot be refreshed right now; retry later.") from None


@router.post("/logout", status_code=204, responses=PROBLEM, summary="Log out")
async def logout(request: Request, user_id: CurrentUserId, rt: RT, sessions: Sessions) -> Response:
    sid = request.headers.get(SESSION_ID_HEADER)
    if sid:
        await sessions.revoke(sid)
    async with rt.db.uow() as session:
        await rt.records_or_fail.audit(session, "user.logout", str(user_id), {"session_id": sid})
    return Response(status_code=204)


@router.get("/me", response_model=UserOut, responses=PROBLEM, summary="The current user")
async def me(user_id: CurrentUserId, rt: RT) -> UserOut:
    async with rt.db.uow() as session:
        user = await repository.by_id(session, user_id)
    if user is None:
        raise UserNotFound("No such user.")
    return service.view(user, rt.settings.cipher)


internal = APIRouter(prefix="/internal/users", include_in_schema=False)


@internal.get("/{user_id}", dependencies=[Depends(require_internal)])
async def get_user(user_id: str, rt: RT) -> JSONResponse:
    try:
        uid = uuid.UUID(user_id)
    except ValueError:
        raise UserNotFound("No such user.") from None
    async with rt.db.uow() as session:
        user = await repository.by_id(session, uid)
    if user is None:
        raise UserNotFound("No such user.")
    return JSONResponse(service.view(user, rt.settings.cipher).model_dump(mode="json"))
