"""The browser side of the gateway: the wallet console at /app/ and the API docs at
/docs. Both come from this origin (the console's API calls are same-origin), nothing
from a CDN, under a strict Content-Security-Policy: no inline script, no inline style,
connections only back to this origin."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import HTMLResponse
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "font-src 'self'; connect-src 'self'; manifest-src 'self'; base-uri 'none'; "
    "form-action 'none'; frame-ancestors 'none'"
)
SECURITY_HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"cache-control", b"no-cache"),
]

DOCS_HEADERS = {k.decode(): v.decode() for k, v in SECURITY_HEADERS}
DOCS_HTML = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>paysys API</title>
<link rel="stylesheet" href="/docs/assets/swagger-ui.css">
<link rel="icon" href="/docs/assets/favicon-32x32.png">
</head>
<body>
<main id="swagger-ui"></main>
<script src="/docs/assets/swagger-ui-bundle.js"></script>
<script src="/app/docs-init.js"></script>
</body>
</html>
"""


class Secured:
    """Adds the browser security headers to every answer of the app it wraps."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def send_secured(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [
                    *[(k, v) for k, v in message.get("headers", []) if k != b"cache-control"],
                    *SECURITY_HEADERS,
                ]
            await send(message)

        await self.app(scope, receive, send_secured)


def mount_web(app: FastAPI, web_dir: Path) -> None:
    """/app/ (the console) and /docs (Swagger UI with its assets from npm's
    swagger-ui-dist, installed from web/package-lock.json by `make run`). The console's
    one library, qrcode-generator (payment links' QR codes), comes from npm the same way."""
    app.mount(
        "/app/vendor/qrcode",
        Secured(
            StaticFiles(
                directory=web_dir / "node_modules" / "qrcode-generator" / "dist", check_dir=False
            )
        ),
        name="console-qrcode",
    )
    app.mount(
        "/app",
        Secured(StaticFiles(directory=web_dir / "console", html=True, check_dir=False)),
        name="console",
    )
    app.mount(
        "/docs/assets",
        Secured(
            StaticFiles(directory=web_dir / "node_modules" / "swagger-ui-dist", check_dir=False)
        ),
        name="docs-assets",
    )

    @app.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        return HTMLResponse(DOCS_HTML, headers=DOCS_HEADERS)
