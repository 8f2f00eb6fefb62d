"""The gateway's request path: authenticate, rate-limit, forward, relay the answer."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator

import aiohttp
import structlog
from fastapi import Request, Response
from fastapi.responses import StreamingResponse
from redis.exceptions import RedisError

from paysys.gateway.ratelimit import RateLimiter, ip_identity
from paysys.gateway.routes import FORWARD_REQUEST_HEADERS, FORWARD_RESPONSE_HEADERS, Route
from paysys.gateway.settings import GatewaySettings
from paysys.kit.auth import AccessClaims, session_key, verify_access_token
from paysys.kit.context import REQUEST_ID_HEADER, bind_user, client_ip_var, current_request_id
from paysys.kit.errors import AppError, NotFound, ServiceUnavailable, Unauthorized
from paysys.kit.http import INTERNAL_TOKEN_HEADER, SESSION_ID_HEADER, USER_ID_HEADER
from paysys.kit.metrics import RATE_LIMITED
from paysys.kit.runtime import Runtime

log = structlog.get_logger()


# A path parameter is an id: nothing that could mean another path once a service
# decodes it again (no "/", "%", ".." or other punctuation).
_SAFE_PARAM = re.compile(r"[A-Za-z0-9_-]{1,64}")
VERIFIED_TOKENS = 10_000  # kept at most, oldest out first


class RateLimited(AppError):
    status = 429
    code = "RATE_LIMITED"


def client_ip(request: Request, trusted_hops: int) -> str:
    """The one place the client's address is derived: the socket peer, or with N trusted
    proxies in front (PAYSYS_TRUSTED_PROXY_HOPS), the address the outermost of them saw,
    the N-th entry from the right of X-Forwarded-For (every header line of it, in order).
    What stands left of it is whatever the client wrote. uvicorn's own header rewriting
    is off (cli.serve), so the peer is the socket's."""
    peer = request.client.host if request.client else "unknown"
    if trusted_hops <= 0:
        return peer
    hops = [
        h.strip()
        for line in request.headers.getlist("x-forwarded-for")
        for h in line.split(",")
        if h.strip()
    ]
    return hops[-trusted_hops] if len(hops) >= trusted_hops else peer


class Proxy:
    def __init__(self, rt: Runtime, settings: GatewaySettings) -> None:
        self.rt = rt
        self.settings = settings
        self.limiter = RateLimiter(settings.rate_limit_window_seconds)
        self.timeout = aiohttp.ClientTimeout(total=settings.upstream_timeout_seconds, connect=2)
        self.stream_timeout = aiohttp.ClientTimeout(
            total=None, connect=2, sock_read=settings.upstream_timeout_seconds
        )
        # Tokens whose signature and claims were checked, by their exact text, until
        # they expire: a client sends the same token for 15 minutes, and verifying it
        # each time was a tenth of the gateway's CPU. Revocation is unaffected: the
        # session is looked up in Redis on every request.
        self._verified: dict[str, AccessClaims] = {}

    def _claims(self, request: Request) -> AccessClaims:
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise Unauthorized("A bearer access token is required.")
        token = token.strip()
        claims = self._verified.get(token)
        if claims is not None and claims.expires_at > time.time():
            return claims
        s = self.settings
        claims = verify_access_token(
            token, secret=s.jwt_secret, issuer=s.jwt_issuer, audience=s.jwt_audience
        )
        if len(self._verified) >= VERIFIED_TOKENS:
            self._verified.pop(next(iter(self._verified)))  # the oldest entry
        self._verified[token] = claims
        return claims

    def _limit_of(self, route: Route, ip: str, user_id: str | None) -> tuple[str, str, int]:
        s = self.settings
        if route.limit == "user" and user_id:
            return "user", user_id, s.rate_limit_user
        if route.limit == "register":
            return "register", ip_identity(ip), s.rate_limit_register
        return "login", ip_identity(ip), s.rate_limit_login

    async def admit(self, route: Route, request: Request, ip: str) -> AccessClaims | None:
        """Checks the token (locally), then the session and the rate limit in one Redis
        command. The session must be alive and belong to the token's user. Redis
        down: 503 on every route, the unauthenticated ones included, so that neither a
        session nor a password guess gets past checks that cannot be made."""
        claims = self._claims(request) if route.auth else None
        scope, identity, limit = self._limit_of(route, ip, claims.user_id if claims else None)
        session = session_key(claims.session_id) if claims is not None else None
        try:
            decision, owner = await self.limiter.admit(
                self.rt.redis, scope, identity, limit, session
            )
        except RedisError as exc:
            log.warning("redis_unavailable_at_gateway", error=type(exc).__name__)
            raise ServiceUnavailable("Sessions and limits cannot be checked right now.") from None
        if claims is not None and owner != claims.user_id:
            raise Unauthorized("The access token is missing, malformed, expired or revoked.")
        if not decision.allowed:
            RATE_LIMITED.labels(scope).inc()
            raise RateLimited(
                "Too many requests; retry later.",
                headers={"Retry-After": str(decision.retry_after_seconds)},
            )
        return claims

    async def forward(self, route: Route, request: Request) -> Response:
        params = request.path_params
        if not all(_SAFE_PARAM.fullmatch(str(v)) for v in params.values()):
            raise NotFound("Not Found")
        ip = client_ip(request, self.settings.trusted_proxy_hops)
        client_ip_var.set(ip)
        claims = await self.admit(route, request, ip)
        if claims is not None:
            bind_user(claims.user_id)
        headers = {k: v for k in FORWARD_REQUEST_HEADERS if (v := request.headers.get(k))}
        headers[INTERNAL_TOKEN_HEADER] = self.settings.internal_token
        headers[REQUEST_ID_HEADER] = current_request_id() or ""
        headers["X-Forwarded-For"] = ip
        if claims is not None:
            headers[USER_ID_HEADER] = claims.user_id
            headers[SESSION_ID_HEADER] = claims.session_id
        body = await request.body()
        # The path sent on is rebuilt from the routing table and the checked ids, never
        # the client's (once decoded) path, so it cannot name an internal route.
        url = self.settings.url_of(route.service) + route.path.format(**params)
        if request.url.query:
            url += "?" + request.url.query
        # A pod going away (a rollout, a drain) must cost no request. A connection that
        # was never made carried nothing: it is tried again, whatever the request. One
        # that broke after the request went out is tried again only when a repeat is
        # harmless: a read, or a write to transactions with an Idempotency-Key (answered
        # with the first outcome). A timeout is not retried: the upstream may still act.
        repeatable = request.method in ("GET", "HEAD") or (
            route.service == "transactions" and "idempotency-key" in request.headers
        )
        for attempt in range(self.settings.upstream_attempts):
            try:
                return await self._send(request.method, url, body, headers, route.streams)
            except (TimeoutError, aiohttp.ClientError) as exc:
                unsent = isinstance(exc, aiohttp.ClientConnectorError)
                retry = isinstance(exc, aiohttp.ClientError) and (unsent or repeatable)
                log.warning(
                    "upstream_unavailable",
                    service=route.service,
                    error=type(exc).__name__,
                    attempt=attempt + 1,
                    retry=retry,
                )
                if not retry or attempt + 1 == self.settings.upstream_attempts:
                    raise ServiceUnavailable(
                        f"The {route.service} service is not available; retry later."
                    ) from None
                await asyncio.sleep(0.05 * 4**attempt)  # 50 ms, then 200 ms
        raise AssertionError("unreachable")

    async def _send(
        self, method: str, url: str, body: bytes, headers: dict[str, str], streams: bool
    ) -> Response:
        upstream = await self.rt.http.request(
            method,
            url,
            data=body or None,
            headers=headers,
            # A long answer (a year's statement) is bounded by the wait between its
            # chunks, not by its whole length.
            timeout=self.stream_timeout if streams else self.timeout,
            allow_redirects=False,  # never carry the internal credential elsewhere
        )
        out_headers = {k: v for k in FORWARD_RESPONSE_HEADERS if (v := upstream.headers.get(k))}
        if streams and upstream.status == 200:
            # Passed on as it comes: the gateway never holds a whole statement either.
            return StreamingResponse(
                _relay(upstream), status_code=upstream.status, headers=out_headers
            )
        try:
            content = await upstream.read()
        finally:
            upstream.release()
        return Response(content, status_code=upstream.status, headers=out_headers)


async def _relay(upstream: aiohttp.ClientResponse) -> AsyncIterator[bytes]:
    try:
        async for chunk in upstream.content.iter_any():
            yield chunk
    finally:
        upstream.release()
