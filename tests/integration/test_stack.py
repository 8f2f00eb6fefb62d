"""infra/stack.sh started twice at once (tests run beside `make chaos`, which stops and
starts the infrastructure under them) starts each server once: `down` then stops all
that `up` started. Two at once used to start the MongoDB-wire server twice, the second
rewriting the pid file, and `down` left the first one running on the port."""

from __future__ import annotations

import os
import socket
import subprocess

import pytest

from paysys_dev.stack import ROOT, STACK
from tests.conftest import Infra, stack_cmd

MONGO_PORT = int(os.environ.get("PAYSYS_MONGO_PORT", "17017"))


def _open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _ferretdbs() -> list[str]:
    found = subprocess.run(
        ["pgrep", "-f", f"{ROOT}/.run/bin/ferretdb -listen-addr 127.0.0.1:{MONGO_PORT}"],
        capture_output=True,
        text=True,
    )
    return found.stdout.split()


@pytest.mark.skipif("MONGODB_URL" in os.environ, reason="an external MongoDB: not ours to stop")
def test_two_ups_at_once_leave_nothing_behind_after_down(infra: Infra) -> None:
    stack_cmd("down", "mongodb")
    try:
        for _ in range(3):
            ups = [
                subprocess.Popen(
                    ["bash", str(STACK), "up", "mongodb"],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
                for _ in range(2)
            ]
            assert [up.wait(timeout=120) for up in ups] == [0, 0]
            assert len(_ferretdbs()) == 1
            stack_cmd("down", "mongodb")
            assert _ferretdbs() == []
            assert not _open(MONGO_PORT)
    finally:
        stack_cmd("up", "mongodb")
