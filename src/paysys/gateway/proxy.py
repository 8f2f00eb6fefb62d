"""The gateway's request path: authenticate, rate-limit, forward, relay the answer."""

from __future__ import annotations

import aiohttp
import structlog
from fastapi import Request, Response
from redis.exceptions import RedisError

from paysys.gateway.ratelimit import RateLimiter
from paysys.gateway.routes import FORWARD_REQUEST_HEADERS, FORWARD_RESPONSE_HEADERS, Route
from paysys.gateway.settings import GatewaySettings
from paysys.kit.auth import AccessClaims, session_key, verify_access_token
from paysys.kit.context import REQUEST_ID_HEADER, bind_user, current_request_id
from paysys.kit.errors import AppError, ServiceUnavailable, Unauthorized
from paysys.kit.http import INTERNAL_TOKEN_HEADER, SESSION_ID_HEADER, USER_ID_HEADER
from paysys.kit.metrics import RATE_LIMITED
from paysys.kit.runtime import Runtime

log = structlog.get_logger()


class RateLimited(AppError):
    status = 429
    code = "RATE_LIMITED"


def client_ip(request: Request, trusted_hops: int) -> str:
    if trusted_hops > 0:
        hops = [h.strip() for h in request.headers.get("x-forwarded-for", "").split(",") if h]
        if len(hops) >= trusted_hops:
            return hops[-trusted_hops]
    return request.client.host if request.client else "unknown"


class Proxy:
    def __init__(self, rt: Runtime, settings: GatewaySettings) -> None:
        self.rt = rt
        self.settings = settings
        self.limiter = RateLimiter(rt.redis, settings.rate_limit_window_seconds)
        self.timeout = aiohttp.ClientTimeout(total=settings.upstream_timeout_seconds, connect=2)

    async def authenticate(self, request: Request) -> AccessClaims:
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise Unauthorized("A bearer access token is required.")
        s = self.settings
        claims = verify_access_token(
            token.strip(), secret=s.jwt_secret, issuer=s.jwt_issuer, audience=s.jwt_audience
        )
        try:
            alive = await self.rt.redis.exists(session_key(claims.session_id))
        except RedisError:
            raise ServiceUnavailable("Sessions cannot be checked right now.") from None
        if not alive:
            raise Unauthorized("The access token is missing, malformed, expired or revoked.")
        return claims

    async def limit(self, route: Route, ip: str, user_id: str | None) -> None:
        s = self.settings
        if route.limit == "user" and user_id:
            scope, identity, limit = "user", user_id, s.rate_limit_user
        elif route.limit == "register":
            scope, identity, limit = "register", ip, s.rate_limit_register
        else:
            scope, identity, limit = "login", ip, s.rate_limit_login
        try:
            decision = await self.limiter.hit(scope, identity, limit)
        except RedisError:
            # Fail open on the limiter alone: a Redis blip must not take payments down;
            # authenticated routes already failed closed on the session check above.
            log.warning("rate_limiter_unavailable")
            return
        if not decision.allowed:
            RATE_LIMITED.labels(scope).inc()
            raise RateLimited(
                "Too many requests; retry later.",
                headers={"Retry-After": str(decision.retry_after_seconds)},
            )

    async def forward(self, route: Route, request: Request) -> Response:
        ip = client_ip(request, self.settings.trusted_proxy_hops)
        claims = await self.authenticate(request) if route.auth else None
        user_id = claims.user_id if claims else None
        if user_id:
            bind_user(user_id)
        await self.limit(route, ip, user_id)
        headers = {k: v for k in FORWARD_REQUEST_HEADERS if (v := request.headers.get(k))}
        headers[INTERNAL_TOKEN_HEADER] = self.settings.internal_token
        headers[REQUEST_ID_HEADER] = current_request_id() or ""
        headers["X-Forwarded-For"] = ip
        if claims is not None:
            headers[USER_ID_HEADER] = claims.user_id
            headers[SESSION_ID_HEADER] = claims.session_id
        body = await request.body()
        url = self.settings.url_of(route.service) + request.url.path
        if request.url.query:
            url += "?" + request.url.query
        try:
            async with self.rt.http.request(
                request.method, url, data=body or None, headers=headers, timeout=self.timeout
            ) as upstream:
                content = await upstream.read()
                out_headers = {
                    k: v for k in FORWARD_RESPONSE_HEADERS if (v := upstream.headers.get(k))
                }
                return Response(content, status_code=upstream.status, headers=out_headers)
        except (TimeoutError, aiohttp.ClientError) as exc:
            log.warning("upstream_unavailable", service=route.service, error=type(exc).__name__)
            raise ServiceUnavailable(
                f"The {route.service} service is not available; retry later."
            ) from None
