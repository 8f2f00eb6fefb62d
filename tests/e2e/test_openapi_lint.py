"""The gateway's public OpenAPI document passes Redocly's recommended rules (finding
19.14): every operation added from now on is held to them (servers, a license, and a
`security` on every operation, `[]` for the public ones)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import httpx

from paysys_dev.stack import ROOT

REDOCLY = ROOT / "web" / "node_modules" / ".bin" / "redocly"


async def test_the_public_document_passes_redocly_recommended(
    api: httpx.AsyncClient, tmp_path: Path
) -> None:
    assert REDOCLY.exists(), "make test installs web/ (npm ci): @redocly/cli is missing"
    doc = (await api.get("/openapi.json")).json()
    path = tmp_path / "openapi.json"
    path.write_text(json.dumps(doc))
    node = shutil.which("node")
    assert node, "node is needed for the lint"
    result = subprocess.run(
        [str(REDOCLY), "lint", "--extends", "recommended", "--format", "stylish", str(path)],
        capture_output=True,
        text=True,
        timeout=300,
        env={
            "REDOCLY_TELEMETRY": "off",
            "REDOCLY_SUPPRESS_UPDATE_NOTICE": "true",
            "PATH": str(Path(node).parent) + ":/usr/bin:/bin",
        },
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "warning" not in result.stdout.lower(), result.stdout
