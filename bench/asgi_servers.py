"""The ASGI server's own cost (issue 21): one plain Starlette route, the size of a
transfer's request and answer, served by uvicorn (httptools, uvloop: what paysys runs)
and by Granian, under 32 keep-alive clients for 15 s. It reports requests/s and the
server's CPU (user + system, its process tree) per request; the CPU is the figure to
compare, as the client shares the machine.

Granian is not a paysys dependency; run this from a virtualenv that has it:
    python3 -m venv /tmp/gv && /tmp/gv/bin/pip install granian starlette 'uvicorn[standard]' aiohttp
    /tmp/gv/bin/python bench/asgi_servers.py
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

PORT = 18801
SECONDS = 15.0
APP = """
import json
from starlette.applications import Starlette
from starlette.responses import Response
from starlette.routing import Route

ANSWER = {"id": "7f1c2a9e-5b8e-4d0a-9c61-0f3c2b1d4e5f", "status": "COMPLETED",
          "type": "transfer", "currency": "USD", "source_wallet_id": "a" * 36,
          "destination_wallet_id": "b" * 36, "created_at": "2026-12-02T00:00:00Z"}

async def create(request):
    body = json.loads(await request.body())
    return Response(json.dumps({**ANSWER, "amount": body.get("amount")}), 201,
                    media_type="application/json")

app = Starlette(routes=[Route("/create", create, methods=["POST"])])
"""
BODY = json.dumps(
    {
        "type": "transfer",
        "amount": "12.34",
        "currency": "USD",
        "source_wallet_id": "a" * 36,
        "destination_wallet_id": "b" * 36,
    }
)


def tree_cpu(pid: int) -> float:
    """CPU seconds of a process and its children (Granian serves from a worker)."""
    children = subprocess.run(
        ["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True, check=False
    ).stdout.split()
    total = 0.0
    for p in [pid, *map(int, children)]:
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except FileNotFoundError:
            continue
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


async def load(seconds: float) -> int:
    done = 0
    end = time.monotonic() + seconds
    headers = {"Content-Type": "application/json"}
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=64)) as session:

        async def client() -> None:
            nonlocal done
            while time.monotonic() < end:
                url = f"http://127.0.0.1:{PORT}/create"
                async with session.post(url, data=BODY, headers=headers) as r:
                    await r.read()
                    assert r.status == 201
                done += 1

        await asyncio.gather(*(client() for _ in range(32)))
    return done


async def listening() -> None:
    for _ in range(300):
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", PORT)
            writer.close()
            return
        except OSError:
            await asyncio.sleep(0.1)
    raise SystemExit("the server did not start")


def main() -> None:
    granian = str(Path(sys.executable).parent / "granian")
    common = ["--interface", "asgi", "--port", str(PORT), "--workers", "1", "--loop", "uvloop"]
    common += ["--http", "1", "--no-ws", "--log-level", "warning", "app:app"]
    servers = {
        "uvicorn, httptools, uvloop": [
            sys.executable,
            "-c",
            f"import uvicorn; uvicorn.run('app:app', port={PORT}, loop='uvloop',"
            " http='httptools', log_level='warning', access_log=False)",
        ],
        "Granian, 1 worker": [granian, *common],
        "Granian, 1 worker, 1 runtime thread": [granian, "--runtime-threads", "1", *common],
    }
    print("| server | requests/s | server CPU per request (us) |\n|---|---|---|")
    with tempfile.TemporaryDirectory() as folder:
        Path(folder, "app.py").write_text(APP)
        for name, cmd in servers.items():
            proc = subprocess.Popen(cmd, cwd=folder)
            try:
                asyncio.run(listening())
                asyncio.run(load(2))  # warm
                cpu, at = tree_cpu(proc.pid), time.monotonic()
                n = asyncio.run(load(SECONDS))
                cpu, at = tree_cpu(proc.pid) - cpu, time.monotonic() - at
                print(f"| {name} | {n / at:,.0f} | {cpu / n * 1e6:.0f} |", flush=True)
            finally:
                proc.terminate()
                proc.wait()


if __name__ == "__main__":
    main()
